"""Where things live: bundled resources, user settings, caches and model folders."""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "LatentStudio"


def resources_dir() -> Path:
    """The ``resources/`` folder beside the package (``STUDIO_RESOURCES`` overrides)."""
    env = os.environ.get("STUDIO_RESOURCES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "resources"


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
