"""The pipeline cache sized in bytes, with fake sized values (no model is loaded)."""

from __future__ import annotations

import torch

from studio.engine.models.cache import PipelineCache, memory_budget, module_bytes, pipeline_bytes

GB = 1024**3


class Sized:
    def __init__(self, name: str, size: int) -> None:
        self.name, self.size = name, size


def _cache(budget: int, evicted: list[int] | None = None) -> PipelineCache[Sized]:
    return PipelineCache(budget, lambda v: v.size,
                         on_evict=None if evicted is None else lambda: evicted.append(1))


def test_two_sd15_pipelines_fit_where_one_sdxl_does():
    cache = _cache(8 * GB)
    sd15_a, sd15_b, sdxl = Sized("a", 2 * GB), Sized("b", 2 * GB), Sized("xl", 7 * GB)
    cache.put("a", sd15_a)
    cache.put("b", sd15_b)
    assert cache.keys() == ["a", "b"] and cache.used == 4 * GB
    cache.put("xl", sdxl)  # both SD 1.5 pipelines go to make room
    assert cache.keys() == ["xl"] and cache.used == 7 * GB


def test_the_least_recently_used_goes_first():
    evicted: list[int] = []
    cache = _cache(10, evicted)
    cache.put("a", Sized("a", 4))
    cache.put("b", Sized("b", 4))
    assert cache.get("a").name == "a"  # a is now the most recently used
    cache.put("c", Sized("c", 4))
    assert cache.keys() == ["a", "c"] and evicted == [1]
    assert cache.get("b") is None and "b" not in cache


def test_a_value_larger_than_the_budget_is_kept_alone():
    cache = _cache(10)
    cache.put("a", Sized("a", 3))
    cache.put("huge", Sized("huge", 30))
    assert cache.keys() == ["huge"] and len(cache) == 1


def test_get_or_load_loads_once_and_makes_room_before_loading():
    cache = _cache(10)
    cache.put("old", Sized("old", 6))
    loads: list[str] = []

    def load() -> Sized:
        loads.append("new")
        assert "old" not in cache  # the estimate made room before the load ran
        return Sized("new", 5)

    assert cache.get_or_load("new", load, expected=5).name == "new"
    assert cache.get_or_load("new", load, expected=5).name == "new"
    assert loads == ["new"] and cache.keys() == ["new"]


def test_clear_empties_it():
    evicted: list[int] = []
    cache = _cache(10, evicted)
    cache.put("a", Sized("a", 1))
    cache.clear()
    assert len(cache) == 0 and cache.used == 0 and evicted == [1]


def test_sizes_are_the_bytes_of_parameters_and_buffers():
    linear = torch.nn.Linear(10, 4)  # 44 float32 parameters
    norm = torch.nn.BatchNorm1d(4).half()  # 8 fp16 parameters, 8 fp16 + 1 int64 buffers
    assert module_bytes(linear) == 44 * 4
    assert module_bytes(norm) == 8 * 2 + 8 * 2 + 8

    class Pipe:
        components = {"unet": linear, "vae": norm, "tokenizer": object(), "scheduler": None}

    assert pipeline_bytes(Pipe()) == 44 * 4 + 40


def test_the_budget_comes_from_the_machine_memory():
    import psutil

    assert memory_budget("cpu") == int(psutil.virtual_memory().total * 0.5)
