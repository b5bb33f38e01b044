"""The models the benchmark runs on, built once into the cache and reused.

* ``tiny``: the embedded ``studio-tiny-diffusion`` when it is installed, else a tiny SD1
  pipeline built from configs (``studio.engine.models.tiny``).
* ``sd15``: the Stable Diffusion 1.5 architecture at full size with random weights (speed
  does not depend on the weights). Building it takes minutes, so it is kept on disk.
* ``sd15_checkpoint``: the same UNet and VAE with a CLIP-L-shaped text encoder, saved as one
  original-layout fp16 ``.safetensors`` (2.0 GB), the file an artist downloads and the one
  ComfyUI loads (its SD 1.x text encoder is fixed to CLIP-L's shape): what ``studio bench
  --peer comfyui`` runs through both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EMBEDDED_ID = "studio-tiny-diffusion"
_DONE = ".studio-bench-complete"


@dataclass(frozen=True)
class BenchModel:
    """A model folder and the request size the benchmark uses on it."""

    key: str  # "tiny" or "sd15"
    path: Path
    label: str
    size: int  # width = height in pixels


def bench_cache_dir(root: str | Path | None = None) -> Path:
    from studio.paths import user_cache_dir

    path = Path(root) if root else user_cache_dir() / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _built(folder: Path, build) -> Path:
    if not (folder / _DONE).is_file():
        folder.mkdir(parents=True, exist_ok=True)
        build(folder)
        (folder / _DONE).write_text("ok\n", encoding="utf-8")
    return folder


def tiny_model(cache: Path, prefer_embedded: bool = True) -> BenchModel:
    """The embedded tiny model if installed, else a built tiny SD1 pipeline."""
    from studio.paths import embedded_models_dir

    embedded = embedded_models_dir() / EMBEDDED_ID
    if prefer_embedded and (embedded / "model_index.json").is_file():
        return BenchModel("tiny", embedded, f"embedded {EMBEDDED_ID}", _native_size(embedded))

    def build(folder: Path) -> None:
        from studio.engine.models.tiny import build_tiny_pipeline

        build_tiny_pipeline("sd1", folder / "pipe", work_dir=folder / "work")

    folder = _built(cache / "tiny-sd1", build) / "pipe"
    return BenchModel("tiny", folder, "tiny SD1 (random weights, built from config)", 64)


def sd15_model(cache: Path) -> BenchModel:
    """The SD 1.5 architecture at full size, random weights, 512x512."""

    def build(folder: Path) -> None:
        from studio.engine.models.tiny import build_sd15_sized_pipeline

        build_sd15_sized_pipeline(folder / "pipe")

    folder = _built(cache / "sd15-sized", build) / "pipe"
    return BenchModel("sd15", folder, "SD 1.5 architecture (random weights)", 512)


def _native_size(folder: Path) -> int:
    """The image size a diffusers folder was trained for (UNet sample size x VAE factor)."""
    import json

    try:
        unet = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
        vae = json.loads((folder / "vae" / "config.json").read_text(encoding="utf-8"))
        factor = 2 ** (len(vae.get("block_out_channels", [0, 0, 0, 0])) - 1)
        size = int(unet.get("sample_size", 64)) * factor
        return size if isinstance(size, int) and size >= 8 else 64
    except (OSError, ValueError):
        return 64


SD15_CHECKPOINT_RECIPE = "sd15-sized unet+vae seed0 | clip-l 768x12 seed0 | fp16 | v1"


def sd15_checkpoint(cache: Path) -> BenchModel:
    """The SD 1.5 architecture as one fp16 single-file checkpoint (CLIP-L text encoder)."""
    import hashlib

    digest = hashlib.sha256(SD15_CHECKPOINT_RECIPE.encode()).hexdigest()[:12]
    folder = cache / f"sd15-checkpoint-{digest}"
    path = folder / "sd15-sized-random.safetensors"

    def build(out: Path) -> None:
        import torch
        from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
        from transformers import CLIPTextConfig, CLIPTextModel

        from studio.engine.models.single_file import save_single_file

        source = sd15_model(cache).path
        unet = UNet2DConditionModel.from_pretrained(source / "unet")
        vae = AutoencoderKL.from_pretrained(source / "vae")
        torch.manual_seed(0)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
            num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
            bos_token_id=49406, eos_token_id=49407, pad_token_id=1, projection_dim=768))
        from diffusers import EulerDiscreteScheduler

        scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012,
                                           beta_schedule="scaled_linear")
        pipe = StableDiffusionPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=None, unet=unet, scheduler=scheduler,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        save_single_file(pipe, out / path.name, family="sd1", dtype=torch.float16)

    _built(folder, build)
    return BenchModel("sd15", path, "SD 1.5 architecture, fp16 single file (random weights)",
                      512)


# -- SDXL at full size and the SD-Turbo-shaped UNet (issue #26, point 6) --------------------
SDXL_RECIPE = "sdxl-sized unet+vae+clip-l+clip-bigG seed0 | bf16 | v1"


def sdxl_unet_config() -> dict:
    """Stable Diffusion XL base 1.0's UNet (2.6B parameters), as its ``config.json`` has it."""
    return dict(
        sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280), cross_attention_dim=2048,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
        use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
        norm_num_groups=32)


