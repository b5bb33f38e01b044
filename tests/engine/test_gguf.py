"""Quantized transformers in GGUF files, loaded as diffusers loads them, end to end.

A tiny random-weight Flux folder is built here from configs, and its transformer written
as GGUF files with the ``gguf`` package's own writer, as real files are made (2-D weights
quantized to Q8_0 where their rows fit its 32-wide blocks, or stored F16; biases and
norms F32), next to the folder as a user keeps them. The studio loads the file with the
folder's text encoders and VAE and must give: F32 tensors, the folder's own pixels; F16,
the pixels of the folder's transformer rounded to half precision; Q8_0, pixels close to
the unquantized model's (the weights staying quantized in memory). A tiny SD 3 folder too,
its transformer also written under Stability's own names as SD 3.5 hub files are (diffusers
converts them at load). What cannot be loaded is refused in one line.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_dit_families import _clip, _t5, _vae, build_family, unigram_tokenizer

from studio.core.errors import ModelNotFoundError, StudioError, WrongModelKindError
from studio.core.jobs.request import GenerationRequest

gguf = pytest.importorskip("gguf", reason="the gguf extra is not installed "
                                          "(pip install 'latent-studio[gguf]')")

SIZE = 32
Q8_LEVELS = 3  # the most a pixel of a Q8_0 image may move against the unquantized one


def _write(state: dict, path: Path, kind: str, arch: str = "flux") -> int:
    """``state`` as a GGUF file; returns how many tensors were quantized or halved."""
    writer = gguf.GGUFWriter(str(path), arch)
    changed = 0
    for name, tensor in state.items():
        array = tensor.float().numpy()
        if kind == "Q8_0" and array.ndim >= 2 and array.shape[-1] % 32 == 0:
            q = gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            changed += 1
        elif kind == "F16" and array.ndim >= 2:
            writer.add_tensor(name, array.astype(np.float16))
            changed += 1
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return changed


def sd3_original_layout(state: dict) -> dict:
    """A diffusers SD3 transformer's weights under Stability's own names (``joint_blocks``),
    as SD 3.5 GGUF files on the hub hold them: the inverse of diffusers' converter, which the
    loader runs on them. Every weight is used once."""
    left = dict(state)

    def take(name: str):
        return left.pop(name)

    def swap(t):  # shift/scale halves swapped (its own inverse)
        a, b = t.chunk(2, dim=0)
        return torch.cat([b, a], dim=0)

    out = {"pos_embed": take("pos_embed.pos_embed")}
    for new, old in (("x_embedder.proj", "pos_embed.proj"),
                     ("t_embedder.mlp.0", "time_text_embed.timestep_embedder.linear_1"),
                     ("t_embedder.mlp.2", "time_text_embed.timestep_embedder.linear_2"),
                     ("y_embedder.mlp.0", "time_text_embed.text_embedder.linear_1"),
                     ("y_embedder.mlp.2", "time_text_embed.text_embedder.linear_2"),
                     ("context_embedder", "context_embedder"),
                     ("final_layer.linear", "proj_out")):
        for p in ("weight", "bias"):
            out[f"{new}.{p}"] = take(f"{old}.{p}")
    for p in ("weight", "bias"):
        out[f"final_layer.adaLN_modulation.1.{p}"] = swap(take(f"norm_out.linear.{p}"))
    layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks."))
    for i in range(layers):
        b, j, last = f"transformer_blocks.{i}.", f"joint_blocks.{i}.", i == layers - 1
        for p in ("weight", "bias"):
            out[f"{j}x_block.attn.qkv.{p}"] = torch.cat(
                [take(f"{b}attn.to_{x}.{p}") for x in "qkv"])
            out[f"{j}context_block.attn.qkv.{p}"] = torch.cat(
                [take(f"{b}attn.add_{x}_proj.{p}") for x in "qkv"])
            out[f"{j}x_block.attn.proj.{p}"] = take(f"{b}attn.to_out.0.{p}")
            out[f"{j}x_block.adaLN_modulation.1.{p}"] = take(f"{b}norm1.linear.{p}")
            context_mod = take(f"{b}norm1_context.linear.{p}")
            out[f"{j}context_block.adaLN_modulation.1.{p}"] = (swap(context_mod) if last
                                                               else context_mod)
            out[f"{j}x_block.mlp.fc1.{p}"] = take(f"{b}ff.net.0.proj.{p}")
            out[f"{j}x_block.mlp.fc2.{p}"] = take(f"{b}ff.net.2.{p}")
            if not last:
                out[f"{j}context_block.attn.proj.{p}"] = take(f"{b}attn.to_add_out.{p}")
                out[f"{j}context_block.mlp.fc1.{p}"] = take(f"{b}ff_context.net.0.proj.{p}")
                out[f"{j}context_block.mlp.fc2.{p}"] = take(f"{b}ff_context.net.2.{p}")
            if f"{b}attn2.to_q.{p}" in left:  # SD 3.5's second image attention
                out[f"{j}x_block.attn2.qkv.{p}"] = torch.cat(
                    [take(f"{b}attn2.to_{x}.{p}") for x in "qkv"])
                out[f"{j}x_block.attn2.proj.{p}"] = take(f"{b}attn2.to_out.0.{p}")
        for new, old in (("x_block.attn.ln_q", "attn.norm_q"), ("x_block.attn.ln_k", "attn.norm_k"),
                         ("context_block.attn.ln_q", "attn.norm_added_q"),
                         ("context_block.attn.ln_k", "attn.norm_added_k"),
                         ("x_block.attn2.ln_q", "attn2.norm_q"),
                         ("x_block.attn2.ln_k", "attn2.norm_k")):  # SD 3.5's qk norms
            if f"{b}{old}.weight" in left:
                out[f"{j}{new}.weight"] = take(f"{b}{old}.weight")
    assert not left, sorted(left)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """``models/`` with a tiny Flux folder and its transformer as F32, F16 and Q8_0 GGUFs."""
    import diffusers as d

    root = tmp_path_factory.mktemp("gguf")
    torch.manual_seed(0)
    tok, clip = _clip(root / "_flux" / "clip")
    t5 = unigram_tokenizer(root / "_flux" / "t5")
    transformer = d.FluxTransformer2DModel(  # 32 wide, so most weights fill Q8_0 blocks
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
        pooled_projection_dim=32, axes_dims_rope=[4, 4, 8], guidance_embeds=True)
    pipe = d.FluxPipeline(
        transformer=transformer,
        scheduler=d.FlowMatchEulerDiscreteScheduler(
            use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
            max_image_seq_len=4096, shift=3.0),
        vae=_vae(True), text_encoder=clip(), tokenizer=tok, text_encoder_2=_t5(len(t5)),
        tokenizer_2=t5)
    for module in pipe.components.values():
        if hasattr(module, "eval"):
            module.eval()
    out = root / "models"
    pipe.save_pretrained(out / "flux-tiny", safe_serialization=True)
    state = transformer.state_dict()
    for kind in ("F32", "F16", "Q8_0"):
        changed = _write(state, out / f"flux-tiny-{kind}.gguf", kind)
        assert changed == 0 if kind == "F32" else changed >= 20
    sd3 = build_family("sd3", root)  # models/sd3, and its transformer as a GGUF beside it
    sd3_state = d.SD3Transformer2DModel.from_pretrained(sd3 / "transformer").state_dict()
    _write(sd3_state, out / "sd3-tiny-F32.gguf", "F32", arch="sd3")
    # As SD 3.5 files on the hub are: Stability's own names, Q8_0 where the rows fit.
    _write(sd3_original_layout(sd3_state), out / "sd3-tiny-original-Q8_0.gguf", "Q8_0",
           arch="sd3")
    return out


@pytest.fixture(scope="module")
def engine(models, tmp_path_factory):
    from studio.engine.engine import Engine

    return Engine(device="cpu", dtype="float32", model_dirs=[models],
                  embedded_dir=tmp_path_factory.mktemp("no-embedded"), hf_cache=False)


def _req(model: Path, **kw) -> GenerationRequest:
    values = dict(prompt="a portrait of a woman with red hair", model=str(model), steps=2,
                  width=SIZE, height=SIZE, seed=4, guidance=3.5, scheduler="Flow Euler")
    values.update(kw)
    return GenerationRequest(**values)


def _bare_half(models: Path, req: GenerationRequest) -> np.ndarray:
    """The folder through bare diffusers, its transformer rounded to half precision."""
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(models / "flux-tiny", local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        for p in pipe.transformer.parameters():
            if p.ndim >= 2:
                p.copy_(p.half().float())
    with torch.inference_mode():
        out = pipe(req.prompt, num_inference_steps=req.steps, guidance_scale=req.guidance,
                   height=req.height, width=req.width, output_type="np",
                   generator=[torch.Generator("cpu").manual_seed(req.seed)])
    return (np.clip(out.images[0], 0, 1) * 255).round().astype(np.uint8)


def test_gguf_files_are_listed_beside_their_folder_as_flux(engine, models):
    found = {m.name: m for m in engine.list_models("diffusion")}
    for kind in ("F32", "F16", "Q8_0"):
        info = found[f"flux-tiny-{kind}"]
        assert (info.family, info.source) == ("flux", "gguf")
        assert info.recommended_value("scheduler") == "Flow Euler"  # Flux's own defaults
        assert info.recommended_value("guidance") == 3.5
    assert found["sd3-tiny-F32"].family == "sd3"
    assert found["sd3-tiny-original-Q8_0"].family == "sd3"


def test_f32_and_f16_tensors_give_the_unquantized_pixels(engine, models):
    folder = engine.generate(_req(models / "flux-tiny"))
    f32 = engine.generate(_req(models / "flux-tiny-F32.gguf"))
    assert f32.request.family == "flux"
    assert np.array_equal(f32.images[0], folder.images[0])
    f16 = engine.generate(_req(models / "flux-tiny-F16.gguf"))
    assert np.array_equal(f16.images[0], _bare_half(models, f16.request))


def test_an_sd3_gguf_takes_the_sd3_folder_beside_it(engine, models):
    folder = engine.generate(_req(models / "sd3", guidance=5.0))
    res = engine.generate(_req(models / "sd3-tiny-F32.gguf", guidance=5.0))
    assert res.request.family == "sd3"
    assert np.array_equal(res.images[0], folder.images[0])
    # Stability's own layout, converted by diffusers at load (Q8_0: close, not equal).
    original = engine.generate(_req(models / "sd3-tiny-original-Q8_0.gguf", guidance=5.0))
    diff = np.abs(original.images[0].astype(int) - folder.images[0].astype(int))
    print(f"SD3 original-layout Q8_0 against unquantized: max {diff.max()} levels, "
          f"mean {diff.mean():.3f}")
    assert diff.max() <= Q8_LEVELS and diff.mean() < 0.5


def test_the_original_layouts_are_read_as_their_families():
    """Hub files keep Black Forest Labs' and Stability's own names (converted by diffusers
    at load); tiny ones cannot be made in that layout (diffusers' Flux converter assumes the
    full 3072-wide model), so the names alone are checked here."""
    from studio.engine.models.gguf import family_from_names

    assert family_from_names(["double_blocks.0.img_attn.qkv.weight",
                              "single_blocks.0.linear1.weight"]) == "flux"
    assert family_from_names(["model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight",
                              "model.diffusion_model.pos_embed"]) == "sd3"
    assert family_from_names(["blk.0.attn_q.weight", "token_embd.weight"]) == ""


def test_q8_0_stays_quantized_and_draws_close_to_the_unquantized_model(engine, models):
    from diffusers.quantizers.gguf.utils import GGUFParameter

    folder = engine.generate(_req(models / "flux-tiny", seed=9)).images[0].astype(int)
    res = engine.generate(_req(models / "flux-tiny-Q8_0.gguf", seed=9))
    q8 = res.images[0].astype(int)
    diff = np.abs(q8 - folder)
    assert diff.max() <= Q8_LEVELS, diff.max()
    assert diff.mean() < 0.5, diff.mean()
    print(f"Q8_0 against unquantized: max {diff.max()} levels, mean {diff.mean():.3f}")
    loaded = engine.load(str(models / "flux-tiny-Q8_0.gguf"))  # the cached pipeline
    quantized = [p for p in loaded.pipe.transformer.parameters()
                 if isinstance(p, GGUFParameter)
                 and p.quant_type == gguf.GGMLQuantizationType.Q8_0]
    assert len(quantized) >= 20  # held as Q8_0 blocks, dequantized layer by layer


def test_cli_generates_from_a_gguf_and_the_file_records_it(models, tmp_path, monkeypatch):
    from studio.cli.main import main
    from studio.core.formats.metadata import read_settings

    monkeypatch.setenv("STUDIO_CONFIG_DIR", str(tmp_path / "config"))
    out = tmp_path / "q8.png"
    rc = main(["generate", "a woman with red hair", "--model",
               str(models / "flux-tiny-Q8_0.gguf"), "--steps", "2", "--size", "32x32",
               "--seed", "4", "--device", "cpu", "--dtype", "float32", "-o", str(out),
               "--no-hf-cache", "--quiet"])
    assert rc == 0
    request = read_settings(out).request
    assert request.family == "flux" and request.model.endswith("flux-tiny-Q8_0.gguf")


def _one_line(err: StudioError) -> str:
    assert "\n" not in err.message
    return err.message


def test_what_cannot_be_loaded_is_refused_in_one_line(models, tmp_path, monkeypatch):
    from studio.engine.models.discovery import resolve
    from studio.engine.models.gguf import load_gguf

    llama = tmp_path / "llama-7b-Q8_0.gguf"
    _write({"blk.0.attn_q.weight": torch.ones(32, 32), "token_embd.weight": torch.ones(8, 32)},
           llama, "Q8_0", arch="llama")
    with pytest.raises(WrongModelKindError) as err:
        resolve(str(llama), [])
    assert "llama" in _one_line(err.value) and "Flux" in err.value.message

    alone = tmp_path / "alone" / "flux-tiny-Q8_0.gguf"  # no folder with its text encoders
    alone.parent.mkdir()
    alone.write_bytes((models / "flux-tiny-Q8_0.gguf").read_bytes())
    with pytest.raises(ModelNotFoundError) as err:
        load_gguf(alone)
    assert "text encoders and VAE" in _one_line(err.value)

    monkeypatch.setitem(sys.modules, "gguf", None)  # the extra not installed
    with pytest.raises(WrongModelKindError) as err:
        resolve(str(models / "flux-tiny-F32.gguf"), [])
    assert "pip install gguf" in _one_line(err.value)
