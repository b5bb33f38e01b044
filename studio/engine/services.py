"""The local backend's services, and ``local_services``: the local engine built from settings.

The window and the CLI see ``studio.core.engines``: the ``Engine`` protocol and the services
beside it (``ModelFolders``, ``Upscaling``, ``DirectionBuilder``). This module implements
those services over the concrete torch + diffusers ``Engine``; ``local_services`` is the one
function that builds it from the settings, for ``studio.app`` and ``studio.cli`` alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from studio.core.engines import EngineServices
from studio.core.jobs.cancel import CancelToken
from studio.core.jobs.events import StepProgress
from studio.core.models import ModelInfo
from studio.core.sliders.specs import LATENT_MODELS
from studio.engine.engine import Engine


class EngineSettings(Protocol):
    """What ``local_services`` reads of the settings (``studio.settings.Settings`` has it)."""

    @property
    def device(self) -> str: ...

    @property
    def dtype(self) -> str: ...

    @property
    def model_dirs(self) -> Sequence[str | Path]: ...

    @property
    def hf_cache(self) -> bool: ...


class LocalModelFolders:
    """The local engine's model folders and the model manager's file work."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def rescan(self) -> None:
        self.engine.list_models(refresh=True)

    def add_folder(self, folder: str) -> None:
        """Scan ``folder`` now and on every later start (GUI and CLI alike)."""
        from studio.settings import save_settings, saved_settings

        self.engine.add_model_dir(folder)
        save_settings(saved_settings().with_model_dir(folder))

    def compute_hash(self, model: ModelInfo) -> str:
        from studio.engine.models.hashing import model_hash

        return model_hash(model.path)

    def download(self, repo_id: str, progress: Callable[[int, int], None],
                 cancel: CancelToken) -> object:
        from studio.engine.models.hub import download_model

        return download_model(repo_id, progress, cancel)


class LocalUpscaling:
    """Super-resolution with the local upscaler models (or Lanczos), then the optional refine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def upscaler_names(self) -> list[str]:
        return [m.name for m in self.engine.list_models("upscaler")]

    def upscale(self, image: np.ndarray, values: dict[str, Any],
                on_step: Callable[[StepProgress], None], cancel: CancelToken) -> np.ndarray:
        from studio.engine.upscale import UpscaleSettings, upscale_with_engine

        return upscale_with_engine(self.engine, image, UpscaleSettings(**values), cancel,
                                   on_step)


class LocalDirectionBuilder:
    """VAE / GAN directions from marked examples, with the embedded latent models."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def direction_from_images(self, space: str, with_attribute: np.ndarray,
                              without: np.ndarray) -> np.ndarray:
        info = self.engine.resolve_model(LATENT_MODELS[space])
        return self.engine.latent_models.direction_from_images(info, with_attribute,
                                                               without).vector


def engine_services(engine: Engine) -> EngineServices:
    """The services of an engine already made (tests and benchmarks build their own)."""
    return EngineServices(engine=engine, folders=LocalModelFolders(engine),
                          upscaling=LocalUpscaling(engine),
                          directions=LocalDirectionBuilder(engine))


def local_services(settings: EngineSettings) -> EngineServices:
    """The local engine built from ``settings`` (device, dtype, model_dirs, hf_cache), with
    its model folders, upscaling and direction builder.

    Imports torch and diffusers: the GUI calls it on the loader thread, after the window shows.
    """
    from studio.engine.models.loading import quiet_libraries

    quiet_libraries()
    engine = Engine(device=settings.device, dtype=settings.dtype,
                    model_dirs=[Path(d) for d in settings.model_dirs],
                    hf_cache=bool(settings.hf_cache))
    return engine_services(engine)
