"""A tiny SD 1.x ControlNet for the tiny checkpoint the test servers hold, built once, cached.

ComfyUI 0.8.0 reads a diffusers-layout ControlNet only when its config is one of the
published ones (``unet_config_from_diffusers_unet`` matches SD 1.5, SDXL ... exactly), so a
tiny one is written in the original (LDM) layout, which ComfyUI sizes from the tensors:
``input_blocks``/``middle_block``/``time_embed`` as the UNet's, ``input_hint_block`` (the
control map's encoder), ``zero_convs`` and ``middle_block_out``.

The ControlNet starts as a copy of the tiny checkpoint's UNet (``ControlNetModel.from_unet``,
as ControlNets are made). The server's tiny model is random, so no trained ControlNet exists
for it; this one is built so that its effect has a place: its hint encoder is random without
biases (zero where the control map is black), the trunk's own input is off, and only the
first residual (the latent's level, before any attention) is on. The control then changes
the image most where the control map has strokes, which the tests measure.
Run with the project's venv (torch + diffusers): ``python tests/remote/tiny_controlnet.py``.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from tiny_checkpoint import RECIPE as CHECKPOINT_RECIPE
from tiny_checkpoint import cache_dir

RECIPE = (f"controlnet of [{CHECKPOINT_RECIPE}] | hint no bias, residual 0 only x8, randn "
          "seed1 | ldm | fp16 | v1")
NAME = "control_sd15_scribble_tiny.safetensors"  # "sd15": family read from the name


def controlnet_path() -> Path:
    digest = hashlib.sha256(RECIPE.encode()).hexdigest()[:12]
    return cache_dir() / f"studio-tiny-sd1-controlnet-{digest}.safetensors"


def _unet():
    """The tiny checkpoint's UNet, as ``tiny_checkpoint.build`` makes it (seed 0, first)."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(320,), down_block_types=("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",), cross_attention_dim=768,
        attention_head_dim=8, norm_num_groups=32)


def ldm_state_dict(controlnet) -> dict:
    """A diffusers ``ControlNetModel``'s weights under their original (LDM) names."""
    from studio.engine.models import checkpoint_keys as ck

    sd = controlnet.state_dict()
    out = {}
    unet_keys = [k for k in sd if not k.startswith(("controlnet_", "controlnet_cond_"))]
    for key, new in ck.unet_key_map(controlnet.config, unet_keys).items():
        out[new] = sd[key]
    embed = controlnet.controlnet_cond_embedding
    convs = [embed.conv_in, *embed.blocks, embed.conv_out]  # LDM: conv, SiLU, conv, ...
    for i, conv in enumerate(convs):
        out[f"input_hint_block.{2 * i}.weight"] = conv.weight
        out[f"input_hint_block.{2 * i}.bias"] = conv.bias
    for i, conv in enumerate(controlnet.controlnet_down_blocks):
        out[f"zero_convs.{i}.0.weight"] = conv.weight
        out[f"zero_convs.{i}.0.bias"] = conv.bias
    out["middle_block_out.0.weight"] = controlnet.controlnet_mid_block.weight
    out["middle_block_out.0.bias"] = controlnet.controlnet_mid_block.bias
    return out


def build(path: Path) -> Path:
    import torch
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    controlnet = ControlNetModel.from_unet(_unet())
    generator = torch.Generator().manual_seed(1)
    embed = controlnet.controlnet_cond_embedding
    with torch.no_grad():
        # The hint encoder without biases: where the control map is black its features are
        # zero, so the control acts where the map has lines and nowhere else.
        for conv in (embed.conv_in, *embed.blocks, embed.conv_out):
            fan_in = conv.weight[0].numel()
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator)
                              * (2.0 / fan_in) ** 0.5)
            conv.bias.zero_()
        # The first residual (the latent's own level, before any attention) carries the
        # control map's features; the trunk's own input and the deeper residuals are off.
        controlnet.conv_in.weight.zero_()
        controlnet.conv_in.bias.zero_()
        first, *rest = controlnet.controlnet_down_blocks
        first.weight.copy_(torch.randn(first.weight.shape, generator=generator)
                           * 8.0 / first.weight[0].numel() ** 0.5)
        first.bias.zero_()
        for conv in (*rest, controlnet.controlnet_mid_block):
            conv.weight.zero_()
            conv.bias.zero_()
    tensors = {k: v.detach().to(torch.float16).contiguous().clone()
               for k, v in ldm_state_dict(controlnet).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    save_file(tensors, str(tmp))
    tmp.replace(path)
    return path


def ensure_controlnet() -> Path:
    """The cached ControlNet, built first if it is missing."""
    path = controlnet_path()
    if not path.is_file():
        build(path)
    return path


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    print(ensure_controlnet())
