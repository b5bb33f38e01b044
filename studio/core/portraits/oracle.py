"""An oracle for portraits: reads an image by the renderer's layout, not by a learned model.

The procedural renderer (``studio.core.portraits.render``) knows where things are: the
corners and sides are always background, the crown of the head is always hair, glasses are
dark frames around the eyes, and the mouth is a parabola whose corners rise with the smile.
The oracle measures colour in those places in CIELAB and names the nearest palette entry, so
a colour nearer another entry (a purple background asked as blue) is read as that entry.
It was built from the drawing code and checked against the renderer's own labels; no network
and no training data are involved, so it can judge any model, including the ones that built
a slider's direction.

Only numpy and Pillow are imported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

# The palettes are the renderer's own (its private tables: the oracle is its reader).
from studio.core.portraits.render import _BG_RGB, _HAIR_RGB, _OUTLINE, SIZE

# -- regions -------------------------------------------------------------------------------
# Derived by rendering 3000 portraits (data set seed 123) and keeping the pixels that were
# exactly the background (hair) colour in every one of them; the background region is then
# eroded by one pixel as a margin for generated images. ``tests/core/test_oracle.py``
# re-derives both from fresh renders and checks that these lie inside.
#
# Background: per row, the half-open span [start, stop) of columns the figure can reach
# (None: the whole row is background). Everything outside the span is background.
_FIGURE_SPANS: tuple[tuple[int, int] | None, ...] = (
    None, None, None, (31, 38), (24, 42), (21, 44), (19, 45), (18, 47), (17, 48), (16, 49),
    (15, 50), (14, 51), (13, 51), (12, 52), (12, 52), (11, 53), (11, 53), (10, 54), (10, 54),
    (10, 54), (10, 55), (9, 55), *[(9, 56)] * 25, (8, 57), (7, 58), (6, 58), (5, 59),
    (4, 60), (3, 61), (2, 62), (2, 62), (1, 63), (1, 63), *[(0, 64)] * 7,
)
# Hair: the crown of the head above the highest the glasses reach (row -> [start, stop)).
_HAIR_SPANS: dict[int, tuple[int, int]] = {16: (30, 34), 17: (28, 36), 18: (26, 38)}


def _mask_from_spans(rows: Iterable[tuple[int, tuple[int, int] | None]],
                     inside: bool) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), bool)
    for y, span in rows:
        if span is not None:
            mask[y, span[0]:span[1]] = True
    return mask if inside else ~mask


BACKGROUND_MASK: np.ndarray = _mask_from_spans(enumerate(_FIGURE_SPANS), inside=False)
"""(64, 64) bool: pixels the renderer always leaves as background (about 1245)."""
HAIR_MASK: np.ndarray = _mask_from_spans(_HAIR_SPANS.items(), inside=True)
"""(64, 64) bool: pixels the renderer always paints with the hair colour (24)."""
BACKGROUND_MASK.setflags(write=False)
HAIR_MASK.setflags(write=False)

# The renderer's face geometry in 64 px units at scale k = 1 (see ``render_portrait``).
_EYE_DX = 5.5  # eye centres at cx +- 5.5 k
_MOUTH_HALF_WIDTH = 5.5  # the mouth spans cx +- 5.5 k
_SMILE_DEPTH = 3.2  # the mouth's centre drops 3.2 k * smile below its corners
# The renderer puts the eyes at cy - 2 k +- 0.8 k with cy = 30 +- 2.5 and k in [0.9, 1.1]:
# rows 24.4 to 31.6. A search from 18 to 38 found a glasses' rim or the mouth on 5 of 24
# generated faces whose mouth it then missed (a visible smile read as no mouth at all).
_EYE_ROWS = (23.5, 32.75)
# The mouth lies at cy + 8.5 k, its centre and corners up to 2.2 k above or below it: rows
# 32.7 to 44.3 (the line's width on top). The eyes' row places it on a rendered face; where a
# generated face's eyes are read too low (the lower rim of blurred glasses) no mouth is found
# under them, and the rows from 32 down to the ones searched are read. Not below them: there
# the collar's arc of a malformed face read as a frown.
_MOUTH_ROWS = (32, 46)
_FRAME_RGB = (25, 25, 30)
_MOUTH_RGB = (150, 30, 40)
# A pixel is mouth by how much nearer the mouth's colour it is than the face's, past 40 %
# of the way (50 % before 2026-12-08: the blurred mouths generated on brown and dark skin,
# darker than the palette's red, fell under it; on 600 held-out renders 0.4 reads the smile
# at correlation 0.996 with the renderer's value and its bins at 96 %, against 0.992, 94 %).
_MOUTH_NEARER = 0.4
# The mouth line searched: its centre up to 4 rows below or above its corners (the
# renderer's deepest smile is 3.5), tilted by up to 2 rows at each corner, one up and the
# other down (generated mouths tilt), and the mean mouth weight along it at least 0.1
# (renders: 0.33 or more).
_MOUTH_DEPTH_MAX = 4.0
_MOUTH_TILT_MAX = 2.0
_MOUTH_SCORE = 0.1
GLASSES_THRESHOLD = 0.08
"""Frame share below the eyes above which the oracle sees glasses. Calibrated on 1000
rendered portraits: without glasses at most 0.05 (0.04 blurred by 0.7 px), with glasses
0.23 or more in 99 % of them (0.15 blurred)."""


# -- colour ----------------------------------------------------------------------------------
def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB colours given as uint8 (or floats in 0..255), shape (..., 3)."""
    c = np.asarray(rgb, np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def _palette_lab(table: dict[str, tuple[int, int, int]]) -> tuple[tuple[str, ...], np.ndarray]:
    names = tuple(table)
    return names, rgb_to_lab(np.array([table[n] for n in names], np.float64))


_BG_NAMES, _BG_LAB = _palette_lab(_BG_RGB)
_HAIR_NAMES, _HAIR_LAB = _palette_lab(_HAIR_RGB)
_FRAME_LAB = rgb_to_lab(np.array(_FRAME_RGB, np.float64))
_EYE_LAB = rgb_to_lab(np.array(_OUTLINE, np.float64))
_MOUTH_LAB = rgb_to_lab(np.array(_MOUTH_RGB, np.float64))


def _nearest(lab: np.ndarray, names: tuple[str, ...],
             palette: np.ndarray) -> tuple[str, dict[str, float]]:
    d = np.linalg.norm(palette - lab, axis=1)  # CIE76 delta E
    return names[int(d.argmin())], {n: float(v) for n, v in zip(names, d, strict=True)}


# -- reading -------------------------------------------------------------------------------
@dataclass(frozen=True)
class OracleReading:
    """What the oracle reads in one portrait.

    ``background`` and ``hair`` are the nearest palette names to the median CIELAB colour of
    their regions; ``*_distances`` hold the delta E (CIE76) to every palette entry.
    ``glasses_score`` is the share of frame colour below the eyes, ``glasses`` whether it
    passes ``GLASSES_THRESHOLD``. ``smile`` is the mouth's curvature on the renderer's
    [-1, 1] scale, or None where no mouth was found.
    """

    background: str
    hair: str
    glasses: bool
    smile: float | None
    background_lab: tuple[float, float, float]
    hair_lab: tuple[float, float, float]
    background_distances: dict[str, float] = field(repr=False)
    hair_distances: dict[str, float] = field(repr=False)
    glasses_score: float = 0.0

    def margin(self, attribute: str) -> float:
        """Delta E from the read colour to the second-nearest palette entry minus that to
        the nearest: how clearly ``"background"`` or ``"hair"`` was read (0: a tie)."""
        d = sorted(getattr(self, f"{attribute}_distances").values())
        return d[1] - d[0]

    def has(self, attribute: str) -> bool:
        """Whether the reading shows ``"glasses"``, ``"smile"`` (smiling), ``"hair=red"``,
        ``"background=blue"`` and so on (the slider attribute names)."""
        if attribute == "glasses":
            return self.glasses
        if attribute == "smile":
            return self.smile is not None and self.smile > 0.35
        name, _, value = attribute.partition("=")
        if name not in ("hair", "background") or not value:
            raise ValueError(f"The oracle does not read {attribute!r}.")
        return bool(getattr(self, name) == value)


def as_portrait(image: np.ndarray | Image.Image) -> np.ndarray:
    """A (64, 64, 3) uint8 RGB array of an image of any size (box-filtered when scaled)."""
    if isinstance(image, Image.Image):
        pil = image.convert("RGB")
    else:
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            arr = np.clip(np.round(arr * 255.0 if arr.max() <= 1.0 else arr), 0, 255)
        arr = arr.astype(np.uint8)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise ValueError(f"Expected an RGB image (H, W, 3), got shape {arr.shape}.")
        if arr.shape[:2] == (SIZE, SIZE) and arr.shape[2] == 3:
            return arr
        pil = Image.fromarray(arr[..., :3])
    if pil.size != (SIZE, SIZE):
        pil = pil.resize((SIZE, SIZE), Image.Resampling.BOX)
    return np.asarray(pil, np.uint8)


def _sample(channel: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Bilinear samples at continuous coordinates (pixel i covers [i, i + 1))."""
    x = np.clip(np.asarray(xs, float) - 0.5, 0, SIZE - 1.001)
    y = np.clip(np.asarray(ys, float) - 0.5, 0, SIZE - 1.001)
    x0, y0 = x.astype(int), y.astype(int)
    fx, fy = x - x0, y - y0
    a = channel[y0, x0] * (1 - fx) + channel[y0, x0 + 1] * fx
    b = channel[y0 + 1, x0] * (1 - fx) + channel[y0 + 1, x0 + 1] * fx
    return a * (1 - fy) + b * fy


def _axis(lab: np.ndarray) -> float:
    """The figure's vertical mirror axis (it is drawn symmetric about cx but for the nose)."""
    best, best_cost = SIZE / 2, np.inf
    rows = lab[:52]
    for twice in range(54, 75):  # cx from 27 to 37.5 in half pixels
        i = np.arange(SIZE)
        j = twice - 1 - i
        ok = (j >= 0) & (j < SIZE)
        cost = float(np.abs(rows[:, i[ok]] - rows[:, j[ok]]).mean())
        if cost < best_cost:
            best, best_cost = twice / 2, cost
    return best


def _sample_lab(lab: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    return np.stack([_sample(lab[..., c], xs, ys) for c in range(3)], axis=-1)


def _skin_lab(lab: np.ndarray, cx: float) -> np.ndarray:
    """The face's colour: the median of a window that stays inside the face whatever the
    renderer's jitter (cheeks, nose and mouth; skin in the majority)."""
    x0, x1 = int(round(cx - 8)), int(round(cx + 8))
    return np.median(lab[29:39, max(x0, 0):min(x1, SIZE)].reshape(-1, 3), axis=0)


def _eye_row(lab: np.ndarray, cx: float, skin: np.ndarray) -> float:
    """The eyes' row: dark blobs at cx +- 5.5 with skin 2.5 px to either side, searched
    where the renderer can put them (``_EYE_ROWS``)."""
    ys = np.arange(*_EYE_ROWS, 0.25)
    cost = np.zeros_like(ys)
    for sx in (-1, 1):
        xe = cx + sx * _EYE_DX
        for dy in (-0.75, 0.0, 0.75):
            centre = _sample_lab(lab, np.full_like(ys, xe), ys + dy)
            cost += np.linalg.norm(centre - _EYE_LAB, axis=-1)
            for side in (-2.5, 2.5):
                around = _sample_lab(lab, np.full_like(ys, xe + side), ys + dy)
                cost += 0.5 * np.linalg.norm(around - skin, axis=-1)
    return float(ys[int(cost.argmin())])


def _glasses_score(lab: np.ndarray, cx: float, ey: float, skin: np.ndarray) -> float:
    """Share of frame-coloured pixels between the eyes' lower edge and the frames' lower
    rim (nearer the frame colour than the face's)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    region = ((yy > ey + 2.2) & (yy < ey + 5.8) & (np.abs(xx - cx) < 11.0)
              & (np.abs(xx - cx) > 1.2))
    values = lab[region]
    if values.size == 0:
        return 0.0
    to_frame = np.linalg.norm(values - _FRAME_LAB, axis=1)
    to_skin = np.linalg.norm(values - skin, axis=1)
    # Soft: a frame pixel counts 1, skin 0, a blurred mix in between (a blur keeps the sum).
    return float(np.mean(to_skin / (to_skin + to_frame + 1e-6)))


def _smile(lab: np.ndarray, cx: float, ey: float) -> float | None:
    """The mouth's curvature: a parabola fitted to the mouth-coloured pixels per column,
    below the eyes; where none is found there, above those rows as far as the renderer can
    draw a mouth."""
    y0 = int(np.floor(ey + 4.5))
    found = _smile_in(lab, cx, y0, int(np.ceil(ey + 14.5)))
    if found is None and y0 > _MOUTH_ROWS[0]:
        # Eyes read too low (the rim of blurred glasses): the mouth is above the rows read.
        found = _smile_in(lab, cx, _MOUTH_ROWS[0], y0 + 2)
    return found


def _smile_in(lab: np.ndarray, cx: float, y0: int, y1: int) -> float | None:
    """``_smile`` in rows [y0, y1): the mouth line found as a whole, then its curvature.

    Each pixel counts towards the mouth by how much nearer the mouth's colour it is than the
    face's (``_MOUTH_NEARER``), and not at all where it is nearer the outline and frames'
    dark colour. The line is found as the parabola (corners' row, depth up to
    ``_MOUTH_DEPTH_MAX``, a tilt of up to ``_MOUTH_TILT_MAX`` at the corners) along which
    the columns hold the most mouth (``_MOUTH_SCORE``: none below it), so a nose, a cheek's
    blush or a frame's rim beside the mouth does not bend it; the curvature is then fitted to
    the mouth pixels within 1.5 rows of that line."""
    y0, y1 = max(y0, 0), min(y1, SIZE)
    x0, x1 = int(np.floor(cx - 5)), int(np.ceil(cx + 5))
    patch = lab[y0:y1, x0:x1]
    if patch.shape[0] < 2 or patch.shape[1] < 5:
        return None
    skin = np.median(patch.reshape(-1, 3), axis=0)
    d_skin = np.linalg.norm(patch - skin, axis=2)
    d_mouth = np.linalg.norm(patch - _MOUTH_LAB, axis=2)
    d_dark = np.linalg.norm(patch - _FRAME_LAB, axis=2)
    w = np.clip(d_skin / (d_skin + d_mouth + 1e-6) - _MOUTH_NEARER, 0, None)
    w[d_dark < d_mouth] = 0.0
    h, width = w.shape
    ys = np.arange(y0, y1) + 0.5
    u = ((np.arange(x0, x1) + 0.5) - cx) / _MOUTH_HALF_WIDTH
    uc = np.clip(u, -1, 1)
    # Every candidate line: rows (corners, depth, tilt, column), sampled +-0.5 rows.
    corners, depth, tilt = np.meshgrid(np.arange(y0, y1, 0.25),
                                       np.arange(-_MOUTH_DEPTH_MAX, _MOUTH_DEPTH_MAX + 0.01,
                                                 0.25),
                                       np.arange(-_MOUTH_TILT_MAX, _MOUTH_TILT_MAX + 0.01, 0.5),
                                       indexing="ij")
    rows = (corners[..., None] + depth[..., None] * (1 - uc * uc) + tilt[..., None] * uc
            - y0 - 0.5)
    cols = np.broadcast_to(np.arange(width), rows.shape)
    along = np.zeros(rows.shape)
    for dy in (-0.5, 0.0, 0.5):
        r = rows + dy
        i = np.floor(r).astype(int)
        f = r - i
        inside = (i >= 0) & (i + 1 < h)
        i = np.clip(i, 0, h - 2)
        along = np.maximum(along, np.where(inside, w[i, cols] * (1 - f) + w[i + 1, cols] * f,
                                           0.0))
    score = along.mean(axis=-1)
    best = np.unravel_index(int(score.argmax()), score.shape)
    if score[best] < _MOUTH_SCORE:
        return None
    line = rows[best] + y0 + 0.5
    us, cs, ws = [], [], []
    for j in range(width):
        col = w[:, j] * (np.abs(ys - line[j]) <= 1.5)
        if col.sum() < 0.15:
            continue
        us.append(u[j])
        cs.append(float((col * ys).sum() / col.sum()))
        ws.append(float(col.sum()))
    if len(us) < 5:
        return None
    un = np.asarray(us)
    design = np.stack([np.ones_like(un), un * un, un], axis=1) * np.sqrt(ws)[:, None]
    coef, *_ = np.linalg.lstsq(design, np.asarray(cs) * np.sqrt(ws), rcond=None)
    return float(np.clip(-coef[1] / _SMILE_DEPTH, -1.5, 1.5))


def read_portrait(image: np.ndarray | Image.Image) -> OracleReading:
    """Read one portrait (RGB, any size; uint8 or floats in [0, 1]) by the renderer's layout.

    Parameters
    ----------
    image
        An (H, W, 3) array or a Pillow image; scaled to 64 x 64 first.

    Returns
    -------
    OracleReading
        Background and hair as the nearest palette names (CIELAB), glasses, smile.
    """
    rgb = as_portrait(image)
    lab = rgb_to_lab(rgb)
    bg_lab = np.median(lab[BACKGROUND_MASK], axis=0)
    hair_lab = np.median(lab[HAIR_MASK], axis=0)
    background, bg_d = _nearest(bg_lab, _BG_NAMES, _BG_LAB)
    hair, hair_d = _nearest(hair_lab, _HAIR_NAMES, _HAIR_LAB)
    cx = _axis(lab)
    skin = _skin_lab(lab, cx)
    ey = _eye_row(lab, cx, skin)
    g = _glasses_score(lab, cx, ey, skin)
    return OracleReading(
        background=background, hair=hair, glasses=g > GLASSES_THRESHOLD,
        smile=_smile(lab, cx, ey),
        background_lab=tuple(float(v) for v in bg_lab),  # type: ignore[arg-type]
        hair_lab=tuple(float(v) for v in hair_lab),  # type: ignore[arg-type]
        background_distances=bg_d, hair_distances=hair_d, glasses_score=g,
    )


def read_background(image: np.ndarray | Image.Image, area: np.ndarray | None = None) -> str:
    """The background colour name read in the renderer's background area, within ``area``
    ((64, 64) bool: a half of the picture, say) where given.

    As ``read_portrait`` reads the whole background: the nearest palette entry (CIELAB) to
    the median colour of the pixels the renderer always leaves as background."""
    where = BACKGROUND_MASK if area is None else BACKGROUND_MASK & np.asarray(area, bool)
    if not where.any():
        raise ValueError("the area holds none of the renderer's background pixels")
    lab = rgb_to_lab(as_portrait(image))
    return _nearest(np.median(lab[where], axis=0), _BG_NAMES, _BG_LAB)[0]


def read_portraits(images: np.ndarray | Iterable[np.ndarray]) -> list[OracleReading]:
    """``read_portrait`` of every image of an (n, H, W, 3) batch or a sequence."""
    return [read_portrait(im) for im in images]


def read_batch(images: np.ndarray | Iterable[np.ndarray]) -> dict[str, np.ndarray]:
    """Column-wise readings of a batch: ``background`` and ``hair`` (str arrays),
    ``glasses`` (bool), ``smile`` (float, NaN where unread), ``glasses_score``."""
    readings = read_portraits(images)
    return {
        "background": np.array([r.background for r in readings]),
        "hair": np.array([r.hair for r in readings]),
        "glasses": np.array([r.glasses for r in readings], bool),
        "smile": np.array([np.nan if r.smile is None else r.smile for r in readings]),
        "glasses_score": np.array([r.glasses_score for r in readings]),
    }
