"""The opt-in CPU compile (``STUDIO_TORCH_COMPILE=1``, ``tuning.compile_cpu_denoiser``):
only on a CPU with native bf16 and for models the policy holds in bf16; the compiled UNet
gives the eager UNet's output within bf16's tolerance, and a LoRA (hooks) still changes it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from studio.engine import device as dev
from studio.engine import tuning


def _tiny_bf16_unet(tiny_sd1_dir):
    import torch
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_sd1_dir / "unet",
                                                torch_dtype=torch.bfloat16).eval()
    return unet.to(memory_format=torch.channels_last)


class _Pipe:
    def __init__(self, unet):
        self.unet = unet

    @property
    def components(self):
        return {"unet": self.unet}


@pytest.fixture
def compile_on(monkeypatch):
    monkeypatch.setenv("STUDIO_TORCH_COMPILE", "1")
    monkeypatch.delenv("STUDIO_DTYPE", raising=False)


def test_a_cpu_without_native_bf16_keeps_its_eager_fp32_path(compile_on, monkeypatch,
                                                              tiny_sd1_dir):
    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda *a, **k: False)
    choice = dev.choose_device("cpu", "auto")
    assert choice.autocast_dtype is None  # a laptop without AVX-512 BF16: fp32, as before
    assert not tuning.cpu_compile_wanted(choice)
    # Even bf16 asked for by hand is not compiled there (oneDNN would emulate bf16).
    forced = dev.choose_device("cpu", "bfloat16")
    assert not tuning.cpu_compile_wanted(forced)
    pipe = _Pipe(_tiny_bf16_unet(tiny_sd1_dir))
    assert tuning.cpu_layout(pipe, forced, forced) == "bfloat16 weights, channels_last"
    assert not getattr(pipe.unet, "_studio_compiled", False)
    assert "forward" not in vars(pipe.unet)  # the class's own forward, untouched


def test_compile_is_opt_in_on_a_native_bf16_cpu(monkeypatch, tiny_sd1_dir):
    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda *a, **k: True)
    monkeypatch.delenv("STUDIO_TORCH_COMPILE", raising=False)
    choice = dev.choose_device("cpu", "auto").for_model(2**40)  # a large model
    assert choice.bf16_weights
    assert not tuning.cpu_compile_wanted(choice)
    pipe = _Pipe(_tiny_bf16_unet(tiny_sd1_dir))
    tuning.cpu_layout(pipe, choice, choice)
    assert not getattr(pipe.unet, "_studio_compiled", False)
    # A small model (the embedded ones) is fp32 and never compiled, even when asked.
    monkeypatch.setenv("STUDIO_TORCH_COMPILE", "1")
    assert not tuning.cpu_compile_wanted(dev.choose_device("cpu", "auto").for_model(1))
    assert tuning.cpu_compile_wanted(choice)


def test_inductor_cache_defaults_to_the_studio_cache(monkeypatch, tmp_path):
    from studio import paths

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setattr(paths, "user_cache_dir", lambda: tmp_path)
    assert tuning.inductor_cache_dir() == str(tmp_path / "inductor")
    import os

    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert tuning.inductor_cache_dir() == str(tmp_path / "mine")  # a user's choice wins


@pytest.mark.compile
def test_the_compiled_unet_matches_eager_and_still_sees_a_lora(compile_on, monkeypatch):
    import torch

    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda *a, **k: True)
    # Kept between runs (the compile takes minutes on a cold cache, a minute on a warm one).
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR",
                       str(Path(tempfile.gettempdir()) / "studio-test-inductor"))
    choice = dev.choose_device("cpu", "auto").for_model(2**40)
    # One level (a resnet, cross-attention, the mid block): every kind of layer the SD UNet
    # has, with far fewer kernels for inductor to build than the tiny SD 1.x's two levels.
    from diffusers import UNet2DConditionModel
    unet = UNet2DConditionModel(
        block_out_channels=(32,), down_block_types=("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",), layers_per_block=1, cross_attention_dim=32,
        norm_num_groups=8, attention_head_dim=8, sample_size=16)
    pipe = _Pipe(unet.to(torch.bfloat16).eval().to(memory_format=torch.channels_last))
    unet = pipe.unet
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, unet.config.in_channels, 32, 32, generator=gen)
    ctx = torch.randn(2, 77, unet.config.cross_attention_dim, generator=gen)

    def step():
        with torch.inference_mode(), choice.autocast():
            return unet(x, torch.tensor(500), encoder_hidden_states=ctx).sample.float()

    eager = step()
    assert "compiled" in tuning.cpu_layout(pipe, choice, choice)
    assert pipe.unet is unet and unet._studio_compiled  # same module: hooks find it
    compiled = step()
    rel = float((compiled - eager).abs().mean() / eager.abs().mean())
    # bf16's own level against fp32 is about 0.012 (docs/benchmarks.md); compiled against
    # eager bf16 stays within that tolerance.
    assert rel <= 0.02, rel
    # A LoRA is a forward hook: the call must run eager and see it.
    handle = unet.conv_out.register_forward_hook(lambda m, i, o: o + 1.0)
    try:
        hooked = step()
    finally:
        handle.remove()
    assert float((hooked - compiled).mean()) == pytest.approx(1.0, abs=0.05)
    assert float((step() - compiled).abs().max()) == 0.0  # the compiled call again
