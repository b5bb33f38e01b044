"""Contact sheets: a grid of images with a caption under each, as one RGB image.

By default the cells take the images' own size (small images are enlarged by a whole
factor, pixels kept sharp, so a sheet of 64 px portraits is not mostly empty), and a caption
can hold several paragraphs: the prompt, then the settings (``caption_with_prompt``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from studio.core.jobs.request import GenerationRequest

Color = tuple[int, int, int]
MIN_CELL = 160  # smaller images are enlarged (by a whole factor) to at least this
MAX_CELL = 256  # larger ones are scaled down to fit


def caption_for(request: GenerationRequest) -> str:
    """A short caption naming what tells a batch's images apart: seed and settings."""
    return (f"seed {request.seed} · {request.scheduler} · {request.steps} steps · "
            f"CFG {request.guidance:g}")


def _width(font: ImageFont.ImageFont | ImageFont.FreeTypeFont, text: str) -> float:
    """Drawn width including glyph overhang (the advance width alone can be a pixel short)."""
    return max(font.getbbox(text)[2], font.getlength(text)) if text else 0


def caption_with_prompt(request: GenerationRequest) -> str:
    """The prompt, then the settings (``caption_for``): two paragraphs of a caption."""
    prompt = " ".join(request.prompt.split()) or request.task
    return f"{prompt}\n{caption_for(request)}"


def _wrap(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
          width: int) -> list[str]:
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
    return out


def _cut(lines: list[str], font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int,
         keep: int) -> list[str]:
    """The first ``keep`` lines, each within ``width``; "…" where something was cut."""
    cut = len(lines) > keep
    out = lines[:keep]
    for i, text_line in enumerate(out):
        last = i == len(out) - 1
        if _width(font, text_line) <= width and not (last and cut):
            continue
        while text_line and _width(font, text_line + "…") > width:
            text_line = text_line[:-1]
        out[i] = text_line.rstrip() + "…"
    return out


def _fit(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int,
         lines: int) -> list[str]:
    """Wrap ``text`` into at most ``lines`` lines of ``width`` pixels, ending in "…" if cut.
    Each paragraph (``"\n"``) starts a line and keeps at least one line of its own."""
    paragraphs = [p for p in text.split("\n") if p.strip()] or [""]
    out: list[str] = []
    for i, paragraph in enumerate(paragraphs):
        room = lines - len(out) - (len(paragraphs) - i - 1)
        if room <= 0:
            break
        out.extend(_cut(_wrap(paragraph, font, width), font, width, room))
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


def _cell_size(images: Sequence[np.ndarray], cell: int | None) -> tuple[int, int, int]:
    """(cell width, cell height, enlargement): a ``cell`` square when given, else the images'
    largest size, enlarged by a whole factor up to ``MIN_CELL`` or fitted into ``MAX_CELL``."""
    if cell is not None:
        return cell, cell, 1
    w = max(int(np.asarray(im).shape[1]) for im in images)
    h = max(int(np.asarray(im).shape[0]) for im in images)
    side = max(w, h)
    if side > MAX_CELL:
        f = MAX_CELL / side
        return max(1, round(w * f)), max(1, round(h * f)), 1
    factor = max(1, math.ceil(MIN_CELL / side))
    return w * factor, h * factor, factor


def contact_sheet(images: Sequence[np.ndarray], captions: Sequence[str] | None = None, *,
                  columns: int | None = None, cell: int | None = None, padding: int = 8,
                  caption_lines: int = 2, background: Color = (24, 24, 24),
                  text_color: Color = (230, 230, 230)) -> np.ndarray:
    """A grid of ``images`` with ``captions`` underneath, as an ``HxWx3`` uint8 array.

    Parameters
    ----------
    images
        ``HxW``, ``HxWx3`` or ``HxWx4`` uint8 arrays; transparency shows ``background``.
    captions
        One per image (wrapped, and cut with "…" past ``caption_lines`` lines; a ``"\n"``
        starts a paragraph, e.g. ``caption_with_prompt``), or ``None``.
    columns
        Images per row; by default about square (``ceil(sqrt(n))``).
    cell
        Each image is scaled to fit a ``cell`` x ``cell`` square (never enlarged) and
        centred. ``None`` (the default): the cells take the largest image's size; images
        under ``MIN_CELL`` pixels are enlarged by a whole factor (sharp pixels), images over
        ``MAX_CELL`` scaled down.

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
    box_w, box_h, factor = _cell_size(images, cell)
    font = ImageFont.load_default()
    ascent, descent = font.getmetrics() if hasattr(font, "getmetrics") else (11, 0)
    line_height = ascent + descent + 2
    text_height = (caption_lines * line_height + padding // 2) if captions is not None else 0
    cell_w, cell_h = box_w + padding, box_h + text_height + padding
    sheet = Image.new("RGB", (cols * cell_w + padding, rows * cell_h + padding), background)
    draw = ImageDraw.Draw(sheet)
    for i, image in enumerate(images):
        left = padding + (i % cols) * cell_w
        top = padding + (i // cols) * cell_h
        thumb = _rgb(image, background)
        if factor > 1:
            thumb = thumb.resize((thumb.width * factor, thumb.height * factor),
                                 Image.Resampling.NEAREST)
        thumb.thumbnail((box_w, box_h), Image.Resampling.LANCZOS)
        sheet.paste(thumb, (left + (box_w - thumb.width) // 2,
                            top + (box_h - thumb.height) // 2))
        if captions is not None:
            y = top + box_h + padding // 2
            for line in _fit(captions[i], font, box_w, caption_lines):
                draw.text((left, y), line, fill=text_color, font=font)
                y += line_height
    return np.asarray(sheet)
