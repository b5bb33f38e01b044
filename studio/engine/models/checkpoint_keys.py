"""Key tables between diffusers components and the original (CompVis/LDM, A1111) layout.

The forward direction (diffusers -> original) is built per component from its config and its
own state-dict keys, so every table is exact for the model at hand and can be inverted
(original -> diffusers) with :func:`invert`. The rules are the reverse of what diffusers'
``loaders/single_file_utils.py`` reads (``convert_ldm_unet_checkpoint``,
``convert_ldm_vae_checkpoint``, ``convert_ldm_clip_checkpoint``,
``convert_open_clip_checkpoint``); the tests check the round trip through diffusers itself.

Original prefixes:

* UNet: ``model.diffusion_model.``
* VAE: ``first_stage_model.`` (mid-block attention as 1x1 conv weights)
* CLIP (Hugging Face layout): ``cond_stage_model.transformer.`` (SD1),
  ``conditioner.embedders.0.transformer.`` (SDXL)
* OpenCLIP: ``cond_stage_model.model.`` (SD2), ``conditioner.embedders.1.model.`` (SDXL),
  with q/k/v fused into ``attn.in_proj_weight`` and ``text_projection`` transposed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_CLIP_PREFIX = "cond_stage_model.transformer."
SD2_OPENCLIP_PREFIX = "cond_stage_model.model."
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer."
SDXL_OPENCLIP_PREFIX = "conditioner.embedders.1.model."

_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0",
                "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1",
                "conv_shortcut": "skip_connection"}
_UNET_TOP = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
             "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
             "add_embedding.linear_2": "label_emb.0.2", "conv_norm_out": "out.0",
             "conv_out": "out.2"}
_VAE_TOP = {"conv_norm_out": "norm_out"}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_OPENCLIP_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc",
                   "mlp.fc2": "mlp.c_proj", "self_attn.out_proj": "attn.out_proj"}
_OPENCLIP_TOP = {"embeddings.token_embedding.weight": "token_embedding.weight",
                 "embeddings.position_embedding.weight": "positional_embedding",
                 "final_layer_norm.weight": "ln_final.weight",
                 "final_layer_norm.bias": "ln_final.bias"}


class UnmappedKeyError(KeyError):
    """A diffusers key the original layout has no place for (an unsupported architecture)."""


def _split_param(key: str) -> tuple[str, str]:
    module, _, param = key.rpartition(".")
    return module, param


def _replace_head(module: str, table: Mapping[str, str]) -> str | None:
    for old, new in table.items():
        if module == old or module.startswith(old + "."):
            return new + module[len(old):]
    return None


def unet_key_map(config: Mapping[str, Any], keys: Iterable[str]) -> dict[str, str]:
    """``{diffusers key: original key}`` for a ``UNet2DConditionModel`` (no prefix).

    Down block ``b``, layer ``j`` is ``input_blocks[1 + b*(L+1) + j]`` (resnet ``.0``, attention
    ``.1``), its downsampler ``input_blocks[(b+1)*(L+1)].0.op``; up block ``b``, layer ``j`` is
    ``output_blocks[b*(L+1) + j]`` with the upsampler after the attention if there is one.
    """
    layers = config["layers_per_block"]
    if not isinstance(layers, int):
        raise UnmappedKeyError("per-block layers_per_block has no original layout")
    per = layers + 1
    keys = list(keys)
    up_with_attn = {int(m.group(1)) for k in keys
                    if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", k))}
    table: dict[str, str] = {}
    for key in keys:
        module, param = _split_param(key)
        if (top := _replace_head(module, _UNET_TOP)) is not None:
            new = top
        elif m := re.fullmatch(r"(down|up)_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", module):
            side, block, kind, layer, rest = m.groups()
            index = (1 + int(block) * per + int(layer) if side == "down"
                     else int(block) * per + int(layer))
            name = "input_blocks" if side == "down" else "output_blocks"
            if kind == "resnets":
                head, _, tail = rest.partition(".")
                rest = _UNET_RESNET.get(head, head) + ("." + tail if tail else "")
                new = f"{name}.{index}.0.{rest}"
            else:
                new = f"{name}.{index}.1.{rest}"
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv", module):
            new = f"input_blocks.{(int(m.group(1)) + 1) * per}.0.op"
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv", module):
            block = int(m.group(1))
            slot = 2 if block in up_with_attn else 1
            new = f"output_blocks.{block * per + layers}.{slot}.conv"
        elif m := re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", module):
            kind, position, rest = m.groups()
            if kind == "resnets":
                head, _, tail = rest.partition(".")
                rest = _UNET_RESNET.get(head, head) + ("." + tail if tail else "")
                new = f"middle_block.{0 if position == '0' else 2}.{rest}"
            else:
                new = f"middle_block.1.{rest}"
        else:
            raise UnmappedKeyError(f"UNet key {key!r} has no original-layout name")
        table[key] = f"{new}.{param}"
    return table


def vae_key_map(config: Mapping[str, Any], keys: Iterable[str]) -> dict[str, str]:
    """``{diffusers key: original key}`` for an ``AutoencoderKL`` (no prefix).

    The decoder's up blocks are numbered the other way round in the original layout.
    """
    n_up = len(config["up_block_types"])
    table: dict[str, str] = {}
    for key in keys:
        module, param = _split_param(key)
        part, _, rest = module.partition(".")
        if part in ("quant_conv", "post_quant_conv"):
            table[key] = key
            continue
        if part not in ("encoder", "decoder"):
            raise UnmappedKeyError(f"VAE key {key!r} has no original-layout name")
        if rest in ("conv_in", "conv_out"):
            new = rest
        elif rest in _VAE_TOP:
            new = _VAE_TOP[rest]
        elif m := re.fullmatch(r"(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", rest):
            side, block, layer, tail = m.groups()
            tail = tail.replace("conv_shortcut", "nin_shortcut")
            index = int(block) if side == "down" else n_up - 1 - int(block)
            new = f"{side}.{index}.block.{layer}.{tail}"
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv", rest):
            new = f"down.{m.group(1)}.downsample.conv"
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv", rest):
            new = f"up.{n_up - 1 - int(m.group(1))}.upsample.conv"
        elif m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", rest):
            new = f"mid.block_{int(m.group(1)) + 1}.{m.group(2).replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", rest):
            inner = _VAE_ATTN.get(m.group(1))
            if inner is None:
                raise UnmappedKeyError(f"VAE key {key!r} has no original-layout name")
            new = f"mid.attn_1.{inner}"
        else:
            raise UnmappedKeyError(f"VAE key {key!r} has no original-layout name")
        table[key] = f"{part}.{new}.{param}"
    return table


def is_vae_attention_matrix(original_key: str) -> bool:
    """Mid-block attention projections, stored as 1x1 conv kernels in the original layout."""
    return bool(re.search(r"mid\.attn_1\.(q|k|v|proj_out)\.weight$", original_key))


def clip_key_map(keys: Iterable[str]) -> dict[str, str]:
    """``{diffusers key: original key}`` for a Hugging Face ``CLIPTextModel`` (no prefix).

    The original layout keeps the ``text_model.`` level that recent transformers flattens.
    """
    return {k: k if k.startswith("text_model.") else "text_model." + k for k in keys}


def _strip_text_model(key: str) -> str:
    return key[len("text_model."):] if key.startswith("text_model.") else key


def openclip_key_map(keys: Iterable[str]) -> dict[str, str]:
    """``{diffusers key: original key}`` for the OpenCLIP text tower (no prefix).

    q/k/v projections of one layer all map to the fused ``attn.in_proj_weight`` (or bias);
    :func:`to_openclip` concatenates them in q, k, v order.
    """
    table: dict[str, str] = {}
    for key in keys:
        if key == "text_projection.weight":
            table[key] = "text_projection"
            continue
        inner = _strip_text_model(key)
        if inner in _OPENCLIP_TOP:
            table[key] = _OPENCLIP_TOP[inner]
            continue
        m = re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", inner)
        if not m:
            raise UnmappedKeyError(f"text encoder key {key!r} has no OpenCLIP name")
        layer, module, param = m.groups()
        if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
            new = f"attn.in_proj_{param}"
        elif module in _OPENCLIP_LAYER:
            new = f"{_OPENCLIP_LAYER[module]}.{param}"
        else:
            raise UnmappedKeyError(f"text encoder key {key!r} has no OpenCLIP name")
        table[key] = f"transformer.resblocks.{layer}.{new}"
    return table


def to_openclip(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """A ``CLIPTextModel(WithProjection)`` state dict in the OpenCLIP layout (no prefix)."""
    import torch

    table = openclip_key_map(state_dict)
    out: dict[str, Any] = {}
    fused: dict[str, dict[str, Any]] = {}
    for key, tensor in state_dict.items():
        new = table[key]
        if new.endswith((".attn.in_proj_weight", ".attn.in_proj_bias")):
            which = re.search(r"\.(q|k|v)_proj\.", key).group(1)  # type: ignore[union-attr]
            fused.setdefault(new, {})[which] = tensor
        elif new == "text_projection":
            out[new] = tensor.T  # nn.Linear weight (out, in) -> OpenCLIP matrix (in, out)
        else:
            out[new] = tensor
    for new, parts in fused.items():
        out[new] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def from_openclip(checkpoint: Mapping[str, Any], prefix: str,
                  wrapped: bool) -> dict[str, Any]:
    """The inverse of :func:`to_openclip` for the keys under ``prefix``.

    ``wrapped``: the target model keeps its tower under ``text_model.``
    (``CLIPTextModelWithProjection``), as opposed to the flattened ``CLIPTextModel``.
    """
    lead = "text_model." if wrapped else ""
    inverse_top = {v: k for k, v in _OPENCLIP_TOP.items()}
    inverse_layer = {v: k for k, v in _OPENCLIP_LAYER.items()}
    out: dict[str, Any] = {}
    for key, tensor in checkpoint.items():
        if not key.startswith(prefix):
            continue
        inner = key[len(prefix):]
        if inner == "text_projection":
            out["text_projection.weight"] = tensor.T.contiguous()
        elif inner in inverse_top:
            out[lead + inverse_top[inner]] = tensor
        elif m := re.fullmatch(r"transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)", inner):
            layer, param = m.groups()
            q, k, v = tensor.chunk(3, dim=0)
            for name, part in (("q", q), ("k", k), ("v", v)):
                out[f"{lead}encoder.layers.{layer}.self_attn.{name}_proj.{param}"] = part.contiguous()
        elif m := re.fullmatch(r"transformer\.resblocks\.(\d+)\.(.+)\.(weight|bias)", inner):
            layer, module, param = m.groups()
            if module not in inverse_layer:
                raise UnmappedKeyError(f"OpenCLIP key {key!r} has no diffusers name")
            out[f"{lead}encoder.layers.{layer}.{inverse_layer[module]}.{param}"] = tensor
        # logit_scale, attn_mask and the like have no place in the text model: skipped
    return out


def invert(table: Mapping[str, str]) -> dict[str, str]:
    """``{original key: diffusers key}``; fails if two diffusers keys share one original key."""
    inverse: dict[str, str] = {}
    for src, dst in table.items():
        if dst in inverse:
            raise ValueError(f"{src!r} and {inverse[dst]!r} both map to {dst!r}")
        inverse[dst] = src
    return inverse
