"""Immutable image payloads that can cross threads and be hashed for the blob store."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

_MODES = {"RGB": 3, "RGBA": 4, "L": 1}


@dataclass(frozen=True)
class Pixels:
    """An 8-bit image held as bytes: RGB, RGBA or L (a mask).

    Frozen and hashable by content, so a request that refers to an init image or a mask
    stays a value. ``sha256`` names the blob in project files and metadata.
    """

    width: int
    height: int
    mode: str
    data: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"unsupported pixel mode {self.mode!r}")
        if len(self.data) != self.width * self.height * _MODES[self.mode]:
            raise ValueError("pixel data does not match the image size")

    @classmethod
    def from_array(cls, array: np.ndarray) -> Pixels:
        """Wrap an ``HxW`` (L), ``HxWx3`` (RGB) or ``HxWx4`` (RGBA) uint8 array."""
        arr = np.ascontiguousarray(array)
        if arr.dtype != np.uint8:
            raise ValueError("pixels must be uint8")
        if arr.ndim == 2:
            mode = "L"
        elif arr.ndim == 3 and arr.shape[2] in (3, 4):
            mode = "RGB" if arr.shape[2] == 3 else "RGBA"
        else:
            raise ValueError(f"cannot make an image of shape {arr.shape}")
        return cls(width=arr.shape[1], height=arr.shape[0], mode=mode, data=arr.tobytes())

    def to_array(self) -> np.ndarray:
        """A read-only ``uint8`` array view of the pixels."""
        arr = np.frombuffer(self.data, dtype=np.uint8)
        channels = _MODES[self.mode]
        shape = (self.height, self.width) if channels == 1 else (self.height, self.width, channels)
        return arr.reshape(shape)

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)

    @cached_property
    def sha256(self) -> str:
        h = hashlib.sha256()
        h.update(f"{self.mode}:{self.width}x{self.height}:".encode())
        h.update(self.data)
        return h.hexdigest()
