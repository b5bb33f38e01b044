"""Layer and image operations built from the undoable commands (one undo entry each).

Duplicate, merge down, flatten, cut and paste of pixels, Scale Image and the name a
generated layer is given. Each takes the ``UndoStack`` to push on, so the window, the CLI
and the tests run the same code, and a reopened project can undo them (every command here
is saved with the project).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from studio.core.document.edits import (
    AddLayer,
    ApplyGeneration,
    MoveLayer,
    PaintPixels,
    RemoveLayer,
    ReplaceLayerPixels,
    ResizeCanvas,
    SetGenerationDeleted,
    SetLayerProps,
    SetSelection,
)
from studio.core.document.layers import Document, Layer, Rect, intersect, new_id
from studio.core.document.undo import UndoStack

if TYPE_CHECKING:
    from studio.core.jobs.request import GenerationRequest
    from studio.core.project.generation_log import GenerationLog

#: Words a short layer name leaves out ("a photo of a smiling person" -> "smiling person").
_FILLER = {"a", "an", "the", "of", "with", "and", "in", "on", "at", "by", "for", "to",
           "photo", "picture", "image", "portrait", "close-up", "closeup", "highly",
           "detailed", "masterpiece", "best", "quality", "very"}
_TASKS = {"txt2img": "txt2img", "img2img": "img2img", "inpaint": "inpaint"}


def short_prompt(prompt: str, words: int = 3) -> str:
    """The first few telling words of a prompt: no weights, brackets or filler words."""
    text = re.sub(r"<[^>]*>", " ", prompt)  # <lora:...>
    text = re.sub(r":[-+]?\d*\.?\d+", " ", text)  # (word:1.2)
    tokens = [t.strip(".,;:!?()[]{}\"'") for t in re.split(r"[\s,]+", text)]
    kept = [t for t in tokens if t and t.lower() not in _FILLER]
    return " ".join(kept[:words]) or " ".join(t for t in tokens if t)[:24]


def generated_layer_name(request: GenerationRequest, index: int = 0, task: str = "") -> str:
    """What made a generated layer: task, a short prompt and the seed (and the variation
    seed when the seed was varied), e.g. ``"txt2img · smiling person · seed 7"``.

    ``task`` overrides the request's task (``"outpaint"`` for an inpaint past the edge).
    """
    parts = [task or _TASKS.get(request.task_label, request.task_label)]
    short = short_prompt(request.prompt)
    if short:
        parts.append(short)
    seed = f"seed {request.seed + index}"
    if request.variation_seed is not None and request.variation_strength > 0:
        seed += f" var {request.variation_seed + index}"
    parts.append(seed)
    return " · ".join(parts)


# -- layers ------------------------------------------------------------------------------
def duplicate_layer(undo: UndoStack, layer_id: str) -> Layer:
    """A copy of the layer (pixels, mask, mode, opacity; a group with all it holds) just
    above it, made active."""
    doc = undo.doc
    source = doc.layer(layer_id)
    members = doc.descendants(layer_id) if source.is_group else []
    ids = {source.id: new_id(), **{m.id: new_id() for m in members}}
    copy = source.copy()
    copy.id = ids[source.id]
    copy.name = f"{source.name} copy"
    with undo.macro(f"Duplicate {'group' if source.is_group else 'layer'} {source.name!r}"):
        at = doc.index_of(layer_id) + 1
        for member in members:  # below the copied group, bottom to top, as in the source
            twin = member.copy()
            twin.id, twin.parent = ids[member.id], ids.get(member.parent or "", member.parent)
            undo.push(AddLayer(twin, index=at, text="Duplicate member"))
            at += 1
        undo.push(AddLayer(copy, index=at, text="Duplicate"))
    return doc.layer(copy.id)


# -- groups ------------------------------------------------------------------------------
def new_group(undo: UndoStack, layer_id: str | None = None, name: str = "") -> Layer:
    """A new group holding ``layer_id`` (or empty, above the active layer), made active."""
    doc = undo.doc
    count = sum(1 for lay in doc.layers if lay.is_group) + 1
    inner = doc.layer(layer_id) if layer_id is not None else None
    anchor = inner if inner is not None else doc.active_layer
    group = Layer(name=name or f"Group {count}", pixels=np.zeros((1, 1, 4), np.uint8),
                  kind="group", parent=doc.parent_of(anchor) if anchor is not None else None)
    index = doc.index_of(anchor.id) + 1 if anchor is not None else len(doc.layers)
    with undo.macro(f"New group {group.name!r}"):
        undo.push(AddLayer(group, index=index, text="Add group"))
        if inner is not None:
            undo.push(SetLayerProps(inner.id, "Into group", parent=group.id))
    return doc.layer(group.id)


def ungroup(undo: UndoStack, group_id: str) -> None:
    """Take the group's members out (where the group was) and remove the empty group."""
    doc = undo.doc
    group = doc.layer(group_id)
    if not group.is_group:
        return
    with undo.macro(f"Ungroup {group.name!r}"):
        for member in doc.children(group_id):
            undo.push(SetLayerProps(member.id, "Out of group", parent=doc.parent_of(group)))
        undo.push(RemoveLayer(group_id))


