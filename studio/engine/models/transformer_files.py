"""Flux and SD 3.x as ComfyUI users keep them: the transformer alone in a ``.safetensors``
file (``models/diffusion_models/`` or ``models/unet/``; SD 3.5's own files in
``models/checkpoints/`` hold its VAE too), the text encoders in ``models/text_encoders/`` (or
``models/clip/``: T5-XXL and CLIP-L for Flux; CLIP-L, CLIP-G and, optionally, T5-XXL for SD
3.x), the VAE in ``models/vae/`` (Flux's ``ae.safetensors``, ``sd3_vae.safetensors``).

Each part is told by its tensors, not its name (a T5 encoder, a CLIP-L text encoder, a
16-channel autoencoder), and each part's config is read from its tensor shapes, so what is
loaded is what the files hold (Flux dev or schnell: the guidance embedding; Flux Lite's
fewer blocks; SD 3.5's qk norms and dual attention). What the weights cannot say is the
family's own: its VAE's latent scaling and shift, CLIP's 64-wide attention heads (and
CLIP-G's gelu against CLIP-L's quick_gelu), MMDiT's head count where SD 3.0 has no qk norm
(one head per block), and the schedulers (Flux dev's dynamic shift, schnell's none, SD 3's
shift 3). The tokenizers are not in the files: T5's and CLIP's are read from the
ComfyUI install the models sit in (``comfy/text_encoders/t5_tokenizer``,
``comfy/sd1_tokenizer``; CLIP's also ships with Latent Studio). All-in-one files hold their
text encoders inside (SD 3 Medium's ``sd3_medium_incl_clips*``; ComfyUI's Flux checkpoints
such as ``flux1-dev-fp8``): those are read from the file and converted by diffusers' own
code (``_encoders_inside``). The pieces are put together
as a diffusers folder of links and configs in the user cache (nothing is copied); diffusers
converts the transformer and the VAE from their original layouts at load, and loads the
text encoders as they are. A missing part is one line naming what to add and where.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core.errors import CorruptModelError, ModelNotFoundError

log = logging.getLogger(__name__)

PREFIX = "model.diffusion_model."
TEXT_DIRS = ("text_encoders", "clip")
VAE_DIRS = ("vae",)
# The VAEs' latent scaling and shift (not in their weights; the same for every Flux.1 and
# every SD 3.x).
FLUX_VAE_SCALING, FLUX_VAE_SHIFT = 0.3611, 0.1159
SD3_VAE_SCALING, SD3_VAE_SHIFT = 1.5305, 0.0609
CLIP_HEAD_DIM = 64  # CLIP-L's attention heads are 64 wide (12 of them)
LAYOUT_VERSION = 1  # bump when the folder written here changes
T5_WHERE = "T5-XXL (t5xxl_fp16.safetensors) in ComfyUI/models/text_encoders/"
CLIP_WHERE = "CLIP-L (clip_l.safetensors) in ComfyUI/models/text_encoders/"
CLIP_G_WHERE = "CLIP-G (clip_g.safetensors) in ComfyUI/models/text_encoders/"
VAE_WHERE = {"flux": "the Flux VAE (ae.safetensors) in ComfyUI/models/vae/",
             "sd3": "the SD3 VAE (sd3_vae.safetensors) in ComfyUI/models/vae/"}
VAE_NAMES = {"flux": ("ae", "flux"), "sd3": ("sd3",)}  # which 16-channel VAE is whose
_NOT_A_MODEL = ("controlnet_blocks.", "input_hint_block.", "pos_embed_input.")
# All-in-one files (SD 3 Medium's, ComfyUI's Flux checkpoints) keep their text encoders
# under these prefixes (Stability's layout, as ComfyUI writes and diffusers reads it)
INSIDE = {"clip_l": "text_encoders.clip_l.transformer.",
          "clip_g": "text_encoders.clip_g.transformer.",
          "t5": "text_encoders.t5xxl.transformer."}
# The prefixes of the VAE in a file that holds it beside the transformer (Stability's and
# ComfyUI's SD 3 files; ComfyUI's Flux checkpoints), and of every part that is not the
# transformer: each part's load reads its own tensors only, so a 16 GB SD 3.5 file is not
# read again whole for its 160 MB VAE.
VAE_PREFIXES = ("first_stage_model.", "vae.")
NOT_TRANSFORMER = (*VAE_PREFIXES, "text_encoders.", "cond_stage_model.", "conditioner.")


def _shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes of a ``.safetensors`` file (its header only)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as err:  # not safetensors, truncated
        raise CorruptModelError(f"{path.name} is not a readable .safetensors file "
                                f"({type(err).__name__}).", hint="Download it again.") from err


def is_flux_transformer(keys: Any) -> bool:
    """Whether tensor names are a Flux transformer in Black Forest Labs' layout (as Flux
    files are shared and ComfyUI keeps them), with or without ComfyUI's prefix; not a Flux
    ControlNet (XLabs': the same blocks, with its hint input and control outputs) or LoRA."""
    names = [k.removeprefix(PREFIX) for k in keys]
    return (any(k.startswith(("double_blocks.", "single_blocks.")) for k in names)
            and "img_in.weight" in names
            and not any(k.startswith(_NOT_A_MODEL) or "lora" in k for k in names))


def is_sd3_transformer(keys: Any) -> bool:
    """Whether tensor names are an SD 3.x MMDiT in Stability's layout (``joint_blocks``), as
    SD 3.5 files are shared (with or without their VAE); not a ControlNet or LoRA."""
    names = [k.removeprefix(PREFIX) for k in keys]
    return (any(k.startswith("joint_blocks.") for k in names) and "x_embedder.proj.weight" in names
            and not any(k.startswith(_NOT_A_MODEL) or "lora" in k for k in names))


def lone_family(path: Path, keys: Any) -> str:
    """``flux``, ``flux-kontext`` or ``sd3`` for a lone transformer file, else ``""``."""
    if is_flux_transformer(keys):
        return flux_family(path)
    if is_sd3_transformer(keys):
        return "sd3"
    return ""


def flux_family(path: Path) -> str:
    """``flux-kontext`` for a Kontext file (Kontext has Flux's transformer: told from its
    name, as ComfyUI users and Black Forest Labs name it, or from the diffusers folder it
    takes its parts from), else ``flux``."""
    if "kontext" in path.name.lower():
        return "flux-kontext"
    try:
        find_parts(path, "flux")
    except ModelNotFoundError:
        base = base_folder(path, "flux")
        if base is not None:
            from studio.engine.models.families import detect_folder_family

            return detect_folder_family(base)
    except CorruptModelError:
        pass
    return "flux"


def _count(shapes: dict[str, tuple[int, ...]], prefix: str) -> int:
    ids = {int(k[len(prefix):].split(".", 1)[0]) for k in shapes
           if k.startswith(prefix) and k[len(prefix):].split(".", 1)[0].isdigit()}
    return max(ids) + 1 if ids else 0


def transformer_config(shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    s = {k.removeprefix(PREFIX): v for k, v in shapes.items()}
    head = s["double_blocks.0.img_attn.norm.query_norm.scale"][0]
    hidden = s["img_in.weight"][0]
    return {"_class_name": "FluxTransformer2DModel", "patch_size": 1,
            "in_channels": s["img_in.weight"][1], "num_layers": _count(s, "double_blocks."),
            "num_single_layers": _count(s, "single_blocks."), "attention_head_dim": head,
            "num_attention_heads": hidden // head, "joint_attention_dim": s["txt_in.weight"][1],
            "pooled_projection_dim": s["vector_in.in_layer.weight"][1],
            "guidance_embeds": "guidance_in.in_layer.weight" in s,
            # Flux's rotary axes (16, 56, 56 of a 128-wide head), in proportion
            "axes_dims_rope": [head // 8, head * 7 // 16, head * 7 // 16]}


def t5_config(shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    bias = shapes["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    heads = bias[1]
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in shapes
    ff = shapes["encoder.block.0.layer.1.DenseReluDense." + ("wi_0" if gated else "wi")
                + ".weight"][0]
    return {"architectures": ["T5EncoderModel"], "model_type": "t5",
            "vocab_size": shapes["shared.weight"][0], "d_model": shapes["shared.weight"][1],
            "d_kv": shapes["encoder.block.0.layer.0.SelfAttention.q.weight"][0] // heads,
            "d_ff": ff, "num_layers": _count(shapes, "encoder.block."), "num_heads": heads,
            "relative_attention_num_buckets": bias[0], "relative_attention_max_distance": 128,
            "feed_forward_proj": "gated-gelu" if gated else "relu", "is_encoder_decoder": False,
            "layer_norm_epsilon": 1e-6, "decoder_start_token_id": 0, "pad_token_id": 0,
            "eos_token_id": 1, "tie_word_embeddings": False}


def _clip_names(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """A CLIP text encoder's tensors without the ``text_model.`` of its older layout (the
    one ComfyUI's clip_l.safetensors has)."""
    return {k.removeprefix("text_model."): v for k, v in shapes.items()}


def clip_config(shapes: dict[str, tuple[int, ...]], tokenizer: Any,
                projection: bool = False, gelu: bool = False) -> dict[str, Any]:
    """CLIP-L's config (``quick_gelu``), or CLIP-G's (``gelu``: OpenCLIP's bigG), with the
    projection SD 3 reads (``CLIPTextModelWithProjection``) or without (Flux)."""
    shapes = _clip_names(shapes)
    vocab, hidden = shapes["embeddings.token_embedding.weight"]
    eos = tokenizer.eos_token_id
    cls = "CLIPTextModelWithProjection" if projection else "CLIPTextModel"
    return {"architectures": [cls], "model_type": "clip_text_model",
            "vocab_size": vocab, "hidden_size": hidden,
            "intermediate_size": shapes["encoder.layers.0.mlp.fc1.weight"][0],
            "num_hidden_layers": _count(shapes, "encoder.layers."),
            "num_attention_heads": max(1, hidden // CLIP_HEAD_DIM),
            "max_position_embeddings": shapes["embeddings.position_embedding.weight"][0],
            "hidden_act": "gelu" if gelu else "quick_gelu", "layer_norm_eps": 1e-5,
            "projection_dim": (shapes["text_projection.weight"][0]
                               if projection and "text_projection.weight" in shapes else hidden),
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": eos, "pad_token_id": eos}


def vae_config(shapes: dict[str, tuple[int, ...]], family: str = "flux") -> dict[str, Any]:
    s = {k.removeprefix("vae.").removeprefix("first_stage_model."): v for k, v in shapes.items()}
    if "encoder.down.0.block.0.conv1.weight" in s:  # the original (LDM) layout
        levels = _count(s, "encoder.down.")
        widths = [s[f"encoder.down.{i}.block.0.conv1.weight"][0] for i in range(levels)]
        per_block = _count(s, "encoder.down.0.block.")
        attention = "encoder.mid.attn_1.q.weight" in s
    else:  # diffusers' layout
        levels = _count(s, "encoder.down_blocks.")
        widths = [s[f"encoder.down_blocks.{i}.resnets.0.conv1.weight"][0]
                  for i in range(levels)]
        per_block = _count(s, "encoder.down_blocks.0.resnets.")
        attention = "encoder.mid_block.attentions.0.to_q.weight" in s
    quant = "quant_conv.weight" in s
    return {"_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3,
            "latent_channels": s["decoder.conv_in.weight"][1], "block_out_channels": widths,
            "down_block_types": ["DownEncoderBlock2D"] * levels,
            "up_block_types": ["UpDecoderBlock2D"] * levels, "layers_per_block": per_block,
            "norm_num_groups": 32, "act_fn": "silu", "sample_size": 1024,
            "mid_block_add_attention": attention, "use_quant_conv": quant,
            "use_post_quant_conv": quant,
            "scaling_factor": SD3_VAE_SCALING if family == "sd3" else FLUX_VAE_SCALING,
            "shift_factor": SD3_VAE_SHIFT if family == "sd3" else FLUX_VAE_SHIFT,
            "force_upcast": True}


def sd3_transformer_config(shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    import math

    s = {k.removeprefix(PREFIX): v for k, v in shapes.items()}
    hidden, channels, patch, _ = s["x_embedder.proj.weight"]
    layers = _count(s, "joint_blocks.")
    norm = s.get("joint_blocks.0.x_block.attn.ln_q.weight")
    head = norm[0] if norm else hidden // layers  # MMDiT: one head per block (SD 3.0)
    return {"_class_name": "SD3Transformer2DModel", "sample_size": 128, "patch_size": patch,
            "in_channels": channels, "num_layers": layers, "attention_head_dim": head,
            "num_attention_heads": hidden // head,
            "joint_attention_dim": s["context_embedder.weight"][1],
            "caption_projection_dim": s["context_embedder.weight"][0],
            "pooled_projection_dim": s["y_embedder.mlp.0.weight"][1],
            "out_channels": s["final_layer.linear.weight"][0] // (patch * patch),
            "pos_embed_max_size": round(math.sqrt(s["pos_embed"][1])),
            "dual_attention_layers": [i for i in range(layers)
                                      if f"joint_blocks.{i}.x_block.attn2.qkv.weight" in s],
            "qk_norm": "rms_norm" if norm else None}


def scheduler_config(guidance_embeds: bool) -> dict[str, Any]:
    """dev (guidance-distilled) shifts its schedule by the image size; schnell does not."""
    if guidance_embeds:
        return {"_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256,
                "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15, "shift": 3.0,
                "use_dynamic_shifting": True, "num_train_timesteps": 1000}
    return {"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 1.0,
            "use_dynamic_shifting": False, "num_train_timesteps": 1000}


# -- finding the parts --------------------------------------------------------------------
@dataclass(frozen=True)
class Parts:
    family: str  # "flux", "flux-kontext" or "sd3"
    transformer: Path
    clip_l: Path
    vae: Path  # the transformer's own file where its VAE is in it (SD 3.5's, all-in-one files)
    clip_tokenizer: Path
    t5: Path | None = None  # optional for SD 3
    t5_tokenizer: Path | None = None
    clip_g: Path | None = None  # SD 3
    # all-in-one files (``sd3_medium_incl_clips*``, ``flux1-dev-fp8``): the text encoders
    # inside the transformer's file (then ``clip_l``, ``clip_g`` and ``t5`` are that file)
    inside: bool = False


def _candidates(path: Path, dirs: tuple[str, ...]) -> list[Path]:
    """``.safetensors`` files in the ComfyUI folders ``dirs`` beside the model's folder (and
    loose beside the file itself)."""
    roots = [path.parent.parent / d for d in dirs] + [path.parent]
    out: list[Path] = []
    for root in roots:
        try:
            out.extend(sorted(p for p in root.glob("*.safetensors") if p != path))
        except OSError:
            continue
    return out


def _read(candidates: list[Path]) -> list[tuple[Path, dict[str, tuple[int, ...]]]]:
    out = []
    for p in candidates:
        try:
            out.append((p, _shapes(p)))
        except CorruptModelError:
            continue
    return out


def _is_t5(s: dict[str, tuple[int, ...]]) -> bool:
    return "encoder.block.0.layer.0.SelfAttention.q.weight" in s and "shared.weight" in s


def _clip_width(s: dict[str, tuple[int, ...]]) -> int:
    """A CLIP text encoder's width (CLIP-L 768, CLIP-G 1280), 0 for anything else."""
    s = _clip_names(s)
    key = "embeddings.token_embedding.weight"
    return s[key][1] if key in s and "encoder.layers.0.mlp.fc1.weight" in s else 0


def _is_clip_l(s: dict[str, tuple[int, ...]]) -> bool:
    return 0 < _clip_width(s) <= 768


def _is_vae16(s: dict[str, tuple[int, ...]]) -> bool:
    """A 16-channel autoencoder (Flux's and SD 3's have the same shapes)."""
    s = {k.removeprefix("vae.").removeprefix("first_stage_model."): v for k, v in s.items()}
    conv = s.get("decoder.conv_in.weight")
    return conv is not None and conv[1] == 16 and "encoder.conv_in.weight" in s



def _vae_for(family: str, files: list[tuple[Path, dict]]) -> Path | None:
    """The family's VAE among 16-channel ones: Flux's and SD 3's differ only in their
    latent scale, so the file's name decides between them (``ae``/``flux``, ``sd3``)."""
    vaes = [p for p, s in files if _is_vae16(s)]
    named = [p for p in vaes if any(m in p.stem.lower() for m in VAE_NAMES[family.split("-")[0]])]
    other = VAE_NAMES["sd3" if family.startswith("flux") else "flux"]
    unnamed = [p for p in vaes if not any(m in p.stem.lower() for m in other)]
    return (named or unnamed or [None])[0]


def _inner(shapes: dict[str, tuple[int, ...]], part: str) -> dict[str, tuple[int, ...]]:
    """The tensors of text encoder ``part`` (``INSIDE``) of an all-in-one file, without
    their prefix (empty where the file has none)."""
    prefix = INSIDE[part]
    return {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}


def _part_shapes(parts: Parts, part: str) -> dict[str, tuple[int, ...]]:
    """The shapes of text encoder ``part`` (``clip_l``, ``clip_g`` or ``t5``) of ``parts``:
    from its own file, or from inside the transformer's."""
    path = getattr(parts, part)
    return _inner(_shapes(path), part) if parts.inside else _shapes(path)


def _comfy_tokenizer(path: Path, sub: str, marker: str) -> Path | None:
    """``comfy/<sub>`` of the ComfyUI install the model file is in (its folder or one up)."""
    for parent in list(path.parents)[:5]:
        folder = parent / "comfy" / sub
        if (folder / marker).is_file():
            return folder
    return None


def find_parts(path: Path, family: str | None = None) -> Parts:
    """The text encoders, VAE and tokenizers of the lone transformer ``path`` (``family``:
    ``flux``/``flux-kontext`` or ``sd3``, read from the file when None); one line naming
    every missing part and where it goes."""
    from studio.paths import bundled_configs_dir

    own = _shapes(path)
    family = family or lone_family(path, own)
    sd3 = family == "sd3"
    if (_clip_width(_inner(own, "clip_l"))
            and (_clip_width(_inner(own, "clip_g")) if sd3 else _is_t5(_inner(own, "t5")))):
        return _parts_inside(path, own, family)
    texts = _read(_candidates(path, TEXT_DIRS))
    t5 = next((p for p, s in texts if _is_t5(s)), None)
    clips = sorted(((_clip_width(s), p) for p, s in texts if _clip_width(s)), key=lambda x: x[0])
    clip_l = next((p for w, p in clips if w <= 768), None) if not sd3 else (
        clips[0][1] if clips and (len(clips) > 1 or clips[0][0] <= 768) else None)
    clip_g = (clips[-1][1] if sd3 and clips and clips[-1][1] != clip_l else None)
    # Its own VAE where the file holds one (SD 3.5's files; ComfyUI's all-in-one checkpoints)
    vae = path if _is_vae16(own) else _vae_for(family, _read(_candidates(path, VAE_DIRS)))
    t5_tok = _comfy_tokenizer(path, "text_encoders/t5_tokenizer", "tokenizer.json")
    clip_tok = (_comfy_tokenizer(path, "sd1_tokenizer", "vocab.json")
                or bundled_configs_dir() / "clip-tokenizer")
    wanted = [(CLIP_WHERE, clip_l), (VAE_WHERE[family.split("-")[0]], vae)]
    wanted.insert(0, (CLIP_G_WHERE, clip_g) if sd3 else (T5_WHERE, t5))
    missing = [what for what, found in wanted if found is None]
    label = "an SD 3.x" if sd3 else "a Flux"
    if missing and any(k.startswith("text_encoders.") for k in own):
        raise ModelNotFoundError(
            f"{path.name} holds only some of its text encoders (all-in-one files hold "
            f"{'CLIP-L and CLIP-G' if sd3 else 'CLIP-L and T5'}): it needs "
            + "; ".join(missing) + ".",
            hint="Download the model's clip_l, clip_g (and t5xxl) files into "
                 "ComfyUI/models/text_encoders/, or use its diffusers folder.")
    if missing:
        raise ModelNotFoundError(
            f"{path.name} is {label} transformer alone: it needs " + "; ".join(missing) + ".",
            hint=f"Put them where ComfyUI keeps them, or a diffusers {label[2:].strip()} folder "
                 "(its text encoders and VAE) beside the file.")
    if t5 is not None and t5_tok is None:
        if sd3:  # T5 is optional for SD 3: without its tokenizer, run without it
            log.info("%s: no T5 tokenizer in a ComfyUI install around it; T5 left out",
                     path.name)
            t5 = None
        else:
            raise ModelNotFoundError(
                f"{path.name}: T5's tokenizer is not in the files; Latent Studio reads it "
                "from the ComfyUI install the models are in "
                f"(comfy/text_encoders/t5_tokenizer/), and found none above {path.parent}.",
                hint="Keep the models inside their ComfyUI folder, or use a diffusers folder "
                     "of the model (its tokenizer_2).")
    assert clip_l is not None and vae is not None
    return Parts(family, path, clip_l, vae, clip_tok, t5, t5_tok if t5 else None, clip_g)


def _parts_inside(path: Path, own: dict[str, tuple[int, ...]], family: str) -> Parts:
    """The parts of an all-in-one file (SD 3 Medium's ``sd3_medium_incl_clips*``, ComfyUI's
    Flux checkpoints such as ``flux1-dev-fp8``): its text encoders inside it (SD 3: CLIP-L,
    CLIP-G and, optionally, T5; Flux: CLIP-L and T5), its VAE inside it or in ComfyUI's
    ``vae/``; the tokenizers from the ComfyUI install (CLIP's also shipped)."""
    from studio.paths import bundled_configs_dir

    sd3 = family == "sd3"
    kind = "sd3" if sd3 else "flux"
    vae = path if _is_vae16(own) else _vae_for(family, _read(_candidates(path, VAE_DIRS)))
    label = "an SD 3.x" if sd3 else "a Flux"
    if vae is None:
        raise ModelNotFoundError(
            f"{path.name} is {label} model with its text encoders but no VAE: it needs "
            f"{VAE_WHERE[kind]}.",
            hint="Put the VAE where ComfyUI keeps it, or use the model's diffusers folder.")
    t5 = path if _is_t5(_inner(own, "t5")) else None
    t5_tok = _comfy_tokenizer(path, "text_encoders/t5_tokenizer", "tokenizer.json")
    if t5 is not None and t5_tok is None:
        if not sd3:
            raise ModelNotFoundError(
                f"{path.name}: T5's tokenizer is not in the file; Latent Studio reads it from "
                "the ComfyUI install the models are in (comfy/text_encoders/t5_tokenizer/), "
                f"and found none above {path.parent}.",
                hint="Keep the model inside its ComfyUI folder, or use a diffusers folder of "
                     "the model (its tokenizer_2).")
        log.info("%s: no T5 tokenizer in a ComfyUI install around it; its T5 left out",
                 path.name)  # T5 is optional for SD 3
        t5 = None
    clip_tok = (_comfy_tokenizer(path, "sd1_tokenizer", "vocab.json")
                or bundled_configs_dir() / "clip-tokenizer")
    return Parts(family, path, path, vae, clip_tok, t5, t5_tok if t5 else None,
                 path if sd3 else None, inside=True)


def _encoders_inside(parts: Parts, folder: Path, dtype: Any, cancel: Any) -> dict[str, Any]:
    """The text encoders of an all-in-one file (SD 3: CLIP-L, CLIP-G, T5; Flux: CLIP-L, T5),
    converted by diffusers' own code from Stability's layout (SD 3's CLIP-L projection is the
    identity there, as diffusers and ComfyUI take it); only their tensors are read from the
    file, in ``dtype``, with ``cancel`` checked between them."""
    import torch
    from diffusers.loaders.single_file_utils import (
        create_diffusers_clip_model_from_ldm,
        create_diffusers_t5_model_from_checkpoint,
    )
    from safetensors import safe_open
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, T5EncoderModel

    sd3 = parts.family == "sd3"
    wanted = tuple(INSIDE[p] for p in ("clip_l", "clip_g", "t5")
                   if (p != "t5" or parts.t5 is not None) and (p != "clip_g" or sd3))
    checkpoint: dict[str, Any] = {}
    with safe_open(str(parts.transformer), framework="pt") as f:
        for key in f.keys():
            if key.startswith(wanted):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                tensor = f.get_tensor(key)
                checkpoint[key] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    out: dict[str, Any] = {}
    clips = ("text_encoder", "text_encoder_2") if sd3 else ("text_encoder",)
    for name in clips:
        out[name] = create_diffusers_clip_model_from_ldm(
            CLIPTextModelWithProjection if sd3 else CLIPTextModel, checkpoint, subfolder=name,
            config=str(folder), torch_dtype=dtype, local_files_only=True)
    t5_name = "text_encoder_3" if sd3 else "text_encoder_2"
    if parts.t5 is not None:
        out[t5_name] = create_diffusers_t5_model_from_checkpoint(
            T5EncoderModel, checkpoint, subfolder=t5_name, config=str(folder),
            torch_dtype=dtype, local_files_only=True)
    del checkpoint
    t5 = out.get(t5_name)
    if t5 is not None and t5.encoder.embed_tokens.weight.is_meta:
        # T5's input embedding is its ``shared`` table (transformers ties them on its own
        # loads; diffusers' conversion loads into empty weights and leaves it unset)
        t5.encoder.embed_tokens.weight = t5.shared.weight
    for name, model in out.items():
        empty = [k for k, v in model.state_dict().items() if v.is_meta]
        if empty:
            raise CorruptModelError(
                f"{parts.transformer.name}: its {name.replace('_', ' ')} lacks "
                f"{len(empty)} tensors ({empty[0]}, ...).",
                hint="Download the file again, or use the model's diffusers folder.")
        model.eval()
        torch.nn.Module.requires_grad_(model, False)
    return out


# -- the folder of links, and the pipeline ------------------------------------------------
def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    try:
        link.symlink_to(target.resolve())
    except OSError:  # no symlinks (Windows without the right): a hard link, else a copy
        try:
            os.link(target, link)
        except OSError:
            import shutil

            shutil.copyfile(target, link)


def layout_folder(parts: Parts, cache: Path | None = None) -> Path:
    """A diffusers folder for ``parts`` under the user cache: configs read from the files,
    the tokenizers and the text encoders' weights linked, the transformer and VAE left to
    ``from_single_file`` (their layouts are converted). Keyed by the files' paths, sizes and
    times, so a changed file gets a new folder."""
    import shutil

    from studio.paths import user_cache_dir

    files = [p for p in (parts.transformer, parts.t5, parts.clip_l, parts.clip_g, parts.vae,
                         parts.t5_tokenizer, parts.clip_tokenizer) if p is not None]
    stamp = "|".join(f"{p.resolve()}:{p.stat().st_size if p.is_file() else 0}:"
                     f"{p.stat().st_mtime_ns}" for p in files)
    key = hashlib.sha256(f"{LAYOUT_VERSION}|{parts.family}|{parts.inside}|{stamp}".encode()
                         ).hexdigest()[:16]
    folder = (cache or user_cache_dir()) / "transformer-files" / key
    if (folder / "model_index.json").is_file():
        return folder
    from transformers import AutoTokenizer

    sd3 = parts.family == "sd3"
    tmp = folder.with_name(key + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)

    def write(sub: str, name: str, data: dict[str, Any]) -> None:
        (tmp / sub).mkdir(parents=True, exist_ok=True)
        (tmp / sub / name).write_text(json.dumps(data, indent=2), encoding="utf-8")

    own = _shapes(parts.transformer)
    shutil.copytree(parts.clip_tokenizer, tmp / "tokenizer")
    clip_tok = AutoTokenizer.from_pretrained(tmp / "tokenizer", local_files_only=True)
    if sd3:
        write("transformer", "config.json", sd3_transformer_config(own))
        write("scheduler", "scheduler_config.json",
              {"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0,
               "num_train_timesteps": 1000})
        write("text_encoder", "config.json",
              clip_config(_part_shapes(parts, "clip_l"), clip_tok, projection=True))
        assert parts.clip_g is not None
        clip_tok.pad_token = "!"  # CLIP-G pads with "!" (as SDXL's second tokenizer)
        clip_tok.save_pretrained(tmp / "tokenizer_2")
        write("text_encoder_2", "config.json",
              clip_config(_part_shapes(parts, "clip_g"), clip_tok, projection=True,
                          gelu=True))
        if not parts.inside:  # else read from the file at load (``_encoders_inside``)
            _link(parts.clip_l, tmp / "text_encoder" / "model.safetensors")
            _link(parts.clip_g, tmp / "text_encoder_2" / "model.safetensors")
        if parts.t5 is not None and parts.t5_tokenizer is not None:
            shutil.copytree(parts.t5_tokenizer, tmp / "tokenizer_3")
            write("text_encoder_3", "config.json", t5_config(_part_shapes(parts, "t5")))
            if not parts.inside:
                _link(parts.t5, tmp / "text_encoder_3" / "model.safetensors")
        t5_entry = (["transformers", "T5EncoderModel"] if parts.t5 else [None, None])
        index = {"_class_name": "StableDiffusion3Pipeline",
                 "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
                 "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
                 "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
                 "text_encoder_3": t5_entry,
                 "tokenizer": ["transformers", "CLIPTokenizer"],
                 "tokenizer_2": ["transformers", "CLIPTokenizer"],
                 "tokenizer_3": (["transformers", "T5TokenizerFast"] if parts.t5
                                 else [None, None]),
                 "transformer": ["diffusers", "SD3Transformer2DModel"],
                 "vae": ["diffusers", "AutoencoderKL"]}
    else:
        transformer = transformer_config(own)
        write("transformer", "config.json", transformer)
        write("scheduler", "scheduler_config.json",
              scheduler_config(transformer["guidance_embeds"]))
        assert parts.t5 is not None and parts.t5_tokenizer is not None
        shutil.copytree(parts.t5_tokenizer, tmp / "tokenizer_2")
        write("text_encoder", "config.json", clip_config(_part_shapes(parts, "clip_l"), clip_tok))
        write("text_encoder_2", "config.json", t5_config(_part_shapes(parts, "t5")))
        if not parts.inside:  # else read from the file at load (``_encoders_inside``)
            _link(parts.clip_l, tmp / "text_encoder" / "model.safetensors")
            _link(parts.t5, tmp / "text_encoder_2" / "model.safetensors")
        index = {"_class_name": ("FluxKontextPipeline" if parts.family == "flux-kontext"
                                 else "FluxPipeline"),
                 "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
                 "text_encoder": ["transformers", "CLIPTextModel"],
                 "text_encoder_2": ["transformers", "T5EncoderModel"],
                 "tokenizer": ["transformers", "CLIPTokenizer"],
                 "tokenizer_2": ["transformers", "T5TokenizerFast"],
                 "transformer": ["diffusers", "FluxTransformer2DModel"],
                 "vae": ["diffusers", "AutoencoderKL"]}
    write("vae", "config.json", vae_config(_shapes(parts.vae), parts.family.split("-")[0]))
    write("", "model_index.json", index)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def base_folder(path: Path, family: str = "flux") -> Path | None:
    """A diffusers folder of the family beside the file or one up (as for a GGUF
    transformer), whose text encoders, tokenizers and VAE the file can take instead of
    ComfyUI's files."""
    from studio.engine.models.gguf import base_folder as beside

    try:
        return beside(path, family.split("-")[0])
    except ModelNotFoundError:
        return None


def load_transformer_file(path: str | os.PathLike[str], torch_dtype: Any = None,
                          cancel: Any = None) -> Any:
    """The pipeline of a lone Flux or SD 3.x transformer file with its parts
    (``find_parts``), or with a diffusers folder of the family beside it where ComfyUI's
    parts are not there."""
    import diffusers
    import torch
    from diffusers import AutoencoderKL, DiffusionPipeline

    from studio.engine.models.loading import _reading_in

    path = Path(path)
    dtype = torch_dtype or torch.float32
    family = lone_family(path, _shapes(path))
    cls = getattr(diffusers, "SD3Transformer2DModel" if family == "sd3"
                  else "FluxTransformer2DModel")

    def check() -> None:
        if cancel is not None:
            cancel.raise_if_cancelled()

    def reading(model_cls: Any, keep: Any = None) -> Any:
        """The file read tensor by tensor in the load dtype, the cancel token checked as
        it goes (a Flux file is 24 GB), as a folder's components are read; ``keep``: the
        tensors of one part only."""
        return _reading_in(None if getattr(model_cls, "_keep_in_fp32_modules", None)
                           else dtype, cancel, keep)

    parts: Parts | None
    try:
        parts = find_parts(path, family)
        folder = layout_folder(parts)
    except ModelNotFoundError:  # no ComfyUI parts: a diffusers folder beside the file
        base = base_folder(path, family)
        if base is None:
            raise
        parts, folder = None, base
    check()
    with reading(cls, keep=lambda key: not key.startswith(NOT_TRANSFORMER)):
        transformer = cls.from_single_file(str(path), config=str(folder),
                                           subfolder="transformer", torch_dtype=dtype,
                                           local_files_only=True)
    extra: dict[str, Any] = {}
    if parts is not None:  # the VAE from its own file (or the transformer's)
        check()
        own_vae = parts.vae == path  # the VAE beside the transformer: its tensors alone
        with reading(AutoencoderKL, keep=(lambda key: key.startswith(VAE_PREFIXES))
                     if own_vae else None):
            extra["vae"] = AutoencoderKL.from_single_file(
                str(parts.vae), config=str(folder), subfolder="vae", torch_dtype=dtype,
                local_files_only=True)
        if family == "sd3" and parts.t5 is None:
            extra.update(text_encoder_3=None, tokenizer_3=None)
        if parts.inside:
            check()
            extra.update(_encoders_inside(parts, folder, dtype, cancel))
    check()
    pipe = DiffusionPipeline.from_pretrained(folder, transformer=transformer,
                                             torch_dtype=dtype, local_files_only=True, **extra)
    pipe.set_progress_bar_config(disable=True)
    used = ([p.name for p in dict.fromkeys((parts.t5, parts.clip_l, parts.clip_g, parts.vae))
             if p] if parts is not None else [f"the parts of {folder.name}"])
    if parts is not None and parts.inside:
        encoders = ["CLIP-L", "CLIP-G"] if family == "sd3" else ["CLIP-L"]
        used = [f"its own text encoders ({', '.join(encoders + (['T5'] if parts.t5 else []))})",
                *(["the VAE " + parts.vae.name] if parts.vae != path else ["its own VAE"])]
    log.info("%s with %s", path.name, ", ".join(used))
    return pipe
