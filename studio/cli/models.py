"""``studio models [--kind KIND]``: the models found, with their kind, family and source.

Discovery reads configs and safetensors headers only: listing imports neither torch nor
diffusers, so it answers in well under two seconds.
"""

from __future__ import annotations

import argparse

from studio.cli.common import EXIT_OK, NO_MODEL_HELP, model_registry, settings_from_args

NAME = "models"
HELP = "list the models found"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", default=None,
                   choices=("diffusion", "lora", "vae", "gan", "classifier", "upscaler"),
                   help="only models of this kind (default: every kind)")


def run(args: argparse.Namespace) -> int:
    models = model_registry(settings_from_args(args)).models(args.kind)
    if not models:
        print(NO_MODEL_HELP)
        return EXIT_OK
    width = max(len(m.name) for m in models)
    print(f"{'NAME'.ljust(width)}  {'KIND':<10} {'FAMILY':<12} {'SOURCE':<11} {'SIZE':>9}  PATH")
    for m in models:
        print(f"{m.name.ljust(width)}  {m.kind:<10} {m.family or '-':<12} {m.source:<11} "
              f"{m.size_text:>9}  {m.path}")
    return EXIT_OK
