"""Model hashes as A1111 shows them (sha256 of the weights), cached by path, size and mtime."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from studio.paths import user_cache_dir

_lock = threading.Lock()
# The file that names a folder model, in order: a pipeline's denoiser, a flat VAE's or
# upscaler's weights, a GAN's generator (not its discriminator, its latent prior or its
# attribute reader, which sort first), then the first *.safetensors found.
WEIGHT_FILES = ("unet/diffusion_pytorch_model.safetensors",
                "transformer/diffusion_pytorch_model.safetensors",
                "unet/diffusion_pytorch_model.fp16.safetensors",
                "model.safetensors",
                "generator/generator.safetensors")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def weights_file(model_path: Path) -> Path | None:
    """The file whose hash names a model: the file itself, or a folder's denoiser weights."""
    if model_path.is_file():
        return model_path
    for rel in WEIGHT_FILES:
        if (model_path / rel).is_file():
            return model_path / rel
    files = sorted(model_path.rglob("*.safetensors"))
    return files[0] if files else None


def model_hash(model_path: str | Path) -> str:
    """sha256 (hex) of the model's weights; ``""`` if there is nothing to hash."""
    target = weights_file(Path(model_path))
    if target is None:
        return ""
    stat = target.stat()
    key = f"{target.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cache_file = user_cache_dir() / "model-hashes.json"
    with _lock:
        try:
            cache = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            cache = {}
        if key in cache:
            return str(cache[key])
        digest = _sha256_file(target)
        cache[key] = digest
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(cache))
            tmp.replace(cache_file)
        except OSError:
            pass  # a read-only cache only costs a rehash next time
    return digest
