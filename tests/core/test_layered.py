"""Layered files: OpenRaster and PSD written, read back, and hostile archives refused."""

from __future__ import annotations

import io
import struct
import xml.etree.ElementTree as ET
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.core.errors import ImageReadError
from studio.core.formats.imageio import ImageWriteError
from studio.core.formats.layered import (
    LayerData,
    LayeredImage,
    composite,
    export_ora,
    export_psd,
    import_ora,
    import_psd,
)


def _layers() -> list[LayerData]:
    rng = np.random.default_rng(11)
    background = np.zeros((48, 64, 3), np.uint8)
    background[...] = (10, 20, 30)
    sprite = rng.integers(0, 256, size=(10, 20, 4), dtype=np.uint8)
    sprite[..., 3] = 255
    ghost = np.zeros((8, 8, 4), np.uint8)
    ghost[...] = (255, 0, 0, 200)
    return [LayerData("Background", background),
            LayerData("Sprite ünï", sprite, x=5, y=7, opacity=0.5),
            LayerData("Hidden ghost", ghost, x=-3, y=44, visible=False)]


def _same(a: LayerData, b: LayerData) -> None:
    assert (a.name, a.x, a.y, a.visible) == (b.name, b.x, b.y, b.visible)
    assert a.opacity == pytest.approx(b.opacity, abs=1 / 255)
    assert np.array_equal(a.rgba, b.rgba)


