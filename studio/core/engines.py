"""THE engine protocol every backend implements, and ``EngineFeatures``: what it can do.

A backend turns a ``GenerationRequest`` into images: the local engine (torch + diffusers, in
``studio.engine``), one ComfyUI server or a pool of them (``studio.remote``), or the tests'
fake. The window and the CLI see only this protocol and the services beside it; the
composition roots (``studio.app``, ``studio.cli``) are the only places that name a concrete
backend. The UI enables what ``features`` allows and says why the rest is off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from studio.core.jobs.cancel import CancelToken
from studio.core.jobs.events import GenerationResult, StepProgress
from studio.core.jobs.request import GenerationRequest
from studio.core.models import DeviceInfo, ModelInfo


@dataclass(frozen=True)
class EngineFeatures:
    """What a backend can do, as a frozen value the UI reads once.

    ``why_not`` pairs a feature's field name with the reason the UI shows (as a tooltip)
    where that feature is off; ``reason(feature)`` reads it.
    """

    backend: str = "local"  # "local", "comfyui", "fake", ...
    families: tuple[str, ...] = ()  # model families it runs ("sd1", "sdxl", "studio-tiny", ...)
    schedulers: tuple[str, ...] = ()  # scheduler names it accepts (A1111's names)
    inpainting: bool = True
    img2img: bool = True
    control: bool = False
    lora: bool = False
    prompt_sliders: bool = False  # text-embedding directions (SD 1.x/2.x/SDXL)
    latent_sliders: bool = False  # VAE / GAN latent space sliders
    example_directions: bool = False  # VAE / GAN directions built from marked images
    upscaling: bool = False
    model_management: bool = False  # hashes, downloads, added folders
    live_mode: bool = False
    regions: bool = False  # regional prompts (masked cross-attention)
    regions_families: tuple[str, ...] = ()  # where regions work ((): every family it runs)
    why_not: tuple[tuple[str, str], ...] = ()  # (feature, reason) for what is off

    def reason(self, feature: str) -> str:
        """Why ``feature`` is off on this backend ("" when it is on or no reason is known)."""
        if getattr(self, feature, False):
            return ""
        return dict(self.why_not).get(feature, f"{self.backend} backend does not offer this")

    def regions_reason(self, family: str = "") -> str:
        """Why regional prompts are off (on ``family`` where given); "" when they are on."""
        if not self.regions:
            return self.reason("regions")
        if family and self.regions_families and family not in self.regions_families:
            reasons = dict(self.why_not)  # a family's own reason first ("regions_families:x")
            return reasons.get(f"regions_families:{family}") or reasons.get(
                "regions_families", f"regional prompts do not work on {family} models")
        return ""


@runtime_checkable
class Engine(Protocol):
    """A backend: generation with progress, previews and cancel; models; the device."""

    @property
    def features(self) -> EngineFeatures: ...

    def generate(self, request: GenerationRequest, on_step: Callable[[StepProgress], None],
                 cancel: CancelToken) -> GenerationResult:
        """Run ``request``: ``on_step`` gets progress (with a small preview every few steps);
        a set ``cancel`` stops the job within one step (``CancelledError``)."""
        ...

    def list_models(self, kind: str | None = None) -> list[ModelInfo]:
        """The models this backend can use, of one kind (``core.models.KINDS``) or all."""
        ...

    def default_model(self) -> ModelInfo | None: ...

    def resolve_model(self, model_id: str) -> ModelInfo: ...

    def device_info(self) -> DeviceInfo: ...

    def memory_in_use(self) -> int: ...


class ModelFolders(Protocol):
    """The model folders a backend scans, and the model manager's file work."""

    def rescan(self) -> None: ...

    def add_folder(self, folder: str) -> None:
        """Scan ``folder`` now and on every later start (GUI and CLI alike)."""
        ...

    def compute_hash(self, model: ModelInfo) -> str: ...

    def download(self, repo_id: str, progress: Callable[[int, int], None],
                 cancel: CancelToken) -> object: ...


class Upscaling(Protocol):
    """Super-resolution with the backend's upscaler models (or Lanczos)."""

    def upscaler_names(self) -> list[str]: ...

    def upscale(self, image: np.ndarray, values: dict[str, Any],
                on_step: Callable[[StepProgress], None], cancel: CancelToken) -> np.ndarray: ...


class DirectionBuilder(Protocol):
    """Latent-space directions built from images the artist marked (VAE / GAN)."""

    def direction_from_images(self, space: str, with_attribute: np.ndarray,
                              without: np.ndarray) -> np.ndarray:
        """A direction vector in ``space`` ("vae" or "gan") from uint8 RGB examples."""
        ...


class ModelRouting(Protocol):
    """A backend made of several (this computer's models and the servers'): what the
    backend of one model can do, so the window greys out per model what it cannot."""

    def features_for(self, model_id: str) -> EngineFeatures: ...


@dataclass(frozen=True)
class EngineServices:
    """Everything the window gets of one backend, handed over by the composition root.

    ``folders``, ``upscaling`` and ``directions`` are ``None`` where the backend has no such
    service; ``engine.features`` then says so and the UI greys the entries out.
    """

    engine: Engine
    folders: ModelFolders | None = None
    upscaling: Upscaling | None = None
    directions: DirectionBuilder | None = None
    routing: ModelRouting | None = None  # a backend of several (local + servers): per model
