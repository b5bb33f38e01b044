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
