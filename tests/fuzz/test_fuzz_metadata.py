"""Fuzzing metadata reading: PNG text chunks, EXIF and XMP as other tools (or attackers)
write them, and damaged bytes of our own images.

Property: ``read_settings`` returns settings or ``None``, or raises ``ImageReadError`` with
one line; never another exception.
"""

from __future__ import annotations

import io
import json
import zlib

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from studio.core.errors import ImageReadError
from studio.core.formats.metadata import read_settings, save_image
from studio.core.jobs.request import GenerationRequest

KEYS = ["parameters", "prompt", "workflow", "Comment", "Description", "Software", "studio",
        "sd-metadata", "invokeai_metadata", "fooocus_scheme", "generation_data",
        "sui_image_params", "Dream", "XML:com.adobe.xmp"]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
        st.sampled_from(["class_type", "inputs", "text", "seed", "steps", "cfg", "nodes",
                         "links", "widgets_values", "prompt", "sampler_name", "type", "id",
                         "1", "2", "3"]) | st.text(max_size=8), inner, max_size=6),
    max_leaves=40)
TEXT = (JSON.map(json.dumps)
        | st.text(max_size=300)
        | st.lists(st.sampled_from(["Steps: ", "Sampler: ", "CFG scale: ", "Seed: ", "Size: ",
                                    "Negative prompt: ", ", ", "\n", "1234", "Euler a", "x",
                                    "{", "}", "\"", ":", "Model hash: ", "Lora hashes: "]),
                   max_size=60).map("".join))


def _png(texts: dict[str, str]) -> bytes:
    info = PngInfo()
    for key, value in texts.items():
        info.add_text(key, value, zip=len(value) % 2 == 1)
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def check(data: bytes) -> None:
    try:
        read_settings(data)
    except ImageReadError as err:
        assert "\n" not in str(err)


@given(st.dictionaries(st.sampled_from(KEYS), TEXT, min_size=1, max_size=4))
def test_png_text_chunks(texts):
    check(_png(texts))


@given(comment=TEXT, fmt=st.sampled_from(["JPEG", "WEBP"]),
       tag=st.sampled_from([0x9286, 0x010E, 0x010F, 0x0110, 0x0131, 0x927C]),
       encoding=st.sampled_from([b"UNICODE\x00", b"ASCII\x00\x00\x00", b"", b"LatentStudio\x00"]))
def test_exif_texts(comment, fmt, tag, encoding):
    im = Image.new("RGB", (64, 64), (1, 2, 3))
    exif = im.getexif()
    body = (comment.encode("utf-16-be" if encoding.startswith(b"UNI") else "utf-8",
                           errors="replace"))
    if encoding == b"LatentStudio\x00":
        body = zlib.compress(body)
    value = encoding + body
    if tag in (0x9286, 0x927C):
        exif.get_ifd(0x8769)[tag] = value
    else:
        exif[tag] = comment
    buf = io.BytesIO()
    im.save(buf, fmt, exif=exif)
    check(buf.getvalue())


@given(flips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(1, 255)), min_size=1,
                      max_size=8),
       suffix=st.sampled_from([".png", ".jpg", ".webp"]))
def test_damaged_bytes_of_our_images(tmp_path_factory, flips, suffix):
    folder = tmp_path_factory.mktemp("meta")
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = save_image(folder / f"a{suffix}", pixels,
                      GenerationRequest("a lighthouse", negative_prompt="fog", seed=5))
    data = bytearray(path.read_bytes())
    for at, xor in flips:
        data[at % len(data)] ^= xor
    check(bytes(data))
