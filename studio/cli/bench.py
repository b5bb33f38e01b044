"""``studio bench``: speed, memory and responsiveness figures, measured side by side.

Prints a table; ``--json FILE`` also writes every figure. ``--quick`` keeps the run to a few
minutes on a laptop CPU; ``--smoke`` runs on the tiny model only, for tests.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

NAME = "bench"
HELP = "measure speed, memory and responsiveness side by side (prints a table)"
ENGINE_ARGS = False  # the benchmark chooses devices and precisions itself


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer steps and repeats (minutes)")
    mode.add_argument("--smoke", action="store_true",
                      help="tiny model only, 1-2 steps: checks that every figure is produced")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write the figures to FILE")
    parser.add_argument("--only", default="", metavar="SECTIONS",
                        help="comma-separated subset of: overhead, dtype, preview, decode, "
                             "threads, ui, startup, memory, sliders, control (a step with "
                             "one ControlNet against without, SD 1.5 shape), dit (the tiny "
                             "DiT's step), image (a 20-step SD 1.5-sized image), turbo "
                             "(an SD-Turbo-sized step), sdxl (SDXL 1024 px peak memory), "
                             "peer (the ComfyUI side by side), live (strokes replayed "
                             "with Live on: stroke end to picture, GUI stalls), cli (the "
                             "command line's answer times; not in the default run) "
                             "(default: all but cli)")
    parser.add_argument("--remote", nargs="+", default=[], metavar="URL",
                        help="benchmark ComfyUI servers instead: our round trip over the "
                             "server's own time, and one server against two on a batch; "
                             "with --only live: live mode's strokes on the first server")
    parser.add_argument("--remote-model", default="", metavar="NAME",
                        help="the server checkpoint for --remote (default: its first)")
    parser.add_argument("--peer", choices=("comfyui",), default=None,
                        help="run the same request (SD 1.5-sized fp16 checkpoint) through the "
                             "studio and a real ComfyUI server from the cached venv, each from "
                             "a cold process, interleaved; prints per-step, fixed, first-image "
                             "and memory figures with the ratios")
    parser.add_argument("--size", type=int, default=0,
                        help="--peer: image size in pixels (default 512; --smoke 64)")
    parser.add_argument("--steps", type=int, default=0,
                        help="--peer: sampling steps (default 20; --quick 6; --smoke 2)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="--peer: interleaved rounds, each side one cold process a round "
                             "(at least 2)")
    parser.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float32"),
                        help="--peer: the studio side's precision (float32: like for like "
                             "with ComfyUI's fp32)")
    parser.add_argument("--no-sdxl", action="store_true",
                        help="leave out the SDXL 1024 px peak-memory section (builds a 7 GB "
                             "random-weight SDXL once, then one generation in a child)")
    parser.add_argument("--no-peer", action="store_true",
                        help="leave out the run through ComfyUI side by side (tens of minutes)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where the benchmark models are built and kept "
                             "(default: the studio cache)")


def run(args: argparse.Namespace) -> int:
    from studio.core.errors import InvalidRequestError

    if args.remote and [s.strip() for s in args.only.split(",") if s.strip()] == ["live"]:
        return _run_live(args, {}, remote=args.remote[0])  # live mode on that server
    if args.remote:  # the servers' figures only: no local engine, no torch
        return _run_remote(args)
    if args.peer:
        return _run_peer(args)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    live = not only or "live" in only  # live mode's strokes: in the default run too
    if "live" in only:
        only.remove("live")
        if not only:  # live alone
            return _run_live(args, {})
        args.only = ",".join(only)
    if "cli" in only:  # subprocess wall times: no engine, no models to build
        from studio.bench.cli_latency import format_rows, measure

        rows = measure(runs=1 if args.smoke else 3)
        print(format_rows(rows))
        if args.json is not None:
            args.json.write_text(json.dumps({"cli": rows}, indent=2) + "\n", encoding="utf-8")
        only.remove("cli")
        if not only:
            return _run_live(args, {"cli": rows}) if live else 0
        args.only = ",".join(only)
    from studio.bench.suite import PLANS, SECTIONS, format_table, run_bench

    plan = PLANS["smoke" if args.smoke else "quick" if args.quick else "full"]
    sections = SECTIONS
    if args.only:
        sections = tuple(s.strip() for s in args.only.split(",") if s.strip())
        unknown = sorted(set(sections) - set(SECTIONS))
        if unknown:
            raise InvalidRequestError(f"Unknown bench section(s): {', '.join(unknown)}; "
                                      f"use {', '.join(SECTIONS)}.")
    left_out = {name for name, flag in (("sdxl", "no_sdxl"), ("peer", "no_peer"))
                if getattr(args, flag, False)}
    sections = tuple(s for s in sections if s not in left_out)
    if args.json is not None and not (args.json.parent.is_dir() or str(args.json.parent) == ""):
        raise InvalidRequestError(f"The folder {args.json.parent} does not exist.")

    def log(text: str) -> None:
        print(f"bench: {text}", file=sys.stderr, flush=True)

    def save(figures: dict) -> None:
        if args.json is not None:
            args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n",
                                 encoding="utf-8")

    figures = run_bench(plan, cache=args.cache_dir, sections=sections, log=log, checkpoint=save)
    print(format_table(figures))
    return _run_live(args, figures) if live else 0


def _run_live(args: argparse.Namespace, figures: dict, remote: str = "") -> int:
    """Live mode's figures (``studio.bench.live_bench``, in a child with offscreen Qt),
    printed as rows and added to ``figures`` (and ``--json``); ``remote``: on that ComfyUI
    server's first checkpoint instead of the embedded model."""
    from studio.bench.live_bench import TARGETS, table_rows
    from studio.bench.measure import run_child
    from studio.core.errors import InvalidRequestError

    if args.json is not None and not (args.json.parent.is_dir() or str(args.json.parent) == ""):
        raise InvalidRequestError(f"The folder {args.json.parent} does not exist.")

    strokes = "5" if args.smoke else "20" if args.quick else "40"
    rapid = "3" if args.smoke else "10"
    where = f" on {remote}" if remote else ""
    print(f"bench: live: strokes replayed with Live on (real window and engine thread)"
          f"{where}…", file=sys.stderr, flush=True)
    extra = ["--remote", remote] if remote else []
    live = run_child("studio.bench.live_bench",
                     ["--strokes", strokes, "--rapid", rapid, *extra],
                     env={"QT_QPA_PLATFORM": "offscreen"}, timeout=1800)
    figures.update(live)
    rows = [("figure", "measured", "target", "how"), *table_rows(live)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print()
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  "
              + row[3])
        if i == 0:
            print("  ".join("-" * w for w in widths) + "  " + "-" * 20)
    met = [k for k, limit in TARGETS.items() if live.get(k, float("inf")) < limit]
    print(f"(live targets met: {len(met)} of {len(TARGETS)})")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n",
                             encoding="utf-8")
    return 0


