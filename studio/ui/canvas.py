"""``CanvasView``: draws the document (cached composite), zooms, pans and runs the tools.

The composite of the visible layers is kept as one premultiplied QImage; a
``layer_changed`` event recomposites only its rect. Painting only touches the part of the
image that is on screen, so a 4096x4096 canvas stays smooth. A large change (a result on an
8000x8000 canvas, its undo) is drawn with a level of detail, as Krita does: a worker thread
draws the tiles on screen at the reduced copy the zoom shows (full-size tiles only where the
view is zoomed in on them); the GUI thread only repaints each tile as it lands.
"""

from __future__ import annotations

import logging
import sys
import threading
import weakref
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QPixmap,
    QRegion,
    QWheelEvent,
)
from PySide6.QtWidgets import QWidget

from studio.core.document.edits import AddLayer, SetSelection, settle_vector_state
from studio.core.document.layers import Document, Layer, Rect, intersect
from studio.core.document.undo import UndoStack
from studio.ui import canvas_tools as tools
from studio.ui.canvas_image import MipImage, premultiply, reduce_box, to_qimage
from studio.ui.canvas_tools import BrushSettings, Stroke
from studio.ui.theme import color

MIN_ZOOM, MAX_ZOOM = 0.02, 64.0
#: A change larger than this many pixels is redrawn on a worker thread, tile by tile, so an
#: 8000x8000 canvas never freezes the window (smaller ones are drawn at once: a brush dab).
PROGRESSIVE_PIXELS = 1024 * 1024
TILE = 512
#: Zoomed out, the canvas is kept scaled to the zoom when it has at most this many pixels
#: there (an 8000x8000 canvas fitted to a window: about 700x700), so that a repaint copies.
SCALED_MAX_PIXELS = 2048 * 2048
#: How long the worker thread waits for more tiles before it ends (seconds): the next
#: large change (a generation a few seconds later) finds it waiting.
WORKER_IDLE_S = 10.0
#: A tile that failed to draw (the document changed under the worker) is tried this often.
TILE_TRIES = 3

_log = logging.getLogger(__name__)

IMAGE, MASK = "image", "mask"  # the two caches the worker draws into

#: While a worker draws, how soon the GUI thread gets the GIL back when it asks (Python's
#: default, 5 ms, is a whole frame: the worker's many short numpy calls release and retake
#: the GIL before the waiting GUI thread wakes). As ``studio.ui.busy`` does for its worker.
SWITCH_INTERVAL_S = 0.0005
_switch: dict[str, float] = {}  # "workers": how many draw now, "saved": the interval before


def _workers_drawing(delta: int) -> None:
    """Count a drawing worker in (+1) or out (-1); the first lowers the switch interval,
    the last puts it back (unless someone else changed it meanwhile)."""
    with _SWITCH_LOCK:
        count = int(_switch.get("workers", 0))
        if delta > 0 and count == 0:
            _switch["saved"] = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch["saved"], SWITCH_INTERVAL_S))
        elif delta < 0 and count == 1 and sys.getswitchinterval() == min(
                _switch["saved"], SWITCH_INTERVAL_S):
            sys.setswitchinterval(_switch["saved"])
        _switch["workers"] = max(0, count + delta)


_SWITCH_LOCK = threading.Lock()


@dataclass(frozen=True)
class CanvasImages:
    """What the canvas draws of a document: made by ``CanvasView.prepare`` on any thread."""

    size: tuple[int, int]
    image: MipImage  # the composite, premultiplied
    mask: MipImage  # the inpaint mask overlay
    has_mask: bool


def composite_of(doc: Document, part: Rect) -> np.ndarray:
    """The premultiplied composite of ``part``; one plain layer needs no blending."""
    layers = [layer for layer in doc.layers if layer.visible and layer.opacity > 0
              and intersect(part, layer.rect) is not None]
    x, y, w, h = part
    if len(layers) == 1 and layers[0].opacity >= 1.0 and not doc.has_groups():
        layer = layers[0]
        out = np.zeros((h, w, 4), np.uint8)
        px, py, pw, ph = intersect(part, layer.rect)  # type: ignore[misc]
        out[py - y:py - y + ph, px - x:px - x + pw] = \
            layer.pixels[py - layer.y:py - layer.y + ph, px - layer.x:px - layer.x + pw]
        return premultiply(out)
    if not layers:
        return np.zeros((h, w, 4), np.uint8)
    return premultiply(doc.composite(part))