def delete_layer(undo: UndoStack, layer_id: str) -> None:
    """Remove a layer; a group goes with everything in it (one undo entry)."""
    doc = undo.doc
    layer = doc.layer(layer_id)
    if not layer.is_group:
        undo.push(RemoveLayer(layer_id, f"Delete layer {layer.name!r}"))
        return
    with undo.macro(f"Delete group {layer.name!r}"):
        for member in reversed(doc.descendants(layer_id)):
            undo.push(RemoveLayer(member.id))
        undo.push(RemoveLayer(layer_id))


def move_in_tree(undo: UndoStack, layer_id: str, delta: int) -> bool:
    """Raise (``delta`` > 0) or lower the layer past its neighbour in the same group, as
    the layers panel shows them; a group next to it takes it in, and past the end of its
    group it comes out. ``False`` when it is already at the very top or bottom."""
    doc = undo.doc
    layer = doc.layer(layer_id)
    parent = doc.parent_of(layer)
    siblings = doc.children(parent)
    pos = next(i for i, lay in enumerate(siblings) if lay.id == layer_id)
    target = pos + (1 if delta > 0 else -1)
    text = "Raise layer" if delta > 0 else "Lower layer"

    def before(index: int) -> int:  # MoveLayer's index that lands just below that layer
        return index - (1 if doc.index_of(layer_id) < index else 0)

    def after(index: int) -> int:  # ... just above it
        return before(index) + 1

    if 0 <= target < len(siblings):
        neighbour = siblings[target]
        with undo.macro(text):
            if neighbour.is_group:  # into the group: its bottom when raised, its top lowered
                inside = doc.descendants(neighbour.id)
                to = before(doc.index_of(inside[0].id) if delta > 0 and inside
                            else doc.index_of(neighbour.id))
                undo.push(SetLayerProps(layer_id, "Into group", parent=neighbour.id))
            else:
                at = doc.index_of(neighbour.id)
                to = after(at) if delta > 0 else before(at)
            undo.push(MoveLayer(layer_id, to, text))
        return True
    if parent is None:
        return False
    group = doc.layer(parent)
    with undo.macro(text):  # out of the group, just above or below it
        undo.push(SetLayerProps(layer_id, "Out of group", parent=doc.parent_of(group)))
        if delta > 0:
            to = after(doc.index_of(group.id))
        else:
            lowest = min(doc.index_of(m.id) for m in [group, *doc.descendants(group.id)]
                         if m.id != layer_id)
            to = before(lowest)
        undo.push(MoveLayer(layer_id, to, text))
    return True


