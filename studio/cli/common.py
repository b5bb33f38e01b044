"""What the commands share: exit codes, argument types, output files, settings, models, engine.

Nothing here imports torch or diffusers at module level: a command checks its arguments
first (the argument types below answer a mistake while parsing), finds its model with the
``ModelRegistry`` (configs and file headers only), and builds the engine (``make_engine``)
only when it has work for it.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from studio.core.models import ModelInfo
    from studio.engine.models.registry import ModelRegistry
    from studio.settings import Settings

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MAX_SIDE = 4096  # as studio.core.jobs.request.MAX_SIDE (not imported: numpy is not needed)
MAX_SEED = 2**32 - 1

NO_MODEL_HELP = """No model found.
Latent Studio looks for models in:
  - its embedded models (resources/models in the installation),
  - folders you name with --model-dir DIR or STUDIO_MODEL_DIRS (diffusers folders,
    .safetensors checkpoints, A1111 `models/Stable-diffusion` and ComfyUI
    `models/checkpoints` layouts),
  - the Hugging Face cache (models downloaded once with diffusers while online).
Example: studio generate "a lighthouse" --model ~/models/sd15.safetensors"""


# -- argument types: every number is checked where it is typed, naming its range ------------
def whole_number(low: int, high: int) -> Callable[[str], int]:
    """An ``argparse`` type: an integer from ``low`` to ``high`` (inclusive)."""
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be a whole number from {low} to {high}, not {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be from {low} to {high}, not {value}")
        return value

    parse.__name__ = "whole number"  # argparse names the type in some messages
    return parse


def decimal(low: float, high: float) -> Callable[[str], float]:
    """An ``argparse`` type: a finite number from ``low`` to ``high`` (inclusive)."""
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            value = None
        if value is None or not math.isfinite(value):
            raise argparse.ArgumentTypeError(
                f"must be a number from {low:g} to {high:g}, not {text!r}")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be from {low:g} to {high:g}, not {value:g}")
        return value

    parse.__name__ = "number"
    return parse


def parse_size(text: str) -> tuple[int, int]:
    """``"512x768"`` -> ``(512, 768)``, ``"128"`` -> ``(128, 128)``; an ``argparse`` type.
    Each side is a multiple of 8 from 8 to 4096 (the latents are an eighth of the image)."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        sides = [int(p) for p in parts]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2):
        raise argparse.ArgumentTypeError(f"must look like 512x768 or 512, not {text!r}")
    width, height = sides if len(sides) == 2 else (sides[0], sides[0])
    if not (8 <= width <= MAX_SIDE and 8 <= height <= MAX_SIDE):
        raise argparse.ArgumentTypeError(
            f"each side must be from 8 to {MAX_SIDE} pixels, not {text!r}")
    if width % 8 or height % 8:
        near = f"{max(8, round(width / 8) * 8)}x{max(8, round(height / 8) * 8)}"
        raise argparse.ArgumentTypeError(
            f"width and height must be multiples of 8 (from 8 to {MAX_SIDE}), not {text!r}; "
            f"try {near}")
    return width, height


def scheduler_arg(text: str) -> str:
    """An ``argparse`` type: a scheduler name written any common way -> ours."""
    from studio.core.errors import InvalidRequestError
    from studio.core.samplers import scheduler_name

    try:
        return scheduler_name(text)
    except InvalidRequestError as err:
        raise argparse.ArgumentTypeError(err.message) from None


def scheduler_list() -> str:
    """The schedulers a request may name (the engine's table), for the help."""
    from studio.core.samplers import SCHEDULER_NAMES

    return ", ".join(SCHEDULER_NAMES)


