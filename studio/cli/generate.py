"""``studio generate "prompt" [-o out.png]``: images from a prompt, an init image or a mask.

Every argument is checked (output files, mask, sliders, scheduler, settings) before the
engine and its heavy libraries load.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from studio.cli.common import (
    EXIT_OK,
    check_writable,
    make_engine,
    parse_size,
    pick_model,
    settings_from_args,
)

NAME = "generate"
HELP = "generate images from a prompt"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt")
    p.add_argument("--negative", default="", help="negative prompt")
    p.add_argument("--model", default=None, help="model id, name, folder or .safetensors "
                   "(default: the default model of the settings)")
    p.add_argument("--seed", type=int, default=None, help="seed (random if omitted)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None, help="CFG scale")
    p.add_argument("--size", type=parse_size, default=None, metavar="WxH")
    p.add_argument("--scheduler", default=None, help='e.g. "Euler a", "DPM++ 2M Karras"')
    p.add_argument("--init-image", type=Path, default=None, help="image-to-image source")
    p.add_argument("--strength", type=float, default=0.75, help="img2img/inpaint strength")
    p.add_argument("--mask", type=Path, default=None, help="inpainting mask (white = repaint)")
    p.add_argument("--batch", type=int, default=1, help="images to make (seeds seed..seed+N-1)")
    p.add_argument("--variation-seed", type=int, default=None)
    p.add_argument("--variation-strength", type=float, default=0.0)
    p.add_argument("--slider", action="append", default=[], metavar="ID=VALUE",
                   help="a slider and its value, e.g. hair-red=2, smile=-1, "
                        "'prompt:old|young=1.5', vae:hair=blonde=2 (repeatable)")
    p.add_argument("-o", "--out", type=Path, default=Path("out.png"),
                   help="output file (.png, .jpg, .webp); a batch adds -1, -2, ...")
    p.add_argument("--no-metadata", action="store_true", help="write no settings into files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--project", type=Path, default=None, metavar="P.studio",
                   help="also add the generation to this project (created if missing)")


def run(args: argparse.Namespace) -> int:
    import random

    from studio.core.errors import InvalidRequestError
    from studio.core.jobs.request import GenerationRequest
    from studio.core.sliders.specs import apply_sliders
    from studio.engine.schedulers import canonical_name

    # Everything the user typed is checked before the engine loads.
    out_paths = out_file_names(args.out, args.batch)
    check_writable(out_paths)
    if args.mask is not None and args.init_image is None:
        raise InvalidRequestError("--mask needs --init-image (the image to inpaint).")
    sliders = parse_sliders(args.slider)
    if args.scheduler:
        canonical_name(args.scheduler)
    init = read_pixels(args.init_image, "RGB") if args.init_image is not None else None
    mask = read_pixels(args.mask, "L") if args.mask is not None else None
    if args.project is not None and args.project.exists():
        from studio.core.project.store import ProjectStore

        ProjectStore.load(args.project)  # a damaged or newer project fails before the work
    settings = settings_from_args(args)

    engine = make_engine(settings)
    model = pick_model(engine, args.model, settings)
    rec = dict(model.recommended)
    width, height = args.size or (int(rec.get("width", 512)), int(rec.get("height", 512)))
    task = "txt2img"
    if init is not None:
        task = "inpaint" if mask is not None else "img2img"
        if args.size is None:
            width, height = init.width // 8 * 8, init.height // 8 * 8
    request = GenerationRequest(
        prompt=args.prompt, negative_prompt=args.negative, model=model.id,
        scheduler=canonical_name(args.scheduler or str(rec.get("scheduler", "Euler"))),
        seed=args.seed if args.seed is not None else random.randrange(2**32),
        steps=args.steps or int(rec.get("steps", 20)),
        guidance=args.guidance if args.guidance is not None else float(rec.get("guidance", 7.0)),
        width=width, height=height, batch_size=args.batch, task=task, strength=args.strength,
        init_image=init, mask=mask, variation_seed=args.variation_seed,
        variation_strength=args.variation_strength)
    request = apply_sliders(request, sliders)
    if not args.quiet:
        info = engine.device_info()
        print(f"{model.name} ({model.family}) on {info.label}: {request.width}x{request.height}, "
              f"{request.steps} steps, seed {request.seed}", file=sys.stderr)
    result = run_with_progress(engine, request, quiet=args.quiet)
    from studio.core.formats.metadata import save_image

    for i, (image, path) in enumerate(zip(result.images, out_paths, strict=True)):
        save_image(path, image, None if args.no_metadata else result.request.for_image(i))
        print(path)
    if args.project is not None:
        from studio.cli.project_io import add_result

        record_id = add_result(args.project, result)
        print(f"added to {args.project} as {record_id[:8]}", file=sys.stderr)
    if not args.quiet:
        print(f"done in {result.seconds:.1f} s", file=sys.stderr)
    return EXIT_OK


def parse_sliders(items: list[str]) -> list[tuple[Any, float]]:
    """The ``--slider ID=VALUE`` entries as (spec, value), each value clamped to its range."""
    from studio.core.errors import InvalidRequestError
    from studio.core.sliders.specs import slider_for_id

    values = []
    for item in items:
        slider_id, sep, text = item.rpartition("=")
        try:
            value = float(text)
        except ValueError:
            value = None
        if not sep or not slider_id or value is None:
            raise InvalidRequestError(f"--slider {item!r}: write ID=VALUE, e.g. hair-red=2.")
        spec = slider_for_id(slider_id)
        values.append((spec, min(spec.maximum, max(spec.minimum, value))))
    return values


def read_pixels(path: Path, mode: str) -> Any:
    """The image at ``path`` as ``Pixels`` in ``mode`` ("RGB" or "L")."""
    import numpy as np
    from PIL import Image

    from studio.core.document.pixels import Pixels
    from studio.core.formats.imageio import load_image

    img = Image.fromarray(load_image(path)).convert(mode)
    return Pixels.from_array(np.asarray(img))


def out_file_names(out: Path, n: int) -> list[Path]:
    """``out`` for one image; ``out-1``, ``out-2``, ... for a batch."""
    if n == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i + 1}{out.suffix}") for i in range(n)]


def run_with_progress(engine: Any, request: Any, quiet: bool) -> Any:
    """``engine.generate(request)`` with a progress bar on stderr unless ``quiet``."""
    from studio.core.jobs.cancel import CancelToken

    cancel = CancelToken()
    if quiet or not sys.stderr:
        return engine.generate(request, None, cancel)
    from tqdm import tqdm

    bars: list = []  # made at the first step, so the model load does not skew the rate

    def on_step(p: Any) -> None:
        if not bars:
            bars.append(tqdm(total=p.total, unit="step", file=sys.stderr, leave=False,
                             dynamic_ncols=True))
        bar = bars[0]
        bar.total = p.total
        bar.update(p.step - bar.n)

    try:
        return engine.generate(request, on_step, cancel)
    finally:
        for bar in bars:
            bar.close()
