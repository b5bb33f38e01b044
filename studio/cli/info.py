"""``studio info FILE``: an image's generation settings, or a project's summary and log."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

NAME = "info"
HELP = "print an image's generation settings or a project's summary and generation log"
ENGINE_ARGS = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="an image (PNG/JPEG/WebP) or a .studio project")
    parser.add_argument("--json", action="store_true",
                        help="print what was read as JSON: tool, fields, unread fields "
                             "(and our full request for our own images)")


def run(args: argparse.Namespace) -> int:
    path: Path = args.file
    if path.suffix.lower() == ".studio":
        return _project_info(path)
    return _image_info(path, args.json)


def _image_info(path: Path, as_json: bool) -> int:
    from studio.core.formats.imageio import load_image
    from studio.core.formats.metadata import read_settings

    image = load_image(path)  # a clear error for a missing, broken or oversized file
    settings = read_settings(path)
    if as_json:
        print(json.dumps(_as_json(path, image.shape, settings), indent=2, sort_keys=True,
                         default=str))
        return 0
    print(f"{path.name}: {image.shape[1]}x{image.shape[0]}")
    if settings is None:
        print("No generation settings found in this image.")
        return 0
    rows = [("Made by", settings.source), ("Prompt", settings.prompt),
            ("Negative prompt", settings.negative_prompt), ("Seed", settings.seed),
            ("Steps", settings.steps), ("Guidance", settings.guidance),
            ("Sampler", settings.sampler),
            ("Size", f"{settings.width}x{settings.height}" if settings.width else ""),
            ("Model", settings.model), ("Model hash", settings.model_hash[:10]),
            ("Strength", settings.strength)]
    request = settings.request
    if request is not None:  # ours: what A1111's text cannot say
        rows.append(("LoRAs", ", ".join(f"{Path(lw.path).name} {lw.weight:g}"
                                         for lw in request.loras)))
        rows.append(("Sliders", ", ".join(_slider_text(s) for s in request.sliders)))
    if settings.task != "txt2img":
        rows.append(("Task", settings.task))
    for label, value in rows:
        if value not in (None, ""):
            print(f"{label + ':':<17}{value}")
    if settings.unread_message:
        print(settings.unread_message[0].upper() + settings.unread_message[1:] + ".")
    return 0


def _as_json(path: Path, shape: tuple[int, ...], settings: Any) -> dict[str, Any]:
    """What ``--json`` prints: stable keys a script can rely on."""
    out: dict[str, Any] = {"file": path.name, "width": shape[1], "height": shape[0],
                           "tool": None, "task": None, "fields": {}, "unread": [],
                           "dropped": []}
    if settings is None:
        return out
    out.update(tool=settings.source, task=settings.task, fields=settings.fields(),
               unread=list(settings.unread), dropped=list(settings.dropped))
    if "studio" in settings.extra:
        out["request"] = settings.extra["studio"]
    return out


def _slider_text(slider: object) -> str:
    """``id=value`` (and the latent sliders' method), as ``--slider`` takes it."""
    payload = dict(getattr(slider, "payload", ()))
    method = f" ({payload['method']})" if "method" in payload else ""
    return f"{getattr(slider, 'slider_id', '?')}={getattr(slider, 'value', 0):g}{method}"


def _project_info(path: Path) -> int:
    from studio.core.project.store import ProjectStore

    project = ProjectStore.load(path)
    doc = project.document
    log = doc.log
    records = log.records
    print(f"{path.name}: canvas {doc.width}x{doc.height}, {len(doc.layers)} layers, "
          f"{len(records)} generations, {project.undo_stack.count} edits in the history")
    for layer in doc.layers:
        flags = "" if layer.visible else " (hidden)"
        mask = ", mask" if layer.mask is not None else ""
        print(f"  layer {layer.name!r}: {layer.width}x{layer.height} at ({layer.x}, {layer.y}), "
              f"opacity {layer.opacity:.2f}{mask}{flags}")
    if not records:
        return 0
    print("Generation log:")
    depth: dict[str, int] = {}
    for rec in sorted(records, key=lambda r: r.created):
        level = depth[rec.id] = depth.get(rec.parent_id or "", -1) + 1
        req = rec.request
        when = dt.datetime.fromtimestamp(rec.created).strftime("%Y-%m-%d %H:%M")
        link = f"{rec.relation} of {rec.parent_id[:8]} " if rec.parent_id else ""
        gone = " [deleted]" if rec.deleted else ""
        print(f"  {'  ' * level}{rec.id[:8]} {when} {link}{req.task} seed {req.seed} "
              f"{req.steps} steps, {Path(req.model).name}: {req.prompt[:60]!r}"
              f" ({len(rec.image_hashes)} image{'s' if len(rec.image_hashes) != 1 else ''})"
              f"{gone}")
    return 0
