"""``studio upscale IN -o OUT --scale 2 [--model NAME|lanczos] [--refine ...]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from studio.cli.common import EXIT_OK, check_writable, make_engine

NAME = "upscale"
HELP = "enlarge an image with a super-resolution model (or Lanczos), optionally refined"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path, help="the image to enlarge")
    p.add_argument("-o", "--out", type=Path, default=None,
                   help="output file (default: IN-x2.png beside the input)")
    p.add_argument("--scale", type=float, default=2.0, help="enlargement factor (1 to 8)")
    p.add_argument("--model", default="",
                   help="upscaler name or file (see `studio models --kind upscaler`), or "
                        "'lanczos'; default: the best one found")
    p.add_argument("--refine", action="store_true",
                   help="then img2img over overlapping tiles to add detail")
    p.add_argument("--strength", type=float, default=0.3, help="refine strength")
    p.add_argument("--prompt", default="", help="refine prompt")
    p.add_argument("--negative", default="", help="refine negative prompt")
    p.add_argument("--refine-model", default="", help="diffusion model for the refine")
    p.add_argument("--steps", type=int, default=20, help="refine steps")
    p.add_argument("--seed", type=int, default=0, help="refine seed")
    p.add_argument("--tile", type=int, default=0, help="refine tile size (default: native)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from studio.core.formats.imageio import load_image
    from studio.core.formats.metadata import save_image
    from studio.engine.upscale import UpscaleSettings, upscale_with_engine

    settings = UpscaleSettings(
        scale=args.scale, model=args.model, refine=args.refine, strength=args.strength,
        prompt=args.prompt, negative_prompt=args.negative, refine_model=args.refine_model,
        steps=args.steps, seed=args.seed, tile=args.tile)
    out = args.out or args.input.with_name(f"{args.input.stem}-x{args.scale:g}.png")
    check_writable([out])
    image = load_image(args.input)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    engine = make_engine(args)
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(unit="tile", file=sys.stderr, leave=False, dynamic_ncols=True)

    def on_step(p) -> None:
        if bar is not None:
            bar.total = p.total
            bar.n = p.step
            bar.refresh()

    try:
        result = upscale_with_engine(engine, image, settings, on_step=on_step)
    finally:
        if bar is not None:
            bar.close()
    save_image(out, result, None)
    print(out)
    return EXIT_OK
