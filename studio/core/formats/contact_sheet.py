"""Contact sheets: a grid of images with a caption under each, as one RGB image."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from studio.core.jobs.request import GenerationRequest

Color = tuple[int, int, int]


def caption_for(request: GenerationRequest) -> str:
    """A short caption naming what tells a batch's images apart: seed and settings."""
    return (f"seed {request.seed} · {request.scheduler} · {request.steps} steps · "
            f"CFG {request.guidance:g}")


def _width(font: ImageFont.ImageFont | ImageFont.FreeTypeFont, text: str) -> float:
    """Drawn width including glyph overhang (the advance width alone can be a pixel short)."""
    return max(font.getbbox(text)[2], font.getlength(text)) if text else 0


def _fit(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int,
         lines: int) -> list[str]:
    """Wrap ``text`` into at most ``lines`` lines of ``width`` pixels, ending in "…" if cut."""
    words, out, line = text.split(), [], ""
    for word in words:
        trial = f"{line} {word}".strip()
        if _width(font, trial) <= width or not line:
            line = trial
        else:
            out.append(line)
            line = word
    if line:
        out.append(line)
    cut = len(out) > lines
    out = out[:lines]
    for i, text_line in enumerate(out):
        last = i == len(out) - 1
        if _width(font, text_line) <= width and not (last and cut):
            continue
        while text_line and _width(font, text_line + "…") > width:
            text_line = text_line[:-1]
        out[i] = text_line.rstrip() + "…"
    return out


def _rgb(image: np.ndarray, background: Color) -> Image.Image:
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 image array, got {arr.dtype} {arr.shape}")
    im = Image.fromarray(arr)
    if im.mode in ("RGBA", "LA"):
        flat = Image.new("RGB", im.size, background)
        flat.paste(im.convert("RGBA"), mask=im.getchannel("A"))
        return flat
    return im.convert("RGB")


def contact_sheet(images: Sequence[np.ndarray], captions: Sequence[str] | None = None, *,
                  columns: int | None = None, cell: int = 256, padding: int = 8,
                  caption_lines: int = 2, background: Color = (24, 24, 24),
                  text_color: Color = (230, 230, 230)) -> np.ndarray:
    """A grid of ``images`` with ``captions`` underneath, as an ``HxWx3`` uint8 array.

    Parameters
    ----------
    images
        ``HxW``, ``HxWx3`` or ``HxWx4`` uint8 arrays; each is scaled to fit a ``cell`` x
        ``cell`` square (never enlarged) and centred; transparency shows ``background``.
    captions
        One per image (wrapped, and cut with "…" past ``caption_lines`` lines), or ``None``.
    columns
        Images per row; by default about square (``ceil(sqrt(n))``).

    Raises
    ------
    ValueError
        No images, or a different number of captions than images.
    """
    if not images:
        raise ValueError("a contact sheet needs at least one image")
    if captions is not None and len(captions) != len(images):
        raise ValueError("give one caption per image")
    cols = max(1, min(columns or math.ceil(math.sqrt(len(images))), len(images)))
    rows = math.ceil(len(images) / cols)
    font = ImageFont.load_default()
    ascent, descent = font.getmetrics() if hasattr(font, "getmetrics") else (11, 0)
    line_height = ascent + descent + 2
    text_height = (caption_lines * line_height + padding // 2) if captions is not None else 0
    cell_w, cell_h = cell + padding, cell + text_height + padding
    sheet = Image.new("RGB", (cols * cell_w + padding, rows * cell_h + padding), background)
    draw = ImageDraw.Draw(sheet)
    for i, image in enumerate(images):
        left = padding + (i % cols) * cell_w
        top = padding + (i // cols) * cell_h
        thumb = _rgb(image, background)
        thumb.thumbnail((cell, cell), Image.Resampling.LANCZOS)
        sheet.paste(thumb, (left + (cell - thumb.width) // 2, top + (cell - thumb.height) // 2))
        if captions is not None:
            y = top + cell + padding // 2
            for line in _fit(captions[i], font, cell, caption_lines):
                draw.text((left, y), line, fill=text_color, font=font)
                y += line_height
    return np.asarray(sheet)
