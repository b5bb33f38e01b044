"""``studio [gui] [PATHS...]``: the studio window (the command when none is given)."""

from __future__ import annotations

import argparse
import sys

from studio.cli.common import EXIT_ERROR, settings_from_args

NAME = "gui"
HELP = "open the studio window (the default)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", help="images or projects to open")


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)  # a bad flag or variable is answered before Qt loads
    from studio.cli.qtcheck import gui_problem

    problem = gui_problem()  # a missing system library or display: say so before Qt aborts
    if problem:
        print(problem, file=sys.stderr)
        return EXIT_ERROR
    from studio.app import run_app

    return run_app(settings, list(args.paths))
