"""Flux and SD 3.x as ComfyUI users keep them: the transformer alone in
``models/diffusion_models/`` (SD 3.5's files, with their VAE, in ``models/checkpoints/``),
the text encoders in ``models/text_encoders/``, the VAE in ``models/vae/``, the tokenizers in
the ComfyUI install around them (``studio.engine.models.transformer_files``).

The parts are found by their tensors, and their configs read from their shapes: checked here
against the real architectures (Flux dev and schnell, T5-XXL, CLIP-L, the Flux VAE), built on
the meta device so nothing is allocated. A missing part is one line naming what to add and
where. End to end, files in ComfyUI's layout draw the pixels of the same model as a
diffusers folder: a tiny SD 3 (with and without T5), and (tier ``heavy``: diffusers'
converter of Flux's original layout assumes its full width) a 3072-wide Flux with one block
of each kind. All-in-one files (SD 3 Medium's ``incl_clips``, ComfyUI's Flux checkpoints)
read their text encoders from inside: diffusers' own reading of the file, the same pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from test_dit_families import unigram_tokenizer
from test_gguf_original import flux_original_layout

from studio.core.errors import ModelNotFoundError
from studio.core.jobs.request import GenerationRequest
from studio.engine.models import transformer_files as ff

SIZE = 32


def _meta_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _real_flux(guidance: bool):
    import diffusers as d

    with torch.device("meta"):
        return d.FluxTransformer2DModel(
            patch_size=1, in_channels=64, num_layers=19, num_single_layers=38,
            attention_head_dim=128, num_attention_heads=24, joint_attention_dim=4096,
            pooled_projection_dim=768, axes_dims_rope=[16, 56, 56], guidance_embeds=guidance)


@pytest.mark.parametrize("guidance", [True, False], ids=["dev", "schnell"])
def test_the_configs_read_from_shapes_are_the_real_architectures(guidance):
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    flux = _real_flux(guidance)
    shapes = {k: tuple(v.shape) for k, v in flux_original_layout(flux.state_dict()).items()}
    assert ff.is_flux_transformer(shapes)
    xlabs = {**shapes, "controlnet_blocks.0.weight": (3072, 3072)}  # a Flux ControlNet
    assert not ff.is_flux_transformer(xlabs)
    got = ff.transformer_config({ff.PREFIX + k: v for k, v in shapes.items()})  # ComfyUI's
    for key, value in got.items():
        if key != "_class_name":
            assert flux.config[key] == value, key
    assert ff.scheduler_config(guidance)["use_dynamic_shifting"] is guidance
    with torch.device("meta"):  # T5 v1.1 XXL, as FLUX.1's text_encoder_2
        t5 = T5EncoderModel(T5Config(
            vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
            feed_forward_proj="gated-gelu", relative_attention_num_buckets=32))
        clip = CLIPTextModel(CLIPTextConfig(  # OpenAI's CLIP-L text tower
            vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
            num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu"))
        vae = AutoencoderKL(  # FLUX.1's ae
            in_channels=3, out_channels=3, latent_channels=16,
            block_out_channels=(128, 256, 512, 512), layers_per_block=2,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, use_quant_conv=False,
            use_post_quant_conv=False)
    t5c = ff.t5_config(_meta_shapes(t5))
    for key in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
                "feed_forward_proj", "relative_attention_num_buckets"):
        assert t5c[key] == getattr(t5.config, key), key

    class Tok:
        bos_token_id, eos_token_id = 49406, 49407

    cc = ff.clip_config(_meta_shapes(clip), Tok())
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "max_position_embeddings", "hidden_act"):
        assert cc[key] == getattr(clip.config, key), key
    vc = ff.vae_config(_meta_shapes(vae))
    for key in ("latent_channels", "block_out_channels", "layers_per_block",
                "use_quant_conv", "mid_block_add_attention"):
        assert vc[key] == (list(vae.config[key]) if key == "block_out_channels"
                           else vae.config[key]), key
    assert ff._is_t5(_meta_shapes(t5)) and ff._is_clip_l(_meta_shapes(clip))
    assert ff._is_vae16(_meta_shapes(vae)) and not ff._is_clip_l(_meta_shapes(t5))


def vae_original_layout(state: dict, levels: int) -> dict:
    """A diffusers AutoencoderKL's weights under the original (LDM) names, as Black Forest
    Labs' ae.safetensors holds them (attention as 1x1 convolutions): the inverse of
    diffusers' converter, which the loader runs on them. Every weight is used once."""
    import re

    out = {}
    for key, tensor in state.items():
        new = key
        for old, repl in (("conv_norm_out", "norm_out"), ("conv_shortcut", "nin_shortcut"),
                          ("mid_block.resnets.0", "mid.block_1"),
                          ("mid_block.resnets.1", "mid.block_2"),
                          ("mid_block.attentions.0.group_norm", "mid.attn_1.norm"),
                          ("mid_block.attentions.0.to_q", "mid.attn_1.q"),
                          ("mid_block.attentions.0.to_k", "mid.attn_1.k"),
                          ("mid_block.attentions.0.to_v", "mid.attn_1.v"),
                          ("mid_block.attentions.0.to_out.0", "mid.attn_1.proj_out")):
            new = new.replace(old, repl)
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", new)
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.",
                     r"encoder.down.\1.downsample.", new)
        match = re.match(r"decoder\.up_blocks\.(\d+)\.(resnets|upsamplers\.0)\.(.*)", new)
        if match:
            level = levels - 1 - int(match.group(1))
            part = "block." if match.group(2) == "resnets" else "upsample."
            new = f"decoder.up.{level}.{part}{match.group(3)}"
        if ".attn_1." in new and new.endswith(".weight") and tensor.ndim == 2:
            tensor = tensor[:, :, None, None]
        out[new] = tensor
    assert len(out) == len(state)
    return out