def _ora_bytes(files: list[tuple[str, bytes]], compress=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files:
            zf.writestr(zipfile.ZipInfo(name), data, compress)
    return buf.getvalue()


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


STACK = (b"<?xml version='1.0' encoding='UTF-8'?><image w='4' h='4'><stack>"
         b"<layer name='a' src='%s'/></stack></image>")


# -- OpenRaster ------------------------------------------------------------------------------
def test_ora_round_trip(tmp_path):
    layers = _layers()
    path = export_ora(tmp_path / "art.ora", 64, 48, layers)
    back = import_ora(path)
    assert (back.width, back.height, len(back.layers)) == (64, 48, 3)
    for a, b in zip(layers, back.layers, strict=True):
        _same(a, b)


def test_document_layers_survive_an_ora_round_trip(tmp_path):
    from studio.core.document.layers import Document

    doc = Document(width=64, height=48)
    doc.layers.extend(LayeredImage(64, 48, tuple(_layers())).to_document_layers())
    export_ora(tmp_path / "doc.ora", 64, 48, LayeredImage.from_document(doc).layers)
    back = import_ora(tmp_path / "doc.ora")
    restored = Document(width=back.width, height=back.height, layers=back.to_document_layers())
    assert [lay.name for lay in restored.layers] == ["Background", "Sprite ünï", "Hidden ghost"]
    assert np.array_equal(restored.composite(), doc.composite())


def test_ora_follows_the_spec(tmp_path):
    path = export_ora(tmp_path / "art.ora", 64, 48, _layers())
    raw = path.read_bytes()
    assert raw[30:38] == b"mimetype" and raw[38:54] == b"image/openraster"  # first and stored
    with zipfile.ZipFile(path) as zf:
        first = zf.infolist()[0]
        assert (first.filename, first.compress_type) == ("mimetype", zipfile.ZIP_STORED)
        names = set(zf.namelist())
        assert {"stack.xml", "mergedimage.png", "Thumbnails/thumbnail.png"} <= names
        root = ET.fromstring(zf.read("stack.xml"))
        assert (root.get("w"), root.get("h")) == ("64", "48")
        tops = [(e.get("name"), e.get("visibility"), e.get("x"), e.get("y"), e.get("opacity"))
                for e in root.find("stack")]
        assert tops == [("Hidden ghost", "hidden", "-3", "44", "1"),  # top layer first
                        ("Sprite ünï", "visible", "5", "7", "0.5"),
                        ("Background", "visible", "0", "0", "1")]
        merged = np.asarray(Image.open(io.BytesIO(zf.read("mergedimage.png"))))
        thumb = Image.open(io.BytesIO(zf.read("Thumbnails/thumbnail.png")))
    assert np.array_equal(merged, composite(64, 48, _layers()))
    assert max(thumb.size) <= 256
    # half-transparent sprite over the background; hidden ghost not drawn
    assert tuple(merged[0, 0]) == (10, 20, 30, 255)
    assert tuple(merged[47, 0]) == (10, 20, 30, 255)
    sprite = _layers()[1].rgba[0, 0, :3].astype(int)
    expected = np.round((sprite + np.array([10, 20, 30])) / 2)
    assert np.abs(merged[7, 5, :3] - expected).max() <= 1


def test_ora_refuses_path_escape(tmp_path):
    for bad in ("../evil.png", "/etc/evil.png", "C:/evil.png", "data\\..\\evil.png"):
        data = _ora_bytes([("mimetype", b"image/openraster"), ("stack.xml", STACK % b"data/a.png"),
                           (bad, _png(np.zeros((4, 4, 4), np.uint8)))])
        (tmp_path / "evil.ora").write_bytes(data)
        with pytest.raises(ImageReadError) as info:
            import_ora(tmp_path / "evil.ora")
        assert str(info.value) == (f"Could not open evil.ora: it contains an unsafe path "
                                   f"({bad!r}) and was not opened.")


def test_ora_refuses_layer_source_outside_archive(tmp_path):
    data = _ora_bytes([("mimetype", b"image/openraster"), ("stack.xml", STACK % b"../../a.png")])
    (tmp_path / "x.ora").write_bytes(data)
    with pytest.raises(ImageReadError, match=r"layer 'a' refers to a missing or unsafe file"):
        import_ora(tmp_path / "x.ora")


def test_ora_refuses_zip_bomb(tmp_path):
    bomb = b"\0" * (20 * 1024**2)  # compresses to about 20 KiB
    data = _ora_bytes([("mimetype", b"image/openraster"), ("stack.xml", STACK % b"data/a.png"),
                       ("data/a.png", bomb)], zipfile.ZIP_DEFLATED)
    assert len(data) < 100_000
    (tmp_path / "bomb.ora").write_bytes(data)
    with pytest.raises(ImageReadError) as info:
        import_ora(tmp_path / "bomb.ora", max_bytes=8 * 1024**2)
    assert str(info.value) == ("Could not open bomb.ora: it would unpack to more than 8 MiB "
                               "(a damaged or malicious archive).")


def test_ora_refuses_layer_png_bomb(tmp_path):
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", 50000, 50000, 8, 6, 0, 0, 0)
    huge = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr
            + struct.pack(">I", zlib.crc32(ihdr)) + b"\0\0\0\0IEND\xaeB`\x82")
    data = _ora_bytes([("mimetype", b"image/openraster"), ("stack.xml", STACK % b"data/a.png"),
                       ("data/a.png", huge)])
    (tmp_path / "big.ora").write_bytes(data)
    with pytest.raises(ImageReadError) as info:
        import_ora(tmp_path / "big.ora")
    assert str(info.value).startswith(
        "Could not open big.ora: layer image data/a.png: the image is too large "
        "(50000 x 50000 pixels; the limit is ")


@pytest.mark.parametrize("content, message", [
    (b"not a zip at all", "it is not an OpenRaster file (not a ZIP archive, or a damaged one)"),
    (_ora_bytes([("stack.xml", b"<image/>")]), "it is not an OpenRaster file (no mimetype first)"),
    (_ora_bytes([("mimetype", b"application/zip")]), "it is not an OpenRaster file"),
    (_ora_bytes([("mimetype", b"image/openraster")]), "stack.xml is missing"),
    (_ora_bytes([("mimetype", b"image/openraster"), ("stack.xml", b"<image")]),
     "stack.xml is damaged"),
])
def test_ora_bad_files(tmp_path, content, message):
    (tmp_path / "bad.ora").write_bytes(content)
    with pytest.raises(ImageReadError) as info:
        import_ora(tmp_path / "bad.ora")
    assert str(info.value) == f"Could not open bad.ora: {message}."


