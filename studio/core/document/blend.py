"""Layer blend modes: their names in our projects, OpenRaster and PSD, and the formulas.

The formulas are the W3C "Compositing and Blending Level 1" ones (the same as Adobe's PDF
blend modes), which GIMP, Krita and Photoshop follow and OpenRaster names ``svg:*``. The
per-channel functions come from psd-tools (``psd_tools.composite.blend``), so the canvas,
our layered import and psd-tools' own rendering of our exports draw with one set of
formulas.

A layer with mode ``B`` drawn at alpha ``as`` over a backdrop of colour ``cb`` and alpha
``ab`` gives (W3C, premultiplied)::

    co = as * ((1 - ab) * cs + ab * B(cb, cs)) + (1 - as) * cb * ab
    ao = as + ab * (1 - as)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

NORMAL = "normal"

#: Our mode name -> (label shown, OpenRaster ``composite-op``, psd-tools ``BlendMode`` name).
MODES: dict[str, tuple[str, str, str]] = {
    "normal": ("Normal", "svg:src-over", "NORMAL"),
    "multiply": ("Multiply", "svg:multiply", "MULTIPLY"),
    "screen": ("Screen", "svg:screen", "SCREEN"),
    "overlay": ("Overlay", "svg:overlay", "OVERLAY"),
    "darken": ("Darken", "svg:darken", "DARKEN"),
    "lighten": ("Lighten", "svg:lighten", "LIGHTEN"),
    "color_dodge": ("Color Dodge", "svg:color-dodge", "COLOR_DODGE"),
    "color_burn": ("Color Burn", "svg:color-burn", "COLOR_BURN"),
    "hard_light": ("Hard Light", "svg:hard-light", "HARD_LIGHT"),
    "soft_light": ("Soft Light", "svg:soft-light", "SOFT_LIGHT"),
    "difference": ("Difference", "svg:difference", "DIFFERENCE"),
    "exclusion": ("Exclusion", "svg:exclusion", "EXCLUSION"),
    "hue": ("Hue", "svg:hue", "HUE"),
    "saturation": ("Saturation", "svg:saturation", "SATURATION"),
    "color": ("Color", "svg:color", "COLOR"),
    "luminosity": ("Luminosity", "svg:luminosity", "LUMINOSITY"),
    "linear_dodge": ("Linear Dodge (Add)", "svg:plus", "LINEAR_DODGE"),
}

#: OpenRaster ``composite-op`` -> our mode name.
ORA_NAMES = {ora: mode for mode, (_label, ora, _psd) in MODES.items()}
#: psd-tools ``BlendMode`` name -> our mode name.
PSD_NAMES = {psd: mode for mode, (_label, _ora, psd) in MODES.items()}


def label(mode: str) -> str:
    """The name shown for ``mode`` (``"color_dodge"`` -> ``"Color Dodge"``)."""
    return MODES[mode][0] if mode in MODES else mode.replace("_", " ").title()


def ora_name(mode: str) -> str:
    return MODES.get(mode, MODES[NORMAL])[1]


def psd_name(mode: str) -> str:
    return MODES.get(mode, MODES[NORMAL])[2]


def checked(mode: str) -> str:
    """``mode`` when we know it, else ``ValueError`` (a hand-edited project, a typo)."""
    if mode not in MODES:
        raise ValueError(f"unknown blend mode {mode!r} (one of {', '.join(MODES)})")
    return mode


def blend_function(mode: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``B(cb, cs)`` for ``mode``: straight RGB float32 in 0..1, ``HxWx3`` each."""
    from psd_tools.composite.blend import BLEND_FUNC
    from psd_tools.constants import BlendMode

    try:
        return BLEND_FUNC[BlendMode[MODES[mode][2] if mode in MODES else mode.upper()]]
    except KeyError:
        return BLEND_FUNC[BlendMode.NORMAL]


def mix(cb: np.ndarray, ab: np.ndarray, cs: np.ndarray, mode: str) -> np.ndarray:
    """The colour a layer of straight colour ``cs`` is drawn with, alpha over, onto a
    backdrop of straight colour ``cb`` and alpha ``ab`` (``HxWx1``): ``(1 - ab) * cs + ab *
    B(cb, cs)``. Drawing that colour with the layer's alpha, premultiplied over the
    backdrop, is the W3C formula."""
    blended = np.clip(np.asarray(blend_function(mode)(cb.astype(np.float32, copy=False),
                                                      cs.astype(np.float32, copy=False)),
                                 dtype=np.float32)[..., :3], 0.0, 1.0)
    return cs + ab * (blended - cs)
