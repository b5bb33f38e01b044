"""Tiny real diffusers pipelines built from configs on the CPU (no download).

Used by the tests and the benchmarks, the way diffusers' own tests build dummy components:
real UNet, VAE, CLIP text encoders and a tokenizer this project trains itself, with random
weights. ``sd15_sized`` builds the Stable Diffusion 1.5 architecture at full size (random
weights: speed does not depend on them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_CORPUS = [
    "a photo of a cat", "a portrait of a smiling person with red hair and round glasses",
    "a painting of a house by the sea at sunset", "an astronaut riding a horse",
    "a dog on a blue background", "old man with white hair", "young woman with black hair",
]


def _tokenizer(path: Path, vocab_size: int = 1000):
    from studio.engine.models.tokenizer_build import build_clip_tokenizer

    return build_clip_tokenizer(path, TINY_CORPUS, vocab_size=vocab_size)


def _text_encoder(vocab_size: int, hidden: int, layers: int, *, projection: int | None = None,
                  eos_token_id: int = 1):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        bos_token_id=0, eos_token_id=eos_token_id, pad_token_id=eos_token_id,
        hidden_size=hidden, intermediate_size=hidden * 2, num_attention_heads=4,
        num_hidden_layers=layers, vocab_size=vocab_size, max_position_embeddings=77,
        layer_norm_eps=1e-5, projection_dim=projection or hidden, hidden_act="gelu",
    )
    if projection is not None:
        return CLIPTextModelWithProjection(config)
    return CLIPTextModel(config)


def build_tiny_pipeline(kind: str = "sd1", out_dir: str | Path | None = None, seed: int = 0,
                        work_dir: str | Path | None = None) -> Any:
    """Build a tiny ``StableDiffusionPipeline`` (``kind="sd1"``) or SDXL pipeline (``"sdxl"``).

    With ``out_dir`` the pipeline is also saved there as a diffusers folder (safetensors).
    """
    import tempfile

    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )

    torch.manual_seed(seed)
    tok_root = Path(work_dir or tempfile.mkdtemp(prefix="studio-tok-"))
    tokenizer = _tokenizer(tok_root / "tokenizer")
    vocab = len(tokenizer)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        num_train_timesteps=1000, steps_offset=1, timestep_spacing="leading")
    vae = AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"], norm_num_groups=32,
        sample_size=64)
    if kind == "sd1":
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4,
            out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
            norm_num_groups=32, attention_head_dim=8)
        text_encoder = _text_encoder(vocab, 32, 2)
        pipe = StableDiffusionPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
            scheduler=scheduler, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False)
    elif kind == "sdxl":
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4,
            out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=64,
            transformer_layers_per_block=(1, 1), attention_head_dim=(2, 4),
            use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=8, projection_class_embeddings_input_dim=80,
            norm_num_groups=32)
        text_encoder = _text_encoder(vocab, 32, 2)
        text_encoder_2 = _text_encoder(vocab, 32, 2, projection=32)
        tokenizer_2 = _tokenizer(tok_root / "tokenizer_2")
        pipe = StableDiffusionXLPipeline(
            vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
            tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler,
            force_zeros_for_empty_prompt=True)
    else:
        raise ValueError(f"unknown tiny pipeline kind {kind!r}")
    pipe.set_progress_bar_config(disable=True)
    _eval(pipe)
    if out_dir is not None:
        pipe.save_pretrained(out_dir, safe_serialization=True)
    return pipe


def _eval(pipe: Any) -> None:
    """Freshly built modules are in training mode; loaded ones are not. Match them."""
    for module in pipe.components.values():
        if hasattr(module, "eval"):
            module.eval()


def build_sd15_sized_pipeline(out_dir: str | Path | None = None, seed: int = 0) -> Any:
    """The SD 1.5 architecture at full size with random weights (for speed measurements)."""
    import tempfile

    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )

    torch.manual_seed(seed)
    tokenizer = _tokenizer(Path(tempfile.mkdtemp(prefix="studio-tok-")) / "tokenizer")
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                          "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                        "CrossAttnUpBlock2D"), attention_head_dim=8)
    vae = AutoencoderKL(
        block_out_channels=[128, 256, 512, 512], in_channels=3, out_channels=3,
        latent_channels=4, layers_per_block=2, sample_size=512,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4)
    text_encoder = _text_encoder(len(tokenizer), 768, 12)
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, skip_prk_steps=True, steps_offset=1)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    _eval(pipe)
    if out_dir is not None:
        pipe.save_pretrained(out_dir, safe_serialization=True)
    return pipe
