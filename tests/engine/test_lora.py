"""LoRA files as sliders: kohya and diffusers layouts, several at once, exact unloading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from studio.core.jobs.request import GenerationRequest, LoraWeight
from studio.core.sliders.specs import apply_sliders, lora_slider
from studio.engine.lora import LoraError, lora_state


def _targets(pipe):
    unet = [n for n, m in pipe.unet.named_modules()
            if isinstance(m, torch.nn.Linear) and n.endswith(("to_q", "to_k", "to_v", "to_out.0"))]
    convs = [n for n, m in pipe.unet.named_modules()
             if isinstance(m, torch.nn.Conv2d) and n.endswith("conv1")][:2]
    text = [n for n, m in pipe.text_encoder.named_modules()
            if isinstance(m, torch.nn.Linear) and n.endswith("q_proj")]
    return unet, convs, text


def _write(pipe, path, layout, seed, rank=4, strength=0.5):
    gen = torch.Generator().manual_seed(seed)
    unet, convs, text = _targets(pipe)
    state = {}
    for comp, names in (("unet", unet + convs), ("text_encoder", text)):
        model = getattr(pipe, comp)
        mods = dict(model.named_modules())
        for name in names:
            w = mods[name].weight
            if w.dim() == 4:
                down = torch.randn(rank, w.shape[1], *w.shape[2:], generator=gen) * strength
                up = torch.randn(w.shape[0], rank, 1, 1, generator=gen) * strength
            else:
                down = torch.randn(rank, w.shape[1], generator=gen) * strength
                up = torch.randn(w.shape[0], rank, generator=gen) * strength
            if layout == "kohya":
                prefix = {"unet": "lora_unet_", "text_encoder": "lora_te_"}[comp]
                base = prefix + name.replace(".", "_")
                state[base + ".lora_down.weight"] = down
                state[base + ".lora_up.weight"] = up
                state[base + ".alpha"] = torch.tensor(float(rank))
            else:
                base = f"{comp}.{name}"
                state[base + ".lora_A.weight"] = down
                state[base + ".lora_B.weight"] = up
    save_file(state, str(path))
    return path


@pytest.fixture(scope="module")
def loras(engine, tiny_sd1_dir, tmp_path_factory):
    pipe = engine.load(str(tiny_sd1_dir)).pipe
    root = tmp_path_factory.mktemp("loras")
    return {"kohya": _write(pipe, root / "a_kohya.safetensors", "kohya", 1),
            "diffusers": _write(pipe, root / "a_diffusers.safetensors", "diffusers", 1),
            "other": _write(pipe, root / "b_kohya.safetensors", "kohya", 2)}


def _req(model_dir, loras=()):
    return GenerationRequest("a portrait of a person with red hair", model=str(model_dir),
                             width=32, height=32, steps=2, seed=5, guidance=5.0,
                             loras=tuple(loras))


def test_lora_weights_change_the_image_and_unloading_restores_it_exactly(engine, tiny_sd1_dir,
                                                                         loras):
    base = engine.generate(_req(tiny_sd1_dir)).images[0]
    one = engine.generate(_req(tiny_sd1_dir, [LoraWeight(str(loras["kohya"]), 1.0)])).images[0]
    assert not np.array_equal(one, base)
    # Both key layouts of the same weights give the same pixels.
    same = engine.generate(_req(tiny_sd1_dir, [LoraWeight(str(loras["diffusers"]), 1.0)]))
    assert np.array_equal(same.images[0], one)
    # Two at once, one of them negative, differ from either alone.
    both = engine.generate(_req(tiny_sd1_dir, [LoraWeight(str(loras["kohya"]), -3.0),
                                               LoraWeight(str(loras["other"]), 1.0)]))
    assert not np.array_equal(both.images[0], one) and not np.array_equal(both.images[0], base)
    # Weight 0 (a slider at rest) and unloading give the base model back bit for bit.
    slider = lora_slider(str(loras["kohya"]))
    assert apply_sliders(_req(tiny_sd1_dir), [(slider, 0.0)]) == _req(tiny_sd1_dir)
    zero = engine.generate(_req(tiny_sd1_dir, [LoraWeight(str(loras["kohya"]), 0.0)]))
    assert np.array_equal(zero.images[0], base)
    assert lora_state(engine.load(str(tiny_sd1_dir)).pipe).active == ()


def test_a_lora_for_another_model_is_refused_clearly(engine, tiny_sd1_dir, tmp_path):
    bad = tmp_path / "bad.safetensors"
    save_file({"lora_unet_nowhere.lora_down.weight": torch.zeros(2, 3),
               "lora_unet_nowhere.lora_up.weight": torch.zeros(3, 2)}, str(bad))
    with pytest.raises(LoraError, match="does not fit"):
        engine.generate(_req(tiny_sd1_dir, [LoraWeight(str(bad), 1.0)]))
    with pytest.raises(LoraError, match="safetensors"):
        engine.generate(_req(tiny_sd1_dir, [LoraWeight(str(tmp_path / "x.ckpt"), 1.0)]))
    # A failed LoRA leaves the model as it was.
    assert lora_state(engine.load(str(tiny_sd1_dir)).pipe).active == ()
