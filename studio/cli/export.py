"""``studio export``: a project's gallery, canvas or layers as image files."""

from __future__ import annotations

import argparse
from pathlib import Path

from studio.core.errors import InvalidRequestError

NAME = "export"
HELP = "export a project's gallery, canvas or layers (png, jpg, webp, ora, psd)"
ENGINE_ARGS = False
FORMATS = ("png", "jpg", "webp", "ora", "psd")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project", type=Path, help="a .studio project")
    parser.add_argument("--what", choices=("gallery", "canvas", "layers"), default="gallery",
                        help="gallery: every generated image with its settings; canvas: the "
                             "flattened canvas (or layered, as ora/psd); layers: one file per "
                             "layer, numbered in stack order and named after it without "
                             "spaces (01-background.png) (default: gallery)")
    parser.add_argument("--format", choices=FORMATS, default="png",
                        help="file format (default: png)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--template", default="{index:03}-{seed}-{prompt:40}",
                        help="file names for the gallery: {seed} {prompt} {model} {index} "
                             "{date} {steps} {guidance} {sampler} ... "
                             "(default: {index:03}-{seed}-{prompt:40})")
    parser.add_argument("--strip", action="store_true", help="write no metadata")
    parser.add_argument("--contact-sheet", action="store_true",
                        help="also write contact-sheet.png (the gallery, captioned with each prompt and its settings)")


def run(args: argparse.Namespace) -> int:
    from studio.core.project.store import ProjectStore

    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise InvalidRequestError(f"{out} is a file; --out must be a folder.")
    project = ProjectStore.load(args.project)
    doc = project.document
    _check_not_empty(doc, args)
    out.mkdir(parents=True, exist_ok=True)
    if args.what == "gallery":
        written = _gallery(doc, out, args)
    elif args.what == "canvas":
        written = _canvas(doc, out, args)
    else:
        written = _layers(doc, out, args)
    for path in written:
        print(path)
    return 0


def _check_not_empty(doc, args: argparse.Namespace) -> None:
    """An export with nothing to write says so (and exits 1) before making the folder."""
    name = args.project.name
    if args.what == "gallery" and not any(rec.image_hashes for rec in doc.log.gallery()):
        raise InvalidRequestError(f"{name} has no generations to export.",
                                  hint="Add some with `studio generate --project`.")
    if args.what in ("canvas", "layers") and not doc.layers:
        raise InvalidRequestError(
            f"{name} has no layers: its canvas is empty.",
            hint="`studio generate --project` adds a layer per image; `--what gallery` "
                 "exports the generation log.")


def _gallery(doc, out: Path, args: argparse.Namespace) -> list[Path]:
    from studio.core.formats.contact_sheet import caption_with_prompt, contact_sheet
    from studio.core.formats.metadata import save_image
    from studio.core.formats.naming import batch_paths

    if args.format in ("ora", "psd"):
        raise InvalidRequestError("The gallery exports as png, jpg or webp.")
    images, requests = [], []
    for rec in doc.log.gallery():
        for i, key in enumerate(rec.image_hashes):
            images.append(doc.log.image(key))
            requests.append(rec.request.for_image(i) if rec.request.batch_size > 1
                            else rec.request)
    paths = batch_paths(out, requests, template=args.template, suffix=f".{args.format}")
    written = [save_image(p, img, None if args.strip else req, strip=args.strip)
               for p, img, req in zip(paths, images, requests, strict=True)]
    if args.contact_sheet and images:
        sheet = contact_sheet(images, [caption_with_prompt(r) for r in requests],
                              caption_lines=4)
        written.append(save_image(out / "contact-sheet.png", sheet, strip=True))
    return written


def _canvas(doc, out: Path, args: argparse.Namespace) -> list[Path]:
    from studio.core.formats.layered import LayeredImage, export_ora, export_psd
    from studio.core.formats.metadata import save_image

    stem = args.project.stem
    if args.format in ("ora", "psd"):
        layered = LayeredImage.from_document(doc)
        target = out / f"{stem}.{args.format}"
        exporter = export_ora if args.format == "ora" else export_psd
        exporter(target, layered.width, layered.height, list(layered.layers))
        return [target]
    from studio.core.document.operations import composite_request

    # The settings go along only when the canvas is exactly one generated image.
    request = None if args.strip else composite_request(doc)
    return [save_image(out / f"{stem}.{args.format}", doc.composite(), request,
                       strip=request is None)]


def shell_safe_name(text: str) -> str:
    """A layer's name as a file name that needs no quoting in a shell and stays readable:
    letters, digits, ``_``, ``-`` and ``.`` kept, every run of anything else (spaces, "·",
    commas, quotes) one ``-`` ("txt2img · seed 7" -> "txt2img-seed-7")."""
    import re

    name = re.sub(r"[^\w.-]+", "-", text)
    name = re.sub(r"-{2,}", "-", name).strip("-.")
    return name or "layer"


def _layers(doc, out: Path, args: argparse.Namespace) -> list[Path]:
    from studio.core.formats.metadata import save_image
    from studio.core.formats.naming import sanitize_file_name

    if args.format in ("ora", "psd"):
        return _canvas(doc, out, args)
    written = []
    for i, layer in enumerate(doc.layers, start=1):
        name = sanitize_file_name(f"{i:02}-{shell_safe_name(layer.name)}")
        # A group has no pixels of its own: its file is what its members draw together
        # (on the canvas, with their modes and opacities), as the layers panel shows it.
        pixels = doc.render_group(layer.id) if layer.is_group else layer.pixels
        written.append(save_image(out / f"{name}.{args.format}", pixels, strip=True))
    return written
