"""Flux as ComfyUI users keep it: the transformer alone in a ``.safetensors`` file
(``models/diffusion_models/`` or ``models/unet/``), T5-XXL and CLIP-L in
``models/text_encoders/`` (or ``models/clip/``), the Flux VAE (``ae.safetensors``) in
``models/vae/``.

Each part is told by its tensors, not its name (a T5 encoder, a CLIP-L text encoder, a
16-channel autoencoder), and each part's config is read from its tensor shapes, so what is
loaded is what the files hold (Flux dev or schnell: the guidance embedding; Flux Lite's
fewer blocks). What the weights cannot say is Flux's own: its VAE's latent scaling and
shift, the attention head width of CLIP-L (64), and the schedulers of dev (dynamic shift)
and schnell (none). The tokenizers are not in the files: T5's and CLIP's are read from the
ComfyUI install the models sit in (``comfy/text_encoders/t5_tokenizer``,
``comfy/sd1_tokenizer``; CLIP's also ships with Latent Studio). The pieces are put together
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
# The Flux VAE's latent scaling and shift (not in its weights; the same for every Flux.1).
FLUX_VAE_SCALING, FLUX_VAE_SHIFT = 0.3611, 0.1159
CLIP_HEAD_DIM = 64  # CLIP-L's attention heads are 64 wide (12 of them)
LAYOUT_VERSION = 1  # bump when the folder written here changes
T5_WHERE = ("T5-XXL (t5xxl_fp16.safetensors) in ComfyUI/models/text_encoders/")
CLIP_WHERE = ("CLIP-L (clip_l.safetensors) in ComfyUI/models/text_encoders/")
VAE_WHERE = "the Flux VAE (ae.safetensors) in ComfyUI/models/vae/"


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
            and not any(k.startswith(("controlnet_blocks.", "input_hint_block.", "pos_embed_input."))
                        or "lora" in k for k in names))


def flux_family(path: Path) -> str:
    """``flux-kontext`` for a Kontext file (Kontext has Flux's transformer: told from its
    name, as ComfyUI users and Black Forest Labs name it, or from the diffusers folder it
    takes its parts from), else ``flux``."""
    if "kontext" in path.name.lower():
        return "flux-kontext"
    try:
        find_parts(path)
    except ModelNotFoundError:
        base = base_folder(path)
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


def clip_config(shapes: dict[str, tuple[int, ...]], tokenizer: Any) -> dict[str, Any]:
    shapes = _clip_names(shapes)
    vocab, hidden = shapes["embeddings.token_embedding.weight"]
    eos = tokenizer.eos_token_id
    return {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model",
            "vocab_size": vocab, "hidden_size": hidden,
            "intermediate_size": shapes["encoder.layers.0.mlp.fc1.weight"][0],
            "num_hidden_layers": _count(shapes, "encoder.layers."),
            "num_attention_heads": max(1, hidden // CLIP_HEAD_DIM),
            "max_position_embeddings": shapes["embeddings.position_embedding.weight"][0],
            "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "projection_dim": hidden,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": eos, "pad_token_id": eos}


def vae_config(shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
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
            "use_post_quant_conv": quant, "scaling_factor": FLUX_VAE_SCALING,
            "shift_factor": FLUX_VAE_SHIFT, "force_upcast": True}


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
class FluxParts:
    transformer: Path
    t5: Path
    clip_l: Path
    vae: Path
    t5_tokenizer: Path
    clip_tokenizer: Path


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


def _which(candidates: list[Path], test: Any) -> Path | None:
    for p in candidates:
        try:
            if test(_shapes(p)):
                return p
        except CorruptModelError:
            continue
    return None


def _is_t5(s: dict[str, tuple[int, ...]]) -> bool:
    return "encoder.block.0.layer.0.SelfAttention.q.weight" in s and "shared.weight" in s


def _is_clip_l(s: dict[str, tuple[int, ...]]) -> bool:
    s = _clip_names(s)
    key = "embeddings.token_embedding.weight"
    return key in s and "encoder.layers.0.mlp.fc1.weight" in s and s[key][1] <= 768  # G: 1280


def _is_flux_vae(s: dict[str, tuple[int, ...]]) -> bool:
    s = {k.removeprefix("vae.").removeprefix("first_stage_model."): v for k, v in s.items()}
    conv = s.get("decoder.conv_in.weight")
    return conv is not None and conv[1] == 16 and "encoder.conv_in.weight" in s


def _comfy_tokenizer(path: Path, sub: str, marker: str) -> Path | None:
    """``comfy/<sub>`` of the ComfyUI install the model file is in (its folder or one up)."""
    for parent in list(path.parents)[:5]:
        folder = parent / "comfy" / sub
        if (folder / marker).is_file():
            return folder
    return None


def find_parts(path: Path) -> FluxParts:
    """The text encoders, VAE and tokenizers of the Flux transformer ``path``; one line
    naming every missing part and where it goes."""
    from studio.paths import bundled_configs_dir

    texts = _candidates(path, TEXT_DIRS)
    t5 = _which(texts, _is_t5)
    clip = _which(texts, _is_clip_l)
    vae = _which(_candidates(path, VAE_DIRS), _is_flux_vae)
    t5_tok = _comfy_tokenizer(path, "text_encoders/t5_tokenizer", "tokenizer.json")
    clip_tok = (_comfy_tokenizer(path, "sd1_tokenizer", "vocab.json")
                or bundled_configs_dir() / "clip-tokenizer")
    missing = [what for what, found in ((T5_WHERE, t5), (CLIP_WHERE, clip), (VAE_WHERE, vae))
               if found is None]
    if missing:
        raise ModelNotFoundError(
            f"{path.name} is a Flux transformer alone: it needs " + "; ".join(missing) + ".",
            hint="Put them where ComfyUI keeps them, or a diffusers Flux folder (its text "
                 "encoders and VAE) beside the file.")
    if t5_tok is None:
        raise ModelNotFoundError(
            f"{path.name}: T5's tokenizer is not in the files; Latent Studio reads it from "
            "the ComfyUI install the models are in (comfy/text_encoders/t5_tokenizer/), and "
            f"found none above {path.parent}.",
            hint="Keep the models inside their ComfyUI folder, or use a diffusers folder of "
                 "the model (its tokenizer_2).")
    assert t5 and clip and vae
    return FluxParts(path, t5, clip, vae, t5_tok, clip_tok)



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


def layout_folder(parts: FluxParts, cache: Path | None = None) -> Path:
    """A diffusers folder for ``parts`` under the user cache: configs read from the files,
    the tokenizers and the text encoders' weights linked, the transformer and VAE left to
    ``from_single_file`` (their layouts are converted). Keyed by the files' paths, sizes and
    times, so a changed file gets a new folder."""
    from studio.paths import user_cache_dir

    files = (parts.transformer, parts.t5, parts.clip_l, parts.vae, parts.t5_tokenizer,
             parts.clip_tokenizer)
    stamp = "|".join(f"{p.resolve()}:{p.stat().st_size if p.is_file() else 0}:"
                     f"{p.stat().st_mtime_ns}" for p in files)
    key = hashlib.sha256(f"{LAYOUT_VERSION}|{stamp}".encode()).hexdigest()[:16]
    folder = (cache or user_cache_dir()) / "flux-files" / key
    if (folder / "model_index.json").is_file():
        return folder
    from transformers import AutoTokenizer

    transformer = transformer_config(_shapes(parts.transformer))
    family = flux_family(parts.transformer)
    tmp = folder.with_name(key + ".tmp")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)

    def write(sub: str, name: str, data: dict[str, Any]) -> None:
        (tmp / sub).mkdir(parents=True, exist_ok=True)
        (tmp / sub / name).write_text(json.dumps(data, indent=2), encoding="utf-8")

    write("transformer", "config.json", transformer)
    write("vae", "config.json", vae_config(_shapes(parts.vae)))
    write("scheduler", "scheduler_config.json", scheduler_config(transformer["guidance_embeds"]))
    shutil.copytree(parts.t5_tokenizer, tmp / "tokenizer_2")
    shutil.copytree(parts.clip_tokenizer, tmp / "tokenizer")
    clip_tok = AutoTokenizer.from_pretrained(tmp / "tokenizer", local_files_only=True)
    write("text_encoder", "config.json", clip_config(_shapes(parts.clip_l), clip_tok))
    write("text_encoder_2", "config.json", t5_config(_shapes(parts.t5)))
    _link(parts.clip_l, tmp / "text_encoder" / "model.safetensors")
    _link(parts.t5, tmp / "text_encoder_2" / "model.safetensors")
    write("", "model_index.json", {
        "_class_name": "FluxKontextPipeline" if family == "flux-kontext" else "FluxPipeline",
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "FluxTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"]})
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def base_folder(path: Path) -> Path | None:
    """A diffusers Flux folder beside the file or one up (as for a GGUF transformer), whose
    text encoders, tokenizers and VAE the file can take instead of ComfyUI's files."""
    from studio.engine.models.gguf import base_folder as beside

    try:
        return beside(path, "flux")
    except ModelNotFoundError:
        return None