def merge_group(undo: UndoStack, group_id: str) -> Layer:
    """Draw a group into one layer with the group's name, opacity and blend mode."""
    doc = undo.doc
    group = doc.layer(group_id)
    pixels = doc.render_group(group_id)
    flat = Layer(name=group.name, pixels=pixels, opacity=group.opacity, blend=group.blend,
                 visible=group.visible, kind="image", parent=doc.parent_of(group))
    with undo.macro(f"Merge group {group.name!r}"):
        index = doc.index_of(group_id)
        undo.push(AddLayer(flat, index=index + 1, text="Merged group"))
        delete_layer(undo, group_id)
    return doc.layer(flat.id)


def _mini(doc: Document, layers: list[Layer], rect: Rect) -> np.ndarray:
    width, height = rect[2], rect[3]
    mini = Document(width=width, height=height, layers=[])
    for layer in layers:
        placed = layer.copy()
        placed.x -= rect[0]
        placed.y -= rect[1]
        mini.layers.append(placed)
    return mini.composite()


def merge_down(undo: UndoStack, layer_id: str) -> Layer | None:
    """Merge the layer into the one below, as GIMP does: both opacities and the upper
    layer's blend mode are drawn into the pixels; the result keeps the lower layer's name,
    blend mode and mask, at full opacity. ``None`` when there is no layer below in the same
    group, or when either is a group (``merge_group`` draws a group into one layer)."""
    doc = undo.doc
    upper = doc.layer(layer_id)
    siblings = doc.children(doc.parent_of(upper))
    pos = next(i for i, lay in enumerate(siblings) if lay.id == layer_id)
    if pos == 0 or upper.is_group or siblings[pos - 1].is_group:
        return None
    lower = siblings[pos - 1]
    x0, y0 = min(upper.x, lower.x), min(upper.y, lower.y)
    x1 = max(upper.x + upper.width, lower.x + lower.width)
    y1 = max(upper.y + upper.height, lower.y + lower.height)
    rect = (x0, y0, x1 - x0, y1 - y0)
    base = lower.copy()
    base.blend, base.visible = "normal", True
    top = upper.copy()
    if not upper.visible:
        top.opacity = 0.0
    merged = _mini(doc, [base, top], rect)
    mask = None
    if lower.mask is not None:
        mask = np.zeros(merged.shape[:2], np.uint8)
        mask[lower.y - y0:lower.y - y0 + lower.height,
             lower.x - x0:lower.x - x0 + lower.width] = lower.mask
    with undo.macro(f"Merge {upper.name!r} down"):
        undo.push(ReplaceLayerPixels(lower.id, merged, x0, y0, mask, text="Merged pixels"))
        if lower.opacity != 1.0:
            undo.push(SetLayerProps(lower.id, opacity=1.0))
        undo.push(RemoveLayer(upper.id))  # the layer below becomes the active one
    return doc.layer(lower.id)


def flatten(undo: UndoStack) -> Layer | None:
    """Every visible layer drawn into one canvas-sized layer (hidden layers are dropped)."""
    doc = undo.doc
    if not doc.layers:
        return None
    flat = Layer(name="Flattened", pixels=doc.composite(), kind="image")
    with undo.macro("Flatten image"):
        for layer in list(doc.layers):
            undo.push(RemoveLayer(layer.id))
        undo.push(AddLayer(flat, index=0, text="Flattened layer"))
    return flat


# -- pixels ------------------------------------------------------------------------------
def layer_pixels_in(layer: Layer, rect: Rect) -> np.ndarray:
    """The layer's RGBA over ``rect`` (canvas pixels); transparent where it has none."""
    x, y, w, h = rect
    out = np.zeros((h, w, 4), np.uint8)
    part = intersect(rect, layer.rect)
    if part is not None:
        px, py, pw, ph = part
        out[py - y:py - y + ph, px - x:px - x + pw] = \
            layer.pixels[py - layer.y:py - layer.y + ph, px - layer.x:px - layer.x + pw]
    return out


