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
    """

    MIN_SIDE = 256

    def __init__(self, width: int, height: int) -> None:
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

    @property
    def array(self) -> np.ndarray:
        return self.levels[0][0]

    @property
    def image(self) -> QImage:
        return self.levels[0][1]

    def update(self, rect: Rect) -> None:
        """Recompute the reduced levels over ``rect`` after level 0 changed there."""
        x, y, w, h = rect
        self._show(0, x, y, x + w, y + h)
        for i in range(1, len(self.levels)):
            src, dst = self.levels[i - 1][0], self.levels[i][0]
            x0, y0 = x // 2, y // 2
            x1 = min(dst.shape[1], (x + w + 1) // 2)
            y1 = min(dst.shape[0], (y + h + 1) // 2)
            if x1 <= x0 or y1 <= y0:
                return
            block = src[2 * y0:2 * y1, 2 * x0:2 * x1].astype(np.uint16)
            dst[y0:y1, x0:x1] = ((block[0::2, 0::2] + block[1::2, 0::2] + block[0::2, 1::2]
                                  + block[1::2, 1::2] + 2) >> 2).astype(np.uint8)
            self._show(i, x0, y0, x1, y1)
            x, y, w, h = x0, y0, x1 - x0, y1 - y0

    def _show(self, level: int, x0: int, y0: int, x1: int, y1: int) -> None:
        """Copy ``level`` over the rect into its drawn copy (R and B swapped)."""
        src = self.levels[level][0][max(0, y0):y1, max(0, x0):x1]
        dst = self.shown[level][0][max(0, y0):y1, max(0, x0):x1]
        dst[..., 0] = src[..., 2]
        dst[..., 1] = src[..., 1]
        dst[..., 2] = src[..., 0]
        dst[..., 3] = src[..., 3]

    def draw(self, painter: QPainter, dst: QRectF, src: QRectF, zoom: float) -> None:
        """Draw ``src`` (level-0 pixels) into ``dst`` from the level that suits ``zoom``."""
        level = 0
        while level + 1 < len(self.levels) and zoom * (2 ** (level + 1)) <= 1.0:
            level += 1
        f = 2 ** level
        painter.drawImage(dst, self.shown[level][1],
                          QRectF(src.x() / f, src.y() / f, src.width() / f, src.height() / f))
