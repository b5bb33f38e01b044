"""Cheap per-step previews: a linear latent -> RGB map, fitted once per VAE.

Published factors exist for the SD families, but fitting them from the model's own VAE works for
every latent space (SD, SDXL, DiT VAEs, our tiny models) and costs one small encoder pass at
load time. A preview is a matrix product on the latent: far under 1% of a UNet step.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _probe_images(size: int = 64) -> np.ndarray:
    """Flat colours and gradients covering the RGB cube, N x 3 x size x size in [-1, 1]."""
    rng = np.random.default_rng(0)
    imgs = []
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    for c in np.array([[1, 1, 1], [-1, -1, -1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1],
                       [1, 1, -1], [-1, 1, 1], [1, -1, 1], [0, 0, 0]], dtype=np.float32):
        imgs.append(np.broadcast_to(c[:, None, None], (3, size, size)))
    for axis in range(3):
        img = np.zeros((3, size, size), np.float32)
        img[axis] = ramp[None, :]
        img[(axis + 1) % 3] = ramp[:, None]
        imgs.append(img)
    for _ in range(4):
        blocks = rng.uniform(-1, 1, (3, 4, 4)).astype(np.float32)
        imgs.append(np.kron(blocks, np.ones((size // 4, size // 4), np.float32)))
    return np.stack(imgs)


def fit_latent_rgb(vae: Any, size: int = 64) -> np.ndarray:
    """Least-squares ``(C+1) x 3`` map from a latent pixel (plus bias) to its RGB in [-1, 1]."""
    import torch

    probes = _probe_images(size)
    param = next(vae.parameters())
    with torch.no_grad():
        x = torch.from_numpy(probes).to(device=param.device, dtype=param.dtype)
        # A video VAE (Qwen-Image's, Wan's) encodes frames: the probes as one-frame clips.
        frames = "temperal_downsample" in getattr(vae, "config", {})
        encoded = vae.encode(x.unsqueeze(2) if frames else x)
        dist = getattr(encoded, "latent_dist", None)  # a KL VAE: a distribution; DC-AE: latents
        latents = dist.mean if dist is not None else encoded.latent
        latents = (latents[:, :, 0] if frames else latents).float().cpu().numpy()
    n, c, h, w = latents.shape
    # Average the probe colours over each latent cell, then solve latent -> colour.
    f = size // h
    target = probes.reshape(n, 3, h, f, w, f).mean(axis=(3, 5))
    a = latents.transpose(0, 2, 3, 1).reshape(-1, c)
    a = np.concatenate([a, np.ones((a.shape[0], 1), np.float32)], axis=1)
    b = target.transpose(0, 2, 3, 1).reshape(-1, 3)
    factors, *_ = np.linalg.lstsq(a, b, rcond=None)
    return factors.astype(np.float32)


class LatentPreviewer:
    """Turns the UNet's latents (scaled as the pipeline holds them) into a small uint8 image."""

    def __init__(self, factors: np.ndarray, scaling_factor: float = 1.0,
                 shift_factor: float = 0.0) -> None:
        self._factors = factors
        self._scale = float(scaling_factor or 1.0)
        self._shift = float(shift_factor or 0.0)
        self._torch_factors: Any = None

    def __call__(self, latents: Any, index: int = 0) -> np.ndarray:
        import torch

        lat = latents[index].detach()
        if lat.ndim != 3:  # packed/sequence latents (some DiT pipelines): no preview
            return np.zeros((8, 8, 3), np.uint8)
        if self._torch_factors is None or self._torch_factors.device != lat.device:
            self._torch_factors = torch.from_numpy(self._factors).to(lat.device)
        lat = lat.float() / self._scale + self._shift
        c = lat.shape[0]
        rgb = torch.einsum("chw,ck->hwk", lat, self._torch_factors[:c]) + self._torch_factors[c]
        rgb = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return rgb.cpu().numpy()
