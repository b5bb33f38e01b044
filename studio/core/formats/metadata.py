"""Generation metadata in image files: saving ours, reading ours and other tools'.

Our images carry two texts: ``parameters`` (A1111 format, read by A1111's PNG Info, sd-parsers,
Civitai and most viewers) and ``studio`` (``GenerationRequest.to_json()``, restored exactly).
PNG stores them as text chunks; JPEG and WebP in EXIF: ``parameters`` as the UserComment
(``UNICODE\\0`` + UTF-16BE, as A1111 writes it with piexif) and ``studio`` in XMP (our own
namespace, which exiftool and other editors keep; older files have it in the MakerNote).
"""

from __future__ import annotations

import html
import json
import os
import struct
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from studio.core.document.pixels import Pixels
from studio.core.errors import ImageReadError, InvalidRequestError
from studio.core.formats.a1111 import a1111_parameters, lora_hash, parse_a1111_parameters
from studio.core.formats.imageio import (
    DEFAULT_MAX_PIXELS,
    ImageSource,
    ImageWriteError,
    atomic_write,
    decoded,
    open_image,
)
from studio.core.formats.imported import (
    MIN_FILE_SIDE,
    ImportedSettings,
    MetadataTooDeepError,
    json_or_none,
)
from studio.core.formats.metadata_texts import (
    EXIF_IFD,
    PARAMETERS_KEY,
    STUDIO_KEY,
    UNICODE,
    USER_COMMENT,
    XMP_NAMESPACE,
    XMP_REQUEST,
    metadata_texts,
)
from studio.core.formats.other_tools import parse_foreign
from studio.core.formats.stealth import read_stealth
from studio.core.jobs.request import EDIT_FAMILIES, GenerationRequest

__all__ = ["ImportedSettings", "a1111_parameters", "lora_hash", "parse_a1111_parameters",
           "read_settings", "save_image", "SAVE_FORMATS"]

SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
_USER_COMMENT = USER_COMMENT
_EXIF_IFD = EXIF_IFD
_JPEG_EXIF_LIMIT = 65000  # one JPEG APP1 segment holds at most 64 KiB


def _exif_bytes(entries: dict[int, bytes]) -> bytes:
    """EXIF with ``entries`` (tag -> bytes, type UNDEFINED) in the Exif sub-IFD.

    Laid out as piexif lays out A1111's: big-endian TIFF, IFD0 holding only the Exif pointer.
    Written by hand because Pillow stores unknown byte tags as BYTE, which piexif (and so
    A1111's PNG Info) cannot read as a UserComment.
    """
    exif_at = 8 + 2 + 12 + 4
    data_at = exif_at + 2 + 12 * len(entries) + 4
    head = b"MM\x00\x2a" + struct.pack(">I", 8)
    ifd0 = struct.pack(">HHHII", 1, _EXIF_IFD, 4, 1, exif_at) + struct.pack(">I", 0)
    table, data = [struct.pack(">H", len(entries))], b""
    for tag in sorted(entries):
        value = entries[tag]
        if len(value) <= 4:
            table.append(struct.pack(">HHI", tag, 7, len(value)) + value.ljust(4, b"\x00"))
        else:
            table.append(struct.pack(">HHII", tag, 7, len(value), data_at + len(data)))
            data += value + b"\x00" * (len(value) % 2)  # keep offsets on word boundaries
    return b"Exif\x00\x00" + head + ifd0 + b"".join(table) + struct.pack(">I", 0) + data


def _user_comment(text: str) -> bytes:
    return UNICODE + text.encode("utf_16_be")


def _xmp_packet(studio: str) -> bytes:
    """An XMP packet holding our request JSON (read back by ``metadata_texts``).

    ``studio`` is ``GenerationRequest.to_json()``: ASCII, control characters escaped."""
    return ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
            '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            f'<rdf:Description rdf:about="" xmlns:lstudio="{XMP_NAMESPACE}">'
            f'<{XMP_REQUEST}>{html.escape(studio, quote=False)}</{XMP_REQUEST}>'
            '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>').encode()


REGION_MASKS_KEY = "region_masks"
"""Beside the request JSON in our files: region masks as base64 PNG by content hash, so a
file alone brings its regional prompts back (the init image and mask are not stored)."""
_REGION_MASK_MAX_PIXELS = 4096 * 4096


