"""``studio grid "prompt" --x seed=1,2,3 --y guidance=3,7 -o grid.png``: X/Y/Z grids."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from studio.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    check_writable,
    make_engine,
    parse_size,
    pick_model,
    settings_from_args,
)

NAME = "grid"
HELP = "an X/Y/Z grid: vary up to three settings, one labelled image"

AXIS_HELP = ("NAME=V1,V2,... with NAME one of seed (1-4 ranges too), steps, guidance, "
             "scheduler, strength, clip_skip, S/R (prompt search/replace), slider:<id>, "
             "lora:<name>")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt")
    p.add_argument("--negative", default="", help="negative prompt")
    p.add_argument("--x", required=True, metavar="AXIS", help=AXIS_HELP)
    p.add_argument("--y", default=None, metavar="AXIS")
    p.add_argument("--z", default=None, metavar="AXIS")
    p.add_argument("--model", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--scheduler", default=None)
    p.add_argument("--size", type=parse_size, default=None, metavar="WxH")
    p.add_argument("-o", "--out", type=Path, default=Path("grid.png"))
    p.add_argument("--cells", type=Path, default=None,
                   help="also save every cell (with its settings) into this folder")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from studio.core.formats.metadata import save_image
    from studio.core.grids import GridRun, plan_grid
    from studio.core.jobs.request import GenerationRequest
    from studio.core.jobs.runner import JobRunner
    from studio.engine.schedulers import canonical_name

    check_writable([args.out])
    if args.cells is not None and not args.cells.is_dir():
        args.cells.mkdir(parents=True, exist_ok=True)
    settings = settings_from_args(args)
    engine = make_engine(settings)
    model = pick_model(engine, args.model, settings)
    rec = dict(model.recommended)
    width, height = (args.size or
                     (int(rec.get("width", 512)), int(rec.get("height", 512))))
    base = GenerationRequest(
        prompt=args.prompt, negative_prompt=args.negative, model=model.id, seed=args.seed,
        scheduler=canonical_name(args.scheduler or str(rec.get("scheduler", "Euler"))),
        steps=args.steps or int(rec.get("steps", 20)),
        guidance=args.guidance if args.guidance is not None else float(rec.get("guidance", 7)),
        width=width, height=height)
    from studio.core.prompt_syntax import parse_prompt

    for text in (args.prompt, args.negative):
        for warning in parse_prompt(text).warnings:
            print(f"studio: prompt: {warning}", file=sys.stderr)
    axes = [a for a in (args.x, args.y, args.z) if a]
    plan = plan_grid(base, axes)
    for cell in plan.cells:  # check every scheduler name before any work
        canonical_name(cell.request.scheduler)
    runner = JobRunner(engine)
    done = []

    def on_cell(index, result) -> None:
        done.append(index)
        if not args.quiet:
            print(f"\rcell {len(done)}/{len(plan.cells)}", end="", file=sys.stderr, flush=True)

    try:
        grid_run = GridRun(runner, plan, on_cell)
        while not grid_run.wait(0.2):
            pass
    except KeyboardInterrupt:
        grid_run.cancel()
        raise
    finally:
        runner.shutdown()
    if not args.quiet:
        print(file=sys.stderr)
    for index, message in sorted(grid_run.errors.items()):
        print(f"studio: cell {index + 1} ({plan.caption(plan.cells[index])}): {message}",
              file=sys.stderr)
    if args.cells is not None:
        for index, result in sorted(grid_run.results.items()):
            path = args.cells / f"{args.out.stem}-{index + 1:03d}.png"
            save_image(path, result.images[0], result.request)
    save_image(args.out, grid_run.image(), None)
    print(args.out)
    return EXIT_OK if not grid_run.errors else EXIT_ERROR
