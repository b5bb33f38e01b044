"""Layer trees read from OpenRaster and PSD files, made into the canvas's flat layer list.

The canvas has layers with a blend mode, an opacity, shown or hidden, and no groups.
``flatten_stack`` keeps every layer as it is (blend mode included), spreads groups whose
content composites the same way without them, and merges the bottom of the stack up to the
last group the canvas cannot draw (an isolated group with a blend mode, a faded group...)
into one layer, rendered with the W3C compositing formulas (``studio.core.document.blend``,
the ones Krita, GIMP and Photoshop follow). What it merged is said in one line, returned
with the layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from studio.core.document.blend import MODES, ORA_NAMES, mix
from studio.core.document.layers import new_id

if TYPE_CHECKING:
    from studio.core.formats.layered import LayerData

NORMAL = "normal"
PASS_THROUGH = "pass-through"

#: Blend modes by the names OpenRaster (``svg:...``) uses (PSD's: ``blend.PSD_NAMES``).
BLEND_NAMES = ORA_NAMES


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


def _with(layer: LayerData, *, opacity: float, visible: bool, blend: str = NORMAL,
          parent: str = "") -> LayerData:
    from studio.core.formats.layered import LayerData

    return LayerData(layer.name, layer.rgba, layer.x, layer.y, visible, opacity, blend,
                     parent=parent)


@dataclass
class _Entry:
    """One item of a group's (or the canvas's) list: ``node`` draws it (for a merge);
    ``layers`` is what the canvas gets for it, or ``None`` when it must be merged."""

    node: StackNode
    layers: list[LayerData] | None


def _entries(nodes: list[StackNode], opacity: float, visible: bool, width: int, height: int,
             merges: list[StackNode], parent: str) -> list[_Entry]:
    """Layers kept with their blend mode; groups kept as groups where the canvas draws them
    the same (isolated, hidden, or holding only Normal layers), spread where they draw as
    if ungrouped, drawn as one layer otherwise. Groups drawn as one go to ``merges``."""
    from studio.core.formats.layered import LayerData

    out: list[_Entry] = []
    for node in nodes:
        shown = visible and node.visible
        alpha = opacity * node.opacity
        if node.layer is not None:
            if node.mode in MODES or not shown:  # the canvas draws the modes it knows
                out.append(_Entry(node, [_with(node.layer, opacity=alpha * node.layer.opacity,
                                               visible=shown and node.layer.visible,
                                               blend=node.mode if node.mode in MODES
                                               else NORMAL, parent=parent)]))
            else:  # Linear Burn, Vivid Light...: merged, drawn as the file draws them
                out.append(_Entry(StackNode(node.name, node.layer, mode=node.mode,
                                            opacity=alpha, unknown_mode=node.unknown_mode),
                                  None))
            continue
        mode = NORMAL if node.mode == PASS_THROUGH else node.mode
        # a pass-through group at full opacity draws its layers as if they were not grouped
        through = node.mode == PASS_THROUGH and not node.isolated and node.opacity >= 1.0
        as_group = (not shown or node.isolated or node.all_normal()) and mode in MODES
        if as_group:  # the canvas's groups are drawn on their own, as Krita and PSD draw
            group = LayerData(node.name or "Group", np.zeros((1, 1, 4), np.uint8), 0, 0,
                              node.visible, alpha, mode, kind="group", id=new_id(),
                              parent=parent)
            inner = _scope(node.children, width, height, merges, group.id)
            out.append(_Entry(StackNode(node.name, children=node.children, mode=mode,
                                        opacity=alpha, visible=node.visible, isolated=True),
                              [*inner, group]))
        elif through:
            out += _entries(node.children, alpha, shown, width, height, merges, parent)
        else:  # drawn as one: through to the backdrop
            out.append(_Entry(StackNode(node.name, children=node.children, mode=node.mode,
                                        opacity=alpha, isolated=node.isolated or node.mode
                                        not in (NORMAL, PASS_THROUGH),
                                        unknown_mode=node.unknown_mode), None))
    return out


def _scope(nodes: list[StackNode], width: int, height: int, merges: list[StackNode],
           parent: str) -> list[LayerData]:
    """The layers of one group (or of the canvas), bottom to top: the bottom of the list
    up to the last item the canvas cannot draw is merged into one layer."""
    from studio.core.formats.layered import LayerData

    entries = _entries(nodes, 1.0, True, width, height, merges, parent)
    top = max((i for i, e in enumerate(entries) if e.layers is None), default=-1)
    if top < 0:
        return [lay for e in entries for lay in e.layers or []]
    below, rest = entries[:top + 1], entries[top + 1:]
    hidden = [e for e in below if e.layers is not None and len(e.layers) == 1
              and not e.layers[0].visible]
    drawn = [e for e in below if not any(e is h for h in hidden)]
    nodes_drawn = [StackNode(e.node.name, e.layers[0], mode=e.layers[0].blend)
                   if e.layers is not None and len(e.layers) == 1 else e.node for e in drawn]
    rgba = composite_nodes(width, height, nodes_drawn)
    flat = LayerData(f"{below[top].node.name} (merged)", rgba, 0, 0, True, 1.0,
                     parent=parent)
    merges.append(StackNode(flat.name, children=nodes_drawn, mode=PASS_THROUGH))
    return [*(lay for h in hidden for lay in h.layers or []), flat,
            *(lay for e in rest for lay in e.layers or [])]


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
    """The canvas layers (bottom to top, groups after what they hold) that draw ``nodes``
    as their file does.

    Returns the layers and the warnings to show (one line each, usually none).
    """
    merges: list[StackNode] = []
    layers = _scope(nodes, width, height, merges, "")
    unknown = sorted({n.unknown_mode for n in _walk(nodes) if n.unknown_mode})
    warnings = [f"Blend mode {', '.join(unknown)} is not known here and was drawn as Normal."
                ] if unknown else []
    if merges:
        what = set().union(*(_modes(m) for m in merges))
        labels = sorted(mode_label(m) for m in what if m != "group")
        reasons = (["blend modes " + ", ".join(labels)] if labels else []) + (
            ["faded pass-through groups"] if "group" in what else [])
        count = sum(len(m.leaves()) for m in merges)
        into = "one" if len(merges) == 1 else str(len(merges))
        warnings.insert(0, f"Merged {count} layers into {into}: the canvas has no "
                           f"{' or '.join(reasons)}.")
    return layers, warnings


def _walk(nodes: list[StackNode]) -> list[StackNode]:
    out = []
    for node in nodes:
        out.append(node)
        out += _walk(node.children)
    return out


# -- compositing -----------------------------------------------------------------------------
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
    out = np.empty_like(backdrop)
    # co = cs*as*(1-ab) + cb*ab*(1-as) + as*ab*B(cb, cs)
    out[..., :3] = a_s * mix(cb, a_b, cs.astype(np.float32), mode) + backdrop[..., :3] * (
        1.0 - a_s)
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
            mode = node.mode if node.mode != NORMAL else node.layer.blend
            acc = _over(acc, _place(width, height, node.layer), mode,
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
