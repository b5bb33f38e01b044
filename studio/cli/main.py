"""``studio``: the GUI with no arguments, headless commands otherwise.

This module assembles the parser from the command modules and dispatches; each command lives
in its own module with ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``
(``ENGINE_ARGS = False`` where it takes no engine flags), and shares ``studio.cli.common``.
Commands never import Qt, and import torch only once their arguments are checked. Every
error a user can cause prints one clear line and exits non-zero: 2 for a mistake in the
arguments (a number out of its range, an unknown scheduler, a size not a multiple of 8),
1 for any other error (a missing file, a model not found, an output that exists).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from studio import __version__
from studio.cli.common import EXIT_CANCELLED, EXIT_ERROR, EXIT_USAGE, add_engine_args

DEFAULT_COMMAND = "gui"
TOP_LEVEL_FLAGS = ("-h", "--help", "--version")
COMMAND_MODULES: list[str] = [
    "studio.cli.gui",
    "studio.cli.generate",
    "studio.cli.models",
    "studio.cli.servers",
    "studio.cli.device",
    "studio.cli.upscale",
    "studio.cli.grid",
    "studio.cli.info",
    "studio.cli.export",
    "studio.cli.bench",
    "studio.cli.bench_sliders",
    "studio.cli.doctor",
]


def command_modules() -> list[ModuleType]:
    """The command modules, in the order ``studio --help`` lists them."""
    return [importlib.import_module(name) for name in COMMAND_MODULES]


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that answers a mistake in one line (not the whole usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser(modules: Sequence[ModuleType] | None = None) -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="studio", description="Latent Studio: generate, edit and explore images with "
        "local generative models. With no command, opens the studio window.")
    parser.add_argument("--version", action="version", version=f"Latent Studio {__version__}")
    sub = parser.add_subparsers(dest="command")
    for module in modules if modules is not None else command_modules():
        p = sub.add_parser(module.NAME, help=module.HELP)
        module.add_arguments(p)
        if getattr(module, "ENGINE_ARGS", True):
            add_engine_args(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    modules = {module.NAME: module for module in command_modules()}
    parser = build_parser(list(modules.values()))
    # No command: the window's (``studio --model-dir DIR``, ``studio photo.png``); the
    # top-level flags (--help, --version) stay the top level's.
    if not args_list or (args_list[0] not in modules
                         and args_list[0] not in TOP_LEVEL_FLAGS):
        args_list = [DEFAULT_COMMAND, *args_list]
    try:
        args = parser.parse_args(args_list)
    except SystemExit as stop:  # --help, --version, or a mistake answered in one line
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE
    module = modules.get(args.command)
    if module is None:
        parser.print_help()
        return EXIT_USAGE
    from studio.core.errors import StudioError

    try:
        return int(module.run(args))
    except StudioError as err:
        print(f"studio: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("studio: cancelled", file=sys.stderr)
        return EXIT_CANCELLED
