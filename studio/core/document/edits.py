"""The edits a user makes to a document, as undoable commands.

Each command changes the document, emits the matching document event, and can be saved
with ``to_dict(put)`` (arrays go to a blob store) and rebuilt with
``undo.command_from_dict``. Pixel edits store a diff: the bounding box of the change with
the old and the new pixels of that box only.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import numpy as np

from studio.core.document.layers import Document, GetArray, Layer, PutArray, Rect, union
from studio.core.document.undo import Command, register

LAYER_PROPS = ("name", "visible", "opacity", "x", "y", "kind", "region_prompt", "region_strength",
               "record_id", "blend", "lock_alpha", "parent")

ANCHORS = {
    "top-left": (0.0, 0.0), "top": (0.5, 0.0), "top-right": (1.0, 0.0),
    "left": (0.0, 0.5), "center": (0.5, 0.5), "right": (1.0, 0.5),
    "bottom-left": (0.0, 1.0), "bottom": (0.5, 1.0), "bottom-right": (1.0, 1.0),
}


def _emit_layer_changed(doc: Document, layer: Layer, rect: Rect | None, what: str) -> None:
    doc.emit("layer_changed", layer_id=layer.id, rect=rect, what=what)


def _set_active(doc: Document, layer_id: str | None) -> None:
    if doc.active_layer_id != layer_id:
        doc.active_layer_id = layer_id
        doc.emit("active_layer_changed", layer_id=layer_id)


def frozen(array: np.ndarray) -> np.ndarray:
    """``array`` made read-only: a command's own copy, never changed once recorded (so a
    save may remember its content hash instead of hashing it again)."""
    array.flags.writeable = False
    return array


def _frozen_layer(layer: Layer) -> Layer:
    frozen(layer.pixels)
    if layer.mask is not None:
        frozen(layer.mask)
    return layer


def _drawn_rect(layer: Layer) -> Rect | None:
    """What adding or removing ``layer`` changes on the canvas: its rect (``None``, all of
    it, for a group: its members draw differently in or out of it)."""
    return None if layer.is_group else layer.rect


@register
class AddLayer(Command):
    """Insert a layer (on top by default) and make it active."""

    type_name = "add_layer"

    def __init__(self, layer: Layer, index: int | None = None, text: str = "Add layer") -> None:
        super().__init__(text)
        self.layer: Layer | None = layer
        # Later commands paint into the live layer; saving needs the layer as it was added.
        self.initial = _frozen_layer(layer.copy())
        self.index = index
        self._prev_active: str | None = None

    @property
    def layer_id(self) -> str:
        return self.initial.id

    def do(self, doc: Document) -> None:
        # The first time, the layer is exactly ``initial`` (copied from it just now).
        fresh = self.layer is None or not getattr(self, "_done_once", False)
        layer = self.layer if self.layer is not None else self.initial.copy()
        self.layer = layer
        self._done_once = True
        index = len(doc.layers) if self.index is None else max(0, min(self.index, len(doc.layers)))
        doc.layers.insert(index, layer)
        if fresh:
            doc.mark_clean(layer, self.initial)  # a save shares ``initial`` until it changes
        doc.emit("layer_added", layer_id=layer.id, index=index, rect=_drawn_rect(layer))
        self._prev_active = doc.active_layer_id
        _set_active(doc, layer.id)

    def undo(self, doc: Document) -> None:
        index = doc.index_of(self.layer_id)
        self.layer = doc.layers.pop(index)
        doc.emit("layer_removed", layer_id=self.layer_id, index=index,
                 rect=_drawn_rect(self.layer))
        _set_active(doc, self._prev_active if self._prev_active != self.layer_id else None)

    def nbytes(self) -> int:
        return self.initial.nbytes()

    def state_to_dict(self, put: PutArray) -> dict[str, Any]:
        return {"layer": self.initial.to_dict(put), "index": self.index,
                "prev_active": self._prev_active}

    @classmethod
    def state_from_dict(cls, data: dict[str, Any], get: GetArray) -> AddLayer:
        cmd = cls.__new__(cls)
        Command.__init__(cmd)
        cmd.initial = _frozen_layer(Layer.from_dict(data["layer"], get))
        cmd.layer = None
        cmd.index = data.get("index")
        cmd._prev_active = data.get("prev_active")
        return cmd


@register
class ApplyGeneration(AddLayer):
    """Add a generated image as a new layer over the generation region.

    Parameters
    ----------
    image : np.ndarray
        ``HxWx3`` or ``HxWx4`` uint8; resized to the region when its size differs.
    rect : Rect
        The generation region on the canvas.
    record_id : str
        The ``GenerationRecord`` the image belongs to.
    mask : np.ndarray, optional
        ``HxW`` inpaint mask of the region; the layer is transparent where it is 0.
    """

    type_name = "apply_generation"

    def __init__(self, image: np.ndarray, rect: Rect, record_id: str, name: str = "",
                 mask: np.ndarray | None = None, index: int | None = None,
                 text: str = "Apply generation",
                 prepared: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        x, y, w, h = (int(v) for v in rect)
        pixels = prepared[0] if prepared is not None else generated_pixels(image, w, h, mask)
        layer = Layer(name=name or "Generated", pixels=pixels, x=x, y=y, kind="generated",
                      record_id=record_id)
        if prepared is None:
            super().__init__(layer, index=index, text=text)
            return
        # ``prepare_generation`` made the pixels and the saved copy on a worker thread: a
        # large region costs the GUI thread nothing here.
        Command.__init__(self, text)
        self.layer = layer
        self.initial = _frozen_layer(dataclasses.replace(layer, pixels=prepared[1]))
        self.index = index
        self._prev_active = None

    @staticmethod
    def prepare(image: np.ndarray, rect: Rect,
                mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The layer's pixels and the copy the command keeps, made on any thread (a large
        region: seconds of resizing and copying); pass them as ``prepared``."""
        _x, _y, w, h = (int(v) for v in rect)
        pixels = generated_pixels(image, w, h, mask)
        saved = np.empty_like(pixels)
        for y in range(0, h, _STRIP_ROWS):  # short copies: the GUI thread gets the GIL
            saved[y:y + _STRIP_ROWS] = pixels[y:y + _STRIP_ROWS]
        return pixels, saved

    @property
    def record_id(self) -> str | None:
        return self.initial.record_id


