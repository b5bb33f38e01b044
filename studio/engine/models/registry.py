"""``ModelRegistry``: the models one engine can use, found in its folders, by id or path."""

from __future__ import annotations

import threading
from pathlib import Path

from studio.core.models import ModelInfo
from studio.engine.models.discovery import discover, resolve
from studio.paths import embedded_models_dir, extra_model_dirs

DEFAULT_MODEL = "studio-tiny-diffusion"  # the embedded model: always there, fast everywhere


class ModelRegistry:
    """Discovery over the embedded models, the user's folders and the Hugging Face cache.

    Scans once and keeps the list until ``refresh`` (or a folder is added). Thread-safe:
    the GUI thread lists while the engine thread resolves.

    Parameters
    ----------
    model_dirs
        Extra folders to scan (A1111/ComfyUI layouts are recognised); the folders in
        ``STUDIO_MODEL_DIRS`` are added after them.
    embedded_dir
        The embedded models' folder (``resources/models`` when ``None``).
    hf_cache
        Whether the Hugging Face cache is scanned too.
    """

    def __init__(self, model_dirs: list[str | Path] | None = None, *,
                 embedded_dir: Path | None = None, hf_cache: bool = True) -> None:
        self._dirs = [Path(d) for d in (model_dirs or [])] + extra_model_dirs()
        self._embedded_dir = embedded_models_dir() if embedded_dir is None else embedded_dir
        self._hf_cache = hf_cache
        self._models: list[ModelInfo] | None = None
        self._lock = threading.Lock()

    @property
    def model_dirs(self) -> tuple[Path, ...]:
        """The folders scanned besides the embedded models and the hub cache."""
        return tuple(self._dirs)

    def models(self, kind: str | None = None, refresh: bool = False) -> list[ModelInfo]:
        """The models found, of one kind (``core.models.KINDS``) or all; ``refresh`` rescans."""
        with self._lock:
            if self._models is None or refresh:
                self._models = discover(self._embedded_dir, self._dirs, self._hf_cache)
            models = list(self._models)
        return [m for m in models if kind is None or m.kind == kind]

    def add_dir(self, folder: str | Path) -> None:
        """Scan ``folder`` as well, from now on (rescans at once)."""
        with self._lock:
            self._dirs.append(Path(folder))
        self.models(refresh=True)

    def default(self) -> ModelInfo | None:
        """The embedded diffusion model, else the first diffusion model found, else None."""
        models = self.models("diffusion")
        for m in models:
            if m.id == DEFAULT_MODEL:
                return m
        return models[0] if models else None

    def resolve(self, model_id: str) -> ModelInfo:
        """The model a request names: an id or name from discovery, a path, or a hub id."""
        return resolve(model_id, self.models())