def load_flux_file(path: str | os.PathLike[str], torch_dtype: Any = None,
                   cancel: Any = None) -> Any:
    """The pipeline of a lone Flux transformer file with its parts (``find_parts``), or with
    a diffusers Flux folder beside it where ComfyUI's parts are not there."""
    import torch
    from diffusers import AutoencoderKL, DiffusionPipeline, FluxTransformer2DModel

    path = Path(path)
    dtype = torch_dtype or torch.float32

    def check() -> None:
        if cancel is not None:
            cancel.raise_if_cancelled()

    try:
        parts = find_parts(path)
    except ModelNotFoundError:
        base = base_folder(path)
        if base is None:
            raise
        check()
        transformer = FluxTransformer2DModel.from_single_file(
            str(path), config=str(base), subfolder="transformer", torch_dtype=dtype,
            local_files_only=True)
        check()
        pipe = DiffusionPipeline.from_pretrained(base, transformer=transformer,
                                                 torch_dtype=dtype, local_files_only=True)
        pipe.set_progress_bar_config(disable=True)
        log.info("%s with the parts of %s", path.name, base.name)
        return pipe
    folder = layout_folder(parts)
    check()
    transformer = FluxTransformer2DModel.from_single_file(
        str(path), config=str(folder), subfolder="transformer", torch_dtype=dtype,
        local_files_only=True)
    check()
    vae = AutoencoderKL.from_single_file(str(parts.vae), config=str(folder), subfolder="vae",
                                         torch_dtype=dtype, local_files_only=True)
    check()
    pipe = DiffusionPipeline.from_pretrained(folder, transformer=transformer, vae=vae,
                                             torch_dtype=dtype, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    log.info("%s with %s, %s and %s", path.name, parts.t5.name, parts.clip_l.name,
             parts.vae.name)
    return pipe
