"""``studio grid "prompt" --x seed=1,2,3 --y guidance=3,7 -o grid.png``: X/Y/Z grids."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from studio.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    MAX_SEED,
    add_output_args,
    check_model_file,
    check_writable,
    decimal,
    make_engine,
    model_registry,
    numbered_paths,
    parse_size,
    pick_model,
    scheduler_arg,
    scheduler_list,
    settings_from_args,
    whole_number,
)

NAME = "grid"
HELP = "an X/Y/Z grid: vary up to three settings, one labelled image"

AXIS_HELP = ("NAME=V1,V2,... with NAME one of seed (1-4 ranges too), steps, guidance, "
             "scheduler, strength, clip_skip, S/R (prompt search/replace), slider:<id>, "
             "lora:<name>")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt", help="the prompt every cell starts from")
    p.add_argument("--negative", default="", help="negative prompt (default: none)")
    p.add_argument("--x", required=True, metavar="AXIS", help=AXIS_HELP)
    p.add_argument("--y", default=None, metavar="AXIS", help="a second axis (default: none)")
    p.add_argument("--z", default=None, metavar="AXIS",
                   help="a third axis: one panel per value (default: none)")
    p.add_argument("--model", default=None,
                   help="model id, name, folder or .safetensors (default: the settings' "
                        "default model, else studio-tiny-diffusion)")
    p.add_argument("--seed", type=whole_number(0, MAX_SEED), default=0,
                   help=f"0 to {MAX_SEED} (default: 0)")
    p.add_argument("--steps", type=whole_number(1, 1000), default=None,
                   help="1 to 1000 (default: the model's recommended value)")
    p.add_argument("--guidance", type=decimal(0, 100), default=None,
                   help="CFG scale, 0 to 100 (default: the model's recommended value)")
    p.add_argument("--scheduler", type=scheduler_arg, default=None, metavar="NAME",
                   help=f"one of: {scheduler_list()} (default: the model's)")
    p.add_argument("--size", type=parse_size, default=None, metavar="WxH",
                   help="multiples of 8 from 8 to 4096 (default: the model's recommended "
                        "size)")
    add_output_args(p, "grid.png", "the grid image")
    p.add_argument("--cells", type=Path, default=None, metavar="DIR",
                   help="also save every cell (with its settings) into this folder")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")


def run(args: argparse.Namespace) -> int:
    from studio.core.formats.metadata import save_image
    from studio.core.grids import GridRun, plan_grid
    from studio.core.jobs.request import GenerationRequest
    from studio.core.jobs.runner import JobRunner
    from studio.core.samplers import scheduler_name

    if args.out is not None:
        check_writable([args.out], overwrite=args.overwrite)
    if args.cells is not None and not args.cells.is_dir():
        args.cells.mkdir(parents=True, exist_ok=True)
    settings = settings_from_args(args)
    check_model_file(args.model)
    model = pick_model(model_registry(settings), args.model, settings)
    rec = dict(model.recommended)
    width, height = (args.size or
                     (int(rec.get("width", 512)), int(rec.get("height", 512))))
    base = GenerationRequest(
        prompt=args.prompt, negative_prompt=args.negative, model=model.id, seed=args.seed,
        scheduler=args.scheduler or scheduler_name(str(rec.get("scheduler", "Euler"))),
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
        scheduler_name(cell.request.scheduler)
    if not args.quiet:
        print(f"Loading model {model.name}…", file=sys.stderr, flush=True)
    engine = make_engine(settings)
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
    out = args.out or numbered_paths(Path("grid.png"))[0]
    if args.cells is not None:
        for index, result in sorted(grid_run.results.items()):
            path = args.cells / f"{out.stem}-{index + 1:03d}.png"
            save_image(path, result.images[0], result.request)
    save_image(out, grid_run.image(), None)
    print(out)
    return EXIT_OK if not grid_run.errors else EXIT_ERROR
