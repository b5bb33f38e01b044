"""User settings the CLI and the window share: device, precision, model folders, default model.

A small JSON file in the user's config folder (``STUDIO_CONFIG_DIR`` overrides), written
atomically. Window layout and panel state stay in QSettings; what the engine needs lives here
so that ``studio generate`` and the window agree.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

CONFIG_NAME = "studio.json"


@dataclass(frozen=True)
class StudioConfig:
    device: str = "auto"
    dtype: str = "auto"
    model_dirs: tuple[str, ...] = field(default=())
    default_model: str = ""

    def with_model_dir(self, folder: str | os.PathLike[str]) -> StudioConfig:
        folder = str(Path(folder).expanduser())
        if folder in self.model_dirs:
            return self
        return replace(self, model_dirs=(*self.model_dirs, folder))

    def replace(self, **changes: object) -> StudioConfig:
        return replace(self, **changes)  # type: ignore[arg-type]


def config_path() -> Path:
    from studio.core.styles import user_config_dir

    return user_config_dir() / CONFIG_NAME


def load_config(path: Path | None = None) -> StudioConfig:
    """The saved settings; defaults when there are none or the file is unreadable."""
    path = path or config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return StudioConfig()
    if not isinstance(data, dict):
        return StudioConfig()
    return StudioConfig(
        device=str(data.get("device", "auto")), dtype=str(data.get("dtype", "auto")),
        model_dirs=tuple(str(d) for d in data.get("model_dirs", []) if isinstance(d, str)),
        default_model=str(data.get("default_model", "")))


def save_config(config: StudioConfig, path: Path | None = None) -> Path:
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = asdict(config)
    data["model_dirs"] = list(config.model_dirs)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    tmp.replace(path)
    return path
