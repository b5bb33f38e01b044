"""``studio device``: the device and precision that the settings and flags would use.

Asks torch alone (not diffusers), so it answers in a few seconds.
"""

from __future__ import annotations

import argparse

from studio.cli.common import EXIT_OK, settings_from_args

NAME = "device"
HELP = "show the device and precision that would be used"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Only the engine flags, which ``main`` adds to every command that builds an engine."""


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    from studio.engine.device import choose_device  # torch, and nothing else heavy

    info = choose_device(settings.device, settings.dtype).info()
    print(f"{info.label}  ({info.description})")
    return EXIT_OK
