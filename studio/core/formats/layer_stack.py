"""Layer trees read from OpenRaster and PSD files, made into the canvas's flat layer list.

The canvas has plain layers (alpha over, an opacity, shown or hidden) and no groups or blend
modes. ``flatten_stack`` keeps every layer it can keep as it is, spreads groups whose
content composites the same way without them, and merges the bottom of the stack up to the
last layer the canvas cannot draw (Multiply, Screen, an isolated group...) into one layer,
rendered with the W3C compositing formulas (the ones Krita, GIMP and Photoshop follow). What
it merged is said in one line, returned with the layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from studio.core.formats.layered import LayerData

NORMAL = "normal"
PASS_THROUGH = "pass-through"

#: Blend modes by the names OpenRaster (``svg:...``) and PSD (psd-tools' ``BlendMode``) use.
BLEND_NAMES = {
    "svg:src-over": NORMAL, "svg:multiply": "multiply", "svg:screen": "screen",
    "svg:overlay": "overlay", "svg:darken": "darken", "svg:lighten": "lighten",
    "svg:color-dodge": "color_dodge", "svg:color-burn": "color_burn",
    "svg:hard-light": "hard_light", "svg:soft-light": "soft_light",
    "svg:difference": "difference", "svg:exclusion": "exclusion", "svg:hue": "hue",
    "svg:saturation": "saturation", "svg:color": "color", "svg:luminosity": "luminosity",
    "svg:plus": "linear_dodge",
}


def mode_label(mode: str) -> str:
    """``"color_dodge"`` -> ``"Color Dodge"``."""
    return mode.replace("_", " ").replace("-", " ").title()


@dataclass
class StackNode:
    """A layer (``layer`` set) or a group (``children``, bottom to top) of a layered file.

    ``mode`` is a psd-tools ``BlendMode`` name in lower case (``"multiply"``), ``"normal"``,
    or for groups ``"pass-through"``. ``isolated`` groups are composited on their own, then
    blended as one layer.
    """

    name: str
    layer: LayerData | None = None
    children: list[StackNode] = field(default_factory=list)
    mode: str = NORMAL
    opacity: float = 1.0
    visible: bool = True
    isolated: bool = False
    unknown_mode: str = ""  # a mode we could not name, drawn as Normal

    @property
    def is_group(self) -> bool:
        return self.layer is None

    def all_normal(self) -> bool:
        if self.mode not in (NORMAL, PASS_THROUGH):
            return False
        return all(child.all_normal() for child in self.children if child.visible)

    def leaves(self) -> list[LayerData]:
        if self.layer is not None:
            return [self.layer]
        return [leaf for child in self.children for leaf in child.leaves()]


def _with(layer: LayerData, *, opacity: float, visible: bool) -> LayerData:
    from studio.core.formats.layered import LayerData

    return LayerData(layer.name, layer.rgba, layer.x, layer.y, visible, opacity)


def _entries(nodes: list[StackNode], opacity: float, visible: bool, width: int, height: int,
             merges: list[StackNode]) -> list[StackNode]:
    """Groups spread where that draws the same, isolated Normal groups drawn as one layer;
    what needs the backdrop stays a node. Groups drawn as one go to ``merges``."""
    from studio.core.formats.layered import LayerData

    out: list[StackNode] = []
    for node in nodes:
        shown = visible and node.visible
        alpha = opacity * node.opacity
        if node.layer is not None:
            if node.mode == NORMAL or not shown:
                out.append(StackNode(node.name, _with(node.layer, opacity=alpha * (
                    node.layer.opacity), visible=shown and node.layer.visible)))
            else:
                out.append(StackNode(node.name, node.layer, mode=node.mode, opacity=alpha,
                                     unknown_mode=node.unknown_mode))
            continue
        visible_children = [c for c in node.children if c.visible]
        simple = node.all_normal() and (node.opacity >= 1.0 or len(visible_children) <= 1)
        if not shown or simple:
            out += _entries(node.children, alpha, shown, width, height, merges)
        elif node.isolated and node.mode == NORMAL:  # blends only inside: one layer is exact
            rgba = composite_nodes(width, height, node.children)
            merges.append(node)
            out.append(StackNode(node.name, LayerData(f"{node.name} (merged)", rgba, 0, 0,
                                                      True, alpha)))
        else:  # drawn as one: on its own (isolated), or through to the backdrop
            out.append(StackNode(node.name, children=node.children, mode=node.mode,
                                 opacity=alpha, isolated=node.isolated or node.mode not in (
                                     NORMAL, PASS_THROUGH), unknown_mode=node.unknown_mode))
    return out


def _modes(node: StackNode) -> set[str]:
    found = {node.mode} if node.mode not in (NORMAL, PASS_THROUGH) else set()
    if node.is_group and node.mode in (NORMAL, PASS_THROUGH):
        found.add("group")
    for child in node.children:
        if child.visible:
            found |= _modes(child) - {"group"}
    return found


def flatten_stack(width: int, height: int,
                  nodes: list[StackNode]) -> tuple[list[LayerData], list[str]]:
    """The canvas layers (bottom to top) that draw ``nodes`` as their file does.

    Returns the layers and the warnings to show (one line each, usually none).
    """
    from studio.core.formats.layered import LayerData

    merges: list[StackNode] = []
    entries = _entries(nodes, 1.0, True, width, height, merges)
    unknown = sorted({n.unknown_mode for n in _walk(nodes) if n.unknown_mode})
    warnings = [f"Blend mode {', '.join(unknown)} is not known here and was drawn as Normal."
                ] if unknown else []
    top = max((i for i, e in enumerate(entries) if e.layer is None or e.mode != NORMAL),
              default=-1)
    layers = [e.layer for e in entries if e.layer is not None]
    if top >= 0:
        below, rest = entries[:top + 1], entries[top + 1:]
        hidden = [e for e in below if e.layer is not None and e.mode == NORMAL
                  and not e.layer.visible]
        drawn = [e for e in below if not any(e is h for h in hidden)]
        rgba = composite_nodes(width, height, drawn)
        flat = LayerData(f"{below[top].name} (merged)", rgba, 0, 0, True, 1.0)
        merges.append(StackNode(flat.name, children=drawn, mode=PASS_THROUGH))
        layers = [*(h.layer for h in hidden if h.layer is not None), flat,
                  *(e.layer for e in rest if e.layer is not None)]
    if merges:
        what = set().union(*(_modes(m) for m in merges))
        labels = sorted(mode_label(m) for m in what if m != "group")
        reasons = (["blend modes " + ", ".join(labels)] if labels else []) + (
            ["layer groups"] if "group" in what else [])
        count = sum(len(m.leaves()) for m in merges)
        into = "one" if len(merges) == 1 else str(len(merges))
        warnings.insert(0, f"Merged {count} layers into {into}: the canvas has no "
                           f"{' or '.join(reasons)}.")
    return [lay for lay in layers if lay is not None], warnings


def _walk(nodes: list[StackNode]) -> list[StackNode]:
    out = []
    for node in nodes:
        out.append(node)
        out += _walk(node.children)
    return out


# -- compositing -----------------------------------------------------------------------------
def _blend_func(mode: str):  # type: ignore[no-untyped-def]
    from psd_tools.composite.blend import BLEND_FUNC
    from psd_tools.constants import BlendMode

    try:
        return BLEND_FUNC[BlendMode[mode.upper()]]
    except KeyError:
        return BLEND_FUNC[BlendMode.NORMAL]


def _place(width: int, height: int, layer: LayerData) -> np.ndarray:
    """The layer as a premultiplied float32 canvas-sized image."""
    out = np.zeros((height, width, 4), np.float32)
    x0, y0 = max(layer.x, 0), max(layer.y, 0)
    x1 = min(layer.x + layer.rgba.shape[1], width)
    y1 = min(layer.y + layer.rgba.shape[0], height)
    if x1 > x0 and y1 > y0:
        src = layer.rgba[y0 - layer.y:y1 - layer.y, x0 - layer.x:x1 - layer.x]
        part = src.astype(np.float32) / 255.0
        part[..., :3] *= part[..., 3:4]
        out[y0:y1, x0:x1] = part
    return out


def _over(backdrop: np.ndarray, source: np.ndarray, mode: str, opacity: float) -> np.ndarray:
    """W3C compositing, premultiplied: ``source`` blended with ``mode`` onto ``backdrop``."""
    src = source * np.float32(opacity)
    a_s, a_b = src[..., 3:4], backdrop[..., 3:4]
    if mode in (NORMAL, PASS_THROUGH):
        return src + backdrop * (1.0 - a_s)
    with np.errstate(divide="ignore", invalid="ignore"):
        cs = np.where(a_s > 0, src[..., :3] / np.maximum(a_s, 1e-12), 0.0)
        cb = np.where(a_b > 0, backdrop[..., :3] / np.maximum(a_b, 1e-12), 0.0)
    mixed = np.clip(np.asarray(_blend_func(mode)(cb.astype(np.float32),
                                                 cs.astype(np.float32)))[..., :3], 0.0, 1.0)
    out = np.empty_like(backdrop)
    # co = cs*as*(1-ab) + cb*ab*(1-as) + as*ab*B(cb, cs)
    out[..., :3] = (src[..., :3] * (1.0 - a_b) + backdrop[..., :3] * (1.0 - a_s)
                    + a_s * a_b * mixed)
    out[..., 3:4] = a_s + a_b * (1.0 - a_s)
    return out


def _composite_into(acc: np.ndarray, nodes: list[StackNode], width: int, height: int,
                    visible: bool = True) -> np.ndarray:
    for node in nodes:
        if not (visible and node.visible) or node.opacity <= 0.0:
            continue
        if node.layer is not None:
            if not node.layer.visible:
                continue
            acc = _over(acc, _place(width, height, node.layer), node.mode,
                        node.opacity * node.layer.opacity)
        elif node.isolated:
            inner = _composite_into(np.zeros_like(acc), node.children, width, height)
            acc = _over(acc, inner, node.mode, node.opacity)
        else:  # pass-through: the children meet the backdrop, then the group's opacity fades
            through = _composite_into(acc.copy(), node.children, width, height)
            acc = acc + (through - acc) * np.float32(node.opacity)
    return acc


def composite_nodes(width: int, height: int, nodes: list[StackNode]) -> np.ndarray:
    """Flatten ``nodes`` (bottom to top) into an ``HxWx4`` uint8 straight-alpha image."""
    acc = _composite_into(np.zeros((height, width, 4), np.float32), nodes, width, height)
    alpha = acc[..., 3:4]
    rgb = np.divide(acc[..., :3], alpha, out=np.zeros_like(acc[..., :3]), where=alpha > 0)
    out = np.concatenate([rgb, alpha], axis=2)
    return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
