"""What the commands share: exit codes, argument types, output checks, settings and the engine.

Nothing here imports torch or diffusers at module level: a command checks its arguments
first and builds the engine (``make_engine``) only when it has work for it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from studio.core.models import ModelInfo
    from studio.settings import Settings

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")

NO_MODEL_HELP = """No model found.
Latent Studio looks for models in:
  - its embedded models (resources/models in the installation),
  - folders you name with --model-dir DIR or STUDIO_MODEL_DIRS (diffusers folders,
    .safetensors checkpoints, A1111 `models/Stable-diffusion` and ComfyUI
    `models/checkpoints` layouts),
  - the Hugging Face cache (models downloaded once with diffusers while online).
Example: studio generate "a lighthouse" --model ~/models/sd15.safetensors"""


def parse_size(text: str) -> tuple[int, int]:
    """``"512x768"`` -> ``(512, 768)``; an ``argparse`` type."""
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 512x768, not {text!r}") from None


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """The flags that override the settings for the local engine (None: not given)."""
    p.add_argument("--device", default=None, help="auto, cuda, cuda:1, mps or cpu "
                   "(default: the settings, else auto)")
    p.add_argument("--dtype", default=None, help="auto, float16, bfloat16 or float32 "
                   "(default: the settings, else auto)")
    p.add_argument("--model-dir", action="append", default=[], metavar="DIR",
                   help="extra model folder to scan (A1111/ComfyUI layouts work); repeatable")
    p.add_argument("--no-hf-cache", action="store_true", help="do not scan the HF cache")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The settings for this run: the file < ``STUDIO_*`` environment < the engine flags."""
    from studio.settings import load_settings

    return load_settings(device=getattr(args, "device", None),
                         dtype=getattr(args, "dtype", None),
                         model_dirs=list(getattr(args, "model_dir", None) or ()),
                         hf_cache=False if getattr(args, "no_hf_cache", False) else None)


def make_engine(source: argparse.Namespace | Settings) -> Any:
    """The local engine built from the settings, or from a command's flags over them."""
    from studio.settings import Settings

    settings = source if isinstance(source, Settings) else settings_from_args(source)
    # Heavy imports (torch, diffusers) from here on: the settings are checked by now.
    from studio.engine.services import local_services

    return local_services(settings).engine


def pick_model(engine: Any, name: str | None, settings: Settings) -> ModelInfo:
    """The model named on the command line, else the settings' default model, else the
    engine's own default."""
    from studio.core.errors import ModelNotFoundError

    if name:
        return engine.resolve_model(name)
    if settings.default_model:
        try:
            return engine.resolve_model(settings.default_model)
        except ModelNotFoundError as err:
            raise ModelNotFoundError(f"The default model of the settings is not found "
                                     f"(name one with --model): {err}") from None
    model = engine.default_model()
    if model is None:
        raise ModelNotFoundError(NO_MODEL_HELP)
    return model


def check_writable(paths: list[Path]) -> None:
    """Fail before any work if an output file has the wrong type or no folder to go in."""
    from studio.core.errors import InvalidRequestError

    for p in paths:
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            raise InvalidRequestError(f"Cannot write {p.name}: use .png, .jpg or .webp.")
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise InvalidRequestError(f"The folder {parent} does not exist.")
