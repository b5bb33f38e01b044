"""How the canvas decides the task, and the requests it makes: plain functions, no widgets.

The generation region is the selection (or the whole canvas). In it:
* nothing painted -> text to image;
* an inpaint mask painted -> inpainting with that mask;
* empty (transparent, or past the canvas) areas next to content -> outpainting: those
  areas become the mask and are filled;
* otherwise -> image to image from the composite of the region.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from studio.core.document.layers import Document, Rect, intersect
from studio.core.document.pixels import Pixels
from studio.ui.canvas_tools import mask_in

TXT2IMG, IMG2IMG, INPAINT, OUTPAINT = "txt2img", "img2img", "inpaint", "outpaint"
MODE_TEXT = {
    TXT2IMG: "Text to image",
    IMG2IMG: "Image to image: the region is the init image",
    INPAINT: "Inpainting: the painted mask is regenerated",
    OUTPAINT: "Outpainting: the empty area is filled",
}


@dataclass(frozen=True)
class GenerationPlan:
    """What a generation does to the document, decided when it is submitted."""

    mode: str  # TXT2IMG, IMG2IMG, INPAINT or OUTPAINT
    rect: Rect  # where the result lands, in canvas pixels (may lie past the canvas)
    width: int  # the request size (multiples of 8)
    height: int
    init_image: Pixels | None = None
    mask: Pixels | None = None
    layer_mask: np.ndarray | None = None  # region-sized: where the result shows
    canvas_size: tuple[int, int] | None = None  # grow the canvas first (empty document)

    @property
    def task(self) -> str:
        return "inpaint" if self.mode in (INPAINT, OUTPAINT) else self.mode


def request_size(region_w: int, region_h: int, target_w: int, target_h: int) -> tuple[int, int]:
    """The region's aspect ratio at about the target's pixel count, in multiples of 8."""
    scale = math.sqrt((target_w * target_h) / max(1, region_w * region_h))
    w = max(8, min(4096, int(round(region_w * scale / 8)) * 8))
    h = max(8, min(4096, int(round(region_h * scale / 8)) * 8))
    return w, h


def _coverage(doc: Document, rect: Rect, step: int = 1) -> np.ndarray:
    """Max alpha of the visible layers over ``rect`` (sampled every ``step`` pixels)."""
    x, y, w, h = rect
    out = np.zeros(((h + step - 1) // step, (w + step - 1) // step), np.uint8)
    for layer in doc.layers:
        if not layer.visible or layer.opacity <= 0:
            continue
        part = intersect(rect, layer.rect)
        if part is None:
            continue
        px, py, pw, ph = part
        # Align the sample grid with the region's grid.
        ox, oy = (-(px - x)) % step, (-(py - y)) % step
        src = layer.pixels[py - layer.y + oy:py - layer.y + ph:step,
                           px - layer.x + ox:px - layer.x + pw:step, 3]
        dy, dx = (py - y + oy) // step, (px - x + ox) // step
        dst = out[dy:dy + src.shape[0], dx:dx + src.shape[1]]
        np.maximum(dst, src[:dst.shape[0], :dst.shape[1]], out=dst)
    return out


def refines(strength: float) -> bool:
    """Whether a covered region is refined (image to image) rather than replaced.

    As in Krita's AI Diffusion plug-in: Strength 1 generates a new image over the region
    (text to image; image to image at strength 1 would keep nothing of it anyway), any
    lower Strength refines what is there.
    """
    return strength < 1.0


def detect_mode(doc: Document, strength: float = 1.0) -> str:
    """The mode a generation would use now (cheap: sampled, for the mode label)."""
    rect = doc.generation_rect
    step = max(1, max(rect[2], rect[3]) // 256)
    alpha = _coverage(doc, rect, step)
    if not alpha.any():
        return TXT2IMG
    if mask_in(doc, rect)[::step, ::step].any():
        return INPAINT
    if (alpha < 128).any():
        return OUTPAINT
    return IMG2IMG if refines(strength) else TXT2IMG


def _resize(array: np.ndarray, width: int, height: int) -> np.ndarray:
    if array.shape[1] == width and array.shape[0] == height:
        return np.ascontiguousarray(array)
    from PIL import Image

    return np.asarray(Image.fromarray(array).resize((width, height), Image.LANCZOS))


def plan_generation(doc: Document, target_w: int, target_h: int,
                    strength: float = 1.0) -> GenerationPlan:
    """Decide the task, region, size, init image and mask for the next generation.

    A region the visible layers cover fully is refined (image to image) when ``strength``
    is below 1 and replaced by a new image (text to image, as a new layer) at 1.
    """
    if not doc.layers and doc.selection is None:
        size = (target_w, target_h)
        return GenerationPlan(TXT2IMG, (0, 0, target_w, target_h), target_w, target_h,
                              canvas_size=None if size == (doc.width, doc.height) else size)
    rect = doc.generation_rect
    width, height = request_size(rect[2], rect[3], target_w, target_h)
    alpha = _coverage(doc, rect)
    if not alpha.any():
        return GenerationPlan(TXT2IMG, rect, width, height)
    painted = mask_in(doc, rect)
    if not painted.any() and alpha.min() >= 128 and not refines(strength):
        # A new image over a covered region: no composite needed (seconds on 8000x8000).
        return GenerationPlan(TXT2IMG, rect, width, height)
    composite = doc.composite(rect)
    # Empty areas show mid grey to the model: a neutral start for outpainting.
    a = composite[..., 3:4].astype(np.float32) / 255.0
    rgb = (composite[..., :3] * a + 127.0 * (1.0 - a) + 0.5).astype(np.uint8)
    init = Pixels.from_array(_resize(rgb, width, height))
    empty = (alpha < 128).astype(np.uint8) * 255
    if painted.any():
        mode, mask = INPAINT, np.maximum(painted, empty)
    elif empty.any():
        mode, mask = OUTPAINT, empty
    elif refines(strength):
        return GenerationPlan(IMG2IMG, rect, width, height, init_image=init)
    else:
        return GenerationPlan(TXT2IMG, rect, width, height)
    mask_px = Pixels.from_array(_resize(mask, width, height))
    return GenerationPlan(mode, rect, width, height, init_image=init, mask=mask_px,
                          layer_mask=mask)