def test_ora_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="Could not open none.ora: the file does not exist."):
        import_ora(tmp_path / "none.ora")


def test_ora_nested_stacks_are_kept_as_groups(tmp_path):
    xml = (b"<image w='8' h='8'><stack><stack x='2' y='3' opacity='0.5' visibility='hidden'>"
           b"<layer name='inner' src='data/b.png' x='1' y='1'/></stack>"
           b"<layer name='bottom' src='data/a.png'/></stack></image>")
    px = _png(np.full((2, 2, 4), 255, np.uint8))
    data = _ora_bytes([("mimetype", b"image/openraster"), ("stack.xml", xml),
                       ("data/a.png", px), ("data/b.png", px)])
    (tmp_path / "n.ora").write_bytes(data)
    bottom, inner, group = import_ora(tmp_path / "n.ora").layers  # issue 29: groups kept
    assert (bottom.name, bottom.x, bottom.visible) == ("bottom", 0, True)
    assert (inner.name, inner.x, inner.y, inner.opacity, inner.visible) == ("inner", 3, 4, 1.0, True)
    assert group.is_group and inner.parent == group.id and not bottom.parent
    assert (group.opacity, group.visible) == (0.5, False)


def test_export_needs_layers(tmp_path):
    with pytest.raises(ImageWriteError, match="there are no layers to save"):
        export_ora(tmp_path / "e.ora", 8, 8, [])


# -- PSD -------------------------------------------------------------------------------------
def test_psd_round_trip_read_with_psd_tools(tmp_path):
    from psd_tools import PSDImage

    layers = _layers()
    path = export_psd(tmp_path / "art.psd", 64, 48, layers)
    psd = PSDImage.open(path)
    assert psd.size == (64, 48)
    assert [lay.name for lay in psd] == ["Background", "Sprite ünï", "Hidden ghost"]
    assert [lay.offset for lay in psd] == [(0, 0), (5, 7), (-3, 44)]
    assert [lay.opacity for lay in psd] == [255, 128, 255]
    assert [lay.visible for lay in psd] == [True, True, False]
    for ours, theirs in zip(layers, psd, strict=True):
        assert np.array_equal(np.asarray(theirs.topil().convert("RGBA")), ours.rgba)
    # the merged image that viewers without layer support show
    merged = np.asarray(psd.topil().convert("RGB")).astype(int)
    assert np.abs(merged - composite(64, 48, layers)[..., :3]).max() <= 1
    back = import_psd(path)
    assert (back.width, back.height) == (64, 48)
    for a, b in zip(layers, back.layers, strict=True):
        _same(a, b)


def test_psd_bad_files(tmp_path):
    (tmp_path / "x.psd").write_bytes(b"8BPS garbage")
    with pytest.raises(ImageReadError, match="Could not open x.psd: it is not a PSD file"):
        import_psd(tmp_path / "x.psd")
    with pytest.raises(ImageReadError, match="the file does not exist"):
        import_psd(tmp_path / "missing.psd")


def test_psd_refuses_oversized_canvas(tmp_path):
    with pytest.raises(ImageWriteError, match="limited to 30000 pixels a side"):
        export_psd(tmp_path / "big.psd", 40000, 8, _layers()[:1])
    assert not Path(tmp_path / "big.psd").exists()


def test_psd_refuses_oversized_layer(tmp_path):
    big = LayerData("Huge", np.zeros((80, 80, 4), np.uint8), x=-10, y=-10)
    path = export_psd(tmp_path / "l.psd", 64, 48, [big])
    with pytest.raises(ImageReadError) as info:
        import_psd(path, max_pixels=5000)
    assert str(info.value) == "Could not open l.psd: layer 'Huge' is too large (80 x 80 pixels)."


