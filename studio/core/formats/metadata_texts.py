"""Every text an image file may carry generation settings in, gathered by key.

PNG keeps them as text chunks. JPEG and WebP keep them in EXIF: A1111 and most tools in the
UserComment (text, or JSON for SwarmUI, NovelAI, Civitai and some ComfyUI save nodes),
ComfyUI's own WebP saver as ``prompt:{...}`` in Model and ``workflow:{...}`` in Make, other
save nodes in ImageDescription. Draw Things writes XMP (JSON in ``exif:UserComment``).
The result uses the PNG keys (``parameters``, ``prompt``, ``workflow``, ``Comment``, ...) so
that each tool's reader looks in one place whatever the container.
"""

from __future__ import annotations

import html
import json
import re
import zlib
from typing import Any

from PIL import Image

from studio.core.formats.imported import json_or_none

PARAMETERS_KEY = "parameters"
STUDIO_KEY = "studio"
EXIF_IFD = 0x8769
USER_COMMENT = 0x9286
MAKER_NOTE = 0x927C  # where files saved before the XMP request kept it (still read)
MAKER_PREFIX = b"LatentStudio\x00"
UNICODE = b"UNICODE\x00"
ASCII = b"ASCII\x00\x00\x00"
_MAX_NOTE = 16 * 1024 * 1024  # refuse a MakerNote that inflates beyond this
_IMAGE_DESCRIPTION, _MAKE, _MODEL, _SOFTWARE = 0x010E, 0x010F, 0x0110, 0x0131
_PREFIXED = re.compile(r"^\s*(prompt|workflow)\s*:\s*(?=[\[{])", re.IGNORECASE)
#: Our request JSON in XMP (JPEG and WebP), under a namespace of our own: exiftool and other
#: editors keep it when they edit the file, which they refuse to do around a private MakerNote.
XMP_NAMESPACE = "http://ns.latent-studio.org/1.0/"
XMP_REQUEST = "lstudio:request"
_XMP_FIELDS = ("exif:UserComment", "dc:description", "xmp:CreatorTool", XMP_REQUEST)


def decode_user_comment(raw: Any) -> str:
    """The text of an EXIF UserComment: its 8-byte charset header, then the text."""
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, bytes):
        return ""
    head, body = raw[:8], raw[8:]
    if head == UNICODE:
        # A1111 writes big-endian; some tools follow the EXIF byte order. Guess from the zeros
        # that ASCII characters leave in the high bytes.
        little = body[1:2] == b"\x00" and body[0:1] != b"\x00"
        if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return body.decode("utf-16", errors="replace")
        return body.decode("utf_16_le" if little else "utf_16_be", errors="replace")
    if head in (ASCII, b"\x00" * 8):
        return body.decode("utf-8", errors="replace")
    return raw.decode("utf-8", errors="replace")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return value.strip("\x00 ") if isinstance(value, str) else ""


def _is_graph(data: Any) -> bool:
    """A ComfyUI API graph (nodes with ``class_type``), the form Civitai also uses."""
    return isinstance(data, dict) and any(
        isinstance(v, dict) and "class_type" in v for v in data.values())


def _is_workflow(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list)


def _add_json(info: dict[str, str], text: str, data: Any) -> None:
    """File a JSON text under the key its tool's reader looks in."""
    if _is_graph(data):
        info.setdefault("prompt", text)
    elif _is_workflow(data):
        info.setdefault("workflow", text)
    elif isinstance(data, dict) and "Comment" in data:  # NovelAI's WebP: its PNG chunks as JSON
        for key, value in data.items():
            info.setdefault(str(key), value if isinstance(value, str) else json.dumps(value))
    elif isinstance(data, dict):
        info.setdefault(PARAMETERS_KEY, text)


def _add_text(info: dict[str, str], text: str, key: str) -> None:
    """File a text found in EXIF: ``prompt:``/``workflow:`` prefixed, JSON, or as ``key``."""
    prefixed = _PREFIXED.match(text)
    if prefixed:
        info.setdefault(prefixed[1].lower(), text[prefixed.end():])
        return
    data = json_or_none(text)
    if data is not None:
        _add_json(info, text, data)
    elif text:
        info.setdefault(key, text)


def _xmp(im: Image.Image) -> dict[str, str]:
    """The XMP fields tools write settings in, as ``xmp:<name>`` keys."""
    raw = im.info.get("xmp", im.info.get("XML:com.adobe.xmp", ""))
    xmp = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    out: dict[str, str] = {}
    if not xmp:
        return out
    for name in _XMP_FIELDS:
        element = re.search(rf"<{name}\b[^>]*>(.*?)</{name}>", xmp, re.DOTALL)
        attribute = re.search(rf'\b{name}="([^"]*)"', xmp)
        if element:
            inner = re.search(r"<rdf:li\b[^>]*>(.*?)</rdf:li>", element[1], re.DOTALL)
            value = inner[1] if inner else element[1]
        elif attribute:
            value = attribute[1]
        else:
            continue
        out["xmp:" + name.split(":")[1]] = html.unescape(value).strip()
    return out


def metadata_texts(im: Image.Image) -> dict[str, str]:
    """Text metadata of every kind the image holds, by key.

    Raises
    ------
    MetadataTooDeepError
        When a text holds JSON nested too deeply to be read safely.
    """
    info = {k: v for k, v in im.info.items() if isinstance(k, str) and isinstance(v, str)}
    info.update(_xmp(im))
    ours = info.pop("xmp:" + XMP_REQUEST.split(":")[1], "")
    if ours:
        info.setdefault(STUDIO_KEY, ours)
    try:
        exif = im.getexif()
        sub = exif.get_ifd(EXIF_IFD)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError):
        exif, sub = {}, {}  # type: ignore[assignment]
    comment = decode_user_comment(sub.get(USER_COMMENT)).strip("\x00 ")
    if comment:
        info.setdefault("UserComment", comment)
        _add_text(info, comment, PARAMETERS_KEY)
    for tag, key in ((_MODEL, "Model"), (_MAKE, "Make"),
                     (_IMAGE_DESCRIPTION, "ImageDescription"), (_SOFTWARE, "Software")):
        text = _text(exif.get(tag))
        if text:
            _add_text(info, text, key)
    maker = sub.get(MAKER_NOTE)
    if isinstance(maker, bytes) and maker.startswith(MAKER_PREFIX):
        try:
            studio = zlib.decompressobj().decompress(maker[len(MAKER_PREFIX):], _MAX_NOTE)
            info.setdefault(STUDIO_KEY, studio.decode("utf-8", errors="replace"))
        except zlib.error:
            pass
    return info
