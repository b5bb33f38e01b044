"""Engine-side callables for the model manager, downloads and upscaling, bundled for the UI.

The UI may not import ``studio.engine``; ``studio.app`` attaches this bundle to the engine it
makes (``engine.table_stakes``), and the window's dialogs call these plain functions on worker
threads or through ``JobRunner.submit(work=...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from studio.core.jobs.cancel import CancelToken
from studio.core.jobs.events import StepProgress
from studio.core.models import ModelInfo


@dataclass
class TableStakesServices:
    """Plain callables over one engine (none touches Qt)."""

    list_models: Callable[[], list[ModelInfo]]
    rescan: Callable[[], None]
    add_folder: Callable[[str], None]
    compute_hash: Callable[[ModelInfo], str]
    download: Callable[[str, Callable[[int, int], None], CancelToken], object]
    upscaler_names: Callable[[], list[str]]
    upscale: Callable[[np.ndarray, dict[str, Any], Callable[[StepProgress], None], CancelToken],
                      np.ndarray]


def table_stakes_services(engine: Any) -> TableStakesServices:
    """The bundle for ``engine`` (a ``studio.engine.engine.Engine``)."""

    def rescan() -> None:
        engine.list_models(refresh=True)

    def add_folder(folder: str) -> None:
        """Scan ``folder`` now and on every later start (GUI and CLI alike)."""
        from studio.core.config import load_config, save_config

        engine.add_model_dir(folder)
        save_config(load_config().with_model_dir(folder))

    def compute_hash(model: ModelInfo) -> str:
        from studio.engine.models.hashing import model_hash

        return model_hash(model.path)

    def download(repo_id: str, progress: Callable[[int, int], None],
                 cancel: CancelToken) -> object:
        from studio.engine.models.hub import download_model

        return download_model(repo_id, progress, cancel)

    def upscaler_names() -> list[str]:
        return [m.name for m in engine.list_models("upscaler")]

    def upscale(image: np.ndarray, values: dict[str, Any],
                on_step: Callable[[StepProgress], None], cancel: CancelToken) -> np.ndarray:
        from studio.engine.upscale import UpscaleSettings, upscale_with_engine

        return upscale_with_engine(engine, image, UpscaleSettings(**values), cancel, on_step)

    return TableStakesServices(
        list_models=lambda: engine.list_models(), rescan=rescan,
        add_folder=add_folder, compute_hash=compute_hash,
        download=download, upscaler_names=upscaler_names, upscale=upscale)
