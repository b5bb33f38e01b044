"""The image document: a canvas of RGBA layers, a selection, prompts and slider values.

The document is a plain model observed by views: every change emits an event through
``Document.add_listener`` so the canvas redraws from the model, never the other way round.
Edits go through commands on an ``UndoStack`` (see ``studio.core.document.edits``); the private
``_``-prefixed mutators below are what those commands call.

Events (``fn(event_name, payload)``; rects in canvas pixels):

=========================  ============================================================
``layer_added``            ``layer_id``, ``index``
``layer_removed``          ``layer_id``, ``index`` (where it was)
``layer_changed``          ``layer_id``, ``rect`` to redraw (``None``: nothing visible
                           changed, e.g. a rename), ``what``: ``"pixels"``, ``"mask"``
                           or ``"props"``
``layers_reordered``       ``order``: layer ids bottom to top
``canvas_resized``         ``width``, ``height``, ``dx``, ``dy`` (how far content moved)
``selection_changed``      ``selection``: rect or ``None``
``active_layer_changed``   ``layer_id``
``slider_changed``         ``slider_id``, ``value`` (``None`` when removed)
``prompt_changed``         ``prompt``, ``negative_prompt``
=========================  ============================================================

Coordinates: a layer's pixels are placed with their top-left corner at ``(layer.x,
layer.y)`` on the canvas; a layer may extend past the canvas (its hidden part is kept, so
resizing the canvas back shows it again). Rects are ``(x, y, w, h)`` in canvas pixels.
"""

from __future__ import annotations

import copy
import logging
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from studio.core.jobs.request import Region
    from studio.core.project.generation_log import GenerationLog

Rect = tuple[int, int, int, int]
"""``(x, y, width, height)`` in canvas pixels."""

Listener = Callable[[str, dict[str, Any]], None]
"""Called as ``fn(event_name, payload)`` after the document changed."""

PutArray = Callable[[np.ndarray], str]
"""Stores an array (in a project's blob table, or in memory) and returns its key."""

GetArray = Callable[[str], np.ndarray]
"""Returns the array stored under a key given by a ``PutArray``."""

LAYER_KINDS = ("image", "generated", "paint", "group")

_log = logging.getLogger(__name__)


def new_id() -> str:
    """A fresh layer or record id (uuid4 hex)."""
    return uuid.uuid4().hex