def studio_text(request: GenerationRequest) -> str:
    """The ``studio`` text of an image: ``request.to_json()``, plus the region masks."""
    if not request.regions:
        return request.to_json()
    import base64
    import io

    data = request.to_dict()
    masks = {}
    for region in request.regions:
        buf = io.BytesIO()
        Image.fromarray(np.asarray(region.mask.to_array())).save(buf, format="PNG",
                                                                  optimize=True)
        masks[region.mask.sha256] = base64.b64encode(buf.getvalue()).decode("ascii")
    data[REGION_MASKS_KEY] = masks
    return json.dumps(data, sort_keys=True)


def _region_masks(data: Any) -> dict[str, Pixels]:
    """The region masks stored beside a request (damaged or mismatched entries left out)."""
    import base64
    import binascii

    from studio.core.formats.imageio import open_image

    masks = data.get(REGION_MASKS_KEY) if isinstance(data, dict) else None
    out: dict[str, Pixels] = {}
    if not isinstance(masks, dict):
        return out
    for sha, text in list(masks.items())[:32]:
        try:
            with open_image(base64.b64decode(str(text), validate=True),
                            max_pixels=_REGION_MASK_MAX_PIXELS) as im:
                pixels = Pixels.from_array(np.asarray(im.convert("L")))
        except (binascii.Error, ValueError, OSError, ImageReadError):
            continue
        if pixels.sha256 == sha:
            out[sha] = pixels
    return out


def _own(text: str, images: dict[str, Pixels] | None) -> ImportedSettings | None:
    try:
        data = json_or_none(text)
        images = {**_region_masks(data), **(images or {})}
        request = GenerationRequest.from_dict(data, images)
    except MetadataTooDeepError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, InvalidRequestError, RecursionError):
        return None  # damaged or edited by hand: fall back to the A1111 text
    task = str(data.get("task", "txt2img"))  # kept when the init image is not at hand
    if task == "img2img" and data.get("family") in EDIT_FAMILIES:
        task = "edit"  # edit with words: the prompt is the instruction, no strength used
    return ImportedSettings(
        source="Latent Studio", prompt=request.prompt, negative_prompt=request.negative_prompt,
        seed=request.seed, steps=request.steps, guidance=request.guidance,
        sampler=request.scheduler, width=request.width, height=request.height,
        model=request.model, model_hash=request.model_hash,
        strength=request.strength if task in ("img2img", "inpaint") else None,
        task=task if task in ("img2img", "inpaint", "edit") else "txt2img",
        extra={"studio": data}, request=request)


def read_settings(source: ImageSource, *, images: dict[str, Pixels] | None = None,
                  max_pixels: int = DEFAULT_MAX_PIXELS) -> ImportedSettings | None:
    """The generation settings stored in an image, or ``None`` if it holds none.

    Recognises images made by Latent Studio (the exact request comes back in ``.request``),
    AUTOMATIC1111 and its forks (PNG text, JPEG/WebP EXIF, or stealth bits in the pixels),
    ComfyUI (PNG text, WebP/JPEG EXIF), Civitai, SwarmUI, InvokeAI, Fooocus, RuinedFooocus,
    NovelAI (PNG and WebP), Draw Things (XMP) and diffusers apps on Hugging Face Spaces. Values
    no tool could have used are dropped (see ``ImportedSettings.dropped``).

    Parameters
    ----------
    source
        A file path or the file's bytes.
    images
        Content hash -> pixels, to restore the init image and mask of our img2img requests.

    Raises
    ------
    ImageReadError
        When the file is missing, empty, damaged or not an image, or its metadata is built
        to hurt a reader (JSON nested thousands deep).
    """
    label = "the image data" if isinstance(source, bytes) else Path(source).name
    with open_image(source, max_pixels=max_pixels) as im:
        if im.format == "PNG":
            decoded(im, label)  # text chunks after the pixel data are read only now
        try:
            return _read(im, images)
        except (MetadataTooDeepError, RecursionError):
            raise ImageReadError(
                f"Could not read the settings in {label}: its metadata is nested too deeply "
                "to be read (a damaged or hostile file).") from None
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as err:
            # a reader met a shape no tool writes: say so rather than show a traceback
            raise ImageReadError(f"Could not read the settings in {label}: its metadata is "
                                 f"damaged ({type(err).__name__}).") from None


