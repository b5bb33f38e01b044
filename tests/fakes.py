"""A fast, deterministic stand-in for a backend, for UI and session tests.

``FakeEngine`` implements exactly ``studio.core.engines.Engine``; the ``Fake*`` services
implement the protocols beside it, and ``fake_services`` bundles them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from studio.core.engines import EngineFeatures, EngineServices
from studio.core.errors import ModelNotFoundError, StudioError
from studio.core.jobs.cancel import CancelToken
from studio.core.jobs.events import GenerationResult, StepProgress
from studio.core.jobs.request import GenerationRequest
from studio.core.models import DeviceInfo, ModelInfo
from studio.core.samplers import SCHEDULER_NAMES

TINY = ModelInfo(id="fake-tiny", name="Fake tiny", kind="diffusion", family="sd1",
                 source="embedded", path="", size_bytes=1234,
                 recommended=(("steps", 4), ("guidance", 3.0), ("width", 64), ("height", 64),
                              ("scheduler", "Euler a")))
LARGE = ModelInfo(id="fake-large", name="Fake large", kind="diffusion", family="sdxl",
                  source="diffusers", path="/models/large", size_bytes=6 * 2**30,
                  recommended=(("steps", 30), ("guidance", 6.5), ("width", 1024),
                               ("height", 1024), ("scheduler", "DPM++ 2M Karras")))


def gradient(seed: int, width: int, height: int) -> np.ndarray:
    """A gradient image that depends only on the seed and the size."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=3)
    ys = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    xs = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    img = (base[None, None, :] * (1 - xs) + (255 - base)[None, None, :] * xs) * (0.5 + 0.5 * ys)
    return np.clip(img, 0, 255).astype(np.uint8)


#: What the fake backend says it can do: everything the window offers.
FAKE_FEATURES = EngineFeatures(
    backend="fake", families=("sd1", "sdxl"), schedulers=SCHEDULER_NAMES,  # the local engine's
    inpainting=True, img2img=True, lora=True, prompt_sliders=True, latent_sliders=True,
    example_directions=True, upscaling=True, model_management=True)


class FakeEngine:
    """Makes gradient images from the seed; records every request it receives."""

    def __init__(self, models: list[ModelInfo] | None = None, step_delay: float = 0.0,
                 fail: StudioError | None = None,
                 features: EngineFeatures = FAKE_FEATURES) -> None:
        self._features = features
        self.models = [TINY, LARGE] if models is None else models
        self.step_delay = step_delay
        self.fail = fail
        self.requests: list[GenerationRequest] = []
        self.started = threading.Event()

    @property
    def features(self) -> EngineFeatures:
        return self._features

    def generate(self, request: GenerationRequest, on_step: Callable[[StepProgress], None],
                 cancel: CancelToken) -> GenerationResult:
        self.requests.append(request)
        self.started.set()
        if self.fail is not None:
            raise self.fail
        images = []
        for seed in request.seeds:
            final = gradient(seed, request.width, request.height)
            if request.task == "inpaint" and request.init_image is not None and request.mask:
                init = request.init_image.to_array()[..., :3]
                mask = request.mask.to_array()[..., None] > 127
                final = np.where(mask, final, init).astype(np.uint8)
            images.append(final)
        for step in range(1, request.steps + 1):
            if self.step_delay:
                time.sleep(self.step_delay)
            preview = (images[0][::8, ::8] * (step / request.steps)).astype(np.uint8)
            on_step(StepProgress(step, request.steps, preview))  # raises when cancelled
        cancel.raise_if_cancelled()
        # the family the engine fills in: the model's (an edit model's image to image is an
        # edit with words), else sd1
        family = next((m.family for m in self.models if m.id == request.model), "sd1")
        done = request.replace(device="cpu", dtype="float32", family=family or "sd1")
        return GenerationResult(request=done, images=tuple(images), seconds=0.01)

    def list_models(self, kind: str | None = None) -> list[ModelInfo]:
        return [m for m in self.models if kind is None or m.kind == kind]

    def device_info(self) -> DeviceInfo:
        return DeviceInfo("cpu", "float32", False, "CPU (fake)")

    def memory_in_use(self) -> int:
        return 256 * 2**20

    def default_model(self) -> ModelInfo | None:
        return self.models[0] if self.models else None

    def resolve_model(self, model_id: str) -> ModelInfo:
        for model in self.models:
            if model_id in (model.id, model.name):
                return model
        raise ModelNotFoundError(f"No model named {model_id}.")


class FakeFolders:
    """``ModelFolders`` that records what it is asked."""

    def __init__(self) -> None:
        self.added: list[str] = []
        self.rescans = 0

    def rescan(self) -> None:
        self.rescans += 1

    def add_folder(self, folder: str) -> None:
        self.added.append(folder)
        self.rescans += 1

    def compute_hash(self, model: ModelInfo) -> str:
        return "0" * 64

    def download(self, repo_id: str, progress: Callable[[int, int], None],
                 cancel: CancelToken) -> object:
        return None


class FakeUpscaling:
    """``Upscaling`` by pixel repetition; records the values of each call."""

    def __init__(self) -> None:
        self.calls: list[dict[str, object]] = []

    def upscaler_names(self) -> list[str]:
        return ["tiny"]

    def upscale(self, image: np.ndarray, values: dict[str, object],
                on_step: Callable[[StepProgress], None], cancel: CancelToken) -> np.ndarray:
        self.calls.append(dict(values))
        factor = int(float(values.get("scale", 2.0)))  # type: ignore[arg-type]
        return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


class FakeDirections:
    """``DirectionBuilder`` that returns a fixed vector; records each call."""

    def __init__(self, vector: np.ndarray | None = None) -> None:
        self.vector = np.arange(4, dtype=np.float32) if vector is None else vector
        self.calls: list[tuple[str, int, int]] = []

    def direction_from_images(self, space: str, with_attribute: np.ndarray,
                              without: np.ndarray) -> np.ndarray:
        self.calls.append((space, len(with_attribute), len(without)))
        return self.vector


def fake_services(engine: FakeEngine | None = None) -> EngineServices:
    """A fake backend with every service."""
    return EngineServices(engine=engine if engine is not None else FakeEngine(),
                          folders=FakeFolders(), upscaling=FakeUpscaling(),
                          directions=FakeDirections())
