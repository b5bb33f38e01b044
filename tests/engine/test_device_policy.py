"""The CPU dtype policy: bf16 autocast only where the CPU computes bf16 natively."""

from __future__ import annotations

import pytest

from studio.engine import device as dev


def _cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n")
    return str(path)


@pytest.mark.parametrize("flags,native", [
    ("fpu sse2 avx2 fma", False),
    # AVX-512 without its BF16 extension: oneDNN emulates bf16, slower than fp32.
    ("fpu avx2 avx512f avx512bw avx512vl avx512dq avx512_vnni", False),
    ("fpu avx2 avx512f avx512bw avx512_bf16", True),
    ("fpu avx2 avx512f amx_tile amx_bf16 amx_int8", True),
])
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    assert dev.cpu_has_fast_bf16(_cpuinfo(tmp_path, flags)) is native


@pytest.mark.parametrize("native,autocast", [(False, None), (True, "bfloat16")])
def test_auto_picks_bf16_autocast_only_on_native_bf16(monkeypatch, native, autocast):
    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda *a, **k: native)
    monkeypatch.delenv("STUDIO_DTYPE", raising=False)
    choice = dev.choose_device("cpu", "auto")
    assert choice.weight_dtype == "float32" and choice.autocast_dtype == autocast
    assert ("bf16 weights and autocast" in choice.reason) is native
    assert choice.bf16_weights is native


def test_native_bf16_stores_large_models_in_bf16_and_keeps_small_ones_fp32(monkeypatch):
    import torch

    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda *a, **k: True)
    monkeypatch.delenv("STUDIO_DTYPE", raising=False)
    choice = dev.choose_device("cpu", "auto")
    large = choice.for_model(2 * 1024**3)  # SD 1.5 in fp16
    assert large.load_dtype() == torch.bfloat16 and large.autocast_dtype == "bfloat16"
    small = choice.for_model(7 * 1024**2)  # the embedded models
    assert small.load_dtype() == torch.float32 and small.autocast_dtype is None
    assert "small model" in small.reason
    # Latents and noise the engine makes stay fp32 either way (autocast casts per layer).
    assert choice.torch_dtype() == torch.float32


def test_without_native_bf16_every_model_is_fp32(monkeypatch):
    import torch

    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda *a, **k: False)
    monkeypatch.delenv("STUDIO_DTYPE", raising=False)
    choice = dev.choose_device("cpu", "auto")
    for size in (7 * 1024**2, 2 * 1024**3):
        model = choice.for_model(size)
        assert model.load_dtype() == torch.float32 and model.autocast_dtype is None


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_float32_can_be_forced_on_a_native_bf16_cpu(monkeypatch, how):
    import torch

    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda *a, **k: True)
    if how == "environment":
        monkeypatch.setenv("STUDIO_DTYPE", "float32")
        choice = dev.choose_device("cpu", "auto")
    else:
        monkeypatch.delenv("STUDIO_DTYPE", raising=False)
        choice = dev.choose_device("cpu", "fp32")
    large = choice.for_model(2 * 1024**3)
    assert large.load_dtype() == torch.float32 and large.autocast_dtype is None
    assert "as asked" in choice.reason


def test_asked_dtypes_are_honoured_on_the_cpu():
    import torch

    asked = dev.choose_device("cpu", "bfloat16")
    assert asked.autocast_dtype == "bfloat16"
    assert asked.for_model(7 * 1024**2).load_dtype() == torch.bfloat16  # small ones too
    assert dev.choose_device("cpu", "float32").autocast_dtype is None
    with pytest.raises(dev.InvalidRequestError, match="float16"):
        dev.choose_device("cpu", "float16")
