"""Where things live: bundled resources, user settings, caches and model folders."""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "LatentStudio"


def resources_dir() -> Path:
    """The bundled ``resources/`` folder (``STUDIO_RESOURCES`` overrides).

    An installed wheel (or a PyInstaller bundle) carries it inside the package as
    ``studio/resources`` (see setup.py), found with ``importlib.resources``; a checkout (and
    its editable install) has it at the repository's top level, beside the package.
    """
    env = os.environ.get("STUDIO_RESOURCES")
    if env:
        return Path(env)
    packaged = _packaged_resources()
    if packaged is not None:
        return packaged
    return Path(__file__).resolve().parent.parent / "resources"


def _packaged_resources() -> Path | None:
    from importlib.resources import files

    try:
        folder = files("studio") / "resources"
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - studio is importable here
        return None
    # A regular install unpacks the package to files on disk: its Traversable is a Path.
    # (A zipped install is not supported: the models are memory-mapped from real files.)
    if isinstance(folder, Path) and folder.is_dir():
        return folder.resolve()
    return None


def embedded_models_dir() -> Path:
    return resources_dir() / "models"


def bundled_configs_dir() -> Path:
    return resources_dir() / "configs"


def user_cache_dir() -> Path:
    from platformdirs import user_cache_dir as _cache

    path = Path(os.environ.get("STUDIO_CACHE_DIR") or _cache(APP_NAME, appauthor=False))
    return path


def extra_model_dirs() -> list[Path]:
    """Model folders named in ``STUDIO_MODEL_DIRS`` (``os.pathsep``-separated)."""
    raw = os.environ.get("STUDIO_MODEL_DIRS", "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]
