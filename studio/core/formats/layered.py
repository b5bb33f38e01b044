"""Layered export and import: OpenRaster (.ora) and Photoshop (.psd).

``LayerData`` is the plain value exchanged with these formats; layers go bottom to top.
OpenRaster follows https://www.openraster.org/ (0.0.5): a ZIP whose first member is an
uncompressed ``mimetype``, then ``stack.xml``, ``data/*.png``, ``mergedimage.png`` and
``Thumbnails/thumbnail.png``. PSD goes through psd-tools.
"""

from __future__ import annotations

import io
import math
import os
import re
import xml.etree.ElementTree as ET
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
from PIL import Image

from studio.core.document.blend import ora_name, psd_name
from studio.core.document.layers import Document, Layer, new_id
from studio.core.errors import ImageReadError
from studio.core.formats.imageio import (
    DEFAULT_MAX_PIXELS,
    ImageWriteError,
    atomic_write,
    load_image,
)
from studio.core.formats.layer_stack import (
    BLEND_NAMES,
    NORMAL,
    PASS_THROUGH,
    StackNode,
    flatten_stack,
    mode_label,
)

ORA_MIMETYPE = b"image/openraster"
#: An archive whose members would unpack to more than this is refused as a likely zip bomb.
MAX_UNPACKED_BYTES = 1024**3
MAX_MEMBERS = 10_000
MAX_DEPTH = 64  # nested groups; deeper is a hostile file
THUMBNAIL_SIZE = 256


@dataclass(frozen=True, eq=False)
class LayerData:
    """One layer as exchanged with other programs.

    Attributes
    ----------
    rgba
        ``HxWx4`` uint8, straight alpha (``HxWx3`` is given an opaque alpha).
    x, y
        Canvas position of the top-left pixel (may be negative).
    opacity
        0 to 1.
    blend
        Blend mode, our name (``studio.core.document.blend.MODES``).
    kind, id, parent
        ``kind`` is ``"group"`` for a group (its ``rgba`` unused), listed after the layers
        it holds; a layer in a group has the group's ``id`` as ``parent`` (``""``: none).
    """

    name: str
    rgba: np.ndarray
    x: int = 0
    y: int = 0
    visible: bool = True
    opacity: float = 1.0
    blend: str = "normal"
    kind: str = "layer"
    id: str = ""
    parent: str = ""

    @property
    def is_group(self) -> bool:
        return self.kind == "group"

    def __post_init__(self) -> None:
        arr = np.asarray(self.rgba)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise ValueError(f"layer pixels must be HxWx4 uint8, got {arr.dtype} {arr.shape}")
        if arr.shape[2] == 3:
            arr = np.concatenate([arr, np.full(arr.shape[:2] + (1,), 255, np.uint8)], axis=2)
        object.__setattr__(self, "rgba", np.ascontiguousarray(arr))
        object.__setattr__(self, "opacity", min(max(float(self.opacity), 0.0), 1.0))


@dataclass(frozen=True, eq=False)
class LayeredImage:
    """A canvas size and its layers, bottom to top."""

    width: int
    height: int
    layers: tuple[LayerData, ...]
    #: What could not be kept as it was (groups or blend modes merged), one line each.
    warnings: tuple[str, ...] = ()

    def composite(self) -> np.ndarray:
        """The visible layers flattened (alpha over) into an ``HxWx4`` uint8 image."""
        return composite(self.width, self.height, self.layers)

    @classmethod
    def from_document(cls, doc: Document) -> LayeredImage:
        """A snapshot of a document's layers (and groups) for export (pixels are copied)."""
        return cls(doc.width, doc.height, tuple(
            LayerData(layer.name, layer.pixels.copy(), layer.x, layer.y, layer.visible,
                      layer.opacity, layer.blend, "group" if layer.is_group else "layer",
                      layer.id, doc.parent_of(layer) or "") for layer in doc.layers))

    def to_document_layers(self) -> list[Layer]:
        """New document layers (fresh ids) holding these layers, bottom to top."""
        ids = {lay.id: new_id() for lay in self.layers if lay.id}
        return [Layer(name=lay.name, pixels=lay.rgba.copy(), x=lay.x, y=lay.y,
                      visible=lay.visible, opacity=lay.opacity, blend=lay.blend,
                      kind="group" if lay.is_group else "image",
                      id=ids.get(lay.id) or new_id(), parent=ids.get(lay.parent))
                for lay in self.layers]

    def tree(self) -> list[tuple[LayerData, list[Any]]]:
        """The layers as a tree, bottom to top: ``(layer, children)`` with children in the
        same form (empty for a plain layer)."""
        return _tree(self.layers)