def intersect(a: Rect, b: Rect) -> Rect | None:
    """The overlap of two rects, or ``None`` when they do not overlap."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def union(a: Rect | None, b: Rect | None) -> Rect | None:
    """The smallest rect holding both (``None`` stands for the empty rect)."""
    if a is None or a[2] <= 0 or a[3] <= 0:
        return b
    if b is None or b[2] <= 0 or b[3] <= 0:
        return a
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return (x0, y0, x1 - x0, y1 - y0)


def _new_log() -> GenerationLog:
    from studio.core.project.generation_log import GenerationLog  # history builds on this module

    return GenerationLog()


#: ``Layer.has_pixels`` remembers that a layer of at least this many pixels is empty.
EMPTY_KEPT_PIXELS = 2048 * 2048


def _blank(height: int, width: int) -> np.ndarray:
    return np.zeros((height, width, 4), dtype=np.uint8)


def any_set(array: np.ndarray) -> bool:
    """Whether any value of ``array`` (a layer's alpha, a mask) is non-zero: a sparse look
    first, then bands of rows with an early stop, so that asking it of an opaque
    8000x8000 layer costs microseconds instead of a scan of every pixel."""
    if array.size == 0:
        return False
    if array.ndim >= 2 and (array[::509, ::509].any() or array[::61, ::61].any()):
        return True
    band = 256
    return any(bool(array[y:y + band].any()) for y in range(0, array.shape[0], band))


def first_set(array: np.ndarray) -> tuple[int, int] | None:
    """Where ``array`` (``HxW``) has a non-zero value, or None when it has none: the same
    sparse look and banded scan as ``any_set``, keeping the position found."""
    if array.size == 0:
        return None
    for grid in (509, 61):  # a coarse look first: an opaque layer answers in microseconds
        hits = np.flatnonzero(array[::grid, ::grid])
        if hits.size:
            row, col = divmod(int(hits[0]), -(-array.shape[1] // grid))
            return row * grid, col * grid
    band = 256
    for y in range(0, array.shape[0], band):
        part = array[y:y + band]
        if part.any():
            row, col = divmod(int(np.argmax(part != 0)), array.shape[1])
            return y + row, col
    return None


def _known_mode(mode: Any) -> str:
    """A saved blend mode, or Normal for one this version does not know (a newer file)."""
    from studio.core.document.blend import MODES, NORMAL

    return mode if isinstance(mode, str) and mode in MODES else NORMAL


@dataclass(eq=False)
class Layer:
    """One RGBA layer. Mutable; change it through commands so that undo sees the change.

    Attributes
    ----------
    id : str
        Stable uuid hex; commands refer to layers by id.
    pixels : np.ndarray
        ``HxWx4`` uint8 RGBA, straight (not premultiplied) alpha.
    x, y : int
        Offset of the top-left pixel on the canvas.
    mask : np.ndarray or None
        ``HxW`` uint8 inpaint mask of the same size as ``pixels`` (255 = inpaint here).
    kind : str
        ``"image"``, ``"generated"`` or ``"paint"``.
    record_id : str or None
        The generation record this layer came from (for ``"generated"`` layers).
    region_prompt, region_strength : str, float
        A regional prompt: where the layer's mask is painted (or, without a mask, where
        its alpha is), ``region_prompt`` applies with ``region_strength`` (0 to 1). An
        empty prompt: the layer is no region (see ``Document.regions``).
    blend : str
        Blend mode (``studio.core.document.blend.MODES``: ``"normal"``, ``"multiply"``...).
    lock_alpha : bool
        Painting changes colour only where the layer already has pixels, never its alpha.
    parent : str or None
        The id of the group the layer is in (``None``: the top level). A group is a layer
        of kind ``"group"`` without pixels of its own: its members are drawn on their own,
        then onto what is below as one layer, with the group's opacity, visibility and
        blend mode (as Krita and Photoshop draw a group).
    """

    id: str = field(default_factory=new_id)
    name: str = "Layer"
    pixels: np.ndarray = field(default_factory=lambda: _blank(1, 1), repr=False)
    x: int = 0
    y: int = 0
    visible: bool = True
    opacity: float = 1.0
    mask: np.ndarray | None = field(default=None, repr=False)
    kind: str = "image"
    record_id: str | None = None
    region_prompt: str = ""
    region_strength: float = 1.0
    blend: str = "normal"
    lock_alpha: bool = False
    parent: str | None = None

    @property
    def is_group(self) -> bool:
        return self.kind == "group"

    def __post_init__(self) -> None:
        from studio.core.document.blend import checked

        checked(self.blend)
        px = np.asarray(self.pixels)
        if px.dtype != np.uint8:
            raise ValueError("layer pixels must be uint8")
        if px.ndim == 3 and px.shape[2] == 3:
            alpha = np.full(px.shape[:2] + (1,), 255, dtype=np.uint8)
            px = np.concatenate([px, alpha], axis=2)
        if px.ndim != 3 or px.shape[2] != 4:
            raise ValueError(f"layer pixels must be HxWx4 RGBA, got shape {px.shape}")
        self.pixels = np.ascontiguousarray(px)
        if self.mask is not None:
            mask = np.ascontiguousarray(self.mask, dtype=np.uint8)
            if mask.shape != px.shape[:2]:
                raise ValueError("layer mask must have the layer's height and width")
            self.mask = mask

    @classmethod
    def blank(cls, width: int, height: int, name: str = "Layer", **kwargs: Any) -> Layer:
        """A transparent layer of the given size."""
        return cls(name=name, pixels=_blank(height, width), **kwargs)

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def rect(self) -> Rect:
        """Where the layer lies on the canvas."""
        return (self.x, self.y, self.width, self.height)

    def copy(self) -> Layer:
        """A deep copy (own pixel and mask arrays) with the same id."""
        return copy.deepcopy(self)

    def nbytes(self) -> int:
        return int(self.pixels.nbytes + (self.mask.nbytes if self.mask is not None else 0))

    def has_pixels(self) -> bool:
        """Whether any pixel is not fully transparent (quick on a large layer). The pixel
        found last time is looked at first (asked at every document change, of a layer
        painted only in a small part of a large canvas: one pixel read instead of a scan);
        a scan finds another when it is transparent now. A large layer found empty is
        remembered as empty (a scan of an empty 8000x8000 layer: 40 ms on the GUI thread)
        until its pixels are replaced or changed through the document (``layer_changed``)
        or ``touch`` says they were changed in place."""
        alpha = self.pixels[..., 3]
        seen = self.__dict__.get("_painted_at")
        if seen is not None and seen[0] < alpha.shape[0] and seen[1] < alpha.shape[1] \
                and alpha[seen]:
            return True
        empty = self.__dict__.get("_empty")
        if empty is not None and empty() is self.pixels:
            return False
        found = first_set(alpha)
        self.__dict__["_painted_at"] = found
        if found is None and alpha.size >= EMPTY_KEPT_PIXELS:
            self.__dict__["_empty"] = weakref.ref(self.pixels)
        return found is not None

    def touch(self) -> None:
        """Say that the pixels were changed in place (commands do it through
        ``Document.emit``): ``has_pixels`` looks again."""
        self.__dict__.pop("_empty", None)

    def has_mask(self) -> bool:
        """Whether an inpaint mask is painted on the layer (quick on a large layer)."""
        return self.mask is not None and any_set(self.mask)

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self, put: PutArray) -> dict[str, Any]:
        """A JSON-ready dict; pixel and mask arrays are stored with ``put``."""
        return {
            "id": self.id, "name": self.name, "x": self.x, "y": self.y,
            "visible": self.visible, "opacity": self.opacity, "kind": self.kind,
            "record_id": self.record_id, "pixels": put(self.pixels),
            "mask": put(self.mask) if self.mask is not None else None,
            "region_prompt": self.region_prompt, "region_strength": self.region_strength,
            "blend": self.blend, "lock_alpha": self.lock_alpha, "parent": self.parent,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], get: GetArray) -> Layer:
        mask = data.get("mask")
        return cls(
            id=data["id"], name=data.get("name", "Layer"),
            pixels=np.array(get(data["pixels"]), dtype=np.uint8),
            x=int(data.get("x", 0)), y=int(data.get("y", 0)),
            visible=bool(data.get("visible", True)), opacity=float(data.get("opacity", 1.0)),
            mask=np.array(get(mask), dtype=np.uint8) if mask else None,
            kind=data.get("kind", "image"), record_id=data.get("record_id"),
            region_prompt=str(data.get("region_prompt") or ""),
            region_strength=min(1.0, max(0.0, float(data.get("region_strength", 1.0)))),
            blend=_known_mode(data.get("blend")), lock_alpha=bool(data.get("lock_alpha")),
            parent=str(data["parent"]) if data.get("parent") else None,
        )

    def region_mask(self) -> np.ndarray:
        """Where this layer's region lies, ``HxW`` uint8 in its own pixels: its mask when
        one is painted, else its alpha."""
        if self.has_mask():
            return self.mask
        return self.pixels[..., 3]


@dataclass(eq=False)
class Document:
    """A canvas of layers (bottom to top) with a generation region and prompt settings.

    Attributes
    ----------
    width, height : int
        Canvas size in pixels.
    layers : list of Layer
        Bottom to top.
    active_layer_id : str or None
        The layer that painting tools act on.
    selection : Rect or None
        The generation region ``(x, y, w, h)``; ``None`` means the whole canvas.
    prompt, negative_prompt : str
        The prompt text of the next generation.
    sliders : dict
        Latent slider values by slider id.
    slider_specs : dict
        Sliders whose id does not describe them (built from marked examples): their
        ``SliderSpec.to_dict()`` by id, saved with the project so they come back on reopen.
    log : GenerationLog
        Every generation made in the project (saved apart from the layers).
    """

    width: int = 512
    height: int = 512
    layers: list[Layer] = field(default_factory=list)
    active_layer_id: str | None = None
    selection: Rect | None = None
    prompt: str = ""
    negative_prompt: str = ""
    sliders: dict[str, float] = field(default_factory=dict)
    slider_specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: GenerationLog = field(default_factory=_new_log, repr=False)
    _listeners: list[Listener] = field(default_factory=list, init=False, repr=False)
    #: Layers whose pixels (and mask) are known to equal a read-only copy that an undo
    #: command keeps: layer id -> (the live arrays, the copies), all held weakly. A save's
    #: snapshot shares those copies instead of copying the layer again (an 8000x8000 layer
    #: is a 256 MB copy on the GUI thread). Forgotten at the layer's next pixel change.
    _clean: dict[str, tuple[Any, ...]] = field(default_factory=dict, init=False, repr=False)

    # -- queries -------------------------------------------------------------------------
    def layer(self, layer_id: str) -> Layer:
        """The layer with this id; ``KeyError`` when there is none."""
        for layer in self.layers:
            if layer.id == layer_id:
                return layer
        raise KeyError(f"no layer with id {layer_id!r}")

    def index_of(self, layer_id: str) -> int:
        """Position of a layer, 0 being the bottom; ``KeyError`` when there is none."""
        for i, layer in enumerate(self.layers):
            if layer.id == layer_id:
                return i
        raise KeyError(f"no layer with id {layer_id!r}")

    def has_layer(self, layer_id: str) -> bool:
        return any(layer.id == layer_id for layer in self.layers)

    @property
    def active_layer(self) -> Layer | None:
        """The active layer, or ``None`` when the document has no layers."""
        if self.active_layer_id is not None:
            for layer in self.layers:
                if layer.id == self.active_layer_id:
                    return layer
        return self.layers[-1] if self.layers else None

    @property
    def rect(self) -> Rect:
        return (0, 0, self.width, self.height)

    @property
    def generation_rect(self) -> Rect:
        """The selection, or the whole canvas when nothing is selected."""
        return self.selection if self.selection is not None else self.rect

    # -- groups ----------------------------------------------------------------------------
    def has_groups(self) -> bool:
        return any(layer.kind == "group" for layer in self.layers)

    def parent_of(self, layer: Layer) -> str | None:
        """The group ``layer`` is in; ``None`` for the top level (or a group that is gone)."""
        if layer.parent is None:
            return None
        for other in self.layers:
            if other.id == layer.parent and other.kind == "group":
                return other.id
        return None

    def children(self, parent: str | None) -> list[Layer]:
        """The layers directly in group ``parent`` (``None``: the top level), bottom to top."""
        return [layer for layer in self.layers if self.parent_of(layer) == parent]

    def depth(self, layer: Layer) -> int:
        """How many groups ``layer`` is inside."""
        depth, seen = 0, set()
        parent = self.parent_of(layer)
        while parent is not None and parent not in seen:
            seen.add(parent)
            depth += 1
            parent = self.parent_of(self.layer(parent))
        return depth

    def descendants(self, group_id: str) -> list[Layer]:
        """Every layer inside the group, at any depth, bottom to top."""
        ids, out = {group_id}, []
        for _ in range(len(self.layers)):
            more = [lay for lay in self.layers if self.parent_of(lay) in ids and lay.id not in
                    {o.id for o in out}]
            if not more:
                break
            out += more
            ids |= {lay.id for lay in more}
        order = {lay.id: i for i, lay in enumerate(self.layers)}
        return sorted(out, key=lambda lay: order[lay.id])

    def shown(self, layer: Layer) -> bool:
        """Whether the layer and every group it is in are visible."""
        seen = set()
        while True:
            if not layer.visible:
                return False
            parent = self.parent_of(layer)
            if parent is None or parent in seen:
                return True
            seen.add(parent)
            layer = self.layer(parent)

    def composite(self, rect: Rect | None = None) -> np.ndarray:
        """Flatten the visible layers, each with its blend mode, into an ``HxWx4`` uint8
        RGBA image. A group is drawn on its own, then as one layer (``Layer.parent``).

        Parameters
        ----------
        rect : Rect, optional
            The canvas region to render (default: the whole canvas). It may extend past the
            canvas; layers are drawn wherever they lie.
        """
        rect = rect if rect is not None else self.rect
        if not self.has_groups():
            return self._composite_layers(self.layers, rect)
        return self._render_group(None, rect, set())

    def render_group(self, group_id: str, rect: Rect | None = None) -> np.ndarray:
        """What a group's members draw, on their own (its thumbnail, a merge)."""
        return self._render_group(group_id, rect if rect is not None else self.rect, set())

    def reduced(self, step: int) -> Document:
        """The document sampled at every ``step``-th canvas pixel (a thumbnail's worth of
        it, read in microseconds from an 8000x8000 canvas). Compositing works pixel by
        pixel, so what it draws is exactly every ``step``-th pixel of what this document
        draws: ``reduced(s).composite()`` equals ``composite()[::s, ::s]``; the same for
        ``render_group``. Layer ids, groups, blend modes and opacities are kept; masks not."""
        step = max(1, int(step))
        out = Document(width=-(-self.width // step), height=-(-self.height // step),
                       log=None)  # type: ignore[arg-type]
        for layer in list(self.layers):  # a copy: another thread may be editing the list
            i0, j0 = -layer.x % step, -layer.y % step  # the first pixel on the grid
            pixels = layer.pixels[j0::step, i0::step]
            if not layer.is_group and 0 in pixels.shape[:2]:
                continue  # falls between the samples
            if layer.is_group:
                pixels = layer.pixels
            out.layers.append(replace(layer, pixels=pixels, mask=None,
                                      x=(layer.x + i0) // step, y=(layer.y + j0) // step))
        return out

    def _render_group(self, parent: str | None, rect: Rect, seen: set[str]) -> np.ndarray:
        items: list[Layer] = []
        for layer in self.children(parent):
            if layer.kind != "group":
                items.append(layer)
            elif layer.visible and layer.opacity > 0.0 and layer.id not in seen:
                pixels = self._render_group(layer.id, rect, seen | {layer.id})
                items.append(Layer(id=layer.id, name=layer.name, pixels=pixels, x=rect[0],
                                   y=rect[1], opacity=layer.opacity, blend=layer.blend))
        return self._composite_layers(items, rect)

    def _composite_layers(self, layers: list[Layer], rect: Rect) -> np.ndarray:
        rx, ry, rw, rh = rect
        out = np.zeros((rh, rw, 4), dtype=np.uint8)
        parts = []
        for layer in layers:
            if layer.visible and layer.opacity > 0.0 and layer.kind != "group":
                part = intersect((rx, ry, rw, rh), layer.rect)
                if part is not None:
                    parts.append((layer, part))
        if not parts:
            return out
        # Premultiplied float32, a band of rows at a time so the buffers stay in cache.
        band = max(1, min(rh, 65536 // max(rw, 1)))
        acc = np.empty((band, rw, 4), dtype=np.float32)
        tmp = np.empty((band, rw, 4), dtype=np.float32)
        alpha = np.empty((band, rw, 1), dtype=np.float32)
        for b0 in range(ry, ry + rh, band):
            b1 = min(ry + rh, b0 + band)
            acc_band = acc[:b1 - b0]
            acc_band.fill(0.0)
            for layer, (px, py, pw, ph) in parts:
                y0, y1 = max(py, b0), min(py + ph, b1)
                if y1 <= y0:
                    continue
                src = layer.pixels[y0 - layer.y:y1 - layer.y, px - layer.x:px - layer.x + pw]
                dst = acc_band[y0 - b0:y1 - b0, px - rx:px - rx + pw]
                t = tmp[:y1 - y0, :pw]
                a = alpha[:y1 - y0, :pw]
                opacity = min(float(layer.opacity), 1.0)
                normal = layer.blend == "normal"
                if normal and opacity >= 1.0 and src[..., 3].min() == 255:
                    # Opaque: covers what is below (the usual background or generation).
                    np.multiply(src, 1.0 / 255.0, out=dst, casting="unsafe")
                    continue
                np.multiply(src, 1.0 / 255.0, out=t, casting="unsafe")
                np.multiply(t[..., 3:4], opacity, out=a)
                if not normal:  # W3C: the colour drawn mixes in B(backdrop, source)
                    t[..., :3] = _blended(dst, t[..., :3], layer.blend)
                t[..., 3:4] = 1.0
                # over, premultiplied: dst + a * (src - dst), with src alpha taken as 1
                t -= dst
                t *= a
                dst += t
            a = acc_band[..., 3:4]
            np.divide(acc_band[..., :3], a, out=acc_band[..., :3], where=a > 0)
            acc_band *= 255.0
            acc_band += 0.5
            np.clip(acc_band, 0.0, 255.0, out=acc_band)
            out[b0 - ry:b1 - ry] = acc_band
        return out

    def regions(self, rect: Rect | None = None, size: tuple[int, int] | None = None
                ) -> tuple[Region, ...]:
        """The regional prompts of the visible region layers, bottom to top, as request
        regions: each mask cut to ``rect`` (default: the generation rect) and scaled to
        ``size`` ``(width, height)`` (default: the rect's size). Layers whose region lies
        outside ``rect`` are left out."""
        from PIL import Image

        from studio.core.document.pixels import Pixels
        from studio.core.jobs.request import Region

        rx, ry, rw, rh = rect if rect is not None else self.generation_rect
        out = []
        for layer in self.layers:
            if not (layer.visible and layer.region_prompt.strip()):
                continue
            part = intersect((rx, ry, rw, rh), layer.rect)
            if part is None:
                continue
            px, py, pw, ph = part
            canvas = np.zeros((rh, rw), np.uint8)
            src = layer.region_mask()[py - layer.y:py - layer.y + ph,
                                      px - layer.x:px - layer.x + pw]
            canvas[py - ry:py - ry + ph, px - rx:px - rx + pw] = src
            if not canvas.any():
                continue
            if size is not None and size != (rw, rh):
                canvas = np.asarray(Image.fromarray(canvas).resize(size,
                                                                   Image.Resampling.BILINEAR))
            out.append(Region(Pixels.from_array(canvas), layer.region_prompt.strip(),
                              float(layer.region_strength)))
        return tuple(out)

    # -- listeners -----------------------------------------------------------------------
    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(event_name, payload)`` after each change (see module docs for events)."""
        if fn not in self._listeners:
            self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def emit(self, event: str, **payload: Any) -> None:
        """Tell the listeners about a change (commands call this after mutating).

        A listener that raises is logged and skipped: a broken view must not leave a
        command half done.
        """
        if event == "layer_changed" and payload.get("what") != "props":
            self._clean.pop(str(payload.get("layer_id")), None)
            for layer in self.layers:
                if layer.id == payload.get("layer_id"):
                    layer.touch()  # its pixels may be painted now
        elif event == "canvas_resized":
            self._clean.clear()
        for fn in list(self._listeners):
            try:
                fn(event, payload)
            except Exception:
                _log.exception("document listener failed on %r", event)

    # -- non-undoable view state ---------------------------------------------------------
    def set_active_layer(self, layer_id: str | None) -> None:
        """Pick the layer tools act on. Not an edit, so not on the undo stack."""
        if layer_id is not None:
            self.index_of(layer_id)
        if layer_id != self.active_layer_id:
            self.active_layer_id = layer_id
            self.emit("active_layer_changed", layer_id=layer_id)

    # -- snapshots and serialisation -----------------------------------------------------
    def mark_clean(self, layer: Layer, same: Layer) -> None:
        """``same`` (read-only arrays, kept by an undo command) holds exactly ``layer``'s
        pixels and mask now: a snapshot may share them until the layer's pixels change."""
        if same.pixels.flags.writeable or (same.mask is not None and same.mask.flags.writeable):
            return
        refs = [weakref.ref(layer.pixels), weakref.ref(same.pixels)]
        if layer.mask is not None and same.mask is not None:
            refs += [weakref.ref(layer.mask), weakref.ref(same.mask)]
        elif layer.mask is not None or same.mask is not None:
            return
        self._clean[layer.id] = tuple(refs)

    def _shared_copies(self) -> dict[int, Any]:
        """``deepcopy`` memo entries: each clean layer's arrays -> their read-only copies."""
        memo: dict[int, Any] = {}
        for layer in self.layers:
            refs = [ref() for ref in self._clean.get(layer.id, ())]
            if not refs or any(r is None for r in refs) or refs[0] is not layer.pixels:
                continue
            memo[id(layer.pixels)] = refs[1]
            if len(refs) == 4 and refs[2] is layer.mask:
                memo[id(layer.mask)] = refs[3]
            elif layer.mask is not None:
                del memo[id(layer.pixels)]
        return memo

    def snapshot(self) -> Document:
        """A deep copy without listeners, safe to hand to a saving thread. A layer whose
        pixels an undo command holds unchanged shares that read-only copy (see
        ``mark_clean``): no copy of a large generated layer on the GUI thread."""
        memo = self._shared_copies()
        listeners, log, clean = self._listeners, self.log, self._clean
        self._listeners, self._clean = [], {}
        self.log = None  # type: ignore[assignment]
        try:
            snap = copy.deepcopy(self, memo)
        finally:
            self._listeners, self.log, self._clean = listeners, log, clean
        snap.log = log.snapshot()
        return snap

    def to_dict(self, put: PutArray) -> dict[str, Any]:
        """A JSON-ready dict; layer arrays are stored with ``put``."""
        return {
            "width": self.width, "height": self.height,
            "layers": [layer.to_dict(put) for layer in self.layers],
            "active_layer_id": self.active_layer_id,
            "selection": list(self.selection) if self.selection is not None else None,
            "prompt": self.prompt, "negative_prompt": self.negative_prompt,
            "sliders": dict(self.sliders),
            "slider_specs": {k: dict(v) for k, v in self.slider_specs.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], get: GetArray) -> Document:
        sel = data.get("selection")
        return cls(
            width=int(data["width"]), height=int(data["height"]),
            layers=[Layer.from_dict(d, get) for d in data.get("layers", [])],
            active_layer_id=data.get("active_layer_id"),
            selection=tuple(int(v) for v in sel) if sel else None,  # type: ignore[arg-type]
            prompt=data.get("prompt", ""), negative_prompt=data.get("negative_prompt", ""),
            sliders={k: float(v) for k, v in (data.get("sliders") or {}).items()},
            slider_specs={str(k): dict(v) for k, v in (data.get("slider_specs") or {}).items()
                          if isinstance(v, dict)},
        )


def _blended(dst: np.ndarray, cs: np.ndarray, mode: str) -> np.ndarray:
    """The colour a layer of straight colour ``cs`` draws with over premultiplied ``dst``."""
    from studio.core.document.blend import mix

    ab = dst[..., 3:4]
    cb = np.divide(dst[..., :3], ab, out=np.zeros_like(cs), where=ab > 0)
    return mix(cb, ab, cs, mode)


class ArrayBag:
    """An in-memory content-addressed array store: ``put``/``get`` for serialisation."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def put(self, array: np.ndarray) -> str:
        key = array_key(array)
        if key not in self.arrays:
            self.arrays[key] = np.array(array, copy=True)
        return key

    def get(self, key: str) -> np.ndarray:
        return self.arrays[key]


def array_key(array: np.ndarray) -> str:
    """Content hash of an array. For 8-bit L/RGB/RGBA images it equals ``Pixels.sha256``."""
    import hashlib

    arr = np.ascontiguousarray(array)
    h = hashlib.sha256()
    modes = {2: "L", 3: "RGB", 4: "RGBA"}
    if arr.dtype == np.uint8 and (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        mode = "L" if arr.ndim == 2 else modes[arr.shape[2]]
        h.update(f"{mode}:{arr.shape[1]}x{arr.shape[0]}:".encode())
    else:
        h.update(f"{arr.dtype.str}:{'x'.join(map(str, arr.shape))}:".encode())
    h.update(arr.data.cast("B") if arr.size else b"")
    return h.hexdigest()
