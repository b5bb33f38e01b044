"""The pipeline's execution device, told instead of searched for, during our own calls.

diffusers' ``DiffusionPipeline._execution_device`` looks for offloading hooks in every
module of every component each time it is read (``_get_group_onload_device``, then
``self.device``): 12-16 ms on the embedded model with the CPU loaded, read at least once per
call, which is a tenth of a live update's budget. The engine knows where its pipelines run
(the device it chose; with model offloading the models run there too), so for the length of
one call ``known_device`` makes the property answer that device at once. Outside such a
call (and for any pipeline not in one) the property is diffusers' own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_ATTR = "_studio_execution_device"
_installed = False


def _install() -> None:
    global _installed
    if _installed:
        return
    from diffusers import DiffusionPipeline

    original = DiffusionPipeline._execution_device

    def execution_device(self: Any) -> Any:
        told = self.__dict__.get(_ATTR)
        return told if told is not None else original.fget(self)

    DiffusionPipeline._execution_device = property(execution_device, doc=original.__doc__)
    _installed = True


@contextmanager
def known_device(pipe: Any, device: Any) -> Iterator[None]:
    """``pipe._execution_device`` is ``device`` until the block ends."""
    _install()
    pipe.__dict__[_ATTR] = device
    try:
        yield
    finally:
        pipe.__dict__.pop(_ATTR, None)


__all__ = ["known_device"]
