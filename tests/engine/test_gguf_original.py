"""A Flux GGUF in the original tensor layout (Black Forest Labs' names, as city96's hub files
and ComfyUI's GGUF loader have them: ``double_blocks.``, ``single_blocks.``, fused QKV),
end to end: listed as Flux, loaded through diffusers' converter with the folder beside it,
kept quantized, and drawing the unquantized transformer's pixels within Q8_0's rounding.

diffusers' converter assumes Flux's full width (3072, an MLP 4 times wider), so the model
here is a Flux of that width with one block of each kind (530 M parameters, 2.1 GB in
float32, about 3 minutes on two loaded cores): it runs in the ``heavy`` tier.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_dit_families import _clip, _t5, _vae, unigram_tokenizer
from test_gguf import Q8_LEVELS, _write

from studio.core.jobs.request import GenerationRequest

gguf = pytest.importorskip("gguf", reason="the gguf extra is not installed "
                                          "(pip install 'latent-studio[gguf]')")
pytestmark = [pytest.mark.slow, pytest.mark.heavy]

SIZE = 32


def flux_original_layout(state: dict) -> dict:
    """A diffusers Flux transformer's weights under Black Forest Labs' own names, as Flux
    GGUF files on the hub hold them: the inverse of diffusers' converter, which the loader
    runs on them. Every weight is used once."""
    left = dict(state)
    take = left.pop

    def swap(t):  # shift/scale halves swapped (its own inverse)
        a, b = t.chunk(2, dim=0)
        return torch.cat([b, a], dim=0)

    out = {}
    for new, old in (("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1"),
                     ("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2"),
                     ("vector_in.in_layer", "time_text_embed.text_embedder.linear_1"),
                     ("vector_in.out_layer", "time_text_embed.text_embedder.linear_2"),
                     ("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1"),
                     ("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2"),
                     ("txt_in", "context_embedder"), ("img_in", "x_embedder"),
                     ("final_layer.linear", "proj_out")):
        for p in ("weight", "bias"):
            if "guidance" in old and f"{old}.{p}" not in left:  # schnell: no guidance input
                continue
            out[f"{new}.{p}"] = take(f"{old}.{p}")
    for p in ("weight", "bias"):
        out[f"final_layer.adaLN_modulation.1.{p}"] = swap(take(f"norm_out.linear.{p}"))
    double = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks."))
    for i in range(double):
        b, o = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for p in ("weight", "bias"):
            out[f"{o}img_attn.qkv.{p}"] = torch.cat([take(f"{b}attn.to_{x}.{p}") for x in "qkv"])
            out[f"{o}txt_attn.qkv.{p}"] = torch.cat([take(f"{b}attn.add_{x}_proj.{p}")
                                                     for x in "qkv"])
            for new, old in (("img_mod.lin", "norm1.linear"),
                             ("txt_mod.lin", "norm1_context.linear"),
                             ("img_mlp.0", "ff.net.0.proj"), ("img_mlp.2", "ff.net.2"),
                             ("txt_mlp.0", "ff_context.net.0.proj"),
                             ("txt_mlp.2", "ff_context.net.2"),
                             ("img_attn.proj", "attn.to_out.0"),
                             ("txt_attn.proj", "attn.to_add_out")):
                out[f"{o}{new}.{p}"] = take(f"{b}{old}.{p}")
        for new, old in (("img_attn.norm.query_norm", "attn.norm_q"),
                         ("img_attn.norm.key_norm", "attn.norm_k"),
                         ("txt_attn.norm.query_norm", "attn.norm_added_q"),
                         ("txt_attn.norm.key_norm", "attn.norm_added_k")):
            out[f"{o}{new}.scale"] = take(f"{b}{old}.weight")
    single = 1 + max(int(k.split(".")[1]) for k in state
                     if k.startswith("single_transformer_blocks."))
    for i in range(single):
        b, o = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        for p in ("weight", "bias"):
            out[f"{o}linear1.{p}"] = torch.cat([take(f"{b}attn.to_{x}.{p}") for x in "qkv"]
                                               + [take(f"{b}proj_mlp.{p}")])
            out[f"{o}modulation.lin.{p}"] = take(f"{b}norm.linear.{p}")
            out[f"{o}linear2.{p}"] = take(f"{b}proj_out.{p}")
        out[f"{o}norm.query_norm.scale"] = take(f"{b}attn.norm_q.weight")
        out[f"{o}norm.key_norm.scale"] = take(f"{b}attn.norm_k.weight")
    assert not left, sorted(left)
    return out


def _wide_flux(pooled: int = 32, in_channels: int = 16):
    """Flux at its real width with one block of each kind, random weights drawn directly as
    ``nn.Linear`` draws them (uniform within 1/sqrt(fan-in); norms at 1): the modules' own
    initialisation takes a minute here."""
    import diffusers as d

    with torch.device("meta"):
        transformer = d.FluxTransformer2DModel(
            patch_size=1, in_channels=in_channels, num_layers=1, num_single_layers=1,
            attention_head_dim=128, num_attention_heads=24, joint_attention_dim=32,
            pooled_projection_dim=pooled, axes_dims_rope=[16, 56, 56], guidance_embeds=True)
    transformer = transformer.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    fan_in = {}
    for name, module in transformer.named_modules():
        if isinstance(module, torch.nn.Linear):
            fan_in[f"{name}.weight"] = fan_in[f"{name}.bias"] = module.in_features
    with torch.no_grad():
        for name, p in transformer.named_parameters():
            if name in fan_in:
                bound = fan_in[name] ** -0.5
                p.copy_((torch.rand(p.shape, generator=generator) * 2 - 1) * bound)
            else:  # the RMS norms' scales
                p.fill_(1.0)
    return transformer.eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """``models/`` with a 3072-wide Flux folder and its transformer as an original-layout
    Q8_0 GGUF beside it."""
    import diffusers as d

    root = tmp_path_factory.mktemp("gguf-original")
    torch.manual_seed(0)
    tok, clip = _clip(root / "_flux" / "clip")
    t5 = unigram_tokenizer(root / "_flux" / "t5")
    transformer = _wide_flux()
    pipe = d.FluxPipeline(
        transformer=transformer,
        scheduler=d.FlowMatchEulerDiscreteScheduler(
            use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
            max_image_seq_len=4096, shift=3.0),
        vae=_vae(True).eval(), text_encoder=clip().eval(), tokenizer=tok,
        text_encoder_2=_t5(len(t5)).eval(), tokenizer_2=t5)
    out = root / "models"
    pipe.save_pretrained(out / "flux-wide", safe_serialization=True)
    original = flux_original_layout(transformer.state_dict())
    assert "double_blocks.0.img_attn.qkv.weight" in original
    assert _write(original, out / "flux-wide-original-Q8_0.gguf", "Q8_0") >= 20
    return out


def test_an_original_layout_flux_gguf_draws_the_unquantized_pixels(models, tmp_path):
    from diffusers.quantizers.gguf.utils import GGUFParameter

    from studio.engine.engine import Engine

    engine = Engine(device="cpu", dtype="float32", model_dirs=[models],
                    embedded_dir=tmp_path / "no-embedded", hf_cache=False)
    found = {m.name: m for m in engine.list_models("diffusion")}
    assert (found["flux-wide-original-Q8_0"].family,
            found["flux-wide-original-Q8_0"].source) == ("flux", "gguf")

    def request(model: str) -> GenerationRequest:
        return GenerationRequest(prompt="a portrait of a woman with red hair",
                                 model=str(models / model), steps=2, width=SIZE, height=SIZE,
                                 seed=4, guidance=3.5, scheduler="Flow Euler")

    folder = engine.generate(request("flux-wide")).images[0].astype(int)
    engine.pipelines.clear()  # one 2 GB pipeline in memory at a time
    res = engine.generate(request("flux-wide-original-Q8_0.gguf"))
    assert res.request.family == "flux"
    diff = np.abs(res.images[0].astype(int) - folder)
    print(f"Flux original-layout Q8_0 against unquantized: max {diff.max()} levels, "
          f"mean {diff.mean():.3f} (the image's spread: {folder.std():.1f})")
    assert folder.std() > 5  # a picture, not a flat field that any weights would match
    assert diff.max() <= Q8_LEVELS and diff.mean() < 0.5
    loaded = engine.load(str(models / "flux-wide-original-Q8_0.gguf"))  # the cached pipeline
    quantized = [p for p in loaded.pipe.transformer.parameters()
                 if isinstance(p, GGUFParameter)
                 and p.quant_type == gguf.GGMLQuantizationType.Q8_0]
    assert len(quantized) >= 20  # held as Q8_0 blocks (the fused QKV split by diffusers)
