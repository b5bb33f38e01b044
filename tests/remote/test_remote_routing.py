"""This computer's models beside the servers' (``studio.remote.routing.RoutingEngine``),
against the real server: both listed with where each lives, each job where its model is, what
a model's backend cannot do off per model; a server's image keeps its workflow in the project
across a reopen, and "Use settings" on it runs on the same server, bit for bit, or says in
one line that the server is not connected."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from studio.core.errors import StudioError
from studio.core.jobs.cancel import CancelToken
from studio.core.jobs.events import JobFailed, JobFinished
from studio.core.jobs.request import GenerationRequest
from studio.core.jobs.runner import JobRunner

pytestmark = [pytest.mark.slow, pytest.mark.server]

SERVER_MODEL = "tiny-sd1.safetensors"
LOCAL_MODEL = "studio-tiny-diffusion"


def request(**kw) -> GenerationRequest:
    base = dict(prompt="a lighthouse at dusk", model=SERVER_MODEL, steps=2, width=64,
                height=64, seed=3, guidance=5.0)
    return GenerationRequest(**{**base, **kw})


@pytest.fixture(scope="module")
def local_engine():
    """This computer's engine with the embedded models (CPU, float32: exact)."""
    from studio.engine.engine import Engine

    return Engine(device="cpu", dtype="float32", model_dirs=[], hf_cache=False)


def host(url: str) -> str:
    return url.split("://", 1)[1]


def test_local_and_server_models_side_by_side_each_job_where_its_model_is(
        comfy_server, local_engine) -> None:
    from studio.remote.engine import RemoteEngine
    from studio.remote.routing import RoutingEngine, location

    engine = RoutingEngine(local_engine, RemoteEngine([comfy_server.url]))
    try:
        where = {m.id: location(m) for m in engine.list_models("diffusion")}
        assert where[LOCAL_MODEL] == "this computer"
        assert where[SERVER_MODEL] == host(comfy_server.url)
        # Off per model, from that model's backend; the app's own tools stay on.
        local, remote = engine.features_for(LOCAL_MODEL), engine.features_for(SERVER_MODEL)
        assert local.prompt_sliders and not remote.prompt_sliders
        assert "local engine only" in remote.reason("prompt_sliders")
        assert local.model_management and remote.model_management
        # One queue: a local job and a server job run side by side, each where its model is.
        runner = JobRunner(engine)
        assert runner.places == 2
        ended: dict[int, object] = {}
        done = threading.Event()

        def on_event(event) -> None:
            if isinstance(event, (JobFinished, JobFailed)):
                ended[event.job_id] = event
                if len(ended) == 2:
                    done.set()

        runner.add_listener(on_event)
        on_server = runner.submit(request())
        here = runner.submit(request(model=LOCAL_MODEL, steps=3, seed=1))
        assert done.wait(300), "the two jobs did not end"
        assert runner.shutdown(10.0)
        server_result, local_result = ended[on_server].result, ended[here].result
        assert server_result.request.device == f"comfyui:{comfy_server.url}"
        assert local_result.request.device == "cpu"
        # The same pixels as each backend alone makes them: routing changes nothing.
        alone = local_engine.generate(request(model=LOCAL_MODEL, steps=3, seed=1),
                                      lambda _p: None, CancelToken())
        np.testing.assert_array_equal(local_result.images[0], alone.images[0])
    finally:
        engine.close()


