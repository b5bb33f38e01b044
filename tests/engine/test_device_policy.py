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
    choice = dev.choose_device("cpu", "auto")
    assert choice.weight_dtype == "float32" and choice.autocast_dtype == autocast
    assert ("bf16 autocast" in choice.reason) is native


def test_asked_dtypes_are_honoured_on_the_cpu():
    assert dev.choose_device("cpu", "bfloat16").autocast_dtype == "bfloat16"
    assert dev.choose_device("cpu", "float32").autocast_dtype is None
    with pytest.raises(dev.InvalidRequestError, match="float16"):
        dev.choose_device("cpu", "float16")
