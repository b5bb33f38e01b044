"""``studio device``: the device and precision that the settings and flags would use."""

from __future__ import annotations

import argparse

from studio.cli.common import EXIT_OK, make_engine

NAME = "device"
HELP = "show the device and precision that would be used"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Only the engine flags, which ``main`` adds to every command that builds an engine."""


def run(args: argparse.Namespace) -> int:
    info = make_engine(args).device_info()
    print(f"{info.label}  ({info.description})")
    return EXIT_OK
