"""``PipelineCache``: loaded pipelines kept within a memory budget in bytes, least recently
used evicted first.

A budget in bytes, not a count: two SD 1.5 pipelines (about 2 GB each in fp16) fit where
one SDXL (about 7 GB) does. The budget comes from the device (``memory_budget``); the size of
a loaded pipeline is what its weights take (``pipeline_bytes``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

V = TypeVar("V")

CUDA_SHARE = 0.75  # of the GPU's memory: the rest is for activations and the VAE decode
RAM_SHARE = 0.5  # of the system's memory (CPU and MPS, which shares it)
FALLBACK_BUDGET = 8 * 1024**3  # where the device's memory cannot be read


def memory_budget(device: str) -> int:
    """Bytes the pipeline cache may hold on ``device`` ("cuda", "cuda:1", "mps", "cpu")."""
    if device.startswith("cuda"):
        try:
            import torch

            total = torch.cuda.get_device_properties(torch.device(device)).total_memory
            return int(total * CUDA_SHARE)
        except Exception:  # no CUDA build, or the device went away
            log.debug("CUDA memory unreadable; using the fallback budget", exc_info=True)
            return FALLBACK_BUDGET
    try:
        import psutil

        return int(psutil.virtual_memory().total * RAM_SHARE)
    except Exception:
        return FALLBACK_BUDGET


def module_bytes(module: Any) -> int:
    """Bytes of a torch module's parameters and buffers (0 for anything else)."""
    params = getattr(module, "parameters", None)
    buffers = getattr(module, "buffers", None)
    if not callable(params) or not callable(buffers):
        return 0
    return sum(t.numel() * t.element_size() for t in (*params(), *buffers()))


def pipeline_bytes(pipe: Any) -> int:
    """Bytes of a diffusers pipeline's weights: every torch module among its components."""
    components = getattr(pipe, "components", None)
    if not isinstance(components, dict):
        return module_bytes(pipe)
    return sum(module_bytes(c) for c in components.values())


class PipelineCache(Generic[V]):
    """Values (loaded pipelines) by key within ``budget`` bytes, least recently used out first.

    A value larger than the whole budget is still kept, alone: the model asked for is always
    loaded (the device's own out-of-memory error is the judge of whether it fits).

    Parameters
    ----------
    budget
        Bytes the cached values may take together.
    size_of
        The bytes of one value (measured once, when it is added).
    on_evict
        Called after values were dropped (to collect garbage and empty the CUDA cache).
    """

    def __init__(self, budget: int, size_of: Callable[[V], int],
                 on_evict: Callable[[], None] | None = None) -> None:
        self.budget = int(budget)
        self._size_of = size_of
        self._on_evict = on_evict
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def keys(self) -> list[Hashable]:
        """Keys from least to most recently used."""
        return list(self._items)

    @property
    def used(self) -> int:
        """Bytes the cached values take."""
        return sum(size for _, size in self._items.values())

    def get(self, key: Hashable) -> V | None:
        """The cached value (now the most recently used), or None."""
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def get_or_load(self, key: Hashable, load: Callable[[], V], expected: int = 0) -> V:
        """The value of ``key``, loading it on a miss.

        Before loading, least recently used values go until ``expected`` bytes (an estimate,
        e.g. the files' size) fit; after, until the value's measured size fits.
        """
        value = self.get(key)
        if value is not None:
            return value
        self._evict_for(expected)
        value = load()
        self.put(key, value)
        return value

    def put(self, key: Hashable, value: V) -> None:
        """Add ``value`` as the most recently used, evicting others until it fits."""
        self._items.pop(key, None)
        size = int(self._size_of(value))
        self._evict_for(size)
        self._items[key] = (value, size)

    def clear(self) -> None:
        """Drop every value."""
        had = bool(self._items)
        self._items.clear()
        if had and self._on_evict is not None:
            self._on_evict()

    def _evict_for(self, size: int) -> None:
        dropped = False
        while self._items and self.used + size > self.budget:
            key, _ = self._items.popitem(last=False)
            log.info("unloading %s to make room (budget %.1f GB)", key, self.budget / 1024**3)
            dropped = True
        if dropped and self._on_evict is not None:
            self._on_evict()