# -- names, merged image, control characters (issue 20) --------------------------------------
UNICODE_NAMES = ["Upscaled ×2", "夜の灯台 — 猫", "🎨🐈‍⬛ emoji", "é" * 300, "x" * 256]


def test_psd_keeps_unicode_and_long_layer_names(tmp_path):
    from psd_tools import PSDImage

    px = np.full((4, 4, 4), 200, np.uint8)
    layers = [LayerData(name, px, x=i) for i, name in enumerate(UNICODE_NAMES)]
    path = export_psd(tmp_path / "names.psd", 16, 8, layers)
    psd = PSDImage.open(path)
    assert [lay.name for lay in psd] == UNICODE_NAMES
    assert [lay.name for lay in import_psd(path).layers] == UNICODE_NAMES
    # older readers get a MacRoman Pascal name of at most 255 bytes
    from psd_tools.constants import Tag

    legacy = [lay._record.name for lay in psd]  # the raw record: what 'luni'-less readers see
    assert legacy[0] == "Upscaled ?2" and all(len(n.encode("mac_roman")) <= 255 for n in legacy)
    assert all(lay.tagged_blocks.get_data(Tag.UNICODE_LAYER_NAME) for lay in psd)


def test_psd_merged_image_has_the_real_alpha_for_pillow(tmp_path):
    layers = _layers()
    path = export_psd(tmp_path / "art.psd", 64, 48, layers)
    want = composite(64, 48, layers)
    with Image.open(path) as im:
        seen = np.asarray(im.convert("RGBA")).astype(int)
    assert np.array_equal(seen[..., 3], want[..., 3])
    opaque = want[..., 3] == 255
    assert np.abs(seen[opaque][:, :3] - want[opaque][:, :3].astype(int)).max() <= 1
    # a partly transparent canvas stays partly transparent
    half = [LayerData("half", np.full((48, 64, 4), (0, 255, 0, 128), np.uint8))]
    with Image.open(export_psd(tmp_path / "half.psd", 64, 48, half)) as im:
        assert np.asarray(im.convert("RGBA"))[..., 3].max() == 128


def test_ora_escapes_control_characters_and_reopens(tmp_path):
    from studio.core.document.layers import Document, Layer

    name = "bell\x07 tab\t nl\n nul\x00 esc\x1b end"
    doc = Document(8, 8, layers=[Layer(name=name, pixels=np.full((8, 8, 4), 255, np.uint8))])
    image = LayeredImage.from_document(doc)
    path = export_ora(tmp_path / "ctl.ora", 8, 8, image.layers)
    with zipfile.ZipFile(path) as zf:
        ET.fromstring(zf.read("stack.xml"))  # well-formed XML
    back = import_ora(path)
    assert back.layers[0].name == "bell\ufffd tab\t nl\n nul\ufffd esc\ufffd end"
    assert np.array_equal(back.layers[0].rgba, image.layers[0].rgba)


# -- groups and blend modes ------------------------------------------------------------------
def _solid(color, h=4, w=4) -> np.ndarray:
    return np.broadcast_to(np.array(color, np.uint8), (h, w, 4)).copy()


def _ora_file(tmp_path: Path, stack: str, images: dict[str, np.ndarray]) -> Path:
    xml = f"<image w='4' h='4'><stack>{stack}</stack></image>".encode()
    files = [("mimetype", b"image/openraster"), ("stack.xml", xml)]
    files += [(f"data/{k}.png", _png(v)) for k, v in images.items()]
    path = tmp_path / "blend.ora"
    path.write_bytes(_ora_bytes(files))
    return path


