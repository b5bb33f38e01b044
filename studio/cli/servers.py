"""``studio servers [--check URL ...]``: the ComfyUI servers and what each lacks.

The connect check reads each server's nodes and model folders and says, per model family and
per feature, what is missing and where it goes. Without ``--check`` it checks the servers of
the settings (``STUDIO_SERVERS``, ``--server``). Imports no torch.
"""

from __future__ import annotations

import argparse

from studio.cli.common import EXIT_ERROR, EXIT_OK, settings_from_args

NAME = "servers"
HELP = "check ComfyUI servers: what each has, what it lacks and where it goes"
ENGINE_ARGS = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check", action="append", default=[], metavar="URL",
                   help="the server to check (http://host:8188); repeatable "
                        "(default: the servers of the settings and --server)")


def run(args: argparse.Namespace) -> int:
    from studio.remote.check import check_servers
    from studio.remote.client import ServerConfig, check_url

    settings = settings_from_args(args)
    urls = [check_url(u) for u in args.check] or list(settings.servers)
    if not urls:
        print("No servers: name one with --check URL, --server URL or STUDIO_SERVERS.")
        return EXIT_ERROR
    configs = [ServerConfig(u, token=settings.server_token, trust=settings.trust_servers)
               for u in urls]
    text = check_servers(configs)
    print(text)
    return EXIT_OK if all(": ComfyUI " in part.splitlines()[0]
                          for part in text.split("\n\n")) else EXIT_ERROR