def clear_pixels(undo: UndoStack, layer_id: str, rect: Rect, text: str = "Clear") -> bool:
    """Make the layer transparent over ``rect`` (canvas pixels); ``False`` if nothing was
    there."""
    doc = undo.doc
    layer = doc.layer(layer_id)
    part = intersect(rect, layer.rect)
    if part is None:
        return False
    px, py, pw, ph = part
    lx, ly = px - layer.x, py - layer.y
    old = layer.pixels[ly:ly + ph, lx:lx + pw]
    if not old[..., 3].any():
        return False
    undo.push(PaintPixels(layer_id, lx, ly, old, np.zeros_like(old), "pixels", text))
    return True


def paste_layer(undo: UndoStack, pixels: np.ndarray, name: str = "Pasted",
                at: tuple[int, int] | None = None, **props: object) -> Layer:
    """``pixels`` as a new layer above the active one, at ``at`` (default: the selection's
    top left, or centred on the canvas); ``props``: blend, opacity... of a copied layer."""
    doc = undo.doc
    layer = Layer(name=name, pixels=np.ascontiguousarray(pixels, dtype=np.uint8), kind="paint")
    for key, value in props.items():
        setattr(layer, key, value)
    if at is None:
        if doc.selection is not None:
            at = doc.selection[:2]
        else:
            at = ((doc.width - layer.width) // 2, (doc.height - layer.height) // 2)
    layer.x, layer.y = int(at[0]), int(at[1])
    active = doc.active_layer
    index = doc.index_of(active.id) + 1 if active is not None else None
    undo.push(AddLayer(layer, index=index, text=f"Paste {name}"))
    return layer


# -- the whole image ---------------------------------------------------------------------
def resample(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """``array`` (HxWx4 straight RGBA, or HxW) resized with Lanczos; colour is resampled
    premultiplied so transparent edges do not bleed dark."""
    from PIL import Image

    if array.shape[1] == width and array.shape[0] == height:
        return array.copy()
    if array.ndim == 2:
        return np.asarray(Image.fromarray(array).resize((width, height),
                                                        Image.Resampling.LANCZOS))
    premul = Image.fromarray(np.ascontiguousarray(array), "RGBA").convert("RGBa")
    return np.asarray(premul.resize((width, height), Image.Resampling.LANCZOS).convert("RGBA"))


def scaled_layers(doc: Document, width: int, height: int,
                  upscaled: dict[str, np.ndarray] | None = None
                  ) -> list[tuple[Layer, np.ndarray, int, int, np.ndarray | None]]:
    """Each layer's pixels, offset and mask scaled from the canvas size to ``width`` x
    ``height``. ``upscaled``: pixels already made by an upscaler, by layer id (resized to
    fit when the upscaler's factor differs); the others are resampled."""
    fx, fy = width / doc.width, height / doc.height
    out = []
    for layer in doc.layers:
        if layer.is_group:
            continue  # no pixels of its own
        x0, y0 = round(layer.x * fx), round(layer.y * fy)
        w = max(1, round((layer.x + layer.width) * fx) - x0)
        h = max(1, round((layer.y + layer.height) * fy) - y0)
        made = (upscaled or {}).get(layer.id)
        if made is not None:
            if made.shape[2] == 3:  # the upscaler's RGB with the layer's alpha resampled
                alpha = resample(layer.pixels[..., 3], made.shape[1], made.shape[0])
                made = np.dstack([made, alpha])
            pixels = made if made.shape[:2] == (h, w) else resample(made, w, h)
        else:
            pixels = resample(layer.pixels, w, h)
        mask = resample(layer.mask, w, h) if layer.mask is not None else None
        out.append((layer, np.ascontiguousarray(pixels, dtype=np.uint8), x0, y0, mask))
    return out


def scale_image(undo: UndoStack, width: int, height: int,
                upscaled: dict[str, np.ndarray] | None = None, text: str = "Scale image") -> None:
    """Scale the canvas and every layer in it (offsets, masks and the selection too) to
    ``width`` x ``height``, as Krita's Scale Image does: one undo entry."""
    doc = undo.doc
    if width < 1 or height < 1:
        raise ValueError("the image must be at least 1x1 pixels")
    fx, fy = width / doc.width, height / doc.height
    selection = doc.selection
    with undo.macro(text):
        for layer, pixels, x, y, mask in scaled_layers(doc, width, height, upscaled):
            undo.push(ReplaceLayerPixels(layer.id, pixels, x, y, mask, text="Scale layer"))
        undo.push(ResizeCanvas(width, height))
        if selection is not None:
            sx, sy, sw, sh = selection
            rect = (round(sx * fx), round(sy * fy), max(1, round(sw * fx)),
                    max(1, round(sh * fy)))
            undo.push(SetSelection(rect))


# -- generated images ----------------------------------------------------------------------
def land_generation(undo: UndoStack, image: np.ndarray, rect: Rect, record_id: str,
                    name: str, mask: np.ndarray | None = None,
                    canvas_size: tuple[int, int] | None = None,
                    unhide: bool = False,
                    prepared: tuple[np.ndarray, np.ndarray] | None = None) -> Layer:
    """Add a generated image as a layer over ``rect`` (call inside a macro: one undo entry).

    An empty document first takes ``canvas_size``; a region past the canvas's edge
    (outpainting) grows the canvas to hold it, as a result landing straight from a job does.
    ``unhide`` brings its record back to History (a kept grid cell); ``prepared``: see
    ``ApplyGeneration.prepare``."""
    doc = undo.doc
    if canvas_size is not None and not doc.layers and canvas_size != (doc.width, doc.height):
        undo.push(ResizeCanvas(*canvas_size))
    x, y, w, h = rect
    if x < 0 or y < 0 or x + w > doc.width or y + h > doc.height:
        dx, dy = max(0, -x), max(0, -y)
        undo.push(ResizeCanvas(max(doc.width + dx, x + w + dx),
                               max(doc.height + dy, y + h + dy), dx, dy))
        rect = (x + dx, y + dy, w, h)
    if unhide and record_id in doc.log and doc.log.get(record_id).deleted:
        undo.push(SetGenerationDeleted(record_id, False, "Show in History"))
    cmd = ApplyGeneration(image, rect, record_id, name=name, mask=mask, prepared=prepared)
    undo.push(cmd)
    return doc.layer(cmd.layer_id)


def composite_request(doc: Document) -> GenerationRequest | None:
    """The generation settings that describe the flattened canvas, or ``None``.

    Only when what is seen is exactly one generated image (one visible layer, normal, fully
    opaque, covering the canvas at its place, in no group) do its settings describe the
    composite; a stack of layers, a painted or blended one, is no generation's output, and a
    file that claimed so would reproduce something else."""
    shown = [layer for layer in doc.layers if not layer.is_group and doc.shown(layer)
             and layer.opacity > 0 and _shows_pixels(layer, doc.rect)]
    if len(shown) != 1 or doc.has_groups():
        return None
    layer = shown[0]
    if (layer.kind != "generated" or not layer.record_id or layer.record_id not in doc.log
            or layer.opacity < 1.0 or layer.blend != "normal" or layer.mask is not None
            or layer.rect != doc.rect or int(layer.pixels[..., 3].min()) < 255):
        return None
    return _request_of(doc.log, layer.record_id, layer.name)


def _shows_pixels(layer: Layer, rect: Rect) -> bool:
    """Whether the layer has any pixel that is not fully transparent inside ``rect``."""
    part = intersect(rect, layer.rect)
    if part is None:
        return False
    x, y, w, h = part
    return bool(layer.pixels[y - layer.y:y - layer.y + h, x - layer.x:x - layer.x + w, 3].any())


def _request_of(log: GenerationLog, record_id: str, name: str) -> GenerationRequest:
    """The request that made a layer: image ``i`` of a batch has its own seed (its name
    says which: ``"… · seed 9"``)."""
    request = log.get(record_id).request
    if request.batch_size > 1:
        found = re.search(r"\bseed (\d+)", name)
        seed = int(found.group(1)) if found else request.seed
        index = request.seeds.index(seed) if seed in request.seeds else 0
        return request.for_image(index)
    return request
