"""Fuzzing layered import: OpenRaster stacks (groups, blend modes, offsets, opacities as
tools write them, or worse) and damaged bytes of ORA and PSD files.

Property: ``import_ora`` / ``import_psd`` give layers that composite, or raise
``ImageReadError`` with one line; never another exception.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from functools import cache
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from studio.core.errors import ImageReadError
from studio.core.formats.layered import LayerData, export_ora, export_psd, import_ora, import_psd

OPS = ["svg:src-over", "svg:multiply", "svg:screen", "svg:overlay", "svg:darken",
       "svg:lighten", "svg:color-dodge", "svg:color-burn", "svg:hard-light", "svg:soft-light",
       "svg:difference", "svg:exclusion", "svg:hue", "svg:saturation", "svg:color",
       "svg:luminosity", "svg:plus", "svg:dst-in", "krita:unknown", ""]
NUMBER = st.sampled_from(["0", "1", "-3", "0.5", "1e9", "-1e9", "nan", "inf", "", "x", "2",
                          "99999999999999999999"])
ATTRS = st.fixed_dictionaries({}, optional={
    "x": NUMBER, "y": NUMBER, "opacity": NUMBER, "name": st.text(max_size=10),
    "composite-op": st.sampled_from(OPS), "visibility": st.sampled_from(["visible", "hidden", "?"]),
    "isolation": st.sampled_from(["auto", "isolate", "?"])})


def _layer(attrs: dict[str, str], src: int) -> str:
    body = " ".join(f"{k}={quoteattr(v)}" for k, v in attrs.items())
    return f"<layer {body} src='data/{src}.png'/>"


STACK = st.recursive(
    st.builds(_layer, ATTRS, st.integers(0, 2)),
    lambda inner: st.builds(
        lambda attrs, kids: "<stack " + " ".join(f"{k}={quoteattr(v)}" for k, v in attrs.items())
        + ">" + "".join(kids) + "</stack>", ATTRS, st.lists(inner, max_size=4)),
    max_leaves=8)


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def check(load, path: Path) -> None:
    try:
        image = load(path)
    except ImageReadError as err:
        assert "\n" not in str(err)
    else:
        image.composite()


@given(stack=st.lists(STACK, max_size=4), size=st.tuples(st.integers(1, 24), st.integers(1, 24)),
       sizes=st.lists(st.tuples(st.integers(1, 12), st.integers(1, 12)), min_size=3, max_size=3),
       alpha=st.integers(0, 255))
def test_ora_stacks(stack, size, sizes, alpha):
    rng = np.random.default_rng(1)
    files = [("mimetype", b"image/openraster"),
             ("stack.xml", (f"<image w='{size[0]}' h='{size[1]}'><stack>{''.join(stack)}"
                            "</stack></image>").encode())]
    for i, (h, w) in enumerate(sizes):
        arr = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        arr[..., 3] = np.minimum(arr[..., 3], alpha)
        files.append((f"data/{i}.png", _png(arr)))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "s.ora"
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in files:
                zf.writestr(zipfile.ZipInfo(name), data)
        check(import_ora, path)


@cache
def _exported() -> dict[str, bytes]:
    folder = Path(tempfile.mkdtemp(prefix="fuzz-layered-"))
    rng = np.random.default_rng(2)
    layers = [LayerData("bg", rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)),
              LayerData("Upscaled ×2", rng.integers(0, 256, (8, 8, 4), dtype=np.uint8), 3, 4,
                        opacity=0.5)]
    return {".ora": export_ora(folder / "a.ora", 16, 16, layers).read_bytes(),
            ".psd": export_psd(folder / "a.psd", 16, 16, layers).read_bytes()}


@given(suffix=st.sampled_from([".ora", ".psd"]),
       flips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(1, 255)), min_size=1,
                      max_size=8),
       cut=st.none() | st.integers(1, 10**9))
def test_damaged_layered_files(suffix, flips, cut):
    data = bytearray(_exported()[suffix])
    for at, xor in flips:
        data[at % len(data)] ^= xor
    if cut is not None:
        data = data[: cut % len(data)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"d{suffix}"
        path.write_bytes(bytes(data))
        check(import_ora if suffix == ".ora" else import_psd, path)
