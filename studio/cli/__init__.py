"""``studio``: the command line. ``main`` parses the arguments; each command has a module here."""

from studio.cli.main import main

__all__ = ["main"]