def test_ora_groups_of_plain_layers_keep_every_layer(tmp_path):
    path = _ora_file(tmp_path, "<layer name='top' src='data/t.png'/>"
                               "<stack name='g'><layer name='b' src='data/b.png'/>"
                               "<layer name='a' src='data/a.png'/></stack>",
                     {"t": _solid((1, 2, 3, 255)), "a": _solid((9, 9, 9, 255)),
                      "b": _solid((5, 5, 5, 128))})
    image = import_ora(path)
    assert [lay.name for lay in image.layers] == ["a", "b", "g", "top"]  # g: a group
    assert image.layers[2].is_group and image.layers[0].parent == image.layers[2].id
    assert image.warnings == ()


def test_ora_blend_modes_are_kept_as_layer_modes_and_drawn_right(tmp_path):
    path = _ora_file(tmp_path,
                     "<layer name='top' src='data/t.png' x='2'/>"
                     "<layer name='mul' src='data/m.png' composite-op='svg:multiply'/>"
                     "<layer name='hidden' src='data/h.png' visibility='hidden'/>"
                     "<layer name='bg' src='data/b.png'/>",
                     {"t": _solid((0, 0, 255, 255), 4, 2), "m": _solid((128, 128, 128, 255)),
                      "h": _solid((255, 0, 0, 255)), "b": _solid((200, 100, 50, 255))})
    image = import_ora(path)  # issue 29: the canvas has blend modes, nothing is merged
    assert [lay.name for lay in image.layers] == ["bg", "hidden", "mul", "top"]
    assert [lay.blend for lay in image.layers] == ["normal", "normal", "multiply", "normal"]
    assert not image.layers[1].visible
    assert image.warnings == ()
    out = image.composite()
    assert tuple(out[0, 3]) == (0, 0, 255, 255) and abs(int(out[0, 0, 0]) - 100) <= 1


def test_ora_isolated_group_with_screen_is_kept_as_a_group(tmp_path):
    path = _ora_file(tmp_path,
                     "<stack name='g' composite-op='svg:screen' opacity='0.5'>"
                     "<layer name='s' src='data/s.png'/></stack>"
                     "<layer name='bg' src='data/b.png'/>",
                     {"s": _solid((100, 100, 100, 255)), "b": _solid((100, 0, 200, 255))})
    image = import_ora(path)
    assert [lay.name for lay in image.layers] == ["bg", "s", "g"] and image.warnings == ()
    assert (image.layers[2].blend, image.layers[2].opacity) == ("screen", 0.5)
    screen = 255 - (255 - np.array([100, 100, 100])) * (255 - np.array([100, 0, 200])) / 255
    want = 0.5 * np.array([100, 0, 200]) + 0.5 * screen
    assert np.abs(image.composite()[1, 1, :3] - want).max() <= 1.5


def test_psd_faded_pass_through_group_over_multiply_is_merged_and_said(tmp_path):
    from psd_tools import PSDImage
    from psd_tools.api.layers import Group, PixelLayer
    from psd_tools.constants import BlendMode

    psd = PSDImage.new("RGBA", (4, 4))
    PixelLayer.frompil(Image.fromarray(_solid((100, 0, 200, 255))), psd, name="bg")
    group = Group.new(psd, name="g")
    m = PixelLayer.frompil(Image.fromarray(_solid((100, 100, 100, 255))), group, name="m")
    m.blend_mode = BlendMode.MULTIPLY
    group.blend_mode, group.opacity = BlendMode.PASS_THROUGH, 128
    psd.save(tmp_path / "faded.psd")
    image = import_psd(tmp_path / "faded.psd")
    assert [lay.name for lay in image.layers] == ["g (merged)"]
    assert "Multiply" in image.warnings[0] and "pass-through" in image.warnings[0]
    reference = np.asarray(PSDImage.open(tmp_path / "faded.psd").composite(force=True)
                           .convert("RGBA")).astype(int)
    assert np.abs(image.composite().astype(int) - reference).max() <= 2