def test_a_server_image_reproduces_on_its_server_or_says_that_server_is_gone(
        comfy_server, spare_server) -> None:
    """A request made on a server (``device`` = ``comfyui:URL``, as "Use settings" keeps
    it) runs there again and nowhere else, bit for bit; a server that is not connected is
    one line naming the ones that are."""
    from studio.remote.engine import RemoteEngine

    engine = RemoteEngine([comfy_server.url, spare_server.url])
    try:
        first = engine.generate(request(device=f"comfyui:{spare_server.url}", seed=11))
        assert first.request.device == f"comfyui:{spare_server.url}"
        for _ in range(2):  # never the other server, though it is free and has the model
            again = engine.generate(first.request.replace(dtype="", model_hash=""))
            assert again.request.device == f"comfyui:{spare_server.url}"
            np.testing.assert_array_equal(again.images[0], first.images[0])
        gone = "http://127.0.0.1:9"
        with pytest.raises(StudioError) as err:
            engine.generate(first.request.replace(device=f"comfyui:{gone}"))
        text = str(err.value)
        assert "\n" not in text and "127.0.0.1:9" in text and "not connected" in text
        assert host(comfy_server.url) in text and host(spare_server.url) in text
    finally:
        engine.close()
    from conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # in the list, but down
    engine = RemoteEngine([comfy_server.url, dead])
    try:
        with pytest.raises(StudioError) as err:
            engine.generate(request(device=f"comfyui:{dead}"))
        text = str(err.value)
        assert f"made on {host(dead)}, which is not connected" in text
        assert f"connected: {host(comfy_server.url)}" in text
    finally:
        engine.close()


