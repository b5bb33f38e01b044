"""Prepacked convolution weights on a CPU with native bf16 (``tuning.prepack_cpu_convolutions``):
the UNet gives the same pixels as the plain eager UNet, a LoRA (forward hooks) still changes
them and unloading it restores them, the packed weight replaces the plain one, and a CPU
without native bf16 keeps its plain convolutions."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from studio.core.jobs.request import LoraWeight
from studio.engine import device as dev
from studio.engine import tuning
from studio.engine.lora import apply_loras

needs_onednn_bf16 = pytest.mark.skipif(
    not torch.ops.mkldnn._is_mkldnn_bf16_supported(),
    reason="oneDNN has no bf16 kernels on this CPU: the packed path never runs on it")


def _tiny_bf16_unet(tiny_sd1_dir):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_sd1_dir / "unet",
                                                torch_dtype=torch.bfloat16).eval()
    return unet


class _Pipe:
    def __init__(self, unet):
        self.unet = unet

    @property
    def components(self):
        return {"unet": self.unet}


def _step(unet, size=32):
    gen = torch.Generator().manual_seed(0)
    cfg = unet.config
    x = torch.randn(2, cfg.in_channels, size, size, generator=gen).to(torch.bfloat16)
    ctx = torch.randn(2, 7, cfg.cross_attention_dim, generator=gen).to(torch.bfloat16)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        return unet(x.to(memory_format=torch.channels_last), torch.tensor(500),
                    encoder_hidden_states=ctx).sample.float()


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def _convs(unet):
    return [m for m in unet.modules() if isinstance(m, torch.nn.Conv2d)]


@pytest.fixture
def native_bf16(monkeypatch):
    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda *a, **k: True)
    monkeypatch.delenv("STUDIO_TORCH_COMPILE", raising=False)
    monkeypatch.delenv("STUDIO_DTYPE", raising=False)
    return dev.choose_device("cpu", "auto").for_model(2**40)  # a large model: bf16 weights


@needs_onednn_bf16
def test_prepacked_unet_gives_the_same_pixels_and_drops_the_plain_weights(native_bf16,
                                                                          tiny_sd1_dir):
    plain = _tiny_bf16_unet(tiny_sd1_dir).to(memory_format=torch.channels_last)
    pipe = _Pipe(_tiny_bf16_unet(tiny_sd1_dir))
    before = tuning.pipeline_bytes(pipe)
    done = tuning.cpu_layout(pipe, native_bf16, native_bf16)
    assert f"{len(_convs(pipe.unet))} convolutions prepacked" in done
    expected, got = _step(plain), _step(pipe.unet)
    rel = _rel(got, expected)
    print(f"prepacked vs eager, relative difference {rel:.2e}")
    assert rel < 1e-2
    # Every convolution now holds only its packed weight (the plain one is gone).
    assert all(c.weight.layout is torch._mkldnn for c in _convs(pipe.unet))
    assert tuning.pipeline_bytes(pipe) == before
    # Code that reads the weights (state_dict) still gets them, plain and unchanged.
    ours, theirs = pipe.unet.state_dict(), plain.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    # Another image size runs with the same packed weights and still matches.
    assert _rel(_step(pipe.unet, 48), _step(plain, 48)) < 1e-2


@needs_onednn_bf16
def test_a_lora_on_prepacked_convolutions_changes_the_output_and_unloads(native_bf16,
                                                                         tiny_sd1_dir, tmp_path):
    pipe = _Pipe(_tiny_bf16_unet(tiny_sd1_dir))
    tuning.cpu_layout(pipe, native_bf16, native_bf16)
    base = _step(pipe.unet)
    gen = torch.Generator().manual_seed(1)
    state = {}
    for name, conv in pipe.unet.named_modules():
        if isinstance(conv, torch.nn.Conv2d) and name.endswith("conv1"):
            out_ch, in_ch, kh, kw = conv.weight.shape
            key = "lora_unet_" + name.replace(".", "_")
            state[key + ".lora_down.weight"] = torch.randn(4, in_ch, kh, kw, generator=gen) * .5
            state[key + ".lora_up.weight"] = torch.randn(out_ch, 4, 1, 1, generator=gen) * .5
            state[key + ".alpha"] = torch.tensor(4.0)
    assert state
    path = tmp_path / "conv_lora.safetensors"
    save_file(state, str(path))
    apply_loras(pipe, [LoraWeight(str(path), 1.0)])
    with_lora = _step(pipe.unet)
    assert _rel(with_lora, base) > 0.01
    apply_loras(pipe, [])
    assert torch.equal(_step(pipe.unet), base)


def test_a_cpu_without_native_bf16_keeps_plain_convolutions(monkeypatch, tiny_sd1_dir):
    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda *a, **k: False)
    monkeypatch.delenv("STUDIO_TORCH_COMPILE", raising=False)
    forced = dev.choose_device("cpu", "bfloat16")  # bf16 asked for by hand: oneDNN emulates it
    assert not tuning.cpu_prepack_wanted(forced)
    pipe = _Pipe(_tiny_bf16_unet(tiny_sd1_dir))
    assert tuning.cpu_layout(pipe, forced, forced) == "bfloat16 weights, channels_last"
    _step(pipe.unet)
    assert all("forward" not in vars(c) and c.weight.layout is torch.strided
               for c in _convs(pipe.unet))
