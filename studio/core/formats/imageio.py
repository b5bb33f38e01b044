"""Reading images safely and writing files atomically.

Every problem a user's file can have (missing, empty, damaged, not an image, absurdly large)
becomes one ``ImageReadError`` with a clear message; a failed write leaves no half-written file.
"""

from __future__ import annotations

import errno
import io
import os
import re
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from studio.core.errors import ImageReadError, StudioError

#: Largest image we decode: 16384 x 16384 pixels (about 268 megapixels, 1 GiB as RGBA).
#: Pillow's own guard (``Image.MAX_IMAGE_PIXELS``, twice its value) may refuse smaller ones;
#: both give the same message.
DEFAULT_MAX_PIXELS = 16384 * 16384

ImageSource = str | os.PathLike[str] | bytes


class ImageWriteError(StudioError):
    """An image or document could not be written (disk full, no permission, ...)."""

    kind = "image-write"


def _label(source: ImageSource) -> str:
    return "the image data" if isinstance(source, bytes) else Path(source).name or str(source)


def _too_large(label: str, size: str, max_pixels: int) -> ImageReadError:
    limit = f"{max_pixels / 1e6:.0f} megapixels" if max_pixels >= 10**6 else f"{max_pixels} pixels"
    return ImageReadError(f"Could not open {label}: the image is too large ({size}; "
                          f"the limit is {limit}).")


def _png_size(stream: BinaryIO) -> tuple[int, int] | None:
    """Width and height from a PNG header, read without Pillow (which refuses some headers)."""
    stream.seek(0)
    head = stream.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"),
          (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"))


def _claimed_format(stream: BinaryIO) -> str:
    """The format a file's first bytes announce, to tell "damaged" from "not an image"."""
    stream.seek(0)
    head = stream.read(16)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _MAGIC if head.startswith(magic)), "")


def _bomb(label: str, stream: BinaryIO, exc: Exception, max_pixels: int) -> ImageReadError:
    """Pillow's own decompression-bomb guard fired: say how large and what the limit is."""
    size = _png_size(stream)
    found = re.search(r"\((\d+) pixels\)", str(exc))
    text = (f"{size[0]} x {size[1]} pixels" if size else
            f"{int(found[1]) / 1e6:.0f} megapixels" if found else "too many pixels")
    pillow_limit = 2 * (Image.MAX_IMAGE_PIXELS or max_pixels)
    return _too_large(label, text, min(max_pixels, pillow_limit))


@contextmanager
def open_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[Image.Image]:
    """Open an image for reading, checking it before any pixel is decoded.

    Only the header is read here, so an image that claims 50000 x 50000 pixels is refused at
    once. Decoding problems found later by ``im.load()`` are the caller's to wrap; use
    ``decoded`` for that.

    Raises
    ------
    ImageReadError
        Missing, unreadable or empty file, not an image, zero-sized or too many pixels.
    """
    label = _label(source)
    if isinstance(source, bytes):
        if not source:
            raise ImageReadError("Could not open the image data: it is empty.")
        stream: BinaryIO = io.BytesIO(source)
    else:
        path = Path(source)
        try:
            if path.is_dir():
                raise ImageReadError(f"Could not open {label}: it is a folder, not an image.")
            if path.stat().st_size == 0:
                raise ImageReadError(f"Could not open {label}: the file is empty.")
            stream = path.open("rb")
        except FileNotFoundError:
            raise ImageReadError(f"Could not open {label}: the file does not exist.") from None
        except PermissionError:
            raise ImageReadError(f"Could not open {label}: permission denied.") from None
        except OSError as exc:
            raise ImageReadError(f"Could not open {label}: {exc.strerror or exc}.") from None
    with stream:
        try:
            im = Image.open(stream)
        except Image.DecompressionBombError as exc:
            raise _bomb(label, stream, exc, max_pixels) from None
        except UnidentifiedImageError:
            size = _png_size(stream)
            if size and 0 in size:
                raise ImageReadError(f"Could not open {label}: the image has no pixels "
                                     f"({size[0]} x {size[1]}).") from None
            kind = _claimed_format(stream)
            if kind:
                raise ImageReadError(f"Could not open {label}: the file is damaged (it starts "
                                     f"like a {kind} image but cannot be read).") from None
            raise ImageReadError(f"Could not open {label}: it is not an image, or its format is "
                                 "not supported (PNG, JPEG, WebP and most others are).") from None
        except (OSError, SyntaxError, ValueError, EOFError, zlib.error):
            raise ImageReadError(f"Could not open {label}: the file is damaged.") from None
        with im:
            width, height = im.size
            if width <= 0 or height <= 0:
                raise ImageReadError(f"Could not open {label}: the image has no pixels "
                                     f"({width} x {height}).")
            if width * height > max_pixels:
                raise _too_large(label, f"{width} x {height} pixels", max_pixels)
            yield im


