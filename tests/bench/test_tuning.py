"""Decode settings by size and batch; pipeline placement on the CPU."""

from __future__ import annotations

import pytest

from studio.engine.device import choose_device
from studio.engine.tuning import TILE_ABOVE_PIXELS, pipeline_bytes, place_pipeline, prepare_decode


@pytest.fixture(scope="module")
def pipe():
    from studio.engine.models.tiny import build_tiny_pipeline

    return build_tiny_pipeline("sd1")


def test_large_images_decode_in_tiles_and_batches_one_by_one(pipe):
    prepare_decode(pipe, 512, 512, 1)
    assert not pipe.vae.use_tiling and not pipe.vae.use_slicing
    prepare_decode(pipe, 2048, 2048, 1)
    assert 2048 * 2048 > TILE_ABOVE_PIXELS and pipe.vae.use_tiling
    prepare_decode(pipe, 512, 512, 4)
    assert not pipe.vae.use_tiling and pipe.vae.use_slicing


def test_cpu_pipelines_are_placed_on_the_device_not_offloaded(pipe):
    assert place_pipeline(pipe, choose_device("cpu", "float32")) == "device"
    assert pipeline_bytes(pipe) > 0
    assert next(pipe.unet.parameters()).device.type == "cpu"


def test_small_models_run_on_one_cpu_thread_and_the_count_is_restored(pipe):
    import torch

    from studio.engine.device import DeviceChoice
    from studio.engine.tuning import cpu_threads_for, torch_threads

    assert cpu_threads_for(pipe, choose_device("cpu", "float32")) == 1
    gpu = DeviceChoice("cuda:0", "float16", None, "GPU")
    assert cpu_threads_for(pipe, gpu) is None  # never touched off the CPU
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_the_dtype_bench_runs_a_small_fp32_model_in_each_precision_it_names(tmp_path):
    """On a CPU with native bf16 the policy keeps a small model in fp32 with autocast off
    (``without_autocast``). The bench's bf16 candidates must still run in bf16: the copy with
    bf16 weights once called the original fp32 module (the instance's ``forward`` came along
    in the deepcopy) and failed on "mat1 and mat2 must have the same dtype", and the autocast
    candidate ran in fp32."""
    from types import SimpleNamespace

    from studio.bench.engine_figures import unet_dtype
    from studio.bench.models import BenchModel
    from studio.engine.device import DeviceChoice
    from studio.engine.models.tiny import build_tiny_pipeline
    from studio.engine.tuning import without_autocast

    small = build_tiny_pipeline("sd1")
    without_autocast(small.unet)
    loaded = SimpleNamespace(pipe=small, choice=DeviceChoice("cpu", "float32", None, "small"))
    out = unet_dtype(loaded, BenchModel("tiny", tmp_path, "tiny", 64), repeats=1, warmup=0)
    assert out["policy"] == "fp32"
    assert out["unet_rel_diff"] > 1e-4 and out["bf16_weights_rel_diff"] > 1e-4  # bf16 ran
    assert out["unet_rel_diff"] < 0.1 and out["bf16_weights_rel_diff"] < 0.1
