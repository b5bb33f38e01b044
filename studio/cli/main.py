"""``studio``: the GUI with no arguments, headless commands otherwise.

Commands share the core and the engine with the GUI and never import Qt. Every error a user
can cause prints one clear line and exits non-zero.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from studio import __version__

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130

# Further commands live in their own modules, each with ``NAME``, ``HELP``,
# ``add_arguments(parser)`` and ``run(args) -> int``; they may call ``make_engine(args)``.
COMMAND_MODULES: list[str] = [
    "studio.cli.upscale",
    "studio.cli.grid",
    "studio.cli.info",
    "studio.cli.export",
    "studio.cli.bench",
    "studio.cli.bench_sliders",
]


def _command_modules():
    import importlib

    return [importlib.import_module(name) for name in COMMAND_MODULES]


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 512x768, not {text!r}") from None


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto, cuda, cuda:1, mps or cpu")
    p.add_argument("--dtype", default="auto", help="auto, float16, bfloat16 or float32")
    p.add_argument("--model-dir", action="append", default=[], metavar="DIR",
                   help="extra model folder to scan (A1111/ComfyUI layouts work); repeatable")
    p.add_argument("--no-hf-cache", action="store_true", help="do not scan the HF cache")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="studio", description="Latent Studio: generate, edit and explore images with "
        "local generative models. With no command, opens the studio window.")
    parser.add_argument("--version", action="version", version=f"Latent Studio {__version__}")
    sub = parser.add_subparsers(dest="command")

    gui = sub.add_parser("gui", help="open the studio window (the default)")
    gui.add_argument("paths", nargs="*", help="images or projects to open")
    _add_engine_args(gui)

    gen = sub.add_parser("generate", help="generate images from a prompt")
    gen.add_argument("prompt")
    gen.add_argument("--negative", default="", help="negative prompt")
    gen.add_argument("--model", default=None, help="model id, name, folder or .safetensors")
    gen.add_argument("--seed", type=int, default=None, help="seed (random if omitted)")
    gen.add_argument("--steps", type=int, default=None)
    gen.add_argument("--guidance", type=float, default=None, help="CFG scale")
    gen.add_argument("--size", type=_size, default=None, metavar="WxH")
    gen.add_argument("--scheduler", default=None, help='e.g. "Euler a", "DPM++ 2M Karras"')
    gen.add_argument("--init-image", type=Path, default=None, help="image-to-image source")
    gen.add_argument("--strength", type=float, default=0.75, help="img2img/inpaint strength")
    gen.add_argument("--mask", type=Path, default=None, help="inpainting mask (white = repaint)")
    gen.add_argument("--batch", type=int, default=1, help="images to make (seeds seed..seed+N-1)")
    gen.add_argument("--variation-seed", type=int, default=None)
    gen.add_argument("--variation-strength", type=float, default=0.0)
    gen.add_argument("--slider", action="append", default=[], metavar="ID=VALUE",
                     help="a slider and its value, e.g. hair-red=2, smile=-1, "
                          "'prompt:old|young=1.5', vae:hair=blonde=2 (repeatable)")
    gen.add_argument("-o", "--out", type=Path, default=Path("out.png"),
                     help="output file (.png, .jpg, .webp); a batch adds -1, -2, ...")
    gen.add_argument("--no-metadata", action="store_true", help="write no settings into files")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.add_argument("--project", type=Path, default=None, metavar="P.studio",
                     help="also add the generation to this project (created if missing)")
    _add_engine_args(gen)

    models = sub.add_parser("models", help="list the models found")
    models.add_argument("--kind", default=None,
                        help="diffusion, lora, vae, gan, classifier or upscaler")
    _add_engine_args(models)

    dev = sub.add_parser("device", help="show the device and precision that would be used")
    _add_engine_args(dev)
    for module in _command_modules():
        p = sub.add_parser(module.NAME, help=module.HELP)
        module.add_arguments(p)
        if getattr(module, "ENGINE_ARGS", True):
            _add_engine_args(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    commands = {"gui", "generate", "models", "device"}
    commands |= {m.NAME for m in _command_modules()}
    if not args_list or (args_list[0] not in commands and not args_list[0].startswith("-")):
        args_list = ["gui", *args_list]
    args = parser.parse_args(args_list)
    from studio.core.errors import StudioError

    try:
        if args.command == "gui":
            from studio.app import run_app

            return run_app(args)
        if args.command == "generate":
            return _cmd_generate(args)
        if args.command == "models":
            return _cmd_models(args)
        if args.command == "device":
            return _cmd_device(args)
        for module in _command_modules():
            if args.command == module.NAME:
                return int(module.run(args))
    except StudioError as err:
        print(f"studio: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("studio: cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    parser.print_help()
    return EXIT_USAGE


def make_engine(args: argparse.Namespace):
    """The engine for a command, configured from its flags."""
    from studio.engine.engine import Engine
    from studio.engine.models.loading import quiet_libraries

    quiet_libraries()
    from studio.core.config import load_config

    config = load_config()  # flags win over the saved settings
    device = args.device if args.device != "auto" else config.device
    dtype = args.dtype if args.dtype != "auto" else config.dtype
    return Engine(device=device, dtype=dtype, model_dirs=[*config.model_dirs, *args.model_dir],
                  hf_cache=not args.no_hf_cache)


def _cmd_device(args: argparse.Namespace) -> int:
    engine = make_engine(args)
    info = engine.device_info()
    print(f"{info.label}  ({info.description})")
    return EXIT_OK


def _cmd_models(args: argparse.Namespace) -> int:
    engine = make_engine(args)
    models = engine.list_models(args.kind)
    if not models:
        print(NO_MODEL_HELP)
        return EXIT_OK
    width = max(len(m.name) for m in models)
    print(f"{'NAME'.ljust(width)}  {'KIND':<10} {'FAMILY':<12} {'SOURCE':<11} {'SIZE':>9}  PATH")
    for m in models:
        print(f"{m.name.ljust(width)}  {m.kind:<10} {m.family or '-':<12} {m.source:<11} "
              f"{m.size_text:>9}  {m.path}")
    return EXIT_OK


NO_MODEL_HELP = """No model found.
Latent Studio looks for models in:
  - its embedded models (resources/models in the installation),
  - folders you name with --model-dir DIR or STUDIO_MODEL_DIRS (diffusers folders,
    .safetensors checkpoints, A1111 `models/Stable-diffusion` and ComfyUI
    `models/checkpoints` layouts),
  - the Hugging Face cache (models downloaded once with diffusers while online).