def turbo_unet_config() -> dict:
    """SD-Turbo's UNet: the Stable Diffusion 2.1 architecture (865M parameters, OpenCLIP-H
    context of 1024), as ``stabilityai/sd-turbo``'s ``unet/config.json`` has it."""
    return dict(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=1024,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                          "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                        "CrossAttnUpBlock2D"), attention_head_dim=(5, 10, 20, 20),
        use_linear_projection=True, norm_num_groups=32)


def build_sdxl_sized_pipeline(out_dir: str | Path) -> None:
    """The SDXL base architecture at full size with random weights, saved as a diffusers
    folder of bf16 safetensors (about 7 GB): UNet, the SD VAE shape (scaling 0.13025),
    CLIP-L and OpenCLIP-bigG-shaped text encoders. Built in bf16 (torch's default dtype
    while the modules are made), so the build holds the weights once, not in fp32."""
    import tempfile

    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from studio.engine.models.tiny import _eval, _tokenizer

    tok_root = Path(tempfile.mkdtemp(prefix="studio-tok-"))
    tokenizer = _tokenizer(tok_root / "tokenizer")
    tokenizer_2 = _tokenizer(tok_root / "tokenizer_2")
    previous = torch.get_default_dtype()
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    try:
        unet = UNet2DConditionModel(**sdxl_unet_config())
        vae = AutoencoderKL(
            block_out_channels=[128, 256, 512, 512], in_channels=3, out_channels=3,
            latent_channels=4, layers_per_block=2, sample_size=1024, scaling_factor=0.13025,
            down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4)
        common = dict(vocab_size=49408, max_position_embeddings=77, bos_token_id=0,
                      eos_token_id=1, pad_token_id=1)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
            num_attention_heads=12, hidden_act="quick_gelu", projection_dim=768, **common))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(
            hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
            num_attention_heads=20, hidden_act="gelu", projection_dim=1280, **common))
    finally:
        torch.set_default_dtype(previous)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        num_train_timesteps=1000, steps_offset=1, timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
        tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler,
        force_zeros_for_empty_prompt=True)
    _eval(pipe)
    pipe.save_pretrained(out_dir, safe_serialization=True)


def sdxl_model(cache: Path) -> BenchModel:
    """The SDXL architecture at full size (random weights, bf16 files), 1024x1024. Built in
    a child process (7 GB while it is made), once."""
    from studio.bench.measure import run_child

    def build(folder: Path) -> None:
        run_child("studio.bench.child", ["build-sdxl", str(folder / "pipe")], timeout=3600)

    folder = _built(cache / "sdxl-sized", build) / "pipe"
    return BenchModel("sdxl", folder, "SDXL architecture (random weights, bf16 files)", 1024)
