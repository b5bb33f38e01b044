"""LoRAs on transformer (DiT) models: each file read by its pipeline's own diffusers LoRA
loader (``lora_state_dict``: Flux's kohya, XLabs and diffusers layouts, SD 3's, Sana's,
AuraFlow's ...) and applied as the studio's LoRA hooks (weights as sliders, exact unload).

The oracle is the LoRA merged into a copy of the weights by hand (``W + weight * alpha /
rank * B A``) and run through bare diffusers: the studio's pixels must match it (to float
rounding), and weight 0 must give the base pixels bit for bit. A kohya Flux LoRA must draw
what the same update in diffusers' layout draws; a LoRA of another family is one line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from test_dit_families import _req, built_families  # tests/engine is on sys.path

from studio.core.errors import StudioError
from studio.core.jobs.request import LoraWeight

RANK, ALPHA = 4, 2.0


@pytest.fixture(scope="module")
def dit_root(tmp_path_factory) -> Path:
    return built_families(tmp_path_factory)  # shared with test_dit_families


@pytest.fixture(scope="module")
def dit_engine(dit_root, tmp_path_factory):
    from studio.engine.engine import Engine

    return Engine(device="cpu", dtype="float32", model_dirs=[dit_root],
                  embedded_dir=tmp_path_factory.mktemp("none"), hf_cache=False)


def _targets(transformer: torch.nn.Module) -> list[str]:
    """The attention projections a LoRA usually trains (to_q, to_k, to_v of every block)."""
    import re

    names = [name for name, m in transformer.named_modules()
             if isinstance(m, torch.nn.Linear) and re.search(r"attn\d?\.to_[qkv]$", name)]
    assert names
    return names


def _diffusers_lora(transformer: torch.nn.Module, path: Path, seed: int = 0) -> dict:
    """A random rank-4 LoRA over ``_targets`` in diffusers' layout, saved at ``path``;
    returns {module name: (A, B)}."""
    g = torch.Generator().manual_seed(seed)
    pairs, state = {}, {}
    for name in _targets(transformer):
        m = transformer.get_submodule(name)
        a = torch.randn(RANK, m.in_features, generator=g) / m.in_features ** 0.5
        b = torch.randn(m.out_features, RANK, generator=g) * 0.5
        pairs[name] = (a, b)
        state[f"transformer.{name}.lora_A.weight"] = a
        state[f"transformer.{name}.lora_B.weight"] = b
        state[f"transformer.{name}.alpha"] = torch.tensor(ALPHA)
    save_file(state, str(path))
    return pairs


def _merged_bare(folder: Path, req, pairs: dict, weight: float) -> np.ndarray:
    """The request through bare diffusers with the LoRA merged into the weights by hand."""
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        for name, (a, b) in pairs.items():
            pipe.transformer.get_submodule(name).weight += weight * ALPHA / RANK * (b @ a)
    extra = {"use_resolution_binning": False} if folder.name in ("pixart", "sana") else {}
    with torch.inference_mode():
        out = pipe(req.prompt, num_inference_steps=req.steps, guidance_scale=req.guidance,
                   height=req.height, width=req.width, output_type="np",
                   generator=[torch.Generator("cpu").manual_seed(req.seed)], **extra)
    return (np.clip(out.images[0], 0, 1) * 255).round().astype(np.uint8)


@pytest.mark.parametrize("kind", ["sd3", "flux", "sana", "auraflow"])
def test_a_dit_lora_draws_the_hand_merged_weights_and_unloads_exactly(
        dit_engine, dit_root, tmp_path, kind):
    from diffusers import DiffusionPipeline

    transformer = DiffusionPipeline.from_pretrained(dit_root / kind).transformer
    lora = tmp_path / f"{kind}-lora.safetensors"
    pairs = _diffusers_lora(transformer, lora)
    base = dit_engine.generate(_req(dit_root, kind)).images[0]
    req = _req(dit_root, kind, loras=(LoraWeight(path=str(lora), weight=0.8, name=lora.stem),))
    res = dit_engine.generate(req)
    assert not np.array_equal(res.images[0], base)
    expected = _merged_bare(dit_root / kind, req, pairs, 0.8)
    diff = np.abs(res.images[0].astype(int) - expected.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.1, (diff.max(), diff.mean())
    # Weight 0, and the LoRA removed: the base model again, bit for bit.
    zero = req.replace(loras=(LoraWeight(path=str(lora), weight=0.0, name=lora.stem),))
    assert np.array_equal(dit_engine.generate(zero).images[0], base)
    assert np.array_equal(dit_engine.generate(_req(dit_root, kind)).images[0], base)


def test_a_kohya_flux_lora_draws_what_its_diffusers_twin_draws(dit_engine, dit_root, tmp_path):
    """kohya's (sd-scripts) Flux names, fused qkv and alpha, as most Flux LoRAs on the hub
    are: diffusers' converter splits them onto to_q/to_k/to_v."""
    from diffusers import DiffusionPipeline

    transformer = DiffusionPipeline.from_pretrained(dit_root / "flux").transformer
    hidden = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    g = torch.Generator().manual_seed(1)
    down = torch.randn(RANK, hidden, generator=g) / hidden ** 0.5
    up = torch.randn(3 * hidden, RANK, generator=g) * 0.5
    kohya = tmp_path / "kohya.safetensors"
    save_file({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": down,
               "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": up,
               "lora_unet_double_blocks_0_img_attn_qkv.alpha": torch.tensor(ALPHA)},
              str(kohya))
    twin = tmp_path / "twin.safetensors"
    state = {}
    for part, chunk in zip("qkv", up.chunk(3), strict=True):
        name = f"transformer.transformer_blocks.0.attn.to_{part}"
        state.update({f"{name}.lora_A.weight": down.clone(), f"{name}.lora_B.weight": chunk.clone(),
                      f"{name}.alpha": torch.tensor(ALPHA)})
    save_file(state, str(twin))

    def draw(path: Path) -> np.ndarray:
        return dit_engine.generate(_req(dit_root, "flux", loras=(
            LoraWeight(path=str(path), weight=1.0, name=path.stem),))).images[0]

    base = dit_engine.generate(_req(dit_root, "flux")).images[0]
    a, b = draw(kohya), draw(twin)
    assert not np.array_equal(a, base)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_a_lora_of_another_family_is_refused_in_one_line(dit_engine, dit_root, tmp_path):
    sd15 = tmp_path / "sd15-lora.safetensors"  # an SD 1.x UNet LoRA (kohya)
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight":
               torch.zeros(4, 320),
               "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight":
               torch.zeros(320, 4)}, str(sd15))
    with pytest.raises(StudioError) as err:
        dit_engine.generate(_req(dit_root, "flux", loras=(
            LoraWeight(path=str(sd15), weight=1.0, name="sd15-lora"),)))
    assert "\n" not in err.value.message and "sd15-lora" in err.value.message