def generated_pixels(image: np.ndarray, width: int, height: int,
                     mask: np.ndarray | None = None) -> np.ndarray:
    """A generated image as the layer ``ApplyGeneration`` makes of it: RGBA at the region's
    size, transparent where the inpaint ``mask`` is 0 (the staging area shows exactly this)."""
    pixels = _fit(np.asarray(image, dtype=np.uint8), width, height)
    if mask is not None:
        alpha = _fit(np.asarray(mask, dtype=np.uint8), width, height)
        pixels[..., 3] = (pixels[..., 3].astype(np.uint16) * alpha // 255).astype(np.uint8)
    return pixels


def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` as RGBA (or L for a 2-D array) of the given size."""
    from PIL import Image

    if image.ndim == 3 and image.shape[2] == 3:
        image = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], 2)
    if image.shape[:2] != (height, width):
        if width * height > _STRIPS_FROM:
            return _fit_in_strips(Image.fromarray(image), width, height)
        settle_vector_state()
        image = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))
    return np.array(image, dtype=np.uint8, copy=True)


#: Larger results are resized a strip of rows at a time: the same resampling, but no single
#: call holds the GIL for long (a worker thread resizing for an 8000x8000 canvas would
#: otherwise stop the window for seconds while Pillow hands over 256 MB at once).
_STRIPS_FROM = 2048 * 2048
_STRIP_ROWS = 256


def _fit_in_strips(source: Any, width: int, height: int) -> np.ndarray:
    """``source`` resized to ``width`` x ``height``, a strip of ``_STRIP_ROWS`` rows at a
    time (the strips, and so the pixels, are the same as ever).

    Each strip is pasted straight into the result's memory (Pillow's paste copies with the
    GIL released) instead of going through ``np.asarray`` (``tobytes``: about 6 ms of
    copying per 8000-px strip with the GIL held, which a busy machine stretches to 15-30 ms
    of a frozen window when it preempts the worker meanwhile). Where the image would not
    share the array's memory, the strips are copied as before."""
    from PIL import Image

    channels = len(source.getbands())
    out = np.empty((height, width, channels) if channels > 1 else (height, width), np.uint8)
    scale = source.height / height
    into = _pillow_view(out)
    # Grown (a result into a larger region: the usual case), Pillow resizes in two passes,
    # rows then columns, through 8-bit rows (RGBA premultiplied). The row pass is made
    # once for the whole image here: its coefficients (``sin`` in libm, computed with the
    # GIL held: 2 ms for 8000 columns) were computed again for every strip, 32 times for an
    # 8000x8000 result. Each strip is then the column pass alone over the same rows: the
    # same pixels. (Shrunk, Pillow may take the columns first: each strip whole, as ever.)
    mode = source.mode
    rows = source
    if width >= source.width and height >= source.height:
        if mode in ("LA", "RGBA"):
            rows = source.convert({"LA": "La", "RGBA": "RGBa"}[mode])
        settle_vector_state()
        rows = rows.resize((width, rows.height), Image.Resampling.LANCZOS)
    for y0 in range(0, height, _STRIP_ROWS):
        y1 = min(height, y0 + _STRIP_ROWS)
        settle_vector_state()
        strip = rows.resize((width, y1 - y0), Image.Resampling.LANCZOS,
                            box=(0, y0 * scale, rows.width, y1 * scale))
        if strip.mode != mode:
            strip = strip.convert(mode)
        if into is not None and strip.mode == into.mode:
            into.im.paste(strip.im, (0, y0, width, y1))
        else:
            out[y0:y1] = np.asarray(strip)
    return out


_SETTLE = np.zeros(4096, np.float32)


def settle_vector_state() -> None:
    """Reset this thread's vector registers to their clean state (one short numpy SIMD
    loop: its AVX code ends with ``vzeroupper``); about a microsecond.

    A new thread starts with a copy of the vector-register state of the thread that
    started it, and the GUI thread's is often "dirty" (the upper halves of the AVX
    registers left in use by code it ran). Plain SSE code then runs many times slower
    until something clears them: measured here, Pillow's LANCZOS coefficients (``sin`` in
    libm, computed with the GIL held) took 23 ms a strip instead of 2 ms in a worker
    started from the GUI thread, which froze the window for 20-30 ms with every strip of
    an 8000-px result (and took 22 ms instead of 2 ms on the GUI thread itself between
    some of its events). Call it before such code on a worker thread."""
    np.add(_SETTLE, 0.0, out=_SETTLE)


def _pillow_view(array: np.ndarray) -> Any:
    """A Pillow image sharing ``array``'s memory (``Image.fromarray`` maps a contiguous
    L or RGBA array), or None where it would be a copy."""
    from PIL import Image

    try:
        view = Image.fromarray(array)
        first = (0,) * (array.ndim - 1)
        for mark in (1, 2):  # what is written to the array shows in the image: shared
            array[first] = mark
            seen = view.getpixel((0, 0))
            if (seen[0] if isinstance(seen, tuple) else seen) != mark:
                return None
    except (TypeError, ValueError, AttributeError):
        return None
    return view


@register
class RemoveLayer(Command):
    """Remove a layer; undo puts it back where it was."""

    type_name = "remove_layer"

    def __init__(self, layer_id: str, text: str = "Remove layer") -> None:
        super().__init__(text)
        self.layer_id = layer_id
        self.layer: Layer | None = None
        self.index = 0
        self._was_active = False

    def do(self, doc: Document) -> None:
        self.index = doc.index_of(self.layer_id)
        self.layer = doc.layers.pop(self.index)
        self._was_active = doc.active_layer_id == self.layer_id
        doc.emit("layer_removed", layer_id=self.layer_id, index=self.index,
                 rect=_drawn_rect(self.layer))
        if self._was_active:
            below = doc.layers[max(0, self.index - 1)].id if doc.layers else None
            _set_active(doc, below)

    def undo(self, doc: Document) -> None:
        assert self.layer is not None
        doc.layers.insert(self.index, self.layer)
        doc.emit("layer_added", layer_id=self.layer_id, index=self.index,
                 rect=_drawn_rect(self.layer))
        if self._was_active:
            _set_active(doc, self.layer_id)

    def nbytes(self) -> int:
        return self.layer.nbytes() if self.layer is not None else 0

    def state_to_dict(self, put: PutArray) -> dict[str, Any]:
        if self.layer is None:
            raise ValueError("RemoveLayer must run before it is saved")
        return {"layer_id": self.layer_id, "index": self.index,
                "was_active": self._was_active, "layer": self.layer.to_dict(put)}

    @classmethod
    def state_from_dict(cls, data: dict[str, Any], get: GetArray) -> RemoveLayer:
        cmd = cls(data["layer_id"])
        cmd.index = int(data["index"])
        cmd._was_active = bool(data.get("was_active"))
        cmd.layer = Layer.from_dict(data["layer"], get)
        return cmd


@register
class MoveLayer(Command):
    """Move a layer to another position in the stack (0 = bottom)."""

    type_name = "move_layer"

    def __init__(self, layer_id: str, to_index: int, text: str = "Move layer") -> None:
        super().__init__(text)
        self.layer_id = layer_id
        self.to_index = to_index
        self.from_index = 0

    def _move(self, doc: Document, to: int) -> None:
        layer = doc.layers.pop(doc.index_of(self.layer_id))
        doc.layers.insert(max(0, min(to, len(doc.layers))), layer)
        doc.emit("layers_reordered", order=[lay.id for lay in doc.layers])

    def do(self, doc: Document) -> None:
        self.from_index = doc.index_of(self.layer_id)
        self._move(doc, self.to_index)

    def undo(self, doc: Document) -> None:
        self._move(doc, self.from_index)

    def state_to_dict(self, put: PutArray) -> dict[str, Any]:
        return {"layer_id": self.layer_id, "to": self.to_index, "from": self.from_index}

    @classmethod
    def state_from_dict(cls, data: dict[str, Any], get: GetArray) -> MoveLayer:
        cmd = cls(data["layer_id"], int(data["to"]))
        cmd.from_index = int(data["from"])
        return cmd


@register
class SetLayerProps(Command):
    """Change a layer's name, visibility, opacity or offset (mergeable with ``merge_id``)."""

    type_name = "set_layer_props"

    def __init__(self, layer_id: str, text: str = "Layer properties",
                 merge_id: str | None = None, **props: Any) -> None:
        super().__init__(text, merge_id)
        unknown = set(props) - set(LAYER_PROPS)
        if unknown:
            raise ValueError(f"unknown layer properties: {', '.join(sorted(unknown))}")
        self.layer_id = layer_id
        self.new: dict[str, Any] = props
        self.old: dict[str, Any] = {}

    def _apply(self, doc: Document, values: dict[str, Any]) -> None:
        layer = doc.layer(self.layer_id)
        before = layer.rect
        for key, value in values.items():
            setattr(layer, key, value)
        visual = {"visible", "opacity", "x", "y", "blend"} & set(values)
        rect = union(before, layer.rect) if visual else None
        if layer.kind == "group" and visual:
            rect = doc.rect  # what a group draws is its members, anywhere on the canvas
        _emit_layer_changed(doc, layer, rect, "props")
        if "parent" in values:  # in or out of a group: the tree (and what it draws) changed
            doc.emit("layers_reordered", order=[lay.id for lay in doc.layers])

    def do(self, doc: Document) -> None:
        layer = doc.layer(self.layer_id)
        if "blend" in self.new:
            from studio.core.document.blend import checked

            checked(self.new["blend"])
        self.old = {k: getattr(layer, k) for k in self.new}
        self._apply(doc, self.new)

    def undo(self, doc: Document) -> None:
        self._apply(doc, self.old)

    def merge_with(self, other: Command) -> bool:
        if not isinstance(other, SetLayerProps) or other.layer_id != self.layer_id:
            return False
        if set(other.new) - set(self.new):
            return False
        self.new.update(other.new)
        return True

    def state_to_dict(self, put: PutArray) -> dict[str, Any]:
        return {"layer_id": self.layer_id, "new": self.new, "old": self.old}

    @classmethod
    def state_from_dict(cls, data: dict[str, Any], get: GetArray) -> SetLayerProps:
        cmd = cls(data["layer_id"], **data["new"])
        cmd.old = dict(data.get("old", {}))
        return cmd


@register
class PaintPixels(Command):
    """A stroke's result as a diff: the changed box with its old and new pixels.

    Parameters
    ----------
    layer_id : str
        The layer painted on.
    x, y : int
        Top-left of the box, in the layer's own pixel coordinates.
    old, new : np.ndarray
        The box before and after (``hxwx4`` for pixels, ``hxw`` for the mask).
    target : str
        ``"pixels"`` or ``"mask"``.
    """

    type_name = "paint_pixels"

    def __init__(self, layer_id: str, x: int, y: int, old: np.ndarray, new: np.ndarray,
                 target: str = "pixels", text: str = "Paint") -> None:
        super().__init__(text)
        if target not in ("pixels", "mask"):
            raise ValueError("target must be 'pixels' or 'mask'")
        if old.shape != new.shape:
            raise ValueError("old and new pixels must have the same shape")
        self.layer_id = layer_id
        self.x, self.y = int(x), int(y)
        self.old = frozen(np.array(old, dtype=np.uint8, copy=True))
        self.new = frozen(np.array(new, dtype=np.uint8, copy=True))
        self.target = target
        self._created_mask = False

    @classmethod
    def from_change(cls, layer_id: str, before: np.ndarray, after: np.ndarray,
                    target: str = "pixels", text: str = "Paint") -> PaintPixels | None:
        """The diff between two full-size arrays of a layer, or ``None`` if they are equal."""
        changed = before != after
        if changed.ndim == 3:
            changed = changed.any(axis=2)
        rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
        if rows.size == 0:
            return None
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        return cls(layer_id, x0, y0, before[y0:y1, x0:x1], after[y0:y1, x0:x1], target, text)

    @classmethod
    def from_patch(cls, doc: Document, layer_id: str, x: int, y: int, patch: np.ndarray,
                   target: str = "pixels", text: str = "Paint") -> PaintPixels:
        """Write ``patch`` at ``(x, y)`` of the layer (layer coordinates, clipped to it)."""
        layer = doc.layer(layer_id)
        current = layer.pixels if target == "pixels" else (
            layer.mask if layer.mask is not None else np.zeros(layer.pixels.shape[:2], np.uint8))
        h, w = current.shape[:2]
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + patch.shape[1], w), min(y + patch.shape[0], h)
        if x1 <= x0 or y1 <= y0:
            raise ValueError("the patch lies outside the layer")
        new = patch[y0 - y:y1 - y, x0 - x:x1 - x]
        return cls(layer_id, x0, y0, current[y0:y1, x0:x1], new, target, text)

    @property
    def rect(self) -> Rect:
        """The box in layer coordinates."""
        return (self.x, self.y, int(self.new.shape[1]), int(self.new.shape[0]))

    def _target(self, layer: Layer) -> np.ndarray:
        if self.target == "pixels":
            return layer.pixels
        if layer.mask is None:
            layer.mask = np.zeros(layer.pixels.shape[:2], dtype=np.uint8)
            self._created_mask = True
        return layer.mask

    def _write(self, doc: Document, values: np.ndarray) -> Layer:
        layer = doc.layer(self.layer_id)
        h, w = values.shape[:2]
        self._target(layer)[self.y:self.y + h, self.x:self.x + w] = values
        return layer

    def do(self, doc: Document) -> None:
        self._created_mask = False
        layer = self._write(doc, self.new)
        _emit_layer_changed(doc, layer, self._canvas_rect(layer), self.target)

    def undo(self, doc: Document) -> None:
        layer = self._write(doc, self.old)
        if self._created_mask:
            layer.mask = None
        _emit_layer_changed(doc, layer, self._canvas_rect(layer), self.target)

    def _canvas_rect(self, layer: Layer) -> Rect:
        x, y, w, h = self.rect
        return (layer.x + x, layer.y + y, w, h)

    def nbytes(self) -> int:
        return int(self.old.nbytes + self.new.nbytes)

    def state_to_dict(self, put: PutArray) -> dict[str, Any]:
        return {"layer_id": self.layer_id, "x": self.x, "y": self.y, "target": self.target,
                "old": put(self.old), "new": put(self.new), "created_mask": self._created_mask}

    @classmethod
    def state_from_dict(cls, data: dict[str, Any], get: GetArray) -> PaintPixels:
        cmd = cls(data["layer_id"], data["x"], data["y"], get(data["old"]), get(data["new"]),
                  data.get("target", "pixels"))
        cmd._created_mask = bool(data.get("created_mask"))
        return cmd


@register
class ReplaceLayerPixels(Command):
    """Give a layer new pixels (any size), offset and mask: merge down, Scale Image, Cut.

    Undo puts back the old ones; both are kept, so the command is exact after a reopen.
    """

    type_name = "replace_layer_pixels"

    def __init__(self, layer_id: str, pixels: np.ndarray, x: int, y: int,
                 mask: np.ndarray | None = None, text: str = "Change layer") -> None:
        super().__init__(text)
        self.layer_id = layer_id
        self.new = (frozen(np.array(pixels, dtype=np.uint8, copy=True)), int(x), int(y),
                    None if mask is None else frozen(np.array(mask, dtype=np.uint8, copy=True)))
        if self.new[3] is not None and self.new[3].shape != self.new[0].shape[:2]:
            raise ValueError("the mask must have the pixels' height and width")
        self.old: tuple[np.ndarray, int, int, np.ndarray | None] | None = None

    def _set(self, doc: Document, state: tuple[np.ndarray, int, int, np.ndarray | None]
             ) -> None:
        layer = doc.layer(self.layer_id)
        before = layer.rect
        pixels, x, y, mask = state
        layer.pixels = pixels.copy()
        layer.x, layer.y = x, y
        layer.mask = None if mask is None else mask.copy()
        _emit_layer_changed(doc, layer, union(before, layer.rect), "pixels")

    def do(self, doc: Document) -> None:
        layer = doc.layer(self.layer_id)
        if self.old is None:
            self.old = (frozen(layer.pixels.copy()), layer.x, layer.y,
                        None if layer.mask is None else frozen(layer.mask.copy()))
        self._set(doc, self.new)

    def undo(self, doc: Document) -> None:
        assert self.old is not None
        self._set(doc, self.old)

    def nbytes(self) -> int:
        arrays = [*self.new[::3], *(self.old[::3] if self.old else ())]
        return sum(int(a.nbytes) for a in arrays if a is not None)

    def state_to_dict(self, put: PutArray) -> dict[str, Any]:
        if self.old is None:
            raise ValueError("ReplaceLayerPixels must run before it is saved")

        def side(state: tuple[np.ndarray, int, int, np.ndarray | None]) -> dict[str, Any]:
            pixels, x, y, mask = state
            return {"pixels": put(pixels), "x": x, "y": y,
                    "mask": put(mask) if mask is not None else None}

        return {"layer_id": self.layer_id, "new": side(self.new), "old": side(self.old)}

    @classmethod
    def state_from_dict(cls, data: dict[str, Any], get: GetArray) -> ReplaceLayerPixels:
        def side(d: dict[str, Any]) -> tuple[np.ndarray, int, int, np.ndarray | None]:
            return (frozen(np.array(get(d["pixels"]), dtype=np.uint8)), int(d["x"]), int(d["y"]),
                    frozen(np.array(get(d["mask"]), dtype=np.uint8)) if d.get("mask") else None)

        new = side(data["new"])
        cmd = cls(data["layer_id"], new[0], new[1], new[2], new[3])
        cmd.old = side(data["old"])
        return cmd


_Resize = TypeVar("_Resize", bound="ResizeCanvas")


@register
class ResizeCanvas(Command):
    """Grow or shrink the canvas; content moves by ``(dx, dy)`` (how outpainting starts).

    Layers keep all their pixels (the part outside the canvas is hidden, not lost), so undo
    is exact and cheap.
    """

    type_name = "resize_canvas"

    def __init__(self, width: int, height: int, dx: int = 0, dy: int = 0,
                 text: str = "Resize canvas") -> None:
        super().__init__(text)
        if width < 1 or height < 1:
            raise ValueError("the canvas must be at least 1x1 pixels")
        self.width, self.height, self.dx, self.dy = int(width), int(height), int(dx), int(dy)
        self.old_size = (0, 0)
        self.old_selection: Rect | None = None

    @classmethod
    def anchored(cls, doc: Document, width: int, height: int,
                 anchor: str = "center") -> ResizeCanvas:
        """Resize keeping the content at ``anchor`` (``"top-left"``, ``"center"``, ...)."""
        fx, fy = ANCHORS[anchor]
        return cls(width, height, round((width - doc.width) * fx),
                   round((height - doc.height) * fy))

    def do(self, doc: Document) -> None:
        self.old_size = (doc.width, doc.height)
        self.old_selection = doc.selection
        self._shift(doc, self.dx, self.dy, (self.width, self.height))
        if doc.selection is not None:
            x, y, w, h = doc.selection
            x0, y0 = max(0, x + self.dx), max(0, y + self.dy)
            x1, y1 = min(self.width, x + self.dx + w), min(self.height, y + self.dy + h)
            new_sel = (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None
            self._select(doc, new_sel)

    def undo(self, doc: Document) -> None:
        self._shift(doc, -self.dx, -self.dy, self.old_size)
        self._select(doc, self.old_selection)

    def _shift(self, doc: Document, dx: int, dy: int, size: tuple[int, int]) -> None:
        for layer in doc.layers:
            layer.x += dx
            layer.y += dy
        doc.width, doc.height = size
        doc.emit("canvas_resized", width=doc.width, height=doc.height, dx=dx, dy=dy)

    @staticmethod
    def _select(doc: Document, rect: Rect | None) -> None:
        if rect != doc.selection:
            doc.selection = rect
            doc.emit("selection_changed", selection=rect)

    def state_to_dict(self, put: PutArray) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "dx": self.dx, "dy": self.dy,
                "old_size": list(self.old_size),
                "old_selection": list(self.old_selection) if self.old_selection else None}

    @classmethod
    def state_from_dict(cls, data: dict[str, Any], get: GetArray) -> ResizeCanvas:
        return cls(data["width"], data["height"], data["dx"], data["dy"])._with_old_state(data)

    def _with_old_state(self: _Resize, data: dict[str, Any]) -> _Resize:
        """This command with the canvas size and selection it replaced (for undo)."""
        w, h = data["old_size"]
        self.old_size = (int(w), int(h))
        sel = data.get("old_selection")
        self.old_selection = tuple(int(v) for v in sel) if sel else None  # type: ignore[assignment]
        return self


@register
class Crop(ResizeCanvas):
    """Crop the canvas to ``rect``; hidden layer pixels are kept, so undo is exact."""

    type_name = "crop"

    def __init__(self, rect: Rect, text: str = "Crop") -> None:
        x, y, w, h = (int(v) for v in rect)
        super().__init__(w, h, -x, -y, text=text)

    @classmethod
    def state_from_dict(cls, data: dict[str, Any], get: GetArray) -> Crop:
        return cls((-data["dx"], -data["dy"], data["width"], data["height"]))._with_old_state(data)


@register
class SetSelection(Command):
    """Set the generation region (``None`` = the whole canvas)."""

    type_name = "set_selection"

    def __init__(self, rect: Rect | None, text: str = "Select") -> None:
        super().__init__(text)
        self.rect: Rect | None = tuple(int(v) for v in rect) if rect else None  # type: ignore
        self.old: Rect | None = None

    def do(self, doc: Document) -> None:
        self.old = doc.selection
        ResizeCanvas._select(doc, self.rect)

    def undo(self, doc: Document) -> None:
        ResizeCanvas._select(doc, self.old)

    def state_to_dict(self, put: PutArray) -> dict[str, Any]:
        return {"rect": list(self.rect) if self.rect else None,
                "old": list(self.old) if self.old else None}

    @classmethod
    def state_from_dict(cls, data: dict[str, Any], get: GetArray) -> SetSelection:
        cmd = cls(data.get("rect"))  # type: ignore[arg-type]
        old = data.get("old")
        cmd.old = tuple(int(v) for v in old) if old else None  # type: ignore[assignment]
        return cmd


@register
class SetSliderValue(Command):
    """Set a latent slider; consecutive values with the same ``merge_id`` merge (a drag).

    The default ``merge_id`` is per slider; give each drag its own id to keep two drags of
    one slider as two undo entries.
    """

    type_name = "set_slider_value"

    def __init__(self, slider_id: str, value: float, merge_id: str | None = "",
                 text: str = "") -> None:
        super().__init__(text or f"Slider {slider_id}",
                         f"slider:{slider_id}" if merge_id == "" else merge_id)
        self.slider_id = slider_id
        self.value = float(value)
        self.old: float | None = None

    def do(self, doc: Document) -> None:
        self.old = doc.sliders.get(self.slider_id)
        self._set(doc, self.value)

    def undo(self, doc: Document) -> None:
        self._set(doc, self.old)

    def _set(self, doc: Document, value: float | None) -> None:
        if value is None:
            doc.sliders.pop(self.slider_id, None)
        else:
            doc.sliders[self.slider_id] = value
        doc.emit("slider_changed", slider_id=self.slider_id, value=value)

    def merge_with(self, other: Command) -> bool:
        if not isinstance(other, SetSliderValue) or other.slider_id != self.slider_id:
            return False
        self.value = other.value
        return True

    def state_to_dict(self, put: PutArray) -> dict[str, Any]:
        return {"slider_id": self.slider_id, "value": self.value, "old": self.old}

    @classmethod
    def state_from_dict(cls, data: dict[str, Any], get: GetArray) -> SetSliderValue:
        cmd = cls(data["slider_id"], data["value"])
        cmd.old = data.get("old")
        return cmd


@register
class SetPrompt(Command):
    """Change the prompt and/or negative prompt (typing merges with ``merge_id``)."""

    type_name = "set_prompt"

    def __init__(self, prompt: str | None = None, negative_prompt: str | None = None,
                 merge_id: str | None = "prompt", text: str = "Edit prompt") -> None:
        super().__init__(text, merge_id)
        self.new = {"prompt": prompt, "negative_prompt": negative_prompt}
        self.old: dict[str, str] = {}

    def do(self, doc: Document) -> None:
        self.old = {"prompt": doc.prompt, "negative_prompt": doc.negative_prompt}
        self._set(doc, self.new)

    def undo(self, doc: Document) -> None:
        self._set(doc, self.old)

    @staticmethod
    def _set(doc: Document, values: dict[str, Any]) -> None:
        if values.get("prompt") is not None:
            doc.prompt = values["prompt"]
        if values.get("negative_prompt") is not None:
            doc.negative_prompt = values["negative_prompt"]
        doc.emit("prompt_changed", prompt=doc.prompt, negative_prompt=doc.negative_prompt)

    def merge_with(self, other: Command) -> bool:
        if not isinstance(other, SetPrompt):
            return False
        for key, value in other.new.items():
            if value is not None:
                self.new[key] = value
        return True

    def state_to_dict(self, put: PutArray) -> dict[str, Any]:
        return {"new": self.new, "old": self.old}

    @classmethod
    def state_from_dict(cls, data: dict[str, Any], get: GetArray) -> SetPrompt:
        cmd = cls(**data["new"])
        cmd.old = dict(data.get("old", {}))
        return cmd


@register
class SetGenerationDeleted(Command):
    """Delete a generation from the gallery (or bring it back); its images are kept."""

    type_name = "set_generation_deleted"

    def __init__(self, record_id: str, deleted: bool = True, text: str = "") -> None:
        super().__init__(text or ("Delete from gallery" if deleted else "Restore to gallery"))
        self.record_id = record_id
        self.deleted = deleted
        self.old = False

    def do(self, doc: Document) -> None:
        self.old = doc.log.get(self.record_id).deleted
        doc.log.set_deleted(self.record_id, self.deleted)

    def undo(self, doc: Document) -> None:
        doc.log.set_deleted(self.record_id, self.old)

    def state_to_dict(self, put: PutArray) -> dict[str, Any]:
        return {"record_id": self.record_id, "deleted": self.deleted, "old": self.old}

    @classmethod
    def state_from_dict(cls, data: dict[str, Any], get: GetArray) -> SetGenerationDeleted:
        cmd = cls(data["record_id"], bool(data["deleted"]))
        cmd.old = bool(data.get("old"))
        return cmd
