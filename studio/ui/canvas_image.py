"""Image caches for the canvas: premultiplied composites and their reduced copies."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF
from PySide6.QtGui import QImage, QPainter

from studio.core.document.layers import Rect


def to_qimage(array: np.ndarray) -> QImage:
    """A QImage owning a copy of an HxWx3/4 uint8 array."""
    arr = np.ascontiguousarray(array)
    h, w = arr.shape[:2]
    fmt = QImage.Format.Format_RGB888 if arr.shape[2] == 3 else QImage.Format.Format_RGBA8888
    return QImage(arr.data, w, h, arr.strides[0], fmt).copy()


def premultiply(rgba: np.ndarray) -> np.ndarray:
    """Straight to premultiplied alpha (exact rounding of c * a / 255)."""
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        return rgba.copy()
    out = rgba.copy()
    x = rgba[..., :3].astype(np.uint16) * alpha[..., None] + 128
    out[..., :3] = ((x + (x >> 8)) >> 8).astype(np.uint8)
    return out


class MipImage:
    """A premultiplied RGBA image with 2x, 4x, 8x... reduced copies for zoomed-out drawing.

    Scaling a 4096x4096 image to fit a window costs tens of milliseconds a frame; drawing
    from the level nearest the zoom keeps panning and zooming smooth.

    Level of detail (as Krita's): the image is cut in ``tile`` x ``tile`` tiles, and
    ``valid`` says, for each tile, the finest level that is up to date there (coarser levels
    are always made from it; ``none``: nothing is, the tile shows what it showed before).
    A large change is drawn first at the level the view shows; the finer levels of a tile
    are drawn only when the view zooms in on it. ``version`` counts each tile's changes, so
    that a tile drawn from a document that changed meanwhile is not marked up to date.
    """

    MIN_SIDE = 256

    def __init__(self, width: int, height: int, tile: int = 512) -> None:
        self.levels: list[tuple[np.ndarray, QImage]] = []
        # What is drawn: each level in the painter's own byte order (ARGB32 premultiplied),
        # which Qt scales smoothly about ten times faster than RGBA8888 (a 1024 px
        # composite fitted to the window: 2 ms instead of 15 to 25 ms a paint).
        self.shown: list[tuple[np.ndarray, QImage]] = []
        w, h = width, height
        while True:
            arr = np.zeros((h, w, 4), np.uint8)
            image = QImage(arr.data, w, h, w * 4, QImage.Format.Format_RGBA8888_Premultiplied)
            self.levels.append((arr, image))
            bgra = np.zeros((h, w, 4), np.uint8)
            self.shown.append((bgra, QImage(bgra.data, w, h, w * 4,
                                            QImage.Format.Format_ARGB32_Premultiplied)))
            if min(w, h) < self.MIN_SIDE * 2:
                break
            w, h = w // 2, h // 2
        self.width, self.height = width, height
        self.tile = max(1, int(tile))
        rows, cols = -(-height // self.tile), -(-width // self.tile)
        self.valid = np.zeros((rows, cols), np.int16)  # all blank: up to date at level 0
        self.version = np.zeros((rows, cols), np.int64)

    @property
    def array(self) -> np.ndarray:
        return self.levels[0][0]

    @property
    def image(self) -> QImage:
        return self.levels[0][1]

    @property
    def none(self) -> int:
        """The ``valid`` value of a tile up to date at no level."""
        return len(self.levels)

    def level_for(self, zoom: float) -> int:
        """The level drawn at ``zoom``: the smallest one still at least the screen's size."""
        level = 0
        while level + 1 < len(self.levels) and zoom * (2 ** (level + 1)) <= 1.0:
            level += 1
        return level

    def tiles(self, rect: Rect) -> list[tuple[int, int]]:
        """The tiles ``(column, row)`` that ``rect`` (level-0 pixels) touches."""
        rows, cols = self.tile_span(rect)
        return [(c, r) for r in range(rows.start, rows.stop) for c in range(cols.start, cols.stop)]

    def tile_span(self, rect: Rect) -> tuple[slice, slice]:
        """The rows and columns of the tiles ``rect`` touches, as slices of ``valid``
        (whole-array work on the GUI thread instead of a Python loop over 256 tiles)."""
        x, y, w, h = rect
        t = self.tile
        c0, r0 = max(0, x // t), max(0, y // t)
        c1 = min(self.valid.shape[1], -(-(x + w) // t))
        r1 = min(self.valid.shape[0], -(-(y + h) // t))
        return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))

    def tile_rect(self, col: int, row: int) -> Rect:
        t = self.tile
        x, y = col * t, row * t
        return (x, y, min(t, self.width - x), min(t, self.height - y))

    def stale(self, rect: Rect) -> list[tuple[int, int]]:
        """Mark the tiles under ``rect`` as changed (up to date at no level); returns them."""
        span = self.tile_span(rect)
        self.valid[span] = self.none
        self.version[span] += 1
        return self.tiles(rect)

    def finest(self, rect: Rect) -> int:
        """The coarsest of the tiles' finest up-to-date levels over ``rect``."""
        tiles = self.tiles(rect)
        return max((int(self.valid[r, c]) for c, r in tiles), default=0)

    def update(self, rect: Rect) -> None:
        """Recompute the reduced levels over ``rect`` after level 0 changed there."""
        x, y, w, h = rect
        self._reduce_from(0, x, y, x + w, y + h)

    def write(self, level: int, rect: Rect, pixels: np.ndarray) -> None:
        """Put ``pixels`` (drawn at ``level``) over ``rect`` (level-0 pixels, its corner on
        the level's grid) and recompute the coarser levels there."""
        f = 2 ** level
        arr = self.levels[level][0]
        x0, y0 = rect[0] // f, rect[1] // f
        h = min(pixels.shape[0], arr.shape[0] - y0)
        w = min(pixels.shape[1], arr.shape[1] - x0)
        if h <= 0 or w <= 0:
            return
        arr[y0:y0 + h, x0:x0 + w] = pixels[:h, :w]
        self._reduce_from(level, x0, y0, x0 + w, y0 + h)

    def _reduce_from(self, level: int, x0: int, y0: int, x1: int, y1: int) -> None:
        """``level`` changed over the box (its pixels): redraw it and the coarser levels."""
        self._show(level, x0, y0, x1, y1)
        for i in range(level + 1, len(self.levels)):
            src, dst = self.levels[i - 1][0], self.levels[i][0]
            x0, y0 = x0 // 2, y0 // 2
            x1, y1 = min(dst.shape[1], (x1 + 1) // 2), min(dst.shape[0], (y1 + 1) // 2)
            if x1 <= x0 or y1 <= y0:
                return
            dst[y0:y1, x0:x1] = reduce_box(src[2 * y0:2 * y1, 2 * x0:2 * x1], 2)
            self._show(i, x0, y0, x1, y1)

    def _show(self, level: int, x0: int, y0: int, x1: int, y1: int) -> None:
        """Copy ``level`` over the rect into its drawn copy (R and B swapped)."""
        src = self.levels[level][0][max(0, y0):y1, max(0, x0):x1]
        dst = self.shown[level][0][max(0, y0):y1, max(0, x0):x1]
        dst[..., 0] = src[..., 2]
        dst[..., 1] = src[..., 1]
        dst[..., 2] = src[..., 0]
        dst[..., 3] = src[..., 3]

    def draw(self, painter: QPainter, dst: QRectF, src: QRectF, zoom: float) -> None:
        """Draw ``src`` (level-0 pixels) into ``dst`` from the level that suits ``zoom``;
        a tile not yet drawn at that level is drawn from its finest up-to-date one."""
        level = self.level_for(zoom)
        x0, y0 = int(src.x()), int(src.y())
        rect = (x0, y0, int(np.ceil(src.right())) - x0, int(np.ceil(src.bottom())) - y0)
        tiles = self.tiles(rect)
        coarser = [(c, r, int(self.valid[r, c])) for c, r in tiles
                   if level < self.valid[r, c] < self.none]
        if not coarser:
            self._draw_level(painter, dst, src, level)
            return
        sx, sy = dst.width() / max(src.width(), 1e-9), dst.height() / max(src.height(), 1e-9)
        finer = {(c, r) for c, r, _v in coarser}
        for c, r in tiles:  # row by row: the painter draws each tile from its own level
            part = QRectF(*self.tile_rect(c, r)).intersected(src)
            if part.isEmpty():
                continue
            to = QRectF(dst.x() + (part.x() - src.x()) * sx, dst.y() + (part.y() - src.y()) * sy,
                        part.width() * sx, part.height() * sy)
            self._draw_level(painter, to, part,
                             int(self.valid[r, c]) if (c, r) in finer else level)

    def _draw_level(self, painter: QPainter, dst: QRectF, src: QRectF, level: int) -> None:
        f = 2 ** level
        painter.drawImage(dst, self.shown[level][1],
                          QRectF(src.x() / f, src.y() / f, src.width() / f, src.height() / f))


def reduce_box(array: np.ndarray, f: int) -> np.ndarray:
    """``array`` (HxWxC uint8) reduced ``f`` times by block averages (rounded); a last
    partial row or column of blocks is left out."""
    h, w = array.shape[0] // f, array.shape[1] // f
    if f == 1:
        return array.copy()
    if f == 2:
        block = array[:2 * h, :2 * w].astype(np.uint16)
        return ((block[0::2, 0::2] + block[1::2, 0::2] + block[0::2, 1::2] + block[1::2, 1::2]
                 + 2) >> 2).astype(np.uint8)
    blocks = array[:h * f, :w * f].reshape(h, f, w, f, array.shape[2])
    total = blocks.sum(axis=(1, 3), dtype=np.uint32)
    return ((total + f * f // 2) // (f * f)).astype(np.uint8)