def _tree(layers: tuple[LayerData, ...] | list[LayerData]) -> list[tuple[LayerData, list[Any]]]:
    groups = {lay.id for lay in layers if lay.is_group and lay.id}
    kids: dict[str, list[LayerData]] = {}
    for lay in layers:
        kids.setdefault(lay.parent if lay.parent in groups else "", []).append(lay)

    def build(parent: str, seen: frozenset[str]) -> list[tuple[LayerData, list[Any]]]:
        return [(lay, build(lay.id, seen | {lay.id}) if lay.is_group and lay.id not in seen
                 else []) for lay in kids.get(parent, [])]

    return build("", frozenset())


def composite(width: int, height: int, layers: tuple[LayerData, ...] | list[LayerData]) -> np.ndarray:
    """Flatten ``layers`` (bottom to top, groups as ``LayerData`` documents them) onto a
    transparent ``width`` x ``height`` canvas."""
    doc = Document(width=width, height=height, layers=[
        Layer(name=lay.name, pixels=lay.rgba, x=lay.x, y=lay.y, visible=lay.visible,
              opacity=lay.opacity, blend=lay.blend, id=lay.id or new_id(),
              kind="group" if lay.is_group else "image", parent=lay.parent or None)
        for lay in layers])
    return doc.composite()