def test_a_project_keeps_the_workflow_a_server_ran_across_a_reopen(comfy_server,
                                                                  tmp_path) -> None:
    """`studio generate --server --project`: the reopened project's record still has the
    server's address and the workflow (API format) that made the image."""
    from studio.core.project.store import ProjectStore

    project = tmp_path / "p.studio"
    made = subprocess.run(
        [sys.executable, "-m", "studio", "generate", "a lighthouse", "--server",
         comfy_server.url, "--model", "tiny-sd1", "--size", "64", "--steps", "1", "--seed",
         "21", "--project", str(project), "-o", str(tmp_path / "out.png"), "--quiet"],
        capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    record = ProjectStore.load(project).log.records[-1]
    assert record.request.device == f"comfyui:{comfy_server.url}"
    workflow = record.workflow(0)
    assert workflow is not None
    sampler = next(n for n in workflow.values() if n["class_type"] == "KSampler")
    assert sampler["inputs"]["seed"] == 21


def test_the_window_lists_both_runs_each_where_it_lives_and_reopens_with_the_workflow(
        comfy_server, local_engine, qtbot, tmp_path) -> None:
    from PIL import Image
    from PySide6.QtCore import QSettings  # noqa: TID251 - the window's settings in tmp_path

    from studio.engine.services import engine_services
    from studio.remote.routing import routing_services
    from studio.remote.services import remote_services
    from studio.session.workflows import WORKFLOWS
    from studio.ui.gallery_panel import summary
    from studio.ui.main_window import MainWindow

    services = routing_services(engine_services(local_engine),
                                remote_services(SimpleNamespace(servers=[comfy_server.url])))
    runner = JobRunner(services.engine)
    window = MainWindow(services, runner,
                        QSettings(str(tmp_path / "studio.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    panel, combo = window.prompt_panel, window.prompt_panel.model_combo
    try:
        window.show()
        qtbot.waitExposed(window)
        qtbot.waitUntil(lambda: combo.count() > 1, timeout=30000)
        labels = [combo.itemText(i) for i in range(combo.count())]
        assert "studio-tiny-diffusion  ·  studio-tiny  ·  on this computer" in labels
        assert f"tiny-sd1  ·  sd1  ·  on {host(comfy_server.url)}" in labels
        qtbot.waitUntil(lambda: window.status.servers_label.text() == "1 server: 1 idle",
                        timeout=30000)
        pair = window.sliders_panel.pair_button  # prompt sliders: the local engine's only
        manager = window.tools.actions["model_manager"]  # this computer's folders

        def generate(model: str, seed: int):
            combo.setCurrentIndex(combo.findData(model))
            panel.steps_slider.setValue(2)
            panel.width_spin.setValue(64)
            panel.height_spin.setValue(64)
            panel.seed_spin.setValue(seed)
            panel.prompt_edit.setPlainText("a lighthouse")
            with qtbot.waitSignal(window.controller.generation_applied,
                                  timeout=180000) as got:
                panel.generate_button.click()
            return window.doc.log.get(got.args[0])

        server_record = generate(SERVER_MODEL, 5)
        assert server_record.request.device == f"comfyui:{comfy_server.url}"
        assert not pair.isEnabled() and "local engine only" in pair.toolTip()
        assert manager.isEnabled()
        local_record = generate(LOCAL_MODEL, 6)
        assert local_record.request.device == "cpu"
        assert pair.isEnabled() and manager.isEnabled()
        # Saved, and opened again in a fresh run (nothing of this run's memory left).
        path = tmp_path / "both.studio"
        with qtbot.waitSignal(window.projects.save_finished, timeout=30000):
            window.projects.save_as(path)
        WORKFLOWS._by_key.clear()
        assert window.projects.open_project(path)
        qtbot.waitUntil(lambda: len(window.gallery_panel.items) == 2, timeout=30000)
        reopened = window.doc.log.get(server_record.id)
        assert reopened.workflow(0) is not None
        assert f"made on {comfy_server.url}" in summary(reopened)
        assert window.doc.log.get(local_record.id).workflow(0) is None
        folder = tmp_path / "gallery"
        folder.mkdir()
        files = window.file_actions.export_gallery(str(folder), "{seed}")
        by_seed = {p.stem: p for p in files}
        seeds = server_record.request.seed, local_record.request.seed
        assert set(by_seed) == {str(seed) for seed in seeds}, files
        with Image.open(by_seed[str(seeds[0])]) as img:
            ran = json.loads(img.info["prompt"])
        assert any(n["class_type"] == "KSampler" and n["inputs"]["seed"] == seeds[0]
                   for n in ran.values())
        with Image.open(by_seed[str(seeds[1])]) as img:
            assert "prompt" not in img.info  # made here: no ComfyUI workflow
        # "Use settings" on the server's image: the same server, the same pixels.
        window._on_gallery_item_clicked(reopened)
        assert panel.values()["device"] == f"comfyui:{comfy_server.url}"
        with qtbot.waitSignal(window.controller.generation_applied, timeout=180000) as got:
            panel.generate_button.click()
        again = window.doc.log.get(got.args[0])
        assert again.request.device == f"comfyui:{comfy_server.url}"
        np.testing.assert_array_equal(window.doc.log.image(again.image_hashes[0]),
                                      window.doc.log.image(reopened.image_hashes[0]))
    finally:
        window.status.stop()
        window.detach_engine()
        assert runner.shutdown(10.0)
        window.close()
        services.engine.close()


def test_studio_models_with_a_server_lists_both_with_where_each_lives(comfy_server) -> None:
    listed = subprocess.run([sys.executable, "-m", "studio", "models", "--server",
                             comfy_server.url, "--kind", "diffusion"],
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert "LOCATION" in header.split()
    where = {row.split()[0]: row for row in rows}
    assert "this computer" in where["studio-tiny-diffusion"]
    assert host(comfy_server.url) in where["tiny-sd1"].split("comfyui")[0]


def test_studio_generate_with_a_server_runs_a_model_of_this_computer_here(comfy_server,
                                                                        tmp_path) -> None:
    """With a server given, a `--model` only this computer has runs here (as the window
    routes it), with a note, instead of "not found on the server"; the image's record says
    it was made on this computer and has no server workflow."""
    from PIL import Image

    out = tmp_path / "here.png"
    made = subprocess.run(
        [sys.executable, "-m", "studio", "generate", "a person with red hair", "--server",
         comfy_server.url, "--model", "studio-tiny-diffusion", "--steps", "2", "--seed", "5",
         "-o", str(out), "--quiet"], capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    assert "studio-tiny-diffusion is a model of this computer: it runs here" in made.stderr
    with Image.open(out) as image:
        assert image.size == (64, 64)
        assert "comfyui" not in image.info.get("parameters", "")
        assert "prompt" not in image.info  # no ComfyUI workflow: the server did not run it
    unknown = subprocess.run(
        [sys.executable, "-m", "studio", "generate", "x", "--server", comfy_server.url,
         "--model", "no-such-model", "-o", str(tmp_path / "x.png"), "--quiet"],
        capture_output=True, text=True, timeout=300)
    assert unknown.returncode != 0
    assert "neither a model of the servers nor of this computer" in unknown.stderr
