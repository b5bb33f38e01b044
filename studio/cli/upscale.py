"""``studio upscale IN -o OUT --scale 2 [--model NAME|lanczos] [--refine ...]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from studio.cli.common import (
    EXIT_OK,
    MAX_SEED,
    check_writable,
    decimal,
    make_engine,
    model_registry,
    numbered_paths,
    settings_from_args,
    whole_number,
)

NAME = "upscale"
HELP = "enlarge an image with a super-resolution model (or Lanczos), optionally refined"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path, help="the image to enlarge")
    p.add_argument("-o", "--out", type=Path, default=None, metavar="FILE",
                   help="output file (.png, .jpg, .webp); default: a new numbered file "
                        "beside the input, IN-x2-0001.png, IN-x2-0002.png...")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the -o file if it exists (default: refuse, exit 1)")
    p.add_argument("--scale", type=decimal(1, 8), default=2.0,
                   help="enlargement factor, 1 to 8 (default: 2)")
    p.add_argument("--model", default="",
                   help="upscaler name or file (see `studio models --kind upscaler`), or "
                        "'lanczos' (default: the best one found)")
    p.add_argument("--refine", action="store_true",
                   help="then img2img over overlapping tiles to add detail")
    p.add_argument("--strength", type=decimal(0, 1), default=0.3,
                   help="refine strength, 0 to 1 (default: 0.3)")
    p.add_argument("--prompt", default="", help="refine prompt (default: none)")
    p.add_argument("--negative", default="", help="refine negative prompt (default: none)")
    p.add_argument("--refine-model", default="",
                   help="diffusion model for the refine (default: the default model)")
    p.add_argument("--steps", type=whole_number(1, 1000), default=20,
                   help="refine steps, 1 to 1000 (default: 20)")
    p.add_argument("--seed", type=whole_number(0, MAX_SEED), default=0,
                   help=f"refine seed, 0 to {MAX_SEED} (default: 0)")
    p.add_argument("--tile", type=whole_number(0, 4096), default=0,
                   help="refine tile size in pixels, 0 to 4096 (default: 0, the model's "
                        "native size)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from studio.core.formats.imageio import load_image
    from studio.core.formats.metadata import save_image

    settings = settings_from_args(args)
    _check_upscaler(args.model, settings)
    if args.out is not None:
        check_writable([args.out], overwrite=args.overwrite)
    image = load_image(args.input)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    from studio.engine.upscale import UpscaleSettings, upscale_with_engine

    wanted = UpscaleSettings(
        scale=args.scale, model=args.model, refine=args.refine, strength=args.strength,
        prompt=args.prompt, negative_prompt=args.negative, refine_model=args.refine_model,
        steps=args.steps, seed=args.seed, tile=args.tile)
    if not args.quiet:  # the model loads first: say so, then a bar over the tiles
        print("Loading the upscaler…", file=sys.stderr, flush=True)
    engine = make_engine(settings)
    bars: list = []

    def on_step(p) -> None:
        if args.quiet:
            return
        if not bars:
            from tqdm import tqdm

            bars.append(tqdm(total=p.total, unit="tile", file=sys.stderr, leave=False,
                             dynamic_ncols=True, desc="Upscaling",
                             bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} tiles [{elapsed}]"))
        bars[0].total = p.total
        bars[0].update(p.step - bars[0].n)
        bars[0].refresh()  # a tile can take seconds: show each one as it ends

    try:
        result = upscale_with_engine(engine, image, wanted, on_step=on_step)
    finally:
        for bar in bars:
            bar.close()
    out = args.out or numbered_paths(
        args.input.with_name(f"{args.input.stem}-x{args.scale:g}.png"))[0]
    save_image(out, result, None)
    print(out)
    return EXIT_OK


def _check_upscaler(name: str, settings: object) -> None:
    """An upscaler named but not found is answered before torch loads."""
    from studio.core.errors import ModelNotFoundError

    if not name or name.lower() == "lanczos" or Path(name).expanduser().exists():
        return
    models = model_registry(settings).models("upscaler")  # type: ignore[arg-type]
    if not any(name in (m.id, m.name, m.path) for m in models):
        known = ", ".join(m.name for m in models) or "none found"
        raise ModelNotFoundError(f"No upscaler named {name!r} (upscalers: {known}; "
                                 "or 'lanczos').")
