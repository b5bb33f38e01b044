"""A tiny SD 1.x single-file checkpoint that ComfyUI 0.8.0 loads, built once and cached.

ComfyUI matches an SD 1.x UNet by ``model_channels == 320`` and ``context_dim == 768``, and
builds its text encoder at CLIP-L's shape and its VAE at SD's, whatever the file holds. So the
UNet here is one level of 320 channels (the smallest that still reads as SD 1.x), and the
text encoder and VAE are full-sized with random weights: about 450 MB in fp16.
Run with the project's venv (torch + diffusers): ``python tests/remote/tiny_checkpoint.py``.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

RECIPE = "sd1 unet(320,) lpb1 heads8 ctx768 | clip-l 768x12 | sd-vae | fp16 | seed0 | v1"


def cache_dir() -> Path:
    root = Path(os.environ.get("STUDIO_COMFYUI_CACHE", Path.home() / ".cache" / "latent-studio"))
    return root / "comfyui-checkpoints"


def checkpoint_path() -> Path:
    digest = hashlib.sha256(RECIPE.encode()).hexdigest()[:12]
    return cache_dir() / f"studio-tiny-sd1-{digest}.safetensors"


def build(path: Path) -> Path:
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from studio.engine.models.single_file import save_single_file

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(320,), down_block_types=("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",), cross_attention_dim=768,
        attention_head_dim=8, norm_num_groups=32)
    vae = AutoencoderKL(
        block_out_channels=[128, 256, 512, 512], in_channels=3, out_channels=3,
        latent_channels=4, layers_per_block=2, sample_size=512,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
        bos_token_id=49406, eos_token_id=49407, pad_token_id=1, projection_dim=768))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012,
                                       beta_schedule="scaled_linear")
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=None, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return save_single_file(pipe, path, family="sd1", dtype=torch.float16)


def ensure_checkpoint() -> Path:
    """The cached checkpoint, built first if it is missing."""
    path = checkpoint_path()
    if not path.is_file():
        build(path)
    return path


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    print(ensure_checkpoint())