def _run_remote(args: argparse.Namespace) -> int:
    from studio.bench.remote import format_remote, run_remote_bench

    figures = run_remote_bench(args.remote, model=args.remote_model, smoke=args.smoke,
                               quick=args.quick,
                               log=lambda t: print(f"bench: {t}", file=sys.stderr, flush=True))
    print(format_remote(figures))
    if args.json is not None:
        args.json.write_text(json.dumps({"remote": figures}, indent=2) + "\n", encoding="utf-8")
    return 0


def _run_peer(args: argparse.Namespace) -> int:
    """``--peer comfyui``: the studio against a real ComfyUI on the same request."""
    from studio.core.errors import InvalidRequestError

    if args.rounds < 2:
        raise InvalidRequestError("--rounds must be 2 or more: the sides alternate over them.")
    size = args.size or (64 if args.smoke else 512)
    steps = args.steps or (2 if args.smoke else 6 if args.quick else 20)
    if size < 64 or size % 8 or steps < 2:
        raise InvalidRequestError("--size must be a multiple of 8 from 64 and --steps 2 or "
                                  "more (per-step figures need two steps).")
    if args.json is not None and not (args.json.parent.is_dir() or str(args.json.parent) == ""):
        raise InvalidRequestError(f"The folder {args.json.parent} does not exist.")
    from studio.bench.peer_comfyui import format_peer, run_peer_bench

    figures = run_peer_bench(size=size, steps=steps, rounds=args.rounds, dtype=args.dtype,
                             cache=args.cache_dir,
                             log=lambda t: print(f"bench: {t}", file=sys.stderr, flush=True))
    print(format_peer(figures))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n",
                             encoding="utf-8")
    return 0
