"""Painting tools as plain numpy code: brush dabs and strokes recorded as bbox diffs.

A ``Stroke`` paints straight into the live layer (so the canvas follows the pen), keeps a
copy of each 64x64 tile before its first change, and at the end becomes one
``PaintPixels`` command holding only the changed box (old and new pixels): one undo entry
per stroke, no snapshot of the layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from studio.core.document.edits import PaintPixels
from studio.core.document.layers import Document, Layer, Rect, intersect

TILE = 64

BRUSH = "brush"
ERASER = "eraser"
MASK_BRUSH = "mask_brush"
MASK_ERASER = "mask_eraser"
SELECT = "select"
PICKER = "picker"
PAN = "pan"
TOOLS = (BRUSH, ERASER, MASK_BRUSH, MASK_ERASER, SELECT, PICKER, PAN)
PAINT_TOOLS = (BRUSH, ERASER, MASK_BRUSH, MASK_ERASER)


@dataclass(frozen=True)
class BrushSettings:
    """Size in canvas pixels; hardness, opacity in 0..1; colour as RGB 0..255."""

    size: int = 24
    hardness: float = 0.7
    opacity: float = 1.0
    color: tuple[int, int, int] = (240, 240, 240)

    def resized(self, factor: float) -> BrushSettings:
        return replace(self, size=int(max(1, min(1024, round(self.size * factor)))))


def dab_alpha(radius: float, hardness: float, cx: float, cy: float,
              box: Rect) -> np.ndarray:
    """Coverage (0..1, float32) of a round dab centred at ``(cx, cy)`` over ``box``."""
    x, y, w, h = box
    ys = np.arange(y, y + h, dtype=np.float32)[:, None] + 0.5 - cy
    xs = np.arange(x, x + w, dtype=np.float32)[None, :] + 0.5 - cx
    dist = np.sqrt(xs * xs + ys * ys) / max(radius, 0.5)
    hard = min(max(hardness, 0.0), 0.999)
    alpha = np.clip((1.0 - dist) / (1.0 - hard), 0.0, 1.0)
    return alpha.astype(np.float32)


class Stroke:
    """One stroke of a paint tool on one layer, in canvas coordinates."""

    def __init__(self, doc: Document, layer: Layer, tool: str, brush: BrushSettings) -> None:
        self.doc = doc
        self.layer = layer
        self.tool = tool
        self.brush = brush
        self.target = "mask" if tool in (MASK_BRUSH, MASK_ERASER) else "pixels"
        self._created_mask = False
        if self.target == "mask" and layer.mask is None:
            layer.mask = np.zeros(layer.pixels.shape[:2], dtype=np.uint8)
            self._created_mask = True
        self._tiles: dict[tuple[int, int], np.ndarray] = {}
        self._bbox: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1 (layer coords)
        self._last: tuple[float, float] | None = None

    @property
    def array(self) -> np.ndarray:
        return self.layer.pixels if self.target == "pixels" else self.layer.mask  # type: ignore

    # -- painting ------------------------------------------------------------------------
    def move_to(self, x: float, y: float) -> Rect | None:
        """Paint from the last point to ``(x, y)``; returns the changed canvas rect."""
        spacing = max(1.0, self.brush.size * 0.15)
        points = [(x, y)]
        if self._last is not None:
            lx, ly = self._last
            n = int(math.hypot(x - lx, y - ly) / spacing)
            points = [(lx + (x - lx) * i / (n + 1), ly + (y - ly) * i / (n + 1))
                      for i in range(1, n + 1)] + points
        self._last = (x, y)
        changed: Rect | None = None
        for px, py in points:
            rect = self._dab(px - self.layer.x, py - self.layer.y)
            if rect is not None:
                changed = rect if changed is None else _union(changed, rect)
        if changed is None:
            return None
        return (changed[0] + self.layer.x, changed[1] + self.layer.y, changed[2], changed[3])

    def _dab(self, cx: float, cy: float) -> Rect | None:
        r = self.brush.size / 2.0
        box = (int(math.floor(cx - r)), int(math.floor(cy - r)),
               int(math.ceil(2 * r)) + 1, int(math.ceil(2 * r)) + 1)
        box = intersect(box, (0, 0, self.layer.width, self.layer.height))
        if box is None:
            return None
        self._backup(box)
        x, y, w, h = box
        a = dab_alpha(r, self.brush.hardness, cx, cy, box) * self.brush.opacity
        region = self.array[y:y + h, x:x + w]
        locked = self.target == "pixels" and self.layer.lock_alpha
        if locked and self.tool == BRUSH:  # alpha locked: colour changes, coverage stays
            px = region[..., :3].astype(np.float32)
            color = np.array(self.brush.color, dtype=np.float32)
            src_a = a[..., None] * (region[..., 3:4] > 0)
            region[..., :3] = np.clip(px + (color - px) * src_a + 0.5, 0, 255).astype(np.uint8)
        elif locked and self.tool == ERASER:
            pass  # erasing changes only alpha, which is locked
        elif self.tool == BRUSH:
            px = region.astype(np.float32)
            color = np.array(self.brush.color, dtype=np.float32)
            src_a = a[..., None]
            dst_a = px[..., 3:4] / 255.0
            out_a = src_a + dst_a * (1 - src_a)
            safe = np.maximum(out_a, 1e-6)
            rgb = (color * src_a + px[..., :3] * dst_a * (1 - src_a)) / safe
            region[..., :3] = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
            region[..., 3] = np.clip(out_a[..., 0] * 255 + 0.5, 0, 255).astype(np.uint8)
        elif self.tool == ERASER:
            region[..., 3] = (region[..., 3] * (1 - a) + 0.5).astype(np.uint8)
        elif self.tool == MASK_BRUSH:
            np.maximum(region, (a * 255 + 0.5).astype(np.uint8), out=region)
        elif self.tool == MASK_ERASER:
            region[...] = (region * (1 - a) + 0.5).astype(np.uint8)
        x1, y1 = x + w, y + h
        b = self._bbox
        self._bbox = (x, y, x1, y1) if b is None else (min(b[0], x), min(b[1], y),
                                                      max(b[2], x1), max(b[3], y1))
        return box

    def _backup(self, box: Rect) -> None:
        x, y, w, h = box
        arr = self.array
        for ty in range(y // TILE, (y + h - 1) // TILE + 1):
            for tx in range(x // TILE, (x + w - 1) // TILE + 1):
                if (tx, ty) not in self._tiles:
                    self._tiles[(tx, ty)] = arr[ty * TILE:(ty + 1) * TILE,
                                                tx * TILE:(tx + 1) * TILE].copy()

    # -- finishing -----------------------------------------------------------------------
    def finish(self, text: str = "") -> PaintPixels | None:
        """The stroke as a command (already applied), or ``None`` if nothing changed."""
        if self._bbox is None:
            self.restore()
            return None
        x0, y0, x1, y1 = self._bbox
        new = self.array[y0:y1, x0:x1].copy()
        old = new.copy()
        for (tx, ty), tile in self._tiles.items():
            tx0, ty0 = tx * TILE, ty * TILE
            part = intersect((tx0, ty0, tile.shape[1], tile.shape[0]),
                             (x0, y0, x1 - x0, y1 - y0))
            if part is None:
                continue
            px, py, pw, ph = part
            old[py - y0:py - y0 + ph, px - x0:px - x0 + pw] = \
                tile[py - ty0:py - ty0 + ph, px - tx0:px - tx0 + pw]
        if self._created_mask:
            self.layer.mask = None  # the command creates it again, so undo removes it
        names = {BRUSH: "Brush stroke", ERASER: "Eraser stroke", MASK_BRUSH: "Paint mask",
                 MASK_ERASER: "Erase mask"}
        return PaintPixels(self.layer.id, x0, y0, old, new, self.target,
                           text or names.get(self.tool, "Paint"))

    def restore(self) -> Rect | None:
        """Put back the pixels as they were (a cancelled stroke)."""
        arr = self.array
        for (tx, ty), tile in self._tiles.items():
            arr[ty * TILE:ty * TILE + tile.shape[0], tx * TILE:tx * TILE + tile.shape[1]] = tile
        if self._created_mask:
            self.layer.mask = None
        if self._bbox is None:
            return None
        x0, y0, x1, y1 = self._bbox
        return (x0 + self.layer.x, y0 + self.layer.y, x1 - x0, y1 - y0)


def _union(a: Rect, b: Rect) -> Rect:
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return (x0, y0, x1 - x0, y1 - y0)


def mask_in(doc: Document, rect: Rect) -> np.ndarray:
    """The union of the visible layers' inpaint masks over ``rect`` (HxW uint8)."""
    x, y, w, h = rect
    out = np.zeros((h, w), dtype=np.uint8)
    for layer in doc.layers:
        if layer.mask is None or not layer.visible:
            continue
        part = intersect(rect, layer.rect)
        if part is None:
            continue
        px, py, pw, ph = part
        src = layer.mask[py - layer.y:py - layer.y + ph, px - layer.x:px - layer.x + pw]
        dst = out[py - y:py - y + ph, px - x:px - x + pw]
        np.maximum(dst, src, out=dst)
    return out
