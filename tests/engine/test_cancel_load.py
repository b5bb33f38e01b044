"""Cancel while a model loads: the load stops at the next part (the library import, each
component of a diffusers folder, each 64 MB read and each component of a single file), the
job ends "cancelled", nothing half-loaded stays in the cache, and the next job loads the
model and generates."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import threading

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from studio.core.errors import CancelledError  # noqa: E402
from studio.core.jobs.cancel import CancelToken  # noqa: E402
from studio.core.jobs.events import JobCancelled, JobFinished  # noqa: E402
from studio.core.jobs.request import GenerationRequest  # noqa: E402
from studio.core.jobs.runner import JobRunner  # noqa: E402
from studio.engine.models import loading, single_file  # noqa: E402


@pytest.fixture
def fresh_engine(tiny_sd1_dir, tmp_path_factory):
    """An engine of its own, so that nothing is loaded yet."""
    from studio.engine.engine import Engine

    return Engine(device="cpu", dtype="float32", model_dirs=[tiny_sd1_dir],
                  embedded_dir=tmp_path_factory.mktemp("no-embedded"), hf_cache=False)


def record_loads(monkeypatch, cls, loaded: list[str], then=None):
    """Wrap ``cls.from_pretrained`` to note each load (and call ``then`` after it)."""
    original = cls.from_pretrained.__func__

    def from_pretrained(klass, *args, **kwargs):
        model = original(klass, *args, **kwargs)
        loaded.append(cls.__name__)
        if then is not None:
            then()
        return model

    monkeypatch.setattr(cls, "from_pretrained", classmethod(from_pretrained))


class Events:
    def __init__(self, runner: JobRunner) -> None:
        self.events: list[object] = []
        self.done = threading.Event()
        runner.add_listener(self.on_event)

    def on_event(self, event: object) -> None:
        self.events.append(event)
        if isinstance(event, JobCancelled | JobFinished):
            self.done.set()

    def wait(self) -> object:
        assert self.done.wait(60), "the job did not end"
        self.done.clear()
        return self.events[-1]


def test_cancel_between_components_ends_the_job_cancelled_and_the_next_generation_works(
        monkeypatch, fresh_engine):
    engine = fresh_engine
    model = engine.list_models("diffusion")[0].id
    runner = JobRunner(engine)
    events = Events(runner)
    loaded: list[str] = []
    job: list[int] = []
    # The user presses Cancel while the UNet loads: the VAE after it is never loaded.
    record_loads(monkeypatch, diffusers.UNet2DConditionModel, loaded,
                 then=lambda: runner.cancel(job[0]))
    record_loads(monkeypatch, diffusers.AutoencoderKL, loaded)
    try:
        job.append(runner.submit(work=lambda _step, _cancel: engine.load(model),
                                 label="Loading"))
        assert isinstance(events.wait(), JobCancelled)
        assert loaded == ["UNet2DConditionModel"]  # stopped at the next component
        assert len(engine.pipelines) == 0  # nothing half-loaded is kept

        request = GenerationRequest(prompt="a portrait", model=model, width=64, height=64,
                                    steps=2, seed=1)
        runner.submit(request)
        finished = events.wait()
        assert isinstance(finished, JobFinished)
        assert finished.result.images[0].shape == (64, 64, 3)
        assert len(engine.pipelines) == 1
    finally:
        assert runner.shutdown(10)


def test_cancel_while_the_libraries_import_answers_at_once(monkeypatch, fresh_engine):
    """The first load imports diffusers and transformers (tens of seconds on a slow CPU): a
    cancel meanwhile ends the load without waiting for the import, which goes on for the
    next load."""
    release = threading.Event()
    imported: list[bool] = []

    def slow_import() -> None:
        release.wait(30)
        imported.append(True)

    monkeypatch.setattr(loading, "_IMPORTS", None)
    monkeypatch.setattr(loading, "_import_libraries", slow_import)
    info = fresh_engine.list_models("diffusion")[0]
    token = CancelToken()
    outcome: list[object] = []

    def load() -> None:
        try:
            outcome.append(loading.load_model(info, fresh_engine.choice, token))
        except CancelledError as err:
            outcome.append(err)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        token.cancel()
        thread.join(5)
        assert not thread.is_alive(), "the load waited for the import to end"
        assert isinstance(outcome[0], CancelledError) and not imported
    finally:
        release.set()
    loaded = loading.load_model(info, fresh_engine.choice, CancelToken())  # the next load
    assert imported == [True] and loaded.pipe.unet is not None


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_sd1_dir, tmp_path_factory):
    """The tiny SD1 pipeline saved as one .safetensors in the A1111 layout."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd1_dir, local_files_only=True)
    path = tmp_path_factory.mktemp("tiny-ckpt") / "tiny-sd1.safetensors"
    return single_file.save_single_file(pipe, path)


def test_a_single_file_load_stops_between_components(monkeypatch, tiny_checkpoint,
                                                     tiny_sd1_dir):
    from diffusers.loaders import single_file as diffusers_single_file

    token = CancelToken()
    loaded: list[str] = []
    original = diffusers_single_file.load_single_file_sub_model

    def sub_model(**kwargs):
        model = original(**kwargs)
        loaded.append(kwargs["name"])
        if kwargs["name"] == "text_encoder":
            token.cancel()  # Cancel pressed while the text encoder was converted
        return model

    monkeypatch.setattr(diffusers_single_file, "load_single_file_sub_model", sub_model)
    with pytest.raises(CancelledError):
        single_file.load_single_file(tiny_checkpoint, config_dir=tiny_sd1_dir, cancel=token)
    assert loaded == ["scheduler", "text_encoder"]  # the UNet and VAE were not converted

    loaded.clear()
    pipe = single_file.load_single_file(tiny_checkpoint, config_dir=tiny_sd1_dir,
                                        cancel=CancelToken())
    assert loaded == ["scheduler", "text_encoder", "tokenizer", "unet", "vae"]
    image = pipe("a photo", num_inference_steps=2, height=64, width=64, output_type="np",
                 generator=torch.Generator().manual_seed(0)).images[0]
    assert image.shape == (64, 64, 3) and image.std() > 0


def test_a_single_file_load_stops_while_the_file_is_read(monkeypatch, tiny_checkpoint,
                                                         tiny_sd1_dir):
    """A large checkpoint takes seconds to read: the read checks the token as it goes."""
    token = CancelToken()
    checks: list[int] = []

    class CancelAfterThree(CancelToken):
        def raise_if_cancelled(self) -> None:
            checks.append(1)
            if len(checks) == 3:
                token.cancel()
            token.raise_if_cancelled()

    monkeypatch.setattr(single_file, "_READ_CHECK_BYTES", 1)  # a check after every tensor
    converted: list[str] = []
    from diffusers.loaders import single_file as diffusers_single_file

    original = diffusers_single_file.load_single_file_sub_model
    monkeypatch.setattr(diffusers_single_file, "load_single_file_sub_model",
                        lambda **kw: converted.append(kw["name"]) or original(**kw))
    with pytest.raises(CancelledError):
        single_file.load_single_file(tiny_checkpoint, config_dir=tiny_sd1_dir,
                                     cancel=CancelAfterThree())
    assert len(checks) == 3 and converted == []  # stopped in the read, before any component
