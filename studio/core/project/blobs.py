"""The blob table of ``.studio`` files: arrays stored once by content hash.

8-bit L/RGB/RGBA images are PNG, anything else ``.npy``; images bigger than a few tiles are
stored as ``TILE`` x ``TILE`` tiles plus a small JSON manifest (codec ``"tiles"``), so that a
save after a brush stroke re-encodes only the tiles it touched. Reading checks what it reads:
a blob that does not decode to the array it claims to be raises ``BlobDamagedError``, never
a decoder's own exception.

Hashing every array at every save would make a save cost the whole undo history, so
``HashCache`` remembers the hash of arrays that never change once stored (undo diffs, log
images), by identity, for as long as they live.
"""

from __future__ import annotations

import io
import json
import sqlite3
import struct
import threading
import weakref
import zlib
from typing import Any

import numpy as np

from studio.core.document.layers import array_key

PNG_LEVEL = 1  # zlib level: level 6 costs 4x the time of level 1 for 10-15 % less size
TILE = 512
#: No stored array may decode to more than this many elements (a damaged header).
MAX_ELEMENTS = 16384 * 16384 * 4


class BlobDamagedError(Exception):
    """A blob is missing or does not decode (bit rot, a truncated copy)."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"image {key[:12]} {why}")
        self.key = key


def encode_array(array: np.ndarray) -> tuple[str, bytes]:
    """``(codec, bytes)``: PNG for 8-bit L/RGB/RGBA images, ``.npy`` for anything else."""
    arr = np.ascontiguousarray(array)
    if arr.dtype == np.uint8 and arr.size and (arr.ndim == 2 or (
            arr.ndim == 3 and arr.shape[2] in (3, 4))):
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG", compress_level=PNG_LEVEL)
        return "png", buf.getvalue()
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return "npy", buf.getvalue()


def _npy(data: bytes) -> np.ndarray:
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, _fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, _fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if dtype.hasobject or count > MAX_ELEMENTS or count * dtype.itemsize > len(data):
        raise ValueError("the array header does not match its data")
    stream.seek(0)
    return np.load(stream, allow_pickle=False)


def decode_array(codec: str, data: bytes) -> np.ndarray:
    """The array stored by ``encode_array``.

    Raises
    ------
    ValueError
        Unknown codec, or bytes that do not decode (damaged).
    """
    if codec == "png":
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as img:
                if img.format != "PNG" or img.width * img.height * 4 > MAX_ELEMENTS:
                    raise ValueError("not a stored image")
                img.load()
                arr = np.asarray(img)
        except (OSError, SyntaxError, EOFError, zlib.error, Image.DecompressionBombError,
                IndexError, TypeError, struct.error) as exc:
            raise ValueError(f"damaged image data ({type(exc).__name__})") from None
        if arr.dtype != np.uint8:
            raise ValueError("damaged image data (not 8-bit)")
        return arr
    if codec == "npy":
        try:
            return _npy(data)
        except (OSError, EOFError, SyntaxError, TypeError, struct.error) as exc:
            raise ValueError(f"damaged array data ({type(exc).__name__})") from None
    raise ValueError(f"unknown blob codec {codec!r}")


def tiled(array: np.ndarray) -> bool:
    return (array.dtype == np.uint8 and array.ndim in (2, 3)
            and array.shape[0] * array.shape[1] > 2 * TILE * TILE)


def tiles(array: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    h, w = array.shape[:2]
    return [(y, x, np.ascontiguousarray(array[y:y + TILE, x:x + TILE]))
            for y in range(0, h, TILE) for x in range(0, w, TILE)]


def put_blob(conn: sqlite3.Connection, key: str, array: np.ndarray, existing: set[str]) -> int:
    """Store ``array`` under ``key`` unless present; returns how many blobs were written."""
    if key in existing:
        return 0
    written = 0
    if tiled(array):
        keys = []
        for _y, _x, tile in tiles(array):
            tile_key = array_key(tile)
            written += put_blob(conn, tile_key, tile, existing)
            keys.append(tile_key)
        codec = "tiles"
        data = json.dumps({"shape": list(array.shape), "dtype": "uint8", "tile": TILE,
                           "keys": keys}).encode()
    else:
        codec, data = encode_array(array)
    conn.execute("INSERT OR REPLACE INTO blobs (sha256, codec, data) VALUES (?, ?, ?)",
                 (key, codec, data))
    existing.add(key)
    return written + 1


def _manifest(key: str, data: Any) -> tuple[tuple[int, ...], list[str]]:
    manifest = json.loads(data)
    shape = tuple(int(v) for v in manifest["shape"])
    keys = [str(k) for k in manifest["keys"]]
    if (len(shape) not in (2, 3) or min(shape) < 1 or (len(shape) == 3 and shape[2] > 4)
            or int(np.prod(shape, dtype=np.int64)) > MAX_ELEMENTS):
        raise ValueError("impossible tile manifest")
    rows, cols = -(-shape[0] // TILE), -(-shape[1] // TILE)
    if len(keys) != rows * cols:
        raise ValueError("tile manifest does not match its size")
    return shape, keys


def _row(conn: sqlite3.Connection, key: str) -> tuple[str, bytes] | None:
    """``(codec, data)`` of a blob, read as bytes: bit rot may turn a cell into text that
    is not UTF-8, which SQLite would refuse to hand back."""
    try:
        row = conn.execute("SELECT CAST(codec AS BLOB), CAST(data AS BLOB) FROM blobs "
                           "WHERE sha256 = ?", (key,)).fetchone()
    except sqlite3.OperationalError as exc:
        raise BlobDamagedError(key, "cannot be read") from exc
    if row is None:
        return None
    codec = row[0].decode("ascii", errors="replace") if isinstance(row[0], bytes) else ""
    return codec, row[1]


def load_blob(conn: sqlite3.Connection, key: str) -> np.ndarray:
    """The array stored under ``key``.

    Raises
    ------
    BlobDamagedError
        No such blob, or one that does not decode.
    """
    row = _row(conn, key)
    if row is None:
        raise BlobDamagedError(key, "is missing")
    codec, data = row
    try:
        if not isinstance(data, bytes):
            raise ValueError("not binary")
        if codec != "tiles":
            return decode_array(codec, data)
        shape, keys = _manifest(key, data)
        out = np.empty(shape, dtype=np.uint8)
        tile_keys = iter(keys)
        for y, x, _tile in tiles(out):
            part = load_blob(conn, next(tile_keys))
            target = out[y:y + TILE, x:x + TILE]
            if part.shape != target.shape:
                raise ValueError("a tile does not fit its place")
            target[...] = part
        return out
    except BlobDamagedError:
        raise
    except (ValueError, TypeError, KeyError, RecursionError, MemoryError) as exc:
        raise BlobDamagedError(key, f"is damaged ({exc})") from None


def check_blob(conn: sqlite3.Connection, key: str) -> None:
    """Check a blob without decoding its pixels (PNG chunk checksums, array headers, tile
    manifests): much cheaper than ``load_blob`` for the many images of a generation log.

    Raises
    ------
    BlobDamagedError
        No such blob, or one that is damaged.
    """
    row = _row(conn, key)
    if row is None:
        raise BlobDamagedError(key, "is missing")
    codec, data = row
    try:
        if not isinstance(data, bytes):
            raise ValueError("not binary")
        if codec == "png":
            from PIL import Image

            with Image.open(io.BytesIO(data)) as img:
                if img.format != "PNG" or img.width * img.height * 4 > MAX_ELEMENTS:
                    raise ValueError("not a stored image")
                img.verify()
        elif codec == "npy":
            _npy(data)
        elif codec == "tiles":
            for tile_key in _manifest(key, data)[1]:
                check_blob(conn, tile_key)
        else:
            raise ValueError(f"unknown codec {codec!r}")
    except BlobDamagedError:
        raise
    except (OSError, SyntaxError, EOFError, zlib.error, IndexError, TypeError, KeyError,
            ValueError, RecursionError, struct.error) as exc:
        raise BlobDamagedError(key, f"is damaged ({type(exc).__name__})") from None


def tile_refs(conn: sqlite3.Connection, keys: set[str]) -> set[str]:
    """Tile blobs the tiled images among ``keys`` are made of (damaged manifests: none)."""
    refs: set[str] = set()
    for key, data in conn.execute("SELECT sha256, data FROM blobs WHERE codec = 'tiles'"):
        if key in keys:
            try:
                refs.update(_manifest(key, data)[1])
            except (ValueError, TypeError, KeyError, RecursionError):
                pass
    return refs


class HashCache:
    """Content hashes of arrays that are never changed in place, by identity.

    Only frozen arrays are remembered. An entry lives as long as its array: a weak reference drops it when the array is freed,
    so a recycled ``id`` never returns a stale hash. Thread-safe.
    """

    def __init__(self) -> None:
        self._keys: dict[int, tuple[weakref.ref[np.ndarray], str]] = {}
        self._lock = threading.Lock()
        self.enabled = True
        self.hits = 0

    def key(self, array: np.ndarray) -> str:
        """``array_key(array)``; remembered for read-only arrays that own their data (the
        undo history's diffs: see ``freeze``), which cannot change while they live."""
        if not (self.enabled and array.flags.owndata and not array.flags.writeable):
            return array_key(array)
        ident = id(array)
        with self._lock:
            found = self._keys.get(ident)
            if found is not None and found[0]() is array:
                self.hits += 1
                return found[1]
        key = array_key(array)
        try:
            ref = weakref.ref(array, lambda _r, i=ident: self._forget(i, _r))
        except TypeError:
            return key
        with self._lock:
            self._keys[ident] = (ref, key)
        return key

    def _forget(self, ident: int, ref: weakref.ref[np.ndarray]) -> None:
        with self._lock:
            found = self._keys.get(ident)
            if found is not None and found[0] is ref:
                del self._keys[ident]


#: The process-wide cache ``ProjectStore.write`` uses.
HASHES = HashCache()