Example: studio generate "a lighthouse" --model ~/models/sd15.safetensors"""


def _cmd_generate(args: argparse.Namespace) -> int:
    import random

    from studio.core.errors import InvalidRequestError, ModelNotFoundError
    from studio.core.jobs.request import GenerationRequest

    engine = make_engine(args)
    if args.model is None:
        default = engine.default_model()
        if default is None:
            raise ModelNotFoundError(NO_MODEL_HELP)
        model = default
    else:
        model = engine.resolve_model(args.model)
    rec = dict(model.recommended)
    width, height = args.size or (int(rec.get("width", 512)), int(rec.get("height", 512)))
    init = mask = None
    task = "txt2img"
    if args.init_image is not None:
        init = _read_pixels(args.init_image, "RGB")
        task = "img2img"
        if args.size is None:
            width, height = init.width // 8 * 8, init.height // 8 * 8
    if args.mask is not None:
        if init is None:
            raise InvalidRequestError("--mask needs --init-image (the image to inpaint).")
        mask = _read_pixels(args.mask, "L")
        task = "inpaint"
    from studio.engine.schedulers import canonical_name

    request = GenerationRequest(
        prompt=args.prompt, negative_prompt=args.negative, model=model.id,
        scheduler=canonical_name(args.scheduler or str(rec.get("scheduler", "Euler"))),
        seed=args.seed if args.seed is not None else random.randrange(2**32),
        steps=args.steps or int(rec.get("steps", 20)),
        guidance=args.guidance if args.guidance is not None else float(rec.get("guidance", 7.0)),
        width=width, height=height, batch_size=args.batch, task=task, strength=args.strength,
        init_image=init, mask=mask, variation_seed=args.variation_seed,
        variation_strength=args.variation_strength)
    request = _with_sliders(request, args.slider)
    out_paths = _out_paths(args.out, request.batch_size)
    _check_writable(out_paths)
    if args.project is not None and args.project.exists():
        from studio.core.project.store import ProjectStore

        ProjectStore.load(args.project)  # a damaged or newer project fails before the work
    if not args.quiet:
        info = engine.device_info()
        print(f"{model.name} ({model.family}) on {info.label}: {request.width}x{request.height}, "
              f"{request.steps} steps, seed {request.seed}", file=sys.stderr)
    result = _run_with_progress(engine, request, quiet=args.quiet)
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


def _with_sliders(request: Any, items: list[str]) -> Any:
    """The ``GenerationRequest`` with the ``--slider ID=VALUE`` entries applied."""
    from studio.core.errors import InvalidRequestError
    from studio.core.sliders.specs import apply_sliders, slider_for_id

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
    return apply_sliders(request, values)


def _read_pixels(path: Path, mode: str):
    from PIL import Image

    from studio.core.formats.imageio import load_image
    from studio.core.document.pixels import Pixels

    arr = load_image(path)
    img = Image.fromarray(arr).convert(mode)
    import numpy as np

    return Pixels.from_array(np.asarray(img))


def _out_paths(out: Path, n: int) -> list[Path]:
    if n == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i + 1}{out.suffix}") for i in range(n)]


def _check_writable(paths: list[Path]) -> None:
    from studio.core.errors import InvalidRequestError

    for p in paths:
        if p.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
            raise InvalidRequestError(f"Cannot write {p.name}: use .png, .jpg or .webp.")
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise InvalidRequestError(f"The folder {parent} does not exist.")


def _run_with_progress(engine, request, quiet: bool):
    from studio.core.jobs.cancel import CancelToken

    cancel = CancelToken()
    if quiet or not sys.stderr:
        return engine.generate(request, None, cancel)
    from tqdm import tqdm

    bars: list = []  # made at the first step, so the model load does not skew the rate

    def on_step(p) -> None:
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