def decoded(im: Image.Image, label: str) -> Image.Image:
    """``im`` with its pixels decoded; a truncated or damaged file raises ``ImageReadError``."""
    try:
        im.load()
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error, IndexError) as exc:
        if "truncated" in str(exc) or isinstance(exc, EOFError):
            raise ImageReadError(f"Could not read {label}: the file is incomplete "
                                 "(it may have been cut off while saving or downloading).") from None
        raise ImageReadError(f"Could not read {label}: the file is damaged.") from None
    return im


def _to_uint8(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im).astype(np.int64)
        return (np.clip(arr, 0, 65535) >> 8).astype(np.uint8)[..., None].repeat(3, axis=2)
    if im.mode == "F":
        return np.clip(np.asarray(im), 0, 255).astype(np.uint8)[..., None].repeat(3, axis=2)
    has_alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
    return np.asarray(im.convert("RGBA" if has_alpha else "RGB"))


def load_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as an ``HxWx3`` (RGB) or ``HxWx4`` (RGBA) ``uint8`` array.

    The camera's EXIF orientation is applied; animated images give their first frame;
    16-bit images are reduced to 8 bits.

    Raises
    ------
    ImageReadError
        With one clear message for a missing, empty, truncated, damaged or non-image file,
        an image without pixels, or one over ``max_pixels`` (checked before decoding).
    """
    label = _label(source)
    with open_image(source, max_pixels=max_pixels) as im:
        decoded(im, label)
        try:
            if im.getexif().get(0x0112, 1) != 1:  # avoid a copy when there is nothing to turn
                im = ImageOps.exif_transpose(im)
        except (OSError, SyntaxError, ValueError, TypeError):
            pass  # a broken orientation tag is no reason to refuse the pixels
        return np.ascontiguousarray(_to_uint8(im))


def _write_problem(exc: OSError) -> str:
    reasons = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded",
               errno.EACCES: "permission denied", errno.EPERM: "permission denied",
               errno.EROFS: "the disk is read-only", errno.ENOENT: "the folder does not exist",
               errno.ENAMETOOLONG: "the file name is too long"}
    return reasons.get(exc.errno or 0, exc.strerror or str(exc))


def current_umask() -> int:
    """The process umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (briefly process-wide)
    os.umask(mask)
    return mask


def _new_file_mode(target: Path) -> int:
    """The mode a plain ``open(target, "w")`` would give: the replaced file's own mode, or
    0o666 less the umask (a temporary file is created 0o600 whatever the umask)."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~current_umask()


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file through ``write(stream)`` so that it appears whole or not at all.

    The data goes to a temporary file in the same folder, is flushed to disk, then renamed
    over ``path``. The file gets the mode of the file it replaces, or the one the umask
    gives a new file (not the temporary file's 0600). On any failure the temporary file is removed and an existing file at
    ``path`` is left untouched.

    Raises
    ------
    ImageWriteError
        "Could not write <name>: disk full" (or permission denied, ...).
    """
    target = Path(path)
    tmp_name = ""
    try:
        with tempfile.NamedTemporaryFile("wb", dir=target.parent, prefix=f".{target.name}.",
                                         suffix=".part", delete=False) as tmp:
            tmp_name = tmp.name
            write(tmp)
            tmp.flush()
            os.chmod(tmp.name, _new_file_mode(target))
            os.fsync(tmp.fileno())
        os.replace(tmp_name, target)
        tmp_name = ""
    except OSError as exc:
        raise ImageWriteError(f"Could not write {target.name}: {_write_problem(exc)}.") from None
    finally:
        if tmp_name:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
    return target