_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot hold (control characters, lone
    surrogates); each becomes U+FFFD, so the name keeps its length and readers parse it."""
    return _XML_ILLEGAL.sub("\ufffd", text)


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", compress_level=6)
    return buf.getvalue()


def _check_canvas(width: int, height: int, layers: tuple[LayerData, ...] | list[LayerData],
                  target: Path) -> None:
    if width < 1 or height < 1:
        raise ImageWriteError(f"Could not save {target.name}: the canvas has no pixels.")
    if not layers:
        raise ImageWriteError(f"Could not save {target.name}: there are no layers to save.")


# -- OpenRaster ------------------------------------------------------------------------------
def export_ora(path: str | os.PathLike[str], width: int, height: int,
               layers: tuple[LayerData, ...] | list[LayerData]) -> Path:
    """Write an OpenRaster file that Krita, GIMP and MyPaint open with its layers.

    Raises
    ------
    ImageWriteError
        No layers, or the file could not be written (the target is then left as it was).
    """
    target = Path(path)
    _check_canvas(width, height, layers, target)
    merged = composite(width, height, layers)
    thumb = Image.fromarray(merged)
    thumb.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    root = ET.Element("image", {"version": "0.0.5", "w": str(width), "h": str(height)})
    stack = ET.SubElement(root, "stack")
    files: list[tuple[str, bytes]] = []
    counter = iter(range(len(layers)))

    def add(parent: ET.Element, items: list[tuple[LayerData, list[Any]]]) -> None:
        for layer, children in reversed(items):  # stack.xml lists the top layer first
            common = {"name": xml_text(layer.name), "opacity": f"{layer.opacity:.4g}",
                      "composite-op": ora_name(layer.blend),
                      "visibility": "visible" if layer.visible else "hidden"}
            if layer.is_group:  # our groups are drawn on their own: isolated
                add(ET.SubElement(parent, "stack", {**common, "isolation": "isolate"}),
                    children)
                continue
            src = f"data/layer{next(counter):03d}.png"
            ET.SubElement(parent, "layer", {**common, "src": src, "x": str(layer.x),
                                            "y": str(layer.y)})
            files.append((src, _png(layer.rgba)))

    add(stack, _tree(layers))
    xml = ET.tostring(root, encoding="UTF-8", xml_declaration=True)

    def write(stream: IO[bytes]) -> None:
        with zipfile.ZipFile(stream, "w") as zf:
            zf.writestr(zipfile.ZipInfo("mimetype"), ORA_MIMETYPE, zipfile.ZIP_STORED)
            zf.writestr("stack.xml", xml, zipfile.ZIP_DEFLATED)
            for name, data in files:  # PNG is compressed already
                zf.writestr(name, data, zipfile.ZIP_STORED)
            zf.writestr("mergedimage.png", _png(merged), zipfile.ZIP_STORED)
            zf.writestr("Thumbnails/thumbnail.png", _png(np.asarray(thumb)), zipfile.ZIP_STORED)

    return atomic_write(target, write)


def _safe_member(name: str) -> bool:
    if not name or "\\" in name or name.startswith("/") or ":" in name.split("/")[0]:
        return False
    return ".." not in PurePosixPath(name).parts


def _open_ora(path: Path, max_bytes: int) -> tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]:
    label = path.name
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ImageReadError(f"Could not open {label}: the file does not exist.") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError,
            zlib.error):  # NotImplementedError: a damaged "zip version" field
        raise ImageReadError(f"Could not open {label}: it is not an OpenRaster file "
                             "(not a ZIP archive, or a damaged one).") from None
    infos = zf.infolist()
    bad = next((i.filename for i in infos if not _safe_member(i.filename)), None)
    problem = ""
    if bad is not None:
        problem = f"it contains an unsafe path ({bad!r}) and was not opened"
    elif len(infos) > MAX_MEMBERS:
        problem = f"it holds too many files ({len(infos)})"
    elif sum(i.file_size for i in infos) > max_bytes:
        problem = (f"it would unpack to more than {max_bytes // 1024**2} MiB "
                   "(a damaged or malicious archive)")
    elif not infos or infos[0].filename != "mimetype":
        problem = "it is not an OpenRaster file (no mimetype first)"
    if problem:
        zf.close()
        raise ImageReadError(f"Could not open {label}: {problem}.")
    return zf, {i.filename: i for i in infos}


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, limit: int) -> bytes:
    try:
        with zf.open(info) as member:
            data = member.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError,
            zlib.error):
        raise ImageReadError(f"Could not open {label}: {info.filename} is damaged.") from None
    if len(data) > limit:
        raise ImageReadError(f"Could not open {label}: {info.filename} unpacks to more than "
                             f"{limit // 1024**2} MiB (a damaged or malicious archive).")
    return data


MAX_OFFSET = 1 << 20  # a layer further off the canvas than this is placed at this distance


def _number(value: str | None, default: float, kind: type = float) -> float:
    """An attribute's number; missing, unreadable, NaN or infinite values give ``default``,
    and offsets are kept within ``MAX_OFFSET``."""
    try:
        number = float(value) if value not in (None, "") else default
    except ValueError:
        return default
    if not math.isfinite(number):
        return default
    return kind(min(max(number, -MAX_OFFSET), MAX_OFFSET)) if kind is int else number


def _shifted(node: StackNode, dx: int, dy: int) -> StackNode:
    if node.layer is not None:
        lay = node.layer
        node.layer = LayerData(lay.name, lay.rgba, lay.x + dx, lay.y + dy, lay.visible,
                               lay.opacity, lay.blend, lay.kind, lay.id, lay.parent)
    for child in node.children:
        _shifted(child, dx, dy)
    return node


def import_ora(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_bytes: int = MAX_UNPACKED_BYTES) -> LayeredImage:
    """Read the layers of an OpenRaster file, bottom to top.

    Groups (nested stacks) are spread into the one list of the canvas where that draws the
    same; layers under a blend mode other than Normal (or an isolated group) are merged
    into one, drawn as the file draws them, and ``warnings`` says so.

    Raises
    ------
    ImageReadError
        Not an OpenRaster file, a damaged one, one whose paths escape the archive
        (``../``, absolute), one that unpacks to more than ``max_bytes`` (zip bomb), or a
        layer image that is damaged or over ``max_pixels``.
    """
    source = Path(path)
    label = source.name
    zf, members = _open_ora(source, max_bytes)
    with zf:
        if _read(zf, members["mimetype"], label, 64).strip() != ORA_MIMETYPE:
            raise ImageReadError(f"Could not open {label}: it is not an OpenRaster file.")
        if "stack.xml" not in members:
            raise ImageReadError(f"Could not open {label}: stack.xml is missing.")
        try:
            root = ET.fromstring(_read(zf, members["stack.xml"], label, 16 * 1024**2))
        except ET.ParseError:
            raise ImageReadError(f"Could not open {label}: stack.xml is damaged.") from None
        width, height = int(_number(root.get("w"), 0, int)), int(_number(root.get("h"), 0, int))
        if width < 1 or height < 1 or width * height > max_pixels:
            raise ImageReadError(f"Could not open {label}: the canvas size {width} x {height} "
                                 "is missing or too large.")
        stack = root.find("stack")
        counter = [0]

        def walk(node: ET.Element, depth: int) -> list[StackNode]:
            if depth > MAX_DEPTH:
                raise ImageReadError(f"Could not open {label}: its layer groups are nested "
                                     "too deeply.")
            nodes: list[StackNode] = []
            for child in list(node)[::-1]:  # bottom first
                if child.tag not in ("stack", "layer"):
                    continue
                counter[0] += 1
                if counter[0] > MAX_MEMBERS:
                    raise ImageReadError(f"Could not open {label}: it has too many layers.")
                x = int(_number(child.get("x"), 0, int))
                y = int(_number(child.get("y"), 0, int))
                alpha = min(max(_number(child.get("opacity"), 1.0), 0.0), 1.0)
                shown = child.get("visibility", "visible") != "hidden"
                op = child.get("composite-op", "svg:src-over") or "svg:src-over"
                mode = BLEND_NAMES.get(op, NORMAL)
                unknown = op if op not in BLEND_NAMES else ""
                name = child.get("name", "")
                if child.tag == "stack":
                    kids = walk(child, depth + 1)
                    if x or y:  # a stack's offset moves what it holds
                        kids = [_shifted(k, x, y) for k in kids]
                    isolated = (child.get("isolation", "auto") == "isolate"
                                or mode != NORMAL or alpha < 1.0)
                    nodes.append(StackNode(name or "Group", children=kids, opacity=alpha,
                                           visible=shown, isolated=isolated,
                                           mode=mode if isolated else PASS_THROUGH,
                                           unknown_mode=unknown))
                    continue
                src = child.get("src", "")
                if not _safe_member(src) or src not in members:
                    raise ImageReadError(f"Could not open {label}: layer "
                                         f"{name!r} refers to a missing or unsafe file "
                                         f"({src!r}).")
                data = _read(zf, members[src], label, max_bytes)
                try:
                    rgba = load_image(data, max_pixels=max_pixels)
                except ImageReadError as exc:
                    reason = exc.message.split(": ", 1)[-1]
                    raise ImageReadError(f"Could not open {label}: layer image {src}: "
                                         f"{reason}") from None
                layer = LayerData(name or src, rgba, x, y, shown, alpha)
                nodes.append(StackNode(layer.name, layer, mode=mode, visible=shown,
                                       unknown_mode=unknown))
            return nodes

        tree = walk(stack, 0) if stack is not None else []
    layers, warnings = flatten_stack(width, height, tree)
    return LayeredImage(width, height, tuple(layers), tuple(warnings))


# -- PSD -------------------------------------------------------------------------------------
MAX_PSD_SIDE = 30000  # the PSD format's limit


def export_psd(path: str | os.PathLike[str], width: int, height: int,
               layers: tuple[LayerData, ...] | list[LayerData]) -> Path:
    """Write a layered Photoshop file (8-bit RGB with transparency) via psd-tools.

    Raises
    ------
    ImageWriteError
        No layers, a canvas over 30000 pixels a side, or the file could not be written.
    """
    from psd_tools import PSDImage
    from psd_tools.api.layers import Group, PixelLayer
    from psd_tools.constants import BlendMode, Tag

    target = Path(path)
    _check_canvas(width, height, layers, target)
    if max(width, height) > MAX_PSD_SIDE:
        raise ImageWriteError(f"Could not save {target.name}: PSD files are limited to "
                              f"{MAX_PSD_SIDE} pixels a side.")
    psd = PSDImage.new("RGBA", (width, height))

    def add(parent: Any, items: list[tuple[LayerData, list[Any]]]) -> None:
        for layer, children in items:  # psd-tools lists layers bottom to top, as we do
            if layer.is_group:  # a Normal group is isolated in Photoshop, as ours are
                made = Group.new(parent, name=legacy_name(layer.name))
            else:
                made = PixelLayer.frompil(Image.fromarray(layer.rgba), parent,
                                          name=legacy_name(layer.name), top=layer.y,
                                          left=layer.x)
            # 'luni' holds the real name (any length, any script): Photoshop, GIMP, Krita and
            # psd-tools show it; older readers show the legacy Pascal name.
            made.tagged_blocks.set_data(Tag.UNICODE_LAYER_NAME, layer.name)
            made.opacity = round(layer.opacity * 255)
            made.visible = layer.visible
            made.blend_mode = BlendMode[psd_name(layer.blend)]
            if layer.is_group:
                add(made, children)

    add(psd, _tree(layers))
    # The merged image carries our transparency only with this marker ('Mtrn'): without it
    # the alpha plane is written as zeros and Pillow-based viewers show a blank image.
    if psd.tagged_blocks is not None:
        psd.tagged_blocks.set_data(Tag.SAVING_MERGED_TRANSPARENCY)
    return atomic_write(target, psd.save)


def legacy_name(name: str) -> str:
    """The Pascal-string layer name older PSD readers show: MacRoman, at most 255 bytes
    (what MacRoman cannot hold becomes ``?``)."""
    legacy = name.encode("mac_roman", errors="replace").decode("mac_roman")
    return legacy[:255] or "Layer"


def import_psd(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> LayeredImage:
    """Read the pixel layers of a PSD file, bottom to top (other layer kinds are skipped).

    Groups and blend modes are handled as in ``import_ora``: kept where the canvas draws
    them the same, merged into one layer otherwise, with a line in ``warnings``.

    Raises
    ------
    ImageReadError
        A missing, damaged or oversized file.
    """
    from psd_tools import PSDImage

    source = Path(path)
    if not source.is_file():
        raise ImageReadError(f"Could not open {source.name}: the file does not exist.")
    try:
        psd = PSDImage.open(source)
        if psd.width * psd.height > max_pixels:
            raise ImageReadError(f"Could not open {source.name}: the image is too large "
                                 f"({psd.width} x {psd.height} pixels).")
        notes: set[str] = set()
        tree = _psd_nodes(psd, source.name, max_pixels, 0, notes)
    except ImageReadError:
        raise
    except Exception:  # psd-tools raises many kinds on damaged files
        raise ImageReadError(f"Could not open {source.name}: it is not a PSD file, "
                             "or it is damaged.") from None
    layers, warnings = flatten_stack(psd.width, psd.height, tree)
    if "mask" in notes:
        warnings.append("Layer masks were applied to the layers' transparency.")
    if "clip" in notes:
        warnings.append("Clipped layers were cut to the layer they clip to (no clipping "
                        "groups here).")
    return LayeredImage(psd.width, psd.height, tuple(layers), tuple(warnings))


def _psd_mode(layer: Any) -> tuple[str, str]:
    """(our mode name, the file's name when we cannot draw it)."""
    from psd_tools.composite.blend import BLEND_FUNC

    mode = layer.blend_mode
    if mode.name == "PASS_THROUGH":
        return PASS_THROUGH, ""
    if mode not in BLEND_FUNC or mode.name == "DISSOLVE":
        return NORMAL, mode_label(mode.name.lower())
    return (NORMAL if mode.name == "NORMAL" else mode.name.lower()), ""


def _psd_mask(lay: Any, rgba: np.ndarray) -> tuple[np.ndarray, bool]:
    """``rgba`` with the layer's mask applied to its alpha, as Photoshop draws it (a
    disabled mask is left out); and whether there was a mask to apply."""
    mask = lay.mask if lay.has_mask() else None
    if mask is None or mask.disabled:
        return rgba, False
    try:
        image = mask.topil(layer_sized=True)
    except TypeError:  # an older psd-tools: place the mask's own box ourselves
        image = None
    h, w = rgba.shape[:2]
    if image is not None and image.size == (w, h):
        values = np.asarray(image.convert("L"))
    else:
        values = np.full((h, w), int(mask.background_color), np.uint8)
        raw = mask.topil(real=False) if image is None else image
        if raw is not None:
            part = np.asarray(raw.convert("L"))
            x0, y0 = mask.left - lay.left, mask.top - lay.top
            ys = slice(max(0, y0), min(h, y0 + part.shape[0]))
            xs = slice(max(0, x0), min(w, x0 + part.shape[1]))
            if ys.stop > ys.start and xs.stop > xs.start:
                values[ys, xs] = part[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    out = rgba.copy()
    out[..., 3] = (out[..., 3].astype(np.uint16) * values // 255).astype(np.uint8)
    return out, True


def _clipped(data: LayerData, base: LayerData) -> LayerData:
    """``data`` drawn only where ``base`` has pixels (a clipping mask): its alpha times the
    base's, over the part where they meet; hidden when the base is hidden."""
    rgba = data.rgba.copy()
    h, w = rgba.shape[:2]
    cover = np.zeros((h, w), np.uint16)
    bh, bw = base.rgba.shape[:2]
    x0, y0 = max(data.x, base.x), max(data.y, base.y)
    x1, y1 = min(data.x + w, base.x + bw), min(data.y + h, base.y + bh)
    if x1 > x0 and y1 > y0:
        cover[y0 - data.y:y1 - data.y, x0 - data.x:x1 - data.x] = \
            base.rgba[y0 - base.y:y1 - base.y, x0 - base.x:x1 - base.x, 3]
    rgba[..., 3] = (rgba[..., 3].astype(np.uint16) * cover // 255).astype(np.uint8)
    return LayerData(data.name, rgba, data.x, data.y, data.visible and base.visible,
                     data.opacity, data.blend)


def _psd_nodes(group: Any, label: str, max_pixels: int, depth: int,
               notes: set[str] | None = None) -> list[StackNode]:
    """The layers of a PSD group, bottom to top; layer masks are applied to the alpha and
    clipped layers limited to their base layer (``notes`` says which happened)."""
    if depth > MAX_DEPTH:
        raise ImageReadError(f"Could not open {label}: its layer groups are nested too deeply.")
    notes = notes if notes is not None else set()
    nodes: list[StackNode] = []
    base: LayerData | None = None  # the layer the next clipped layers clip to
    for lay in group:  # bottom to top
        mode, unknown = _psd_mode(lay)
        clipping = bool(getattr(lay, "clipping", False))
        if lay.is_group():
            nodes.append(StackNode(lay.name, children=_psd_nodes(lay, label, max_pixels,
                                                                  depth + 1, notes),
                                   mode=mode, opacity=lay.opacity / 255, visible=lay.visible,
                                   isolated=mode != PASS_THROUGH, unknown_mode=unknown))
            if not clipping:
                base = None
            continue
        if lay.kind != "pixel" or lay.width * lay.height == 0:
            continue
        if lay.width * lay.height > max_pixels:
            raise ImageReadError(f"Could not open {label}: layer {lay.name!r} is too "
                                 f"large ({lay.width} x {lay.height} pixels).")
        pil = lay.topil()
        if pil is None:
            continue
        rgba, masked = _psd_mask(lay, np.asarray(pil.convert("RGBA")))
        if masked:
            notes.add("mask")
        data = LayerData(lay.name, rgba, lay.left, lay.top, lay.visible, lay.opacity / 255)
        if clipping and base is not None:
            data = _clipped(data, base)
            notes.add("clip")
        elif not clipping:
            base = data
        nodes.append(StackNode(data.name, data, mode=NORMAL if mode == PASS_THROUGH else mode,
                               visible=data.visible, unknown_mode=unknown))
    return nodes
