"""``studio models [--kind KIND]``: the models found, with their kind, family and source.

Discovery reads configs and safetensors headers only: listing imports neither torch nor
diffusers, so it answers in well under two seconds.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from studio.cli.common import EXIT_OK, NO_MODEL_HELP, model_registry, settings_from_args

if TYPE_CHECKING:
    from studio.core.models import ModelInfo
    from studio.settings import Settings

NAME = "models"
HELP = "list the models found"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", default=None,
                   choices=("diffusion", "lora", "vae", "gan", "classifier", "upscaler"),
                   help="only models of this kind (default: every kind)")


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    models = model_registry(settings).models(args.kind)
    if settings.servers:
        return _with_servers(settings, models, args.kind)
    if not models:
        print(NO_MODEL_HELP)
        return EXIT_OK
    width = max(len(m.name) for m in models)
    print(f"{'NAME'.ljust(width)}  {'KIND':<10} {'FAMILY':<12} {'SOURCE':<11} {'SIZE':>9}  PATH")
    for m in models:
        print(f"{m.name.ljust(width)}  {m.kind:<10} {m.family or '-':<12} {m.source:<11} "
              f"{m.size_text:>9}  {m.path}")
    return EXIT_OK


def _with_servers(settings: Settings, server_models: list[ModelInfo], kind: str | None) -> int:
    """The servers' models and this computer's (where the local engine is installed), each
    with where it lives, as the window's model picker lists them."""
    from studio.remote.routing import local_engine_installed, location

    local: list[ModelInfo] = []
    if local_engine_installed():  # found without torch: configs and headers only
        from studio.engine.models.registry import ModelRegistry

        local = ModelRegistry(list(settings.model_dirs),
                              hf_cache=bool(settings.hf_cache)).models(kind)
    models = local + server_models
    if not models:
        print(NO_MODEL_HELP)
        return EXIT_OK
    width = max(len(m.name) for m in models)
    where = max(len(location(m)) for m in models)
    print(f"{'NAME'.ljust(width)}  {'KIND':<10} {'FAMILY':<12} {'LOCATION'.ljust(where)}  "
          f"{'SOURCE':<11} {'SIZE':>9}  PATH")
    for m in models:
        print(f"{m.name.ljust(width)}  {m.kind:<10} {m.family or '-':<12} "
              f"{location(m).ljust(where)}  {m.source:<11} {m.size_text:>9}  {m.path}")
    return EXIT_OK
