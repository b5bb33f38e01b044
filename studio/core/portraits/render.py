"""Procedural captioned cartoon portraits with known attributes (the studio-tiny data set).

Every sample is a pure function of ``(seed, index)``: ``render_sample(seed, i)`` draws the
attributes, the nuisance jitter and the caption from ``numpy.random.default_rng((seed, i))``,
so any slice of an unbounded data set can be streamed, split across processes or rebuilt
bit for bit. Images are drawn with Pillow at 2x and box-downsampled for anti-aliasing.
Only numpy and Pillow are imported here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from studio.core.portraits.attributes import (
    BACKGROUNDS,
    CLASS_ATTRIBUTES,
    GLASSES,
    HAIR_COLOURS,
    SKIN_TONES,
    PortraitAttributes,
    sample_attributes,
)

SIZE = 64
_SCALE = 2  # render at 2x, downsample for anti-aliasing
_LINE_SUPERSAMPLE = 8  # the mouth line: 8x more (16x the 64 px image)
# Bumped whenever the renderer changes what a (seed, index) sample looks like.
DATA_VERSION = 2

_HAIR_RGB = {
    "black": (28, 24, 24), "brown": (112, 66, 30), "blonde": (236, 200, 96),
    "red": (196, 52, 24), "blue": (40, 90, 220), "white": (240, 240, 236),
}
_SKIN_RGB = {
    "pale": (250, 222, 200), "tan": (222, 172, 122), "brown": (160, 104, 62),
    "dark": (92, 58, 36),
}
_BG_RGB = {
    "white": (248, 248, 248), "grey": (140, 140, 140), "red": (214, 48, 48),
    "yellow": (246, 218, 60), "green": (60, 170, 80), "blue": (70, 130, 230),
    "purple": (130, 70, 180), "pink": (246, 150, 196),
}
_SHIRT_RGB = ((50, 60, 90), (180, 180, 170), (30, 110, 110), (150, 40, 70), (210, 140, 40),
              (90, 90, 90), (70, 120, 50))
_OUTLINE = (20, 16, 16)


@dataclass(frozen=True)
class PortraitBatch:
    """``n`` portraits: uint8 NHWC images, integer labels, smile values and captions."""

    images: np.ndarray  # (n, 64, 64, 3) uint8
    labels: dict[str, np.ndarray]  # attribute -> (n,) int64 class indices
    smile: np.ndarray  # (n,) float32 in [-1, 1]
    captions: list[str]
    attributes: list[PortraitAttributes]


def caption_for(attrs: PortraitAttributes, rng: np.random.Generator | None = None) -> str:
    """A natural caption naming hair colour, glasses, background, smile and skin tone.

    With ``rng`` the wording varies (order of phrases, skin tone sometimes left out);
    without it the canonical form is returned, e.g.
    ``"a smiling person with red hair and round glasses on a blue background"``.
    """
    mood = {"smiling": "smiling ", "frowning": "frowning ", "neutral": ""}[attrs.smile_bin]
    hair = f"{attrs.hair} hair"
    glasses = "no glasses" if attrs.glasses == "none" else f"{attrs.glasses} glasses"
    skin = f"{attrs.skin} skin"
    bg = f"on a {attrs.background} background"
    if rng is None:
        return f"a {mood}person with {hair} and {glasses} {bg}"
    parts = [hair, glasses]
    if rng.random() < 0.5:
        parts.append(skin)
    order = rng.permutation(len(parts))
    parts = [parts[k] for k in order]
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    noun = ("person", "portrait of a person", "cartoon person")[rng.integers(3)]
    if noun.startswith("portrait"):
        return f"a portrait of a {mood}person with {body} {bg}"
    return f"a {mood}{noun} with {body} {bg}"


def _jitter_rgb(rgb: tuple[int, int, int], rng: np.random.Generator,
                amount: float) -> tuple[int, int, int]:
    out = np.clip(np.asarray(rgb, float) + rng.normal(0.0, amount, 3), 0, 255)
    return tuple(int(v) for v in out)  # type: ignore[return-value]


def _draw_smooth_line(img: Image.Image, pts: list[tuple[float, float]],
                      colour: tuple[int, int, int], width: int) -> None:
    """Draw a polyline anti-aliased at ``_LINE_SUPERSAMPLE`` x the canvas resolution.

    Pillow rasterises lines on whole pixels; drawn directly, the mouth of smiles up to about
    0.07 apart came out identical, so the smile label was not fully in the image.
    """
    f = _LINE_SUPERSAMPLE
    pad = width + 2
    x0 = int(np.floor(min(p[0] for p in pts))) - pad
    y0 = int(np.floor(min(p[1] for p in pts))) - pad
    x1 = int(np.ceil(max(p[0] for p in pts))) + pad
    y1 = int(np.ceil(max(p[1] for p in pts))) + pad
    mask = Image.new("L", ((x1 - x0) * f, (y1 - y0) * f), 0)
    ImageDraw.Draw(mask).line([((x - x0) * f, (y - y0) * f) for x, y in pts], fill=255,
                              width=width * f, joint="curve")
    mask = mask.resize((x1 - x0, y1 - y0), Image.Resampling.BOX)
    img.paste(Image.new("RGB", mask.size, colour), (x0, y0), mask)


def render_portrait(attrs: PortraitAttributes, rng: np.random.Generator) -> np.ndarray:
    """Draw one 64x64 RGB portrait (uint8 HWC); ``rng`` supplies the nuisance jitter."""
    s = _SCALE * SIZE / 64.0
    img = Image.new("RGB", (SIZE * _SCALE, SIZE * _SCALE),
                    _jitter_rgb(_BG_RGB[attrs.background], rng, 6))
    d = ImageDraw.Draw(img)
    k = float(rng.uniform(0.9, 1.1)) * s  # scale jitter
    cx = (32 + rng.uniform(-3, 3)) * s
    cy = (30 + rng.uniform(-2.5, 2.5)) * s
    lw = max(1, round(1.0 * s))
    hair = _jitter_rgb(_HAIR_RGB[attrs.hair], rng, 8)
    skin = _jitter_rgb(_SKIN_RGB[attrs.skin], rng, 6)
    style = int(rng.integers(3))  # 0 short, 1 long, 2 bob (not labelled)
    head_w, head_h = 14.0 * k * rng.uniform(0.95, 1.05), 17.0 * k * rng.uniform(0.95, 1.05)

    def box(x0: float, y0: float, x1: float, y1: float) -> list[float]:
        return [x0, y0, x1, y1]

    # Shoulders and shirt.
    shirt = _SHIRT_RGB[rng.integers(len(_SHIRT_RGB))]
    d.ellipse(box(cx - 26 * k, cy + 14 * k, cx + 26 * k, cy + 50 * k), fill=shirt,
              outline=_OUTLINE, width=lw)
    # Long hair behind the head.
    if style == 1:
        d.rounded_rectangle(box(cx - head_w - 3 * k, cy - head_h * 0.6, cx + head_w + 3 * k,
                                cy + head_h + 6 * k), radius=6 * k, fill=hair,
                            outline=_OUTLINE, width=lw)
    elif style == 2:
        d.rounded_rectangle(box(cx - head_w - 3 * k, cy - head_h * 0.6, cx + head_w + 3 * k,
                                cy + head_h * 0.5), radius=6 * k, fill=hair,
                            outline=_OUTLINE, width=lw)
    # Neck and head.
    d.rectangle(box(cx - 5 * k, cy + head_h * 0.6, cx + 5 * k, cy + head_h + 4 * k), fill=skin,
                outline=_OUTLINE, width=lw)
    d.ellipse(box(cx - head_w, cy - head_h, cx + head_w, cy + head_h), fill=skin,
              outline=_OUTLINE, width=lw)
    # Hair on top: a cap over the upper part of the head plus a fringe.
    fringe = head_h * rng.uniform(0.25, 0.45)
    d.chord(box(cx - head_w - 2 * k, cy - head_h - 3 * k, cx + head_w + 2 * k,
                cy + head_h * 0.5), start=180, end=360, fill=hair, outline=_OUTLINE, width=lw)
    d.rectangle(box(cx - head_w + 1 * k, cy - head_h * 0.45, cx + head_w - 1 * k,
                    cy - fringe), fill=hair)
    # Eyes.
    ey = cy - 2 * k + rng.uniform(-0.8, 0.8) * k
    ex = 5.5 * k
    er = 1.6 * k
    for sx in (-1, 1):
        x = cx + sx * ex
        d.ellipse(box(x - er * 0.8, ey - er, x + er * 0.8, ey + er), fill=_OUTLINE)
    # Glasses: thick dark frames so they survive the 64 px downsampling.
    if attrs.glasses != "none":
        frame = _jitter_rgb((25, 25, 30), rng, 6)
        gr = 4.6 * k
        gw = max(2, round(1.6 * s))
        for sx in (-1, 1):
            x = cx + sx * ex
            b = box(x - gr, ey - gr, x + gr, ey + gr)
            if attrs.glasses == "round":
                d.ellipse(b, outline=frame, width=gw)
            else:
                d.rectangle(b, outline=frame, width=gw)
        d.line([(cx - ex + gr, ey), (cx + ex - gr, ey)], fill=frame, width=gw)
    # Nose.
    d.line([(cx, cy + 1 * k), (cx - 1 * k, cy + 4 * k), (cx + 0.5 * k, cy + 4.5 * k)],
           fill=_jitter_rgb((120, 70, 50), rng, 5), width=lw)
    # Mouth: a parabola whose corners rise with the smile.
    my, mw = cy + 8.5 * k, 5.5 * k
    xs = np.linspace(-1.0, 1.0, 13)
    pts = [(cx + x * mw, my + attrs.smile * 3.2 * k * (1 - x * x) - attrs.smile * 1.2 * k)
           for x in xs]
    _draw_smooth_line(img, pts, (150, 30, 40), max(2, round(1.5 * s)))
    small = img.resize((SIZE, SIZE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8)


def render_sample(seed: int, index: int) -> tuple[np.ndarray, PortraitAttributes, str]:
    """Sample ``index`` of the data set ``seed``: (image, attributes, caption)."""
    rng = np.random.default_rng((int(seed), int(index)))
    attrs = sample_attributes(rng)
    image = render_portrait(attrs, rng)
    return image, attrs, caption_for(attrs, rng)


def make_batch(seed: int, start: int, n: int) -> PortraitBatch:
    """Samples ``start .. start + n - 1`` of the data set ``seed``."""
    images = np.empty((n, SIZE, SIZE, 3), np.uint8)
    attrs_list: list[PortraitAttributes] = []
    captions: list[str] = []
    for j in range(n):
        images[j], attrs, cap = render_sample(seed, start + j)
        attrs_list.append(attrs)
        captions.append(cap)
    labels = {name: np.array([a.label_indices()[name] for a in attrs_list], np.int64)
              for name in CLASS_ATTRIBUTES}
    smile = np.array([a.smile for a in attrs_list], np.float32)
    return PortraitBatch(images, labels, smile, captions, attrs_list)


def caption_vocabulary() -> list[str]:
    """Every caption phrase the generator can produce, for building the tokenizer."""
    words = ["a", "portrait", "of", "person", "cartoon", "with", "and", "no", "on", "hair",
             "glasses", "skin", "background", "smiling", "frowning", *HAIR_COLOURS, *GLASSES,
             *SKIN_TONES, *BACKGROUNDS]
    rng = np.random.default_rng(0)
    corpus = [caption_for(sample_attributes(rng), rng) for _ in range(2000)]
    return corpus + [" ".join(words)]