def sampled(doc: Document, part: Rect, step: int) -> Document:
    """The layers over ``part`` (its corner on the ``step`` grid) sampled at every
    ``step``-th canvas pixel, as ``Document.reduced`` samples them (``sampled(...)``'s
    composite is exactly every ``step``-th pixel of the full one), reading only ``part``."""
    x, y, w, h = part
    out = Document(width=-(-doc.width // step), height=-(-doc.height // step),
                   log=None)  # type: ignore[arg-type]
    for layer in list(doc.layers):  # a copy: the GUI thread may be editing the list
        if layer.is_group:
            out.layers.append(replace(layer, mask=None, x=layer.x // step, y=layer.y // step))
            continue
        inside = intersect(part, layer.rect)
        if inside is None:
            continue
        ix, iy, iw, ih = inside
        gx, gy = -(-ix // step) * step, -(-iy // step) * step  # the first pixels on the grid
        pixels = layer.pixels[gy - layer.y:iy + ih - layer.y:step,
                              gx - layer.x:ix + iw - layer.x:step]
        if 0 in pixels.shape[:2]:
            continue
        out.layers.append(replace(layer, pixels=pixels, mask=None, x=gx // step, y=gy // step))
    return out


def mask_overlay(doc: Document, part: Rect, region: np.ndarray,
                 tint: tuple[int, int, int] | None = None) -> None:
    """Draw the inpaint masks over ``part`` into ``region`` (premultiplied, its size), in
    ``tint`` (default: the theme's warning colour)."""
    alpha = (tools.mask_in(doc, part).astype(np.uint16) * 140 // 255).astype(np.uint8)
    if tint is None:
        accent = color("danger")
        tint = (accent.red(), accent.green(), accent.blue())
    rgb = np.array(tint, np.uint16)
    region[..., 3] = alpha
    region[..., :3] = (rgb[None, None, :] * alpha[..., None] // 255).astype(np.uint8)


#: How often the GUI thread repaints the tiles the worker has drawn. Polled, not signalled:
#: PySide6 6.12's ``SignalInstance.emit`` drops a reference to the bool it returns, so a
#: Python emit per tile (hundreds per redraw) soon ends the process ("bool_dealloc").
DRAWN_POLL_MS = 10


class _Worker:
    """What the view and its worker thread share (under the view's lock), holding no
    reference to the view: an idle worker must not keep a closed window's caches alive."""

    __slots__ = ("alive", "wake")

    def __init__(self) -> None:
        self.alive = False  # a worker thread runs or waits for tiles
        self.wake = False  # tiles were asked of it since it last looked


def _serve(ref: weakref.ReferenceType[CanvasView], lock: threading.Condition,
           worker: _Worker) -> None:
    """The canvas's worker thread: draws the tiles asked, then waits ``WORKER_IDLE_S`` for
    more before it ends (starting a thread blocks the GUI thread until it runs: 2-3 ms
    under load, each time a result lands on an 8000x8000 canvas)."""
    while True:
        view = ref()
        if view is None:
            with lock:
                worker.alive = False
            return
        try:
            view._work()
        except BaseException:
            with lock:
                worker.alive = False  # the next change starts another
            raise
        del view
        with lock:
            if not lock.wait_for(lambda: worker.wake, WORKER_IDLE_S):
                worker.alive = False
                return


def _padded(rect: Rect, align: int) -> Rect:
    """``rect`` grown to multiples of ``align``: what its reduced copies read and write."""
    x, y, w, h = rect
    x0, y0 = x // align * align, y // align * align
    x1, y1 = -(-(x + w) // align) * align, -(-(y + h) // align) * align
    return (x0, y0, x1 - x0, y1 - y0)


class CanvasView(QWidget):
    """The document on screen. Redraws from document events; edits go to the undo stack."""

    zoom_changed = Signal(float)
    #: False: every change is drawn at full size, all of it (before level of detail; the
    #: stall benchmark's baseline, ``python -m studio.bench.ui_stall --canvas 8000``).
    level_of_detail = True
    color_picked = Signal(tuple)
    cursor_moved = Signal(int, int)
    tool_changed = Signal(str)
    stroke_ended = Signal()
    group_painted = Signal(str)  # a stroke began on a group (the group's name)

    def __init__(self, doc: Document, undo: UndoStack, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("canvas_view")
        self.setAccessibleName("Canvas")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setMinimumSize(200, 200)
        self.doc = doc
        self.undo = undo
        self.tool = tools.BRUSH
        self.brush = BrushSettings()
        self.zoom = 1.0
        self.offset = QPointF(0, 0)
        self._image = MipImage(1, 1)
        self._mask = MipImage(1, 1)
        # Zoomed out, the canvas as drawn at the zoom (see ``SCALED_MAX_PIXELS``): what it
        # was made from (``_scaled_key``), and the canvas rects changed since.
        self._scaled: QImage | None = None
        self._scaled_key: tuple[Any, ...] | None = None
        self._scaled_dirty: list[Rect] = []
        self._caches = 0  # counts the replacements of the two caches
        self._preview_scaled: tuple[Any, QImage] | None = None
        self._has_mask = False
        self._preview: tuple[Rect, QImage] | None = None
        self._slider_preview: tuple[Rect, QImage] | None = None
        self._staged: tuple[Rect, QImage] | None = None  # the staging area's candidate
        self._stroke: Stroke | None = None
        self._macro: Any = None
        self._drag: tuple[str, QPointF, Any] | None = None
        self._space = False
        self._cursor = QPointF(-1, -1)
        self._auto_fit = True  # follow the window size until the user zooms or pans
        self._checker = self._make_checker()
        self._primed: CanvasImages | None = None
        # Tiles asked of the worker thread at a level, the tiles it is drawing, and the lock
        # over both and over the caches' tile states (see ``_change``).
        self._requests: dict[tuple[str, int, int], int] = {}  # (kind, col, row): level
        self._busy: set[tuple[str, int, int]] = set()
        self._lock = threading.Condition()
        self._worker = _Worker()
        self._drawn: list[Rect] = []  # tiles drawn by the worker, to repaint
        self._drawn_timer = QTimer(self, interval=DRAWN_POLL_MS)
        self._drawn_timer.timeout.connect(self._repaint_drawn)
        #: The mask overlay: shown or not, and its colour (``None``: the theme's).
        self.mask_shown = True
        self.mask_tint: tuple[int, int, int] | None = None
        doc.add_listener(self._on_document_event)
        self._rebuild()

    # -- coordinates ---------------------------------------------------------------------
    def to_canvas(self, p: QPointF) -> QPointF:
        return (p - self.offset) / self.zoom

    def to_widget(self, p: QPointF) -> QPointF:
        return p * self.zoom + self.offset

    def canvas_rect_on_widget(self, rect: Rect) -> QRectF:
        x, y, w, h = rect
        return QRectF(self.to_widget(QPointF(x, y)), self.to_widget(QPointF(x + w, y + h)))

    # -- view ----------------------------------------------------------------------------
    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        zoom = max(MIN_ZOOM, min(MAX_ZOOM, zoom))
        anchor = anchor if anchor is not None else QPointF(self.width() / 2, self.height() / 2)
        before = self.to_canvas(anchor)
        self._auto_fit = False
        self.zoom = zoom
        self.offset = anchor - before * zoom
        self.zoom_changed.emit(zoom)
        self.update()

    def fit(self) -> None:
        """Fit the canvas in the view (Ctrl+0)."""
        w, h = max(1, self.doc.width), max(1, self.doc.height)
        margin = 32
        zoom = min((self.width() - margin) / w, (self.height() - margin) / h)
        self._auto_fit = True
        self.zoom = max(MIN_ZOOM, min(MAX_ZOOM, zoom))
        self.offset = QPointF((self.width() - w * self.zoom) / 2,
                              (self.height() - h * self.zoom) / 2)
        self.zoom_changed.emit(self.zoom)
        self.update()

    def actual_size(self) -> None:
        """Show pixels 1:1 (Ctrl+1), keeping the centre of the view."""
        self.set_zoom(1.0)

    def set_tool(self, tool: str) -> None:
        if tool in tools.TOOLS and tool != self.tool:
            self.tool = tool
            self.tool_changed.emit(tool)
            self._update_cursor()
            self.update()

    def set_mask_overlay(self, shown: bool | None = None,
                         tint: tuple[int, int, int] | None = None) -> None:
        """Show or hide the inpaint mask's tint, or give it another colour (a pink tint
        reads as skin on a portrait); the mask itself is unchanged."""
        if shown is not None:
            self.mask_shown = bool(shown)
        if tint is not None and tint != self.mask_tint:
            self.mask_tint = tuple(int(c) for c in tint)[:3]  # type: ignore[assignment]
            self._refresh_mask(None)
        self.update()

    def set_brush(self, brush: BrushSettings) -> None:
        self.brush = brush
        self.update()

    def resizeEvent(self, event: Any) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self._auto_fit:
            self.fit()

    # -- document events -----------------------------------------------------------------
    def _on_document_event(self, name: str, payload: dict[str, Any]) -> None:
        if name == "layer_changed":
            self._on_layer_changed(payload.get("rect"), payload.get("what", ""))
        elif name in ("layer_added", "layer_removed"):
            rect = payload.get("rect")  # only where the layer lies (None: all of it)
            self._refresh(rect)
            self._refresh_mask(rect)
        elif name == "layers_reordered":
            self._refresh(None)
            self._refresh_mask(None)
        elif name == "canvas_resized":
            # Keep the content where it was on screen when the canvas grows to the left/top.
            self.offset -= QPointF(payload.get("dx", 0), payload.get("dy", 0)) * self.zoom
            if self._auto_fit:  # first: the new canvas is drawn at the level it is shown at
                self.fit()
            self._rebuild()
        elif name == "selection_changed":
            self.update()

    def _on_layer_changed(self, rect: Rect | None, what: str) -> None:
        if what == "mask":
            self._refresh_mask(rect)
        elif what == "props" and rect is None:
            return  # a rename: nothing to draw
        else:
            self._refresh(rect)
            if what == "props":
                self._refresh_mask(rect)

    @staticmethod
    def prepare(doc: Document) -> CanvasImages:
        """The composite and mask overlay of ``doc``, drawn on any thread (a project being
        opened): ``prime`` hands them to the view before the document is shown."""
        w, h = max(1, doc.width), max(1, doc.height)
        image, mask = MipImage(w, h, TILE), MipImage(w, h, TILE)
        image.array[:] = composite_of(doc, doc.rect)
        image.update(doc.rect)
        has_mask = any(layer.mask is not None for layer in doc.layers)
        if has_mask:
            mask_overlay(doc, doc.rect, mask.array)
            mask.update(doc.rect)
        return CanvasImages((w, h), image, mask, has_mask)

    def prime(self, images: CanvasImages) -> None:
        """Use ``images`` (from ``prepare``) at the next rebuild, if the size matches."""
        self._primed = images

    def _rebuild(self) -> None:
        w, h = max(1, self.doc.width), max(1, self.doc.height)
        primed, self._primed = self._primed, None
        self._drop_requests(IMAGE, MASK)
        if primed is not None and primed.size == (w, h):
            self._image, self._mask, self._has_mask = primed.image, primed.mask, primed.has_mask
            self._caches += 1
            self._update_canvas_rect(self.doc.rect)
            return
        self._image = MipImage(w, h, TILE)
        self._mask = MipImage(w, h, TILE)
        self._caches += 1
        self._has_mask = False
        self._refresh(None)
        self._refresh_mask(None)

    def _refresh(self, rect: Rect | None) -> None:
        """Redraw ``rect`` (None: everything) of the cached image: now when it is small,
        else by the worker thread at the level the view shows (see ``_change``)."""
        part = intersect(rect if rect is not None else self.doc.rect, self.doc.rect)
        if part is not None:
            self._change(IMAGE, part)

    def _refresh_now(self, part: Rect) -> None:
        x, y, w, h = part
        self._image.array[y:y + h, x:x + w] = self._composite(part)
        self._image.update(part)

    # -- level of detail and the worker thread -------------------------------------------
    # As Krita does: a large change marks its tiles changed and the worker draws, for the
    # tiles on screen, only the level the view shows (an 8000x8000 canvas fitted to the
    # window: its 1000x1000 reduced copy, from every 4th pixel of each layer, 2x2
    # averaged). Full-size tiles are drawn only where the view zooms in to them; until a
    # tile lands it is drawn from its finest up-to-date level. A small change (a brush dab)
    # is drawn at once on the GUI thread, at each tile's finest up-to-date level; one that
    # touches a tile waiting for the worker waits with it, so the newest edit always shows.

    def _target(self, kind: str) -> MipImage:
        return self._image if kind == IMAGE else self._mask

    def _change(self, kind: str, part: Rect) -> None:
        target = self._target(kind)
        x, y, w, h = part
        with self._lock:
            if w * h > PROGRESSIVE_PIXELS:  # large: the worker draws it (no look at tiles)
                small, tiles, levels = False, [], set()
            else:
                tiles = target.tiles(part)
                levels = {int(target.valid[r, c]) for c, r in tiles}
                small = (target.none not in levels
                         and not any((kind, c, r) in self._requests
                                     or (kind, c, r) in self._busy for c, r in tiles))
            if not small:
                target.stale(part)
        if not small:
            self._request_visible(kind)
        elif levels == {0}:  # the usual case: exact, in one go
            if kind == IMAGE:
                self._refresh_now(part)
            else:
                mask_overlay(self.doc, part, target.array[y:y + h, x:x + w], self.mask_tint)
                target.update(part)
        else:  # tiles shown from a reduced copy: redrawn there (cheap), finer ones later
            for c, r in tiles:
                level = int(target.valid[r, c])
                f = 2 ** level
                tile = target.tile_rect(c, r)
                piece = intersect(_padded(intersect(part, tile) or tile, f), tile)
                if piece is not None:
                    target.write(level, piece, self._render(kind, piece, level))
        self._drawn_at(part)

    def _render(self, kind: str, part: Rect, level: int) -> np.ndarray:
        """``part`` of the composite (or mask overlay) drawn at ``level`` (``part``'s corner
        on that level's grid): ``part``'s size divided by ``2 ** level``, rounded down."""
        if kind == IMAGE:
            return self._composite(part, level)
        x, y, w, h = part
        region = np.zeros((h, w, 4), np.uint8)
        mask_overlay(self.doc, part, region, self.mask_tint)
        return reduce_box(region, 2 ** level)

    def _visible(self) -> Rect | None:
        """The part of the canvas in the view (level-0 pixels)."""
        top_left = self.to_canvas(QPointF(0, 0))
        bottom_right = self.to_canvas(QPointF(self.width(), self.height()))
        x0, y0 = int(np.floor(top_left.x())), int(np.floor(top_left.y()))
        x1, y1 = int(np.ceil(bottom_right.x())), int(np.ceil(bottom_right.y()))
        return intersect((x0, y0, x1 - x0, y1 - y0), self.doc.rect)

    def _request_visible(self, *kinds: str) -> None:
        """Ask the worker for the tiles on screen that are not up to date at the level the
        view shows (GUI thread)."""
        view = self._visible() if self.level_of_detail else self.doc.rect
        asked = False
        with self._lock:
            for kind in kinds:
                target = self._target(kind)
                level = target.level_for(self.zoom) if self.level_of_detail else 0
                # What the view no longer shows (panned away, zoomed out) is not drawn.
                rows, cols = target.tile_span(view or (0, 0, 0, 0))
                behind = np.argwhere(target.valid[rows, cols] > level).tolist()
                wanted = {(kind, cols.start + c, rows.start + r): level for r, c in behind}
                self._requests = {k: v for k, v in self._requests.items()
                                  if k[0] != kind or k in wanted}
                for key in wanted:
                    if self._requests.get(key, target.none) != level:
                        self._requests[key] = level
                        asked = True
            worker = self._worker
            if asked and worker.alive:
                worker.wake = True  # it waits for tiles: no thread started
                self._lock.notify_all()
            elif asked:
                worker.alive, worker.wake = True, False
                threading.Thread(target=_serve, args=(weakref.ref(self), self._lock, worker),
                                 name="studio-canvas", daemon=True).start()
        if asked:
            self._drawn_timer.start()

    def _repaint_drawn(self) -> None:
        """Repaint the tiles the worker drew since the last look (GUI thread)."""
        with self._lock:
            drawn, self._drawn = self._drawn, []
            done = not self._requests and not self._busy  # the worker idle or gone
        for rect in drawn:
            self._drawn_at(rect)
        if done:
            self._drawn_timer.stop()

    def _drop_requests(self, *kinds: str) -> None:
        """Forget the tiles asked of these caches (the cache is replaced)."""
        with self._lock:
            self._requests = {k: v for k, v in self._requests.items() if k[0] not in kinds}

    def _next_job(self) -> tuple[str, int, int, list[int]]:
        """The next run of waiting tiles (caller holds the lock): the coarsest level first,
        then top to bottom, as one row of neighbouring tiles drawn in one go."""
        kind, c, r = min(self._requests, key=lambda k: (-self._requests[k], k[2], k[1], k[0]))
        level = self._requests.pop((kind, c, r))
        cols = [c]
        while self._requests.get((kind, cols[-1] + 1, r)) == level:
            del self._requests[(kind, cols[-1] + 1, r)]
            cols.append(cols[-1] + 1)
        return kind, level, r, cols

    def _work(self) -> None:
        """The worker thread (``_serve``): draw the waiting tiles until none is left."""
        tries: dict[tuple[str, int, int], int] = {}
        _workers_drawing(+1)
        while True:
            with self._lock:
                self._busy = set()
                self._lock.notify_all()
                if not self._requests:
                    self._worker.wake = False  # idle now (see ``_serve``)
                    _workers_drawing(-1)
                    return
                kind, level, row, cols = self._next_job()
                target = self._target(kind)
                self._busy = {(kind, c, row) for c in cols}
                versions = [int(target.version[row, c]) for c in cols]
            first, last = target.tile_rect(cols[0], row), target.tile_rect(cols[-1], row)
            rect = (first[0], first[1], last[0] + last[2] - first[0], first[3])
            settle_vector_state()  # started from the GUI thread: its SIMD state (see there)
            try:
                pixels = self._render(kind, rect, level)
            except Exception:  # a layer removed while it was read: drawn again later
                _log.debug("canvas tiles %s not drawn", rect, exc_info=True)
                with self._lock:
                    for c in cols:
                        tries[(kind, c, row)] = tries.get((kind, c, row), 0) + 1
                        if tries[(kind, c, row)] < TILE_TRIES:
                            self._requests.setdefault((kind, c, row), level)
                continue
            f = 2 ** level
            for c, version in zip(cols, versions, strict=True):
                tile = target.tile_rect(c, row)
                with self._lock:
                    if target.version[row, c] != version:
                        continue  # changed meanwhile: it waits, marked changed, for a redraw
                left = (tile[0] - rect[0]) // f
                target.write(level, tile, pixels[:, left:left + max(1, tile[2] // f)])
                with self._lock:
                    if target.version[row, c] == version:
                        target.valid[row, c] = min(int(target.valid[row, c]), level)
                    self._drawn.append(tile)

    @property
    def drawing(self) -> bool:
        """Whether tiles on screen are still being drawn (a large change), or drawn and not
        yet repainted."""
        with self._lock:
            return bool(self._requests) or bool(self._busy) or bool(self._drawn)

    def finish_drawing(self, level: int = 0) -> None:
        """Draw every tile not up to date at ``level`` now, on this thread (0: at full
        size, for tests and exports of what is shown)."""
        with self._lock:
            self._requests = {}
            while self._busy:
                self._lock.wait()
        for kind in (IMAGE, MASK):
            target = self._target(kind)
            at = min(level, target.none - 1)
            rows, cols = np.nonzero(target.valid > at)
            for row, c in sorted(zip(rows.tolist(), cols.tolist(), strict=True)):
                tile = target.tile_rect(c, row)
                target.write(at, tile, self._render(kind, tile, at))
                target.valid[row, c] = at
                self._drawn_at(tile)

    @property
    def composite_levels(self) -> int:
        """How many reduced copies the cached composite keeps (level 0: full size)."""
        return len(self._image.levels)

    def composite_at(self, level: int) -> np.ndarray:
        """The cached composite's reduced copy ``level`` (premultiplied), all of it up to
        date: a reduced copy of a large canvas without drawing it at full size."""
        self.finish_drawing(level)
        return self._image.levels[min(level, self._image.none - 1)][0]

    def _composite(self, part: Rect, level: int = 0) -> np.ndarray:
        """``part`` of the composite at ``level`` (see ``_render``): level 0 exactly; a
        reduced level from the layers sampled at every ``2 ** (level - 1)``-th pixel and
        2x2 averaged (``sampled``: every sample exactly the full composite's)."""
        if level == 0:
            return composite_of(self.doc, part)
        step = 2 ** (level - 1)
        x, y, w, h = part
        f = 2 * step
        cols, rows = (x + w) // f - x // f, (y + h) // f - y // f
        if cols <= 0 or rows <= 0:
            return np.zeros((max(0, rows), max(0, cols), 4), np.uint8)
        rect = (x // step, y // step, 2 * cols, 2 * rows)
        return reduce_box(composite_of(sampled(self.doc, part, step), rect), 2)

    def _refresh_mask(self, rect: Rect | None) -> None:
        part = intersect(rect if rect is not None else self.doc.rect, self.doc.rect)
        if part is None:
            return
        if not any(layer.mask is not None for layer in self.doc.layers):
            if self._has_mask:
                self._has_mask = False
                self._drop_requests(MASK)
                self._mask = MipImage(max(1, self.doc.width), max(1, self.doc.height), TILE)
                self._caches += 1
                self._update_canvas_rect(self.doc.rect)
            return
        self._has_mask = True
        self._change(MASK, part)

    def _drawn_at(self, rect: Rect) -> None:
        """The caches changed over ``rect``: repaint it (and rescale it, zoomed out)."""
        self._scaled_dirty.append(rect)
        self._update_canvas_rect(rect)

    def _update_canvas_rect(self, rect: Rect) -> None:
        self.update(self.canvas_rect_on_widget(rect).toAlignedRect().adjusted(-2, -2, 2, 2))

    def composite_image(self) -> QImage:
        """The cached composite (premultiplied), for tests and export previews."""
        self.finish_drawing()
        return self._image.image

    # -- previews ------------------------------------------------------------------------
    def set_preview(self, rect: Rect, image: np.ndarray) -> None:
        """Show a generation step's preview over ``rect`` until ``clear_preview``."""
        self._preview = (rect, to_qimage(image))
        self._update_canvas_rect(rect)

    def clear_preview(self) -> None:
        if self._preview is not None:
            rect = self._preview[0]
            self._preview = None
            self._update_canvas_rect(rect)

    @property
    def has_preview(self) -> bool:
        return self._preview is not None

    def set_slider_preview(self, rect: Rect, image: np.ndarray) -> None:
        """Show what a dragged slider makes of ``rect`` (RGBA, drawn over the layer in
        place) until ``clear_slider_preview``; a generation's preview draws over it."""
        old = self._slider_preview[0] if self._slider_preview is not None else None
        self._slider_preview = (rect, to_qimage(image))
        if old is not None and old != rect:
            self._update_canvas_rect(old)
        self._update_canvas_rect(rect)

    def clear_slider_preview(self) -> None:
        if self._slider_preview is not None:
            rect = self._slider_preview[0]
            self._slider_preview = None
            self._update_canvas_rect(rect)

    def set_staged(self, rect: Rect | None, image: np.ndarray | None = None) -> None:
        """Show a staged candidate (RGBA, the layer it would become) over ``rect``, framed;
        ``None`` hides it. A generation's step preview draws over it."""
        old = self._staged[0] if self._staged is not None else None
        self._staged = (rect, to_qimage(image)) if rect is not None and image is not None \
            else None
        if old is not None:
            self._update_canvas_rect(old)
        if rect is not None:
            self._update_canvas_rect(rect)

    @property
    def staged_rect(self) -> Rect | None:
        return self._staged[0] if self._staged is not None else None

    @property
    def has_slider_preview(self) -> bool:
        return self._slider_preview is not None

    @property
    def composite_cache(self) -> MipImage:
        """The cached composite of the visible layers (premultiplied), with reduced copies."""
        self.finish_drawing()
        return self._image

    # -- painting ------------------------------------------------------------------------
    def _make_checker(self) -> QPixmap:
        pix = QPixmap(16, 16)
        pix.fill(color("checker_a"))
        p = QPainter(pix)
        p.fillRect(0, 0, 8, 8, color("checker_b"))
        p.fillRect(8, 8, 8, 8, color("checker_b"))
        p.end()
        return pix

    def refresh_theme(self) -> None:
        self._checker = self._make_checker()
        self._refresh_mask(None)
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        # Tiles on screen not drawn at this zoom's level yet are asked of the worker; until
        # they land they are drawn from their finest up-to-date level (never drawn here).
        self._request_visible(*((IMAGE, MASK) if self._has_mask else (IMAGE,)))
        p = QPainter(self)
        target = self.canvas_rect_on_widget(self.doc.rect)
        # Zoomed out: one copy from the canvas kept scaled (checkerboard included).
        scaled = self._paint_scaled(p, event.rect())
        if scaled is not None:
            around = QRegion(event.rect()).subtracted(QRegion(scaled))
            for r in around:
                p.fillRect(r, color("canvas"))
        else:
            p.fillRect(event.rect(), color("canvas"))
            p.save()
            p.setBrushOrigin(target.topLeft())
            p.fillRect(target, QBrush(self._checker))
            p.restore()
        # Only the visible part of the image is scaled and drawn.
        visible = QRectF(self.to_canvas(QPointF(event.rect().topLeft())),
                         self.to_canvas(QPointF(event.rect().bottomRight()) + QPointF(1, 1)))
        src = visible.intersected(QRectF(0, 0, self.doc.width, self.doc.height))
        if not src.isEmpty() and scaled is None:
            src = QRectF(src.toAlignedRect())
            dst = QRectF(self.to_widget(src.topLeft()), self.to_widget(src.bottomRight()))
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.zoom < 1.0)
            self._image.draw(p, dst, src, self.zoom)
            if self._has_mask and self.mask_shown:
                self._mask.draw(p, dst, src, self.zoom)
        if self._slider_preview is not None:
            rect, image = self._slider_preview
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            p.drawImage(self.canvas_rect_on_widget(rect), image)
        if self._staged is not None:
            rect, image = self._staged
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.zoom < 1.0)
            where = self.canvas_rect_on_widget(rect)
            p.drawImage(where, image)
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.setPen(QPen(color("accent"), 1.5, Qt.PenStyle.DashLine))
            p.drawRect(where.adjusted(-1, -1, 1, 1))
        if self._preview is not None:
            self._paint_preview(p)
        p.setPen(QPen(color("border"), 1))
        p.drawRect(target.adjusted(-0.5, -0.5, 0.5, 0.5))
        self._paint_selection(p)
        self._paint_brush_cursor(p)
        p.end()

    def _paint_scaled(self, p: QPainter, exposed: QRect) -> QRect | None:
        """Zoomed out, paint the ``exposed`` widget rect from the canvas kept scaled to the
        zoom over its checkerboard, rescaling first only what changed: a repaint that
        changes nothing drawn (a preview step, the brush cursor) copies opaque pixels
        instead of scaling the reduced copy. Returns where the canvas lies on the widget;
        None: not zoomed out, or the canvas at this zoom is too large to keep."""
        zoom = self.zoom
        ox, oy = int(np.floor(self.offset.x())), int(np.floor(self.offset.y()))
        fx, fy = self.offset.x() - ox, self.offset.y() - oy  # drawn where a direct paint is
        sw = int(np.ceil(max(1, self.doc.width) * zoom + fx))
        sh = int(np.ceil(max(1, self.doc.height) * zoom + fy))
        if zoom >= 1.0 or sw * sh > SCALED_MAX_PIXELS:
            self._scaled, self._scaled_key, self._scaled_dirty = None, None, []
            return None
        dpr = self.devicePixelRatioF()  # kept in device pixels: sharp on a HiDPI screen
        key = (zoom, fx, fy, sw, sh, dpr, self._caches, self._has_mask and self.mask_shown,
               self._checker.cacheKey())
        dirty, self._scaled_dirty = self._scaled_dirty, []
        if self._scaled is None or self._scaled_key != key:
            self._scaled = QImage(int(np.ceil(sw * dpr)), int(np.ceil(sh * dpr)),
                                  QImage.Format.Format_RGB32)  # opaque: copied
            self._scaled.setDevicePixelRatio(dpr)
            self._scaled.fill(color("canvas"))
            self._scaled_key = key
            dirty = [self.doc.rect]
        elif len(dirty) > 64:
            dirty = [self.doc.rect]
        if dirty:
            q = QPainter(self._scaled)
            q.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            q.setClipRect(QRectF(fx, fy, self.doc.width * zoom, self.doc.height * zoom))
            q.setBrushOrigin(QPointF(fx, fy))
            checker = QBrush(self._checker)
            for x, y, w, h in dirty:  # whole pixels here, scaled with the same mapping
                x0, y0 = max(0, int(np.floor(x * zoom + fx))), max(0, int(np.floor(y * zoom + fy)))
                x1 = min(sw, int(np.ceil((x + w) * zoom + fx)))
                y1 = min(sh, int(np.ceil((y + h) * zoom + fy)))
                if x1 <= x0 or y1 <= y0:
                    continue
                to = QRectF(x0, y0, x1 - x0, y1 - y0)
                src = QRectF((x0 - fx) / zoom, (y0 - fy) / zoom, (x1 - x0) / zoom,
                             (y1 - y0) / zoom)
                q.fillRect(to, checker)
                self._image.draw(q, to, src, zoom)
                if self._has_mask and self.mask_shown:
                    self._mask.draw(q, to, src, zoom)
            q.end()
        where = QRect(ox, oy, sw, sh)
        part = exposed.intersected(where)
        if not part.isEmpty():
            here = part.translated(-ox, -oy)
            p.drawImage(QRectF(part), self._scaled, QRectF(here.x() * dpr, here.y() * dpr,
                                                          here.width() * dpr,
                                                          here.height() * dpr))
        return where

    def _paint_preview(self, p: QPainter) -> None:
        """A generation step's preview, scaled once per preview and zoom (it is repainted
        with every progress event and every brush-cursor move while it shows)."""
        assert self._preview is not None
        rect, image = self._preview
        where = self.canvas_rect_on_widget(rect)
        size = where.toAlignedRect().size()
        if size.width() * size.height() > SCALED_MAX_PIXELS:  # zoomed in: the visible part
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            p.drawImage(where, image)
            return
        key = (image.cacheKey(), size.width(), size.height())
        if self._preview_scaled is None or self._preview_scaled[0] != key:
            self._preview_scaled = (key, image.scaled(
                size, Qt.AspectRatioMode.IgnoreAspectRatio,
                Qt.TransformationMode.SmoothTransformation))
        p.drawImage(where.toAlignedRect().topLeft(), self._preview_scaled[1])

    def _paint_selection(self, p: QPainter) -> None:
        rect = self._drag[2] if self._drag and self._drag[0] == "select" else self.doc.selection
        if not rect:
            return
        r = self.canvas_rect_on_widget(rect)
        # Dim the canvas outside the generation region.
        outside = self.canvas_rect_on_widget(self.doc.rect)
        shade = QColor(0, 0, 0, 90)
        p.fillRect(QRectF(outside.left(), outside.top(), outside.width(),
                          max(0.0, r.top() - outside.top())), shade)
        p.fillRect(QRectF(outside.left(), r.bottom(), outside.width(),
                          max(0.0, outside.bottom() - r.bottom())), shade)
        top, bottom = max(r.top(), outside.top()), min(r.bottom(), outside.bottom())
        if bottom > top:
            p.fillRect(QRectF(outside.left(), top, max(0.0, r.left() - outside.left()),
                              bottom - top), shade)
            p.fillRect(QRectF(r.right(), top, max(0.0, outside.right() - r.right()),
                              bottom - top), shade)
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(QPen(QColor(0, 0, 0, 180), 1))
        p.drawRect(r)
        pen = QPen(color("accent"), 1.5, Qt.PenStyle.DashLine)
        p.setPen(pen)
        p.drawRect(r)
        p.setPen(color("text"))
        p.drawText(r.topLeft() + QPointF(4, -6), f"{rect[2]}×{rect[3]}")

    def _paint_brush_cursor(self, p: QPainter) -> None:
        if self.tool not in tools.PAINT_TOOLS or self._cursor.x() < 0 or self._space:
            return
        radius = self.brush.size * self.zoom / 2
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setPen(QPen(QColor(0, 0, 0, 160), 2.5))
        p.drawEllipse(self._cursor, radius, radius)
        p.setPen(QPen(QColor(255, 255, 255, 220), 1))
        p.drawEllipse(self._cursor, radius, radius)

    # -- input ---------------------------------------------------------------------------
    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.set_zoom(self.zoom * (1.25 ** steps), event.position())

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = True
            self._update_cursor()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self._update_cursor()
            return
        super().keyReleaseEvent(event)

    def _update_cursor(self) -> None:
        if self._space or self.tool == tools.PAN:
            self.setCursor(Qt.CursorShape.OpenHandCursor)
        elif self.tool in tools.PAINT_TOOLS:
            self.setCursor(Qt.CursorShape.BlankCursor)
        else:
            self.setCursor(Qt.CursorShape.CrossCursor)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        pos = event.position()
        self.setFocus()
        if event.button() == Qt.MouseButton.MiddleButton or (
                event.button() == Qt.MouseButton.LeftButton
                and (self._space or self.tool == tools.PAN)):
            self._drag = ("pan", pos, QPointF(self.offset))
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        if event.button() != Qt.MouseButton.LeftButton:
            return
        c = self.to_canvas(pos)
        if self.tool in tools.PAINT_TOOLS:
            self.begin_stroke(c)
        elif self.tool == tools.SELECT:
            self._drag = ("select", c, None)
        elif self.tool == tools.PICKER:
            self.pick_color(c)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        pos = event.position()
        old = self._cursor
        self._cursor = pos
        c = self.to_canvas(pos)
        self.cursor_moved.emit(int(c.x()), int(c.y()))
        if self._drag is not None and self._drag[0] == "pan":
            self._auto_fit = False
            self.offset = self._drag[2] + (pos - self._drag[1])
            self.update()
            return
        if self._stroke is not None:
            self.continue_stroke(c)
        elif self._drag is not None and self._drag[0] == "select":
            self._drag = ("select", self._drag[1], _rect_from(self._drag[1], c))
            self.update()
        if self.tool in tools.PAINT_TOOLS:
            r = self.brush.size * self.zoom / 2 + 4
            for centre in (old, pos):
                self.update(QRectF(centre.x() - r, centre.y() - r, 2 * r, 2 * r).toAlignedRect())

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        drag, self._drag = self._drag, None
        if drag is not None and drag[0] == "pan":
            self._update_cursor()
            return
        if self._stroke is not None:
            self.end_stroke()
        elif drag is not None and drag[0] == "select":
            rect = drag[2]
            self.set_selection(rect if rect and rect[2] >= 8 and rect[3] >= 8 else None)

    def leaveEvent(self, event: Any) -> None:  # noqa: N802
        self._cursor = QPointF(-1, -1)
        self.update()

    # -- editing (also driven by tests) --------------------------------------------------
    def set_selection(self, rect: Rect | None) -> None:
        if rect != self.doc.selection:
            self.undo.push(SetSelection(rect, "Select region" if rect else "Select all"))

    def begin_stroke(self, c: QPointF) -> None:
        active = self.doc.active_layer
        if active is not None and active.is_group:  # no pixels of its own: say so
            self.group_painted.emit(active.name)
            return
        self._macro = self.undo.macro("Brush stroke")
        self._macro.__enter__()
        layer = self.doc.active_layer
        if layer is None:  # painting on an empty document starts a paint layer
            blank = Layer.blank(self.doc.width, self.doc.height, "Paint", kind="paint")
            self.undo.push(AddLayer(blank, text="Add paint layer"))
            layer = self.doc.active_layer
        assert layer is not None
        self._stroke = Stroke(self.doc, layer, self.tool, self.brush)
        self.continue_stroke(c)

    def continue_stroke(self, c: QPointF) -> None:
        if self._stroke is None:
            return
        rect = self._stroke.move_to(c.x(), c.y())
        if rect is not None:
            what = self._stroke.target
            self.doc.emit("layer_changed", layer_id=self._stroke.layer.id, rect=rect, what=what)

    @property
    def is_stroking(self) -> bool:
        """A stroke is open: other edits wait for it (they would join its undo entry)."""
        return self._stroke is not None

    def end_stroke(self) -> None:
        stroke, self._stroke = self._stroke, None
        macro, self._macro = self._macro, None
        if stroke is None:
            return
        cmd = stroke.finish()
        if cmd is not None:
            self.undo.push(cmd)
        if macro is not None:
            macro.__exit__(None, None, None)
        self.stroke_ended.emit()

    def pick_color(self, c: QPointF) -> None:
        x, y = int(c.x()), int(c.y())
        if 0 <= x < self.doc.width and 0 <= y < self.doc.height:
            px = self.doc.composite((x, y, 1, 1))[0, 0]
            rgb = (int(px[0]), int(px[1]), int(px[2]))
            self.brush = BrushSettings(self.brush.size, self.brush.hardness,
                                       self.brush.opacity, rgb)
            self.color_picked.emit(rgb)


def _rect_from(a: QPointF, b: QPointF) -> Rect:
    x0, y0 = int(round(min(a.x(), b.x()))), int(round(min(a.y(), b.y())))
    x1, y1 = int(round(max(a.x(), b.x()))), int(round(max(a.y(), b.y())))
    return (x0, y0, x1 - x0, y1 - y0)

