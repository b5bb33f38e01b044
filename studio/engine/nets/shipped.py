"""The shipped studio-tiny models in ``resources/models``: loading, and ``classify``.

``classify`` is what tests, benchmarks and training use to measure prompt adherence and
slider edits.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studio.core.portraits.attributes import CLASS_ATTRIBUTES, SMILE_BINS, smile_bin_index
from studio.engine.nets.classifier import AttributeClassifier
from studio.engine.nets.gan import Discriminator, Generator
from studio.engine.nets.tensors import load_net, to_tensor
from studio.engine.nets.vae import FlatVAE
from studio.paths import embedded_models_dir

CLASSIFIER = "studio-tiny-attributes"
VAE = "studio-tiny-vae"
GAN = "studio-tiny-gan"
DIFFUSION = "studio-tiny-diffusion"
CONFIDENT = 0.9  # a prediction is confident when every class head gives at least this


def model_dir(name: str, root: Path | None = None) -> Path:
    """Folder of a shipped model (``resources/models/<name>`` by default)."""
    return (root or embedded_models_dir()) / name


def load_classifier(root: Path | None = None) -> AttributeClassifier:
    """The attribute classifier (eval mode, float32)."""
    return load_net(AttributeClassifier, model_dir(CLASSIFIER, root))


def load_vae(root: Path | None = None) -> FlatVAE:
    """The flat-latent VAE: ``encode(images) -> mu``, ``decode(z) -> images``."""
    return load_net(FlatVAE, model_dir(VAE, root))


def load_generator(root: Path | None = None) -> Generator:
    """The GAN generator: ``z`` (N, z_dim) standard normal -> images in [-1, 1]."""
    return load_net(Generator, model_dir(GAN, root) / "generator", "generator.safetensors")


def load_discriminator(root: Path | None = None) -> Discriminator:
    """The GAN discriminator (realness logits)."""
    return load_net(Discriminator, model_dir(GAN, root) / "discriminator",
                    "discriminator.safetensors")


def load_diffusion(root: Path | None = None) -> Any:
    """The text-to-image ``StableDiffusionPipeline`` (float32, CPU, progress bar off)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(model_dir(DIFFUSION, root),
                                                   torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def recommended_settings(root: Path | None = None) -> dict[str, Any]:
    """Steps, guidance, scheduler and size recommended in ``studio.json``."""
    studio = json.loads((model_dir(DIFFUSION, root) / "studio.json").read_text())
    return dict(studio["recommended"])


@lru_cache(maxsize=2)
def _cached_classifier(root: str | None) -> AttributeClassifier:
    return load_classifier(Path(root) if root else None)


@torch.no_grad()
def classify(images: np.ndarray, model: AttributeClassifier | None = None,
             batch_size: int = 256) -> dict[str, Any]:
    """Predict the attributes of uint8 NHWC 64 x 64 RGB portraits.

    Returns
    -------
    dict
        For each of ``hair``, ``glasses``, ``skin``, ``background``: a list of label strings,
        plus ``<name>_prob`` (n, classes) probabilities; ``smile`` (n,) in [-1, 1] and
        ``smile_bin`` labels; ``confidence`` (n,): the smallest top probability over the
        four class heads.
    """
    if images.ndim != 4 or images.shape[1:] != (64, 64, 3) or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images of shape (n, 64, 64, 3), got "
                         f"{images.dtype} {images.shape}")
    model = model or _cached_classifier(None)
    probs: dict[str, list[np.ndarray]] = {k: [] for k in CLASS_ATTRIBUTES}
    smiles: list[np.ndarray] = []
    for s in range(0, len(images), batch_size):
        out = model(to_tensor(images[s:s + batch_size]))
        for k in CLASS_ATTRIBUTES:
            probs[k].append(out[k].float().softmax(1).numpy())
        smiles.append(out["smile"].float().numpy())
    result: dict[str, Any] = {}
    conf = np.ones(len(images))
    for k, values in CLASS_ATTRIBUTES.items():
        p = np.concatenate(probs[k])
        result[k] = [values[i] for i in p.argmax(1)]
        result[f"{k}_prob"] = p
        conf = np.minimum(conf, p.max(1))
    smile = np.concatenate(smiles)
    result["smile"] = smile
    result["smile_bin"] = [SMILE_BINS[i] for i in smile_bin_index(smile)]
    result["confidence"] = conf
    return result