# -- settings, models and the engine ----------------------------------------------------------
def add_engine_args(p: argparse.ArgumentParser) -> None:
    """The flags that override the settings for the local engine (None: not given)."""
    p.add_argument("--device", default=None, help="auto, cuda, cuda:1, mps or cpu "
                   "(default: the settings, else auto)")
    p.add_argument("--dtype", default=None, help="auto, float16, bfloat16 or float32 "
                   "(default: the settings, else auto)")
    p.add_argument("--model-dir", action="append", default=[], metavar="DIR",
                   help="extra model folder to scan (A1111/ComfyUI layouts work); repeatable "
                        "(default: the folders of the settings)")
    p.add_argument("--no-hf-cache", action="store_true", help="do not scan the HF cache")
    p.add_argument("--server", action="append", default=[], metavar="URL",
                   help="generate on this ComfyUI server (http://host:8188) instead of the "
                        "local engine; repeatable: several servers share one queue "
                        "(default: the settings' servers, STUDIO_SERVERS)")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The settings for this run: the file < ``STUDIO_*`` environment < the engine flags."""
    from studio.settings import load_settings

    return load_settings(device=getattr(args, "device", None),
                         dtype=getattr(args, "dtype", None),
                         model_dirs=list(getattr(args, "model_dir", None) or ()),
                         hf_cache=False if getattr(args, "no_hf_cache", False) else None,
                         servers=list(getattr(args, "server", None) or ()) or None)


def model_registry(settings: Settings) -> ModelRegistry:
    """The models the settings' folders hold, found without torch (configs and headers);
    with servers in the settings, the remote engine (it lists the servers' models)."""
    if settings.servers:
        return make_engine(settings)
    from studio.engine.models.registry import ModelRegistry

    return ModelRegistry(list(settings.model_dirs), hf_cache=bool(settings.hf_cache))


_REMOTE_ENGINES: dict[tuple[Any, ...], Any] = {}


def make_engine(source: argparse.Namespace | Settings) -> Any:
    """The local engine built from the settings, or from a command's flags over them."""
    from studio.settings import Settings

    settings = source if isinstance(source, Settings) else settings_from_args(source)
    if settings.servers:  # ComfyUI servers: no torch on this side
        key = (settings.servers, settings.server_token, settings.trust_servers)
        if key not in _REMOTE_ENGINES:  # one engine (one connection) per run and servers
            from studio.remote.services import remote_services

            _REMOTE_ENGINES[key] = remote_services(settings).engine
        return _REMOTE_ENGINES[key]
    # Heavy imports (torch, diffusers) from here on: the settings are checked by now.
    from studio.engine.services import local_services

    return local_services(settings).engine


def pick_model(registry: Any, name: str | None, settings: Settings) -> ModelInfo:
    """The model named on the command line, else the settings' default model, else the
    registry's own default. ``registry`` is a ``ModelRegistry`` (no torch) or an engine."""
    from studio.core.errors import ModelNotFoundError

    resolve = getattr(registry, "resolve_model", None) or registry.resolve
    default = getattr(registry, "default_model", None) or registry.default
    if name:
        return resolve(name)
    if settings.default_model:
        try:
            return resolve(settings.default_model)
        except ModelNotFoundError as err:
            raise ModelNotFoundError(f"The default model of the settings is not found "
                                     f"(name one with --model): {err}") from None
    model = default()
    if model is None:
        raise ModelNotFoundError(NO_MODEL_HELP)
    return model


def check_model_file(name: str | None) -> None:
    """A ``--model`` that is plainly a path (a folder or a weights file) must exist."""
    from studio.core.errors import ModelNotFoundError

    if not name:
        return
    path = Path(name).expanduser()
    weights = path.suffix.lower() in (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
    hub_id = (name.count("/") == 1 and not name.startswith(("/", ".", "~")) and not weights)
    looks_like_path = weights or "\\" in name or name.startswith((".", "~", "/")) or (
        "/" in name and not hub_id)
    if looks_like_path and not path.exists():
        raise ModelNotFoundError(f"There is no model file or folder at {path}.",
                                 hint="See `studio models` for the models found.")


# -- output files: never overwrite unless asked -----------------------------------------------
def check_writable(paths: list[Path], overwrite: bool = True) -> None:
    """Fail before any work if an output file has the wrong type, no folder to go in, or
    already exists (unless ``overwrite``)."""
    from studio.core.errors import InvalidRequestError

    for p in paths:
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            raise InvalidRequestError(f"Cannot write {p.name}: use .png, .jpg or .webp.")
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise InvalidRequestError(f"The folder {parent} does not exist.")
        if not overwrite and p.exists():
            raise InvalidRequestError(
                f"{p} exists: add --overwrite to replace it, or leave out -o to write "
                "a new numbered file.")


def numbered_paths(template: Path, count: int = 1) -> list[Path]:
    """``count`` new files ``stem-0001.png``, ``stem-0002.png`` ... after the highest number
    already in the folder (as ComfyUI numbers its outputs: never reused, never overwritten).
    Each file is created empty at once, so that two runs side by side never pick the same."""
    folder = template.parent if str(template.parent) else Path(".")
    pattern = re.compile(rf"{re.escape(template.stem)}-(\d{{4,}}){re.escape(template.suffix)}$")
    highest = 0
    if folder.is_dir():
        for entry in os.scandir(folder):
            m = pattern.match(entry.name)
            if m:
                highest = max(highest, int(m.group(1)))
    paths: list[Path] = []
    number = highest + 1
    while len(paths) < count:
        path = folder / f"{template.stem}-{number:04d}{template.suffix}"
        try:
            # 0o666 (less the umask), as open(path, "w") makes it: the image written over
            # this placeholder keeps its mode (os.open's default 0o777 made outputs executable)
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            paths.append(path)
        except FileExistsError:
            pass
        number += 1
    return paths


def add_output_args(p: argparse.ArgumentParser, default_name: str, what: str) -> None:
    """``-o/--out`` and ``--overwrite``, with the numbering rule in the help."""
    p.add_argument("-o", "--out", type=Path, default=None, metavar="FILE",
                   help=f"{what} (.png, .jpg, .webp); default: a new numbered file "
                        f"{Path(default_name).stem}-0001{Path(default_name).suffix}, "
                        f"{Path(default_name).stem}-0002... in the current folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the -o file if it exists (default: refuse, exit 1)")