# -- tiny parts in ComfyUI's folders -------------------------------------------------------
def _tiny_parts(root: Path, transformer_state: dict | None = None) -> dict[str, Path]:
    """ComfyUI's layout under ``root``: ``ComfyUI/models/{diffusion_models,text_encoders,vae}``
    and the tokenizers in ``ComfyUI/comfy``; the transformer file holds ``transformer_state``
    (original layout) or a few of Flux's tensor names."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    from studio.engine.models.tiny import _tokenizer

    comfy = root / "ComfyUI"
    models = comfy / "models"
    torch.manual_seed(0)
    t5_tok = unigram_tokenizer(comfy / "comfy" / "text_encoders" / "t5_tokenizer")
    clip_tok = _tokenizer(comfy / "comfy" / "sd1_tokenizer", vocab_size=300)
    from test_dit_families import _t5

    t5 = _t5(len(t5_tok)).eval()
    clip = CLIPTextModel(CLIPTextConfig(  # CLIP-L's shape rules: 64-wide heads, quick_gelu
        vocab_size=len(clip_tok), hidden_size=128, intermediate_size=256, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu",
        bos_token_id=clip_tok.bos_token_id, eos_token_id=clip_tok.eos_token_id,
        pad_token_id=clip_tok.eos_token_id)).eval()
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(32, 32),
        layers_per_block=1, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=32, use_quant_conv=False,
        use_post_quant_conv=False, scaling_factor=ff.FLUX_VAE_SCALING,
        shift_factor=ff.FLUX_VAE_SHIFT).eval()
    paths = {"transformer": models / "diffusion_models" / "flux1-tiny.safetensors",
             "t5": models / "text_encoders" / "t5xxl_tiny.safetensors",
             "clip": models / "text_encoders" / "clip_l.safetensors",
             "vae": models / "vae" / "ae.safetensors"}
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    state = transformer_state or {"double_blocks.0.img_attn.qkv.weight": torch.zeros(3, 2),
                                  "single_blocks.0.linear1.weight": torch.zeros(3, 2),
                                  "img_in.weight": torch.zeros(3, 64)}
    save_file({k: v.contiguous() for k, v in state.items()}, paths["transformer"])
    save_file({k: v.contiguous() for k, v in t5.state_dict().items()
               if k != "encoder.embed_tokens.weight"}, paths["t5"])
    save_file({"text_model." + k.removeprefix("text_model."): v  # ComfyUI's clip_l names
               for k, v in clip.state_dict().items()}, paths["clip"])
    save_file({k: v.contiguous() for k, v in vae_original_layout(vae.state_dict(), 2).items()},
              paths["vae"])  # Black Forest Labs' layout, as ae.safetensors
    return {**paths, "t5_model": t5, "clip_model": clip, "vae_model": vae,
            "t5_tok": t5_tok, "clip_tok": clip_tok}


def test_the_parts_are_found_by_their_tensors_and_what_is_missing_is_named(tmp_path):
    from studio.engine.models.discovery import resolve

    parts = _tiny_parts(tmp_path)
    found = ff.find_parts(parts["transformer"])
    assert (found.t5, found.clip_l, found.vae) == (parts["t5"], parts["clip"], parts["vae"])
    assert found.t5_tokenizer.name == "t5_tokenizer"
    info = resolve(str(parts["transformer"]), [])
    assert (info.kind, info.family) == ("diffusion", "flux")
    assert info.recommended_value("scheduler") == "Flow Euler"
    kontext = parts["transformer"].with_name("flux1-kontext-dev.safetensors")
    parts["transformer"].rename(kontext)
    assert resolve(str(kontext), []).family == "flux-kontext"
    assert resolve(str(kontext), []).recommended_value("edit")
    # Names do not matter: a T5 renamed clip_l is still the T5.
    parts["vae"].unlink()
    with pytest.raises(ModelNotFoundError) as err:
        ff.find_parts(kontext)
    message = err.value.message
    assert "\n" not in message and "ae.safetensors" in message and "models/vae" in message
    assert "T5" not in message and "CLIP" not in message
    parts["t5"].unlink()
    with pytest.raises(ModelNotFoundError) as err:
        ff.find_parts(kontext)
    assert "T5-XXL" in err.value.message and "text_encoders" in err.value.message


def test_an_all_in_one_file_finds_its_encoders_inside_and_names_a_missing_vae(tmp_path):
    """ComfyUI's Flux checkpoints hold CLIP-L, T5 and the VAE beside the transformer: no
    other file is needed; without its VAE (and none in vae/) one line names it."""
    from safetensors.torch import load_file

    parts = _tiny_parts(tmp_path)
    state = {ff.PREFIX + k: v for k, v in load_file(parts["transformer"]).items()}
    for prefix, part in (("text_encoders.clip_l.transformer.", "clip"),
                         ("text_encoders.t5xxl.transformer.", "t5")):
        state.update({prefix + k: v for k, v in load_file(parts[part]).items()})
        parts[part].unlink()
    whole = parts["transformer"]
    save_file(state, whole)
    found = ff.find_parts(whole)
    assert found.inside and (found.clip_l, found.t5) == (whole, whole)
    assert found.vae == parts["vae"] and found.clip_g is None
    parts["vae"].unlink()
    with pytest.raises(ModelNotFoundError) as err:
        ff.find_parts(whole)
    assert "\n" not in err.value.message and "ae.safetensors" in err.value.message


def test_without_comfyuis_tokenizer_it_says_where_t5s_comes_from(tmp_path):
    import shutil

    parts = _tiny_parts(tmp_path)
    shutil.rmtree(tmp_path / "ComfyUI" / "comfy" / "text_encoders")
    with pytest.raises(ModelNotFoundError) as err:
        ff.find_parts(parts["transformer"])
    assert "\n" not in err.value.message and "t5_tokenizer" in err.value.message


@pytest.mark.slow
@pytest.mark.heavy
def test_comfyui_files_draw_the_pixels_of_the_same_model_as_a_folder(tmp_path, monkeypatch):
    """A 3072-wide Flux (one block of each kind) saved as a diffusers folder, and the same
    weights as ComfyUI keeps them: the transformer in Black Forest Labs' layout, T5, CLIP-L
    and the VAE beside it, the tokenizers in the install; the same request, the same pixels."""
    import diffusers as d
    from test_gguf_original import _wide_flux

    from studio.engine.engine import Engine

    monkeypatch.setenv("STUDIO_CACHE_DIR", str(tmp_path / "cache"))
    transformer = _wide_flux(pooled=128, in_channels=64)  # 16-channel latents, as Flux
    parts = _tiny_parts(tmp_path / "files", flux_original_layout(transformer.state_dict()))
    folder = tmp_path / "folder" / "flux-wide"
    d.FluxPipeline(
        transformer=transformer, vae=parts["vae_model"], text_encoder=parts["clip_model"],
        tokenizer=parts["clip_tok"], text_encoder_2=parts["t5_model"],
        tokenizer_2=parts["t5_tok"],
        scheduler=d.FlowMatchEulerDiscreteScheduler(**{
            k: v for k, v in ff.scheduler_config(True).items() if not k.startswith("_")}),
    ).save_pretrained(folder, safe_serialization=True)
    del transformer
    engine = Engine(device="cpu", dtype="float32", model_dirs=[tmp_path / "files"],
                    embedded_dir=tmp_path / "none", hf_cache=False)

    def request(model: Path) -> GenerationRequest:
        return GenerationRequest(prompt="a portrait of a woman with red hair", model=str(model),
                                 steps=2, width=SIZE, height=SIZE, seed=4, guidance=3.5,
                                 scheduler="Flow Euler")

    files = engine.generate(request(parts["transformer"]))
    assert files.request.family == "flux"
    engine.pipelines.clear()
    own = engine.generate(request(folder))
    assert np.array_equal(files.images[0], own.images[0])
    # ComfyUI's all-in-one Flux checkpoint (as flux1-dev-fp8.safetensors): the transformer,
    # CLIP-L, T5 and the VAE in one file in checkpoints/, nothing else but the tokenizers.
    import shutil

    from safetensors.torch import load_file

    whole = tmp_path / "aio" / "ComfyUI" / "models" / "checkpoints" / "flux1-wide-fp8.safetensors"
    whole.parent.mkdir(parents=True)
    shutil.copytree(tmp_path / "files" / "ComfyUI" / "comfy", tmp_path / "aio" / "ComfyUI" / "comfy")
    state = {ff.PREFIX + k: v for k, v in load_file(parts["transformer"]).items()}
    # ComfyUI's prefixes when it saves a Flux checkpoint (its Flux model config's "vae." and
    # "text_encoders.")
    for prefix, part in (("vae.", "vae"), ("text_encoders.clip_l.transformer.", "clip"),
                         ("text_encoders.t5xxl.transformer.", "t5")):
        state.update({prefix + k: v for k, v in load_file(parts[part]).items()})
    save_file(state, whole)
    del state
    inside = ff.find_parts(whole)
    assert inside.inside and inside.family == "flux" and inside.t5 == inside.vae == whole
    engine.pipelines.clear()
    one = engine.generate(request(whole))
    assert one.request.family == "flux"
    assert np.array_equal(one.images[0], own.images[0])
    # The file alone beside the diffusers folder (no ComfyUI parts): the folder's parts.
    beside = folder.parent / "flux1-wide.safetensors"
    parts["transformer"].rename(beside)
    engine.pipelines.clear()
    alone = engine.generate(request(beside))
    assert alone.request.family == "flux"
    assert np.array_equal(alone.images[0], own.images[0])


# -- SD 3.x ---------------------------------------------------------------------------------
def test_sd3_configs_read_from_shapes_are_sd35_large_and_medium():
    import diffusers as d
    from test_gguf import sd3_original_layout

    for config in (  # SD 3.5 Large; SD 3.5 Medium (dual attention in its first 13 blocks)
            dict(num_layers=38, attention_head_dim=64, num_attention_heads=38,
                 caption_projection_dim=2432, qk_norm="rms_norm", dual_attention_layers=()),
            dict(num_layers=24, attention_head_dim=64, num_attention_heads=24,
                 caption_projection_dim=1536, qk_norm="rms_norm",
                 dual_attention_layers=tuple(range(13)))):
        with torch.device("meta"):
            model = d.SD3Transformer2DModel(
                sample_size=128, patch_size=2, in_channels=16, out_channels=16,
                joint_attention_dim=4096, pooled_projection_dim=2048, pos_embed_max_size=192,
                **config)
        shapes = {ff.PREFIX + k: tuple(v.shape)
                  for k, v in sd3_original_layout(model.state_dict()).items()}
        assert ff.lone_family(Path("sd3.5.safetensors"), shapes) == "sd3"
        got = ff.sd3_transformer_config(shapes)
        for key, value in got.items():
            if key not in ("_class_name", "sample_size"):
                want = model.config[key]
                assert (list(want) if isinstance(want, tuple) else want) == value, key


def _tiny_sd3(root: Path, with_t5: bool = True):
    """A tiny SD 3 (MMDiT: one head per block, 16-wide heads) in Stability's layout with its
    VAE in the same file, as sd3.5_*.safetensors are shared, in ComfyUI's checkpoints/, its
    CLIP-L, CLIP-G (and T5) in text_encoders/; and the same model as a diffusers folder."""
    import diffusers as d
    from test_dit_families import _t5
    from test_gguf import sd3_original_layout
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from studio.engine.models.tiny import _tokenizer

    comfy = root / "ComfyUI"
    models = comfy / "models"
    torch.manual_seed(0)
    t5_tok = unigram_tokenizer(comfy / "comfy" / "text_encoders" / "t5_tokenizer")
    clip_tok = _tokenizer(comfy / "comfy" / "sd1_tokenizer", vocab_size=300)

    def clip(width: int, act: str):
        return CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=len(clip_tok), hidden_size=width, intermediate_size=2 * width,
            num_hidden_layers=1, num_attention_heads=width // 64, max_position_embeddings=77,
            hidden_act=act, projection_dim=width, bos_token_id=clip_tok.bos_token_id,
            eos_token_id=clip_tok.eos_token_id, pad_token_id=clip_tok.eos_token_id)).eval()

    clip_l, clip_g = clip(128, "quick_gelu"), clip(192, "gelu")
    t5 = _t5(len(t5_tok)).eval()
    transformer = d.SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=16, num_layers=2, attention_head_dim=16,
        num_attention_heads=2, caption_projection_dim=32, joint_attention_dim=32,
        pooled_projection_dim=128 + 192, out_channels=16, pos_embed_max_size=16).eval()
    vae = d.AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(32, 32),
        layers_per_block=1, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=32, use_quant_conv=False,
        use_post_quant_conv=False, scaling_factor=ff.SD3_VAE_SCALING,
        shift_factor=ff.SD3_VAE_SHIFT).eval()
    checkpoint = models / "checkpoints" / "sd3.5_tiny.safetensors"
    for sub in ("checkpoints", "text_encoders"):
        (models / sub).mkdir(parents=True, exist_ok=True)
    state = {ff.PREFIX + k: v for k, v in sd3_original_layout(transformer.state_dict()).items()}
    state.update({"first_stage_model." + k: v
                  for k, v in vae_original_layout(vae.state_dict(), 2).items()})
    save_file({k: v.contiguous() for k, v in state.items()}, checkpoint)
    for name, model in (("clip_l", clip_l), ("clip_g", clip_g)):
        save_file({"text_model." + k.removeprefix("text_model.") if not
                   k.startswith("text_projection") else k: v
                   for k, v in model.state_dict().items()},
                  models / "text_encoders" / f"{name}.safetensors")
    if with_t5:
        save_file({k: v.contiguous() for k, v in t5.state_dict().items()
                   if k != "encoder.embed_tokens.weight"},
                  models / "text_encoders" / "t5xxl_fp16.safetensors")
    from transformers import CLIPTokenizer

    clip_tok_2 = CLIPTokenizer.from_pretrained(comfy / "comfy" / "sd1_tokenizer", pad_token="!")
    folder = root / "folder" / "sd3-tiny"
    d.StableDiffusion3Pipeline(
        transformer=transformer, vae=vae, text_encoder=clip_l, tokenizer=clip_tok,
        text_encoder_2=clip_g, tokenizer_2=clip_tok_2,
        text_encoder_3=t5 if with_t5 else None, tokenizer_3=t5_tok if with_t5 else None,
        scheduler=d.FlowMatchEulerDiscreteScheduler(shift=3.0),
    ).save_pretrained(folder, safe_serialization=True)
    return checkpoint, folder


@pytest.mark.parametrize("with_t5", [True, False], ids=["with-t5", "without-t5"])
def test_an_sd35_file_with_comfyuis_encoders_draws_the_folders_pixels(tmp_path, monkeypatch,
                                                                      with_t5):
    from studio.engine.engine import Engine

    monkeypatch.setenv("STUDIO_CACHE_DIR", str(tmp_path / "cache"))
    checkpoint, folder = _tiny_sd3(tmp_path, with_t5)
    parts = ff.find_parts(checkpoint)
    assert parts.family == "sd3" and parts.vae == checkpoint  # its VAE is in the file
    assert (parts.clip_l.stem, parts.clip_g.stem) == ("clip_l", "clip_g")
    assert (parts.t5 is not None) is with_t5
    from studio.engine.models import single_file

    read, keys, original = [], [], single_file._read_checkpoint

    def spy(path, cancel, dtype=None, keep=None):  # the studio's one-pass read, cancel checked
        read.append(Path(path).name)
        out = original(path, cancel, dtype, keep)
        keys.append(set(out))
        return out

    monkeypatch.setattr(single_file, "_read_checkpoint", spy)
    engine = Engine(device="cpu", dtype="float32", model_dirs=[tmp_path / "ComfyUI" / "models"],
                    embedded_dir=tmp_path / "none", hf_cache=False)
    (listed,) = [m for m in engine.list_models("diffusion") if m.name == "sd3.5_tiny"]
    assert listed.family == "sd3" and listed.recommended_value("scheduler") == "Flow Euler"
    req = GenerationRequest(prompt="a portrait of a woman with red hair", model=str(checkpoint),
                            negative_prompt="blurry", steps=2, width=SIZE, height=SIZE, seed=4,
                            guidance=5.0, scheduler="Flow Euler")
    files = engine.generate(req)
    assert files.request.family == "sd3"
    assert read.count("sd3.5_tiny.safetensors") == 2  # the transformer, then its VAE
    # each read holds its own part's tensors only (an SD 3.5 Large file is 16 GB; its VAE
    # 160 MB of it): the transformer's no VAE tensor, the VAE's nothing else
    transformer_keys, vae_keys = keys[:2]
    assert transformer_keys and not any(k.startswith("first_stage_model.")
                                        for k in transformer_keys)
    assert vae_keys and all(k.startswith("first_stage_model.") for k in vae_keys)
    own = engine.generate(req.replace(model=str(folder)))
    assert np.array_equal(files.images[0], own.images[0])
    # Without CLIP-G: one line naming it and where it goes.
    (tmp_path / "ComfyUI" / "models" / "text_encoders" / "clip_g.safetensors").unlink()
    with pytest.raises(ModelNotFoundError) as err:
        ff.find_parts(checkpoint)
    assert "\n" not in err.value.message and "clip_g.safetensors" in err.value.message


def _all_in_one(checkpoint: Path, with_t5: bool, fp8: bool = False) -> Path:
    """SD 3's all-in-one file as Stability shares SD 3 Medium
    (``sd3_medium_incl_clips[_t5xxlfp8].safetensors``): the transformer, its VAE and its text
    encoders in one file, each under its prefix (T5's weights in float8 with ``fp8``);
    ComfyUI keeps it in ``checkpoints/``."""
    from safetensors.torch import load_file

    models = checkpoint.parent.parent
    state = load_file(checkpoint)
    for part, name in (("clip_l", "clip_l"), ("clip_g", "clip_g"), ("t5xxl", "t5xxl_fp16")):
        if part == "t5xxl" and not with_t5:
            continue
        own = models / "text_encoders" / f"{name}.safetensors"
        state.update({f"text_encoders.{part}.transformer.{k}":
                      v.to(torch.float8_e4m3fn) if fp8 and part == "t5xxl" and v.ndim == 2
                      else v for k, v in load_file(own).items()})
        own.unlink()  # only the file itself holds them now
    out = checkpoint.with_name("sd3_medium_incl_clips" + ("_t5xxl" if with_t5 else "")
                               + ".safetensors")
    save_file(state, out)
    checkpoint.unlink()
    return out


@pytest.mark.parametrize(("with_t5", "fp8"), [(True, False), (True, True), (False, False)],
                         ids=["incl-t5", "incl-t5-fp8", "clips-only"])
def test_an_sd3_file_with_its_text_encoders_inside_draws_diffusers_own_reading(
        tmp_path, monkeypatch, with_t5, fp8):
    """Its text encoders are read from inside the file (no other file needed) and converted
    as diffusers converts them: the picture is the one of the pipeline diffusers' own
    ``from_single_file`` makes of the same file (saved as a folder), pixel for pixel."""
    import diffusers as d

    from studio.engine.engine import Engine

    monkeypatch.setenv("STUDIO_CACHE_DIR", str(tmp_path / "cache"))
    checkpoint, folder = _tiny_sd3(tmp_path, with_t5)
    whole = _all_in_one(checkpoint, with_t5, fp8)
    assert not list((tmp_path / "ComfyUI" / "models" / "text_encoders").glob("*.safetensors"))
    parts = ff.find_parts(whole)
    assert parts.inside and parts.vae == whole and (parts.t5 is not None) is with_t5
    # diffusers' own reading of the file (configs from the model's folder: offline)
    kwargs = {} if with_t5 else {"text_encoder_3": None, "tokenizer_3": None}
    bare = d.StableDiffusion3Pipeline.from_single_file(str(whole), config=str(folder),
                                                       local_files_only=True, **kwargs)
    if with_t5:  # tied as T5's own loads tie it (diffusers' conversion leaves it empty)
        t5 = bare.text_encoder_3
        assert t5.encoder.embed_tokens.weight.is_meta
        t5.encoder.embed_tokens.weight = t5.shared.weight
    reference = tmp_path / "diffusers-read"
    bare.save_pretrained(reference, safe_serialization=True)
    engine = Engine(device="cpu", dtype="float32", model_dirs=[tmp_path / "ComfyUI" / "models"],
                    embedded_dir=tmp_path / "none", hf_cache=False)
    (listed,) = [m for m in engine.list_models("diffusion") if m.name == whole.stem]
    assert listed.family == "sd3"
    req = GenerationRequest(prompt="a portrait of a woman with red hair", model=str(whole),
                            negative_prompt="blurry", steps=2, width=SIZE, height=SIZE, seed=4,
                            guidance=5.0, scheduler="Flow Euler")
    mine = engine.generate(req)
    assert mine.request.family == "sd3"
    theirs = engine.generate(req.replace(model=str(reference)))
    assert np.array_equal(mine.images[0], theirs.images[0])
    # The words count: another prompt, another picture.
    other = engine.generate(req.replace(prompt="a green landscape at night"))
    assert not np.array_equal(mine.images[0], other.images[0])


def test_the_parts_read_bench_prints_both_ways_side_by_side(tmp_path, monkeypatch, capsys):
    """``python -m studio.bench.parts_read FILE``: each way in its own process, both rows
    (peak RSS, load time) with their ratio, on an SD 3.5-style file with its VAE inside."""
    from studio.bench import parts_read

    monkeypatch.setenv("STUDIO_CACHE_DIR", str(tmp_path / "cache"))
    checkpoint, _folder = _tiny_sd3(tmp_path, with_t5=False)
    assert parts_read.main([str(checkpoint), "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert set(rows) == {"peak", "load"}, out
    assert float(rows["peak"].split()[-1]) > 0 and float(rows["load"].split()[-1]) > 0