def _read(im: Image.Image, images: dict[str, Pixels] | None = None) -> ImportedSettings | None:
    texts = metadata_texts(im)
    # A crop or thumbnail is not the size that was generated.
    size = im.size if min(im.size) >= MIN_FILE_SIDE else None
    if STUDIO_KEY in texts and (own := _own(texts[STUDIO_KEY], images)) is not None:
        return own
    settings = parse_foreign(texts, image_size=size)
    if settings is not None:
        return settings
    if im.format == "PNG" and im.mode in ("RGBA", "RGB"):  # lossy formats lose the bits
        hidden = read_stealth(np.asarray(im))
        if hidden:
            data = json_or_none(hidden)
            if isinstance(data, dict):  # NovelAI hides its PNG text chunks as JSON
                return parse_foreign({k: v if isinstance(v, str) else json.dumps(v)
                                      for k, v in data.items()}, image_size=size)
            return parse_a1111_parameters(hidden)
    return None


def _as_image(pixels: np.ndarray, fmt: str) -> Image.Image:
    arr = np.ascontiguousarray(pixels)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ValueError(f"expected an HxW, HxWx3 or HxWx4 uint8 array, got {arr.dtype} {arr.shape}")
    im = Image.fromarray(arr)
    if fmt == "JPEG" and im.mode == "RGBA":  # JPEG has no alpha: flatten onto white
        flat = Image.new("RGB", im.size, (255, 255, 255))
        flat.paste(im, mask=im.getchannel("A"))
        im = flat
    return im


def save_image(path: str | os.PathLike[str], pixels: np.ndarray,
               request: GenerationRequest | None = None, *, strip: bool = False,
               quality: int = 95, workflow: dict | None = None) -> Path:
    """Save ``pixels`` as PNG, JPEG or WebP (by the file's extension) with metadata.

    Parameters
    ----------
    pixels
        ``HxWx3`` RGB or ``HxWx4`` RGBA (or ``HxW`` grey) uint8; JPEG flattens alpha on white.
    request
        The request that made the image; written as A1111 ``parameters`` and as our JSON.
    strip
        Write no metadata at all (for sharing without the prompt).
    quality
        JPEG and WebP quality, 1 to 100.
    workflow
        The ComfyUI workflow (API format) that made the image on a server: written to a PNG
        as ComfyUI writes it (a ``prompt`` text chunk), so dropping the file on ComfyUI loads
        it. Our own reader still takes the request JSON first.

    Raises
    ------
    ImageWriteError
        Unsupported extension, or the file could not be written (disk full, no permission);
        the target is then left as it was.
    """
    target = Path(path)
    fmt = SAVE_FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise ImageWriteError(f"Could not save {target.name}: use a .png, .jpg or .webp name.")
    im = _as_image(pixels, fmt)
    options: dict[str, Any] = {}
    if request is not None and not strip:
        parameters, studio = a1111_parameters(request), studio_text(request)
        if request.regions:  # a note for other tools; ours read the regions from ``studio``
            parameters += f", Regions: {len(request.regions)}"
        if fmt == "PNG":
            info = PngInfo()
            info.add_text(PARAMETERS_KEY, parameters)
            info.add_text(STUDIO_KEY, studio, zip=True)
            if workflow is not None:
                info.add_text("prompt", json.dumps(workflow))
            options["pnginfo"] = info
        else:
            exif = _exif_bytes({_USER_COMMENT: _user_comment(parameters)})
            if fmt == "JPEG" and len(exif) > _JPEG_EXIF_LIMIT:
                raise ImageWriteError(f"Could not save {target.name}: the prompt is too "
                                      "long to store in a JPEG; save it as PNG or WebP.")
            options["exif"] = exif
            xmp = _xmp_packet(studio)
            if fmt == "WEBP" or len(xmp) <= _JPEG_EXIF_LIMIT:  # else keep what others read
                options["xmp"] = xmp
    if fmt != "PNG":
        options["quality"] = int(min(max(quality, 1), 100))

    def write(stream: IO[bytes]) -> None:
        im.save(stream, format=fmt, **options)

    return atomic_write(target, write)
