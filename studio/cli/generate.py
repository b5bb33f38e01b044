"""``studio generate "prompt" [-o out.png]``: images from a prompt, an init image or a mask.

Every argument is checked (numbers and names while parsing; then output files, images,
sliders, the project, the settings and the model, found without torch) before the engine
and its heavy libraries load. Without ``-o`` the images go to new numbered files
(``out-0001.png``, ...); an existing ``-o`` file is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path
from typing import Any

from studio.cli.common import (
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

NAME = "generate"
HELP = "generate images from a prompt"
DEFAULT_OUT = Path("out.png")
MODEL_DEFAULT = "default: the model's recommended value"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt", help="what to draw (A1111 syntax: (word:1.2), <lora:name:0.8>)")
    p.add_argument("--negative", default="", help="negative prompt (default: none)")
    p.add_argument("--model", default=None, help="model id, name, folder or .safetensors "
                   "(default: the settings' default model, else studio-tiny-diffusion; "
                   "see `studio models`)")
    p.add_argument("--seed", type=whole_number(0, MAX_SEED), default=None,
                   help=f"0 to {MAX_SEED} (default: random)")
    p.add_argument("--steps", type=whole_number(1, 1000), default=None,
                   help=f"denoising steps, 1 to 1000 ({MODEL_DEFAULT}: 25 for "
                        "studio-tiny and SD 1.x, 30 for SDXL)")
    p.add_argument("--guidance", type=decimal(0, 100), default=None,
                   help=f"CFG scale, 0 to 100 ({MODEL_DEFAULT}: 5 for studio-tiny, 7 for "
                        "SD 1.x)")
    p.add_argument("--size", type=parse_size, default=None, metavar="WxH",
                   help="image size, e.g. 512x768 or 512; multiples of 8 from 8 to 4096 "
                        f"({MODEL_DEFAULT}: 64x64 for studio-tiny, 512x512 for SD 1.x; "
                        "with --init-image: its size)")
    p.add_argument("--scheduler", type=scheduler_arg, default=None, metavar="NAME",
                   help=f"one of: {scheduler_list()}; A1111 and ComfyUI spellings work "
                        f"(e.g. euler_a) ({MODEL_DEFAULT})")
    p.add_argument("--init-image", type=Path, default=None, metavar="FILE",
                   help="image-to-image source (default: none, text to image)")
    p.add_argument("--strength", type=decimal(0, 1), default=0.75,
                   help="how much of the init image is repainted, 0 to 1 (default: 0.75)")
    p.add_argument("--mask", type=Path, default=None, metavar="FILE",
                   help="inpainting mask, white = repaint (default: none)")
    p.add_argument("--batch", type=whole_number(1, 64), default=1,
                   help="images to make, 1 to 64, seeds seed..seed+N-1 (default: 1)")
    p.add_argument("--variation-seed", type=whole_number(0, MAX_SEED), default=None,
                   help=f"0 to {MAX_SEED} (default: none)")
    p.add_argument("--variation-strength", type=decimal(0, 1), default=0.0,
                   help="how far toward the variation seed, 0 to 1 (default: 0)")
    p.add_argument("--slider", action="append", default=[], metavar="ID=VALUE",
                   help="a slider and its value within its range (-2 to 2 for most), e.g. "
                        "hair-red=2, smile=-1, 'prompt:old|young=1.5', vae:hair=blonde=2 "
                        "(repeatable; default: none)")
    p.add_argument("--region", action="append", default=[], metavar='MASK.png="PROMPT"',
                   help="a regional prompt: PROMPT applies where the mask image is white "
                        "(scaled to the image size); end it with :STRENGTH (0 to 1, "
                        'default 1) to blend it with the main prompt, e.g. '
                        'left.png="red hair:0.8" (repeatable; SD 1.x/2.x, SDXL and '
                        "studio-tiny; default: none)")
    p.add_argument("--control", action="append", default=[],
                   metavar="KIND=IMAGE[:STRENGTH[:START:END]]",
                   help="a control layer the image follows: KIND is scribble, lineart, "
                        "edges (Canny of the image), depth (a depth image as is), "
                        "depth-estimate (depth from a photo, by a depth-estimation model in "
                        "models/depth or models/annotators), tile, pose or reference (an "
                        "image whose look to take, by an IP-Adapter in models/ipadapter); "
                        "STRENGTH 0 to 2 "
                        "(default 1), START:END the share of the steps it acts on (default "
                        "0:1), e.g. scribble=sketch.png:0.8:0:0.6 (repeatable; default: none)")
    p.add_argument("--control-model", action="append", default=[], metavar="NAME",
                   help="the ControlNet, T2I-Adapter or IP-Adapter (name, folder or "
                        ".safetensors) for "
                        "each --control in order, one for all if given once (default: the "
                        "one found for the kind and the model's family)")
    add_output_args(p, DEFAULT_OUT.name, "output file; a batch adds -1, -2, ...")
    p.add_argument("--no-metadata", action="store_true", help="write no settings into files")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--project", type=Path, default=None, metavar="P.studio",
                   help="also add each image to this project as a layer, and to its "
                        "generation log (created if missing; default: none)")


def run(args: argparse.Namespace) -> int:
    from studio.core.errors import InvalidRequestError, StudioError

    # Everything the user typed is checked before the engine loads, cheapest first.
    out_paths = out_file_names(args.out, args.batch) if args.out is not None else None
    if out_paths is not None:
        check_writable(out_paths, overwrite=args.overwrite)
    if args.mask is not None and args.init_image is None:
        raise InvalidRequestError("--mask needs --init-image (the image to inpaint).")
    for image in (args.init_image, args.mask):
        if image is not None and not image.is_file():
            raise InvalidRequestError(f"Could not open {image}: the file does not exist.")
    region_args = parse_regions(args.region)
    control_args = parse_controls(args.control, args.control_model)
    check_model_file(args.model)
    from studio.cli.advice import fit_warning
    from studio.cli.progress import PhaseProgress
    from studio.core.samplers import fast_setting_note, steps_warning
    from studio.core.sliders.specs import apply_sliders

    sliders = parse_sliders(args.slider)
    init = read_pixels(args.init_image, "RGB") if args.init_image is not None else None
    mask = read_pixels(args.mask, "L") if args.mask is not None else None
    if args.project is not None and args.project.exists():
        from studio.core.project.store import ProjectStore

        ProjectStore.load(args.project)  # a damaged or newer project fails before the work
    settings = settings_from_args(args)
    model, settings = pick_model_where_it_is(settings, args.model)
    request = apply_sliders(build_request(args, model, init, mask), sliders)
    request = with_regions(request, region_args, model)
    request = with_controls(request, control_args)
    if request.controls:
        from studio.core.control import control_notes

        for note in control_notes(request.controls, request.width, request.height):
            print(f"studio: note: {note}", file=sys.stderr)
    check_sliders_fit(request, model)
    check_edit_on_server(model, request, bool(settings.servers))
    if request.task == "img2img" and (edit_note := edit_mode_note(model)):
        print(f"studio: note: {edit_note}", file=sys.stderr)
    for warning in (fit_warning(model, request), steps_warning(request.scheduler, request.steps)):
        if warning:
            print(f"studio: warning: {warning}", file=sys.stderr)
    if fast := fast_setting_note(dict(model.recommended), request.steps, request.scheduler,
                                 request.guidance):
        print(f"studio: note: {fast} (--scheduler, --guidance)", file=sys.stderr)

    progress = PhaseProgress(quiet=args.quiet)
    progress.start(f"Loading model {model.name}")
    engine = make_engine(settings)
    if request.regions and (why := engine.features.regions_reason(model.family)):
        raise InvalidRequestError(f"This backend cannot use --region: {why}")
    if request.controls and not engine.features.control:
        raise InvalidRequestError("This backend cannot use --control: "
                                  + engine.features.reason("control"))
    if any(c.kind == "reference" for c in request.controls):  # IP-Adapters: local only
        from studio.core.control import reference_off_reason

        if why := reference_off_reason(engine.features):
            raise InvalidRequestError(f"This backend cannot use --control reference=...: {why}")
    if not args.quiet:
        info = engine.device_info()
        describe = getattr(engine, "model_device_info", None)  # the local engine's
        if describe is not None:  # a small model runs float32 where the device autocasts
            try:
                info = describe(request.model)
            except StudioError:
                pass
        progress.note(f"{model.name} ({model.family}) on {info.label}: {request.width}x"
                      f"{request.height}, {request.steps} steps, {request.scheduler}, "
                      f"seed {request.seed}")
    result = progress.run(engine, request)
    from studio.core.formats.metadata import save_image

    paths = out_paths or numbered_paths(DEFAULT_OUT, len(result.images))
    workflow_for = None
    if settings.servers:  # a server's result carries the workflow each image ran
        from studio.remote.engine import RemoteGenerationResult

        if isinstance(result, RemoteGenerationResult):
            workflow_for = result.workflow_for
    for i, (image, path) in enumerate(zip(result.images, paths, strict=True)):
        save_image(path, image, None if args.no_metadata else result.request.for_image(i),
                   workflow=None if args.no_metadata or workflow_for is None
                   else workflow_for(i))
        print(path)
    if args.project is not None:
        from studio.cli.project_io import add_result

        record_id, layers = add_result(args.project, result)
        print(f"added to {args.project} as {record_id[:8]} ({layers} layer"
              f"{'s' if layers != 1 else ''})", file=sys.stderr)
    if not args.quiet:
        print(f"done in {result.seconds:.1f} s", file=sys.stderr)
    return EXIT_OK


def build_request(args: argparse.Namespace, model: Any, init: Any, mask: Any) -> Any:
    """The request the arguments describe, with the model's recommended values for the rest."""
    from studio.core.jobs.request import GenerationRequest
    from studio.core.samplers import scheduler_name

    rec = dict(model.recommended)
    width, height = args.size or (int(rec.get("width", 512)), int(rec.get("height", 512)))
    task = "txt2img"
    if init is not None:
        task = "inpaint" if mask is not None else "img2img"
        if args.size is None:
            width, height = max(8, init.width // 8 * 8), max(8, init.height // 8 * 8)
            if edit_mode_note(model):  # an edit keeps the image's size, to its multiple
                from studio.engine.models.families import spec_for

                step = spec_for(model.family).size_multiple
                width, height = max(step, width // step * step), max(step, height // step * step)
    return GenerationRequest(
        prompt=args.prompt, negative_prompt=args.negative, model=model.id,
        scheduler=args.scheduler or scheduler_name(str(rec.get("scheduler", "Euler"))),
        seed=args.seed if args.seed is not None else random.randrange(2**32),
        steps=args.steps if args.steps is not None else int(rec.get("steps", 20)),
        guidance=args.guidance if args.guidance is not None else float(rec.get("guidance", 7.0)),
        width=width, height=height, batch_size=args.batch, task=task, strength=args.strength,
        init_image=init, mask=mask, variation_seed=args.variation_seed,
        variation_strength=args.variation_strength)


def edit_mode_note(model: Any) -> str:
    """For an edit-with-words model (Flux Kontext), what ``--init-image`` does with it: the
    prompt is an instruction, and ``--strength`` is not used ("" for other models)."""
    from studio.engine.models.families import spec_for

    if not model.family or not spec_for(model.family).edit:
        return ""
    return (f"{model.name} edits the init image with words: the prompt is the instruction "
            "(e.g. \"make the hair red\"); --strength is not used.")


def pick_model_where_it_is(settings: Any, name: str | None) -> tuple[Any, Any]:
    """(model, settings of the run): with servers, a ``--model`` that only this computer has
    runs here, as the window routes it (``RoutingEngine``), with a note; otherwise on the
    servers. The thin install (no torch) keeps the servers' one-line refusal."""
    from studio.core.errors import ModelNotFoundError

    try:
        return pick_model(model_registry(settings), name, settings), settings
    except ModelNotFoundError:
        if not (settings.servers and name):
            raise
        from studio.remote.routing import local_engine_installed

        if not local_engine_installed():
            raise
        here = settings.model_copy(update={"servers": type(settings.servers)()})
        try:
            model = pick_model(model_registry(here), name, here)
        except ModelNotFoundError:
            raise ModelNotFoundError(f"{name!r} is neither a model of the servers nor of "
                                     "this computer (see `studio models`).") from None
        print(f"studio: note: {model.name} is a model of this computer: it runs here, not "
              "on the servers.", file=sys.stderr)
        return model, here


def check_edit_on_server(model: Any, request: Any, on_server: bool) -> None:
    """Edit with words on a ComfyUI server: a Kontext model (its family read from the file
    name) edits there with ComfyUI's own nodes (``studio.remote.workflow.edits``); another
    edit model (Flux 2 Klein) is refused in one line before anything is sent."""
    if not on_server or request.task == "txt2img":
        return
    from studio.remote.engine import refuse_edit_model

    refuse_edit_model(str(model.family or ""), model.name)


def parse_regions(items: list[str]) -> list[tuple[Path, str, float]]:
    """The ``--region MASK=PROMPT[:STRENGTH]`` entries as (mask file, prompt, strength),
    checked before anything loads: the file exists, the prompt is not empty, the strength
    is from 0 to 1."""
    from studio.core.errors import InvalidRequestError

    out = []
    for item in items:
        path, sep, prompt = item.partition("=")
        strength = 1.0
        head, colon, tail = prompt.rpartition(":")
        if colon:
            try:
                strength = float(tail)
            except ValueError:
                pass  # a colon that is part of the prompt
            else:
                prompt = head
                if not (math.isfinite(strength) and 0.0 <= strength <= 1.0):
                    raise InvalidRequestError(
                        f"--region {item!r}: the strength must be from 0 to 1.")
        if not sep or not path or not prompt.strip():
            raise InvalidRequestError(
                f'--region {item!r}: write MASK.png="PROMPT", or MASK.png="PROMPT:0.8" '
                "with a strength.")
        if not Path(path).is_file():
            raise InvalidRequestError(f"Could not open {path}: the file does not exist.")
        out.append((Path(path), prompt.strip(), strength))
    return out


def with_regions(request: Any, regions: list[tuple[Path, str, float]], model: Any) -> Any:
    """``request`` with the regional prompts (masks read as grey images); refused on models
    whose attention cannot be masked."""
    if not regions:
        return request
    from studio.core.errors import InvalidRequestError
    from studio.core.jobs.request import Region
    from studio.engine.models.families import REGION_FAMILIES, REGIONS_OFF

    on_server = str(getattr(model, "source", "")).startswith("comfyui")  # any family there
    if model.family and not on_server and model.family not in REGION_FAMILIES:
        why = REGIONS_OFF.get(model.family, "")  # the family's own reason, where it has one
        raise InvalidRequestError(
            f"Regional prompts need an SD 1.x, 2.x, SDXL, SD3, Flux, PixArt or Sana model "
            f"(or Flux 2, Z-Image); {model.name} is {model.family}" + (f": {why}" if why else "."),
            hint="Pick another --model, or leave out --region.")
    return request.replace(regions=tuple(
        Region(read_pixels(path, "L"), prompt, strength) for path, prompt, strength in regions))


def parse_controls(items: list[str], models: list[str]) -> list[tuple[str, Path, float, float,
                                                                        float, str]]:
    """The ``--control KIND=IMAGE[:strength[:start:end]]`` entries with their
    ``--control-model``, checked before anything loads (kind, file, numbers)."""
    from studio.core.control import parse_control_spec
    from studio.core.errors import InvalidRequestError

    if models and len(models) not in (1, len(items)):
        raise InvalidRequestError(f"--control-model: give one for all {len(items)} controls "
                                  "or one for each, in order.")
    out = []
    for i, item in enumerate(items):
        kind, path, strength, start, end = parse_control_spec(item)
        if not Path(path).is_file():
            raise InvalidRequestError(f"Could not open {path}: the file does not exist.")
        model = models[0] if len(models) == 1 else models[i] if models else ""
        out.append((kind, Path(path), strength, start, end, model))
    return out


def with_controls(request: Any, controls: list[tuple[str, Path, float, float, float, str]]
                  ) -> Any:
    """``request`` with the control layers (images read as drawn, transparency kept)."""
    if not controls:
        return request
    from studio.core.control import ControlLayer

    return request.replace(controls=tuple(
        ControlLayer(kind, read_pixels(path, "RGBA"), strength, start, end, model)
        for kind, path, strength, start, end, model in controls))


def parse_sliders(items: list[str]) -> list[tuple[Any, float]]:
    """The ``--slider ID=VALUE`` entries as (spec, value); a value outside the slider's range
    is refused, naming the range."""
    from studio.core.errors import InvalidRequestError
    from studio.core.sliders.specs import slider_for_id

    values = []
    for item in items:
        slider_id, sep, text = item.rpartition("=")
        try:
            value: float | None = float(text)
        except ValueError:
            value = None
        if not sep or not slider_id or value is None:
            raise InvalidRequestError(f"--slider {item!r}: write ID=VALUE, e.g. hair-red=2.")
        spec = slider_for_id(slider_id)
        if not math.isfinite(value) or not spec.minimum <= value <= spec.maximum:
            raise InvalidRequestError(
                f"--slider {item!r}: the value of {slider_id} must be from {spec.minimum:g} "
                f"to {spec.maximum:g}.")
        values.append((spec, value))
    return values


def check_sliders_fit(request: Any, model: Any) -> None:
    """A VAE/GAN latent slider on another model is refused before the engine loads (the
    engine checks it again, for the window)."""
    from studio.core.errors import InvalidRequestError
    from studio.core.sliders.specs import LATENT_MODELS, LATENT_SPACES

    latent = next((s for s in request.sliders if s.space in LATENT_SPACES and s.value), None)
    if latent is not None and LATENT_MODELS[latent.space] != model.id:
        owner = LATENT_MODELS[latent.space]
        raise InvalidRequestError(
            f"The slider {latent.slider_id} moves the latent of {owner}, not of "
            f"{model.name}.", hint=f"Use --model {owner}, or a prompt slider (smile, "
            "glasses, hair-red ...) on this model.")


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