def test_ora_unknown_blend_mode_is_drawn_normal_and_said(tmp_path):
    path = _ora_file(tmp_path, "<layer name='x' src='data/x.png' composite-op='krita:weird'/>",
                     {"x": _solid((1, 2, 3, 255))})
    image = import_ora(path)
    assert [lay.name for lay in image.layers] == ["x"]
    assert image.warnings == ("Blend mode krita:weird is not known here and was drawn as Normal.",)


@pytest.mark.parametrize("group_mode, names", [
    ("PASS_THROUGH", ["bg", "a", "b", "top"]),  # the layers as they are, b in Multiply
    ("NORMAL", ["bg", "a", "b", "shading", "top"]),  # isolated: kept as a group
])
def test_psd_groups_and_blend_modes_match_psd_tools_composite(tmp_path, group_mode, names):
    from psd_tools import PSDImage
    from psd_tools.api.layers import Group, PixelLayer
    from psd_tools.constants import BlendMode

    psd = PSDImage.new("RGBA", (8, 8))
    rng = np.random.default_rng(3)
    bg = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    bg[..., 3] = 255
    PixelLayer.frompil(Image.fromarray(bg), psd, name="bg")
    group = Group.new(psd, name="shading")
    a = PixelLayer.frompil(Image.fromarray(_solid((10, 200, 30, 255), 4, 8)), psd, name="a")
    b = PixelLayer.frompil(Image.fromarray(_solid((128, 64, 255, 200), 8, 4)), psd, name="b")
    b.blend_mode = BlendMode.MULTIPLY
    group.extend([a, b])
    group.blend_mode = BlendMode[group_mode]
    top = PixelLayer.frompil(Image.fromarray(_solid((255, 255, 255, 255), 2, 2)), psd,
                             name="top", top=6, left=6)
    psd.append(top) if top not in list(psd) else None
    path = tmp_path / "groups.psd"
    psd.save(path)

    image = import_psd(path)
    assert [lay.name for lay in image.layers] == names
    assert image.warnings == () and image.layers[2].blend == "multiply"
    assert image.layers[3].is_group == (group_mode == "NORMAL")
    reference = np.asarray(PSDImage.open(path).composite(force=True).convert("RGBA")).astype(int)
    assert np.abs(image.composite().astype(int) - reference).max() <= 2


# -- what the fuzzing harness found (tests/fuzz) ---------------------------------------------
def test_ora_infinite_or_huge_offsets_and_nan_opacity(tmp_path):
    path = _ora_file(tmp_path, "<layer name='a' src='data/a.png' x='inf' y='-1e300' "
                               "opacity='nan'/><layer name='b' src='data/a.png' "
                               "x='99999999999999999999'/>",
                     {"a": _solid((1, 2, 3, 255))})
    image = import_ora(path)
    b, a = image.layers
    assert (a.x, a.y, a.opacity) == (0, -(1 << 20), 1.0) and b.x == 1 << 20
    image.composite()


def test_ora_damaged_deflate_stream_and_zip_version_are_one_line(tmp_path):
    layers = [LayerData("a", _solid((1, 2, 3, 255)))]
    data = export_ora(tmp_path / "a.ora", 4, 4, layers).read_bytes()
    with zipfile.ZipFile(tmp_path / "a.ora") as zf:
        info = zf.getinfo("stack.xml")
    at = info.header_offset + 30 + len(info.filename) + len(info.extra) + 5
    broken = bytearray(data)
    broken[at] ^= 0x32  # inside stack.xml's deflate stream
    (tmp_path / "deflate.ora").write_bytes(bytes(broken))
    with pytest.raises(ImageReadError, match="is damaged|not an OpenRaster"):
        import_ora(tmp_path / "deflate.ora")
    version = bytearray(data)
    central = bytes(data).rfind(b"PK\x01\x02")
    version[central + 6] = 84  # "needs zip version 8.4"
    (tmp_path / "version.ora").write_bytes(bytes(version))
    with pytest.raises(ImageReadError, match="not an OpenRaster file"):
        import_ora(tmp_path / "version.ora")
