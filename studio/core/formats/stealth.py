"""A1111 "stealth" metadata: text hidden in the lowest bit of each pixel.

The stealth-pnginfo extension for AUTOMATIC1111 (also used by NovelAI) writes, column by
column (x outer, y inner), the low bits of the alpha channel (signature ``stealth_pnginfo`` or,
gzip-compressed, ``stealth_pngcomp``) or of R, G and B (``stealth_rgbinfo`` /
``stealth_rgbcomp``): the signature, a 32-bit big-endian bit count, then the payload.
Such metadata survives services that strip PNG text chunks but keep pixels.
"""

from __future__ import annotations

import zlib

import numpy as np

_SIGNATURES = {b"stealth_pnginfo": False, b"stealth_pngcomp": True,
               b"stealth_rgbinfo": False, b"stealth_rgbcomp": True}
_SIG_BITS = 15 * 8
#: Decompressed payloads larger than this are refused (a stealth "zip bomb").
MAX_TEXT_BYTES = 8 * 1024 * 1024


def _bits(pixels: np.ndarray, alpha: bool, count: int) -> np.ndarray:
    """The first ``count`` hidden bits (fewer if the image is smaller), reading only the
    columns that hold them."""
    per_column = pixels.shape[0] * (1 if alpha else 3)
    columns = np.swapaxes(pixels[:, : -(-count // per_column)], 0, 1)  # x outer, y inner
    return ((columns[..., 3] if alpha else columns[..., :3]).reshape(-1) & 1)[:count]


def read_stealth(pixels: np.ndarray) -> str | None:
    """The text hidden in ``pixels`` (``HxWx3`` or ``HxWx4`` uint8), or ``None``."""
    if pixels.ndim != 3 or pixels.shape[2] not in (3, 4) or pixels.size == 0:
        return None
    modes = (True, False) if pixels.shape[2] == 4 else (False,)
    for alpha in modes:
        start = _SIG_BITS + 32
        bits = _bits(pixels, alpha, start)
        if bits.size < start:
            continue
        signature = np.packbits(bits[:_SIG_BITS]).tobytes()
        if signature not in _SIGNATURES or (alpha != signature.startswith(b"stealth_png")):
            continue
        length = int.from_bytes(np.packbits(bits[_SIG_BITS:start]).tobytes(), "big")
        bits = _bits(pixels, alpha, start + length)
        if length % 8 or bits.size < start + length:
            return None
        payload = np.packbits(bits[start:start + length]).tobytes()
        if _SIGNATURES[signature]:
            inflater = zlib.decompressobj(wbits=31)
            try:
                payload = inflater.decompress(payload, MAX_TEXT_BYTES)
            except zlib.error:
                return None
            if inflater.unconsumed_tail:
                return None
        return payload.decode("utf-8", errors="replace")
    return None


def write_stealth(pixels: np.ndarray, text: str, *, compressed: bool = True,
                  alpha: bool = True) -> np.ndarray:
    """A copy of ``pixels`` with ``text`` hidden as the A1111 stealth extension does.

    ``alpha=True`` needs an ``HxWx4`` image and changes only alpha's lowest bit.

    Raises
    ------
    ValueError
        When the image is too small to hold the text.
    """
    import gzip

    payload = text.encode("utf-8")
    if compressed:
        payload = gzip.compress(payload, mtime=0)
    kind = ("png" if alpha else "rgb") + ("comp" if compressed else "info")
    data = f"stealth_{kind}".encode() + (len(payload) * 8).to_bytes(4, "big") + payload
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    out = np.array(pixels, dtype=np.uint8, copy=True)
    if alpha and (out.ndim != 3 or out.shape[2] != 4):
        raise ValueError("hiding text in alpha needs an RGBA image")
    columns = np.swapaxes(out, 0, 1)  # a view: writing it writes ``out``
    target = columns[..., 3] if alpha else columns[..., :3]
    flat = target.reshape(-1).copy()
    if bits.size > flat.size:
        raise ValueError("the image is too small to hold this text")
    flat[: bits.size] = (flat[: bits.size] & 0xFE) | bits
    target[...] = flat.reshape(target.shape)
    return out
