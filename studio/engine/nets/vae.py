"""The flat-latent VAE of the embedded portraits (``studio-tiny-vae``).

Built from its ``config.json`` (``FlatVAE(**config)``); images are float NCHW in [-1, 1]."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class FlatVAE(nn.Module):
    """Convolutional VAE with a flat latent vector (for latent arithmetic and sliders).

    Normalisation is ``GroupNorm(1, c)`` (layer norm over the feature map): more groups
    would erase each image's absolute colours, which is most of what a portrait is.

    Parameters
    ----------
    latent_dim
        Size of the latent vector ``z``.
    widths
        Channels of the four encoder stages (64 -> 4 px); the decoder mirrors them.
    refine
        Number of decoder scales (from 8 px up) with an extra 3 x 3 convolution.
    """

    def __init__(self, latent_dim: int = 128,
                 widths: tuple[int, ...] | list[int] = (32, 64, 96, 128), refine: int = 2) -> None:
        super().__init__()
        self.config: dict[str, Any] = {"latent_dim": latent_dim, "widths": list(widths),
                                       "refine": refine}
        self.latent_dim = latent_dim
        enc: list[nn.Module] = []
        cin = 3
        for w in widths:
            enc += [nn.Conv2d(cin, w, 4, 2, 1), nn.GroupNorm(1, w), nn.SiLU()]
            cin = w
        self.encoder = nn.Sequential(*enc, nn.Flatten())
        self.to_stats = nn.Linear(cin * 16, 2 * latent_dim)
        with torch.no_grad():  # start near-deterministic (std ~0.02), see train_vae
            self.to_stats.bias[latent_dim:] = -8.0
        self.from_z = nn.Linear(latent_dim, cin * 16)
        dec: list[nn.Module] = []
        outs = list(reversed(widths))[1:] + [widths[0] // 2]
        for i, w in enumerate(outs):
            dec += [nn.ConvTranspose2d(cin, w, 4, 2, 1), nn.GroupNorm(1, w), nn.SiLU()]
            if i < refine:  # 3x3 refinement at the coarse scales only (cheap)
                dec += [nn.Conv2d(w, w, 3, 1, 1), nn.GroupNorm(1, w), nn.SiLU()]
            cin = w
        self.decoder = nn.Sequential(*dec, nn.Conv2d(cin, 3, 3, 1, 1))
        self._top = widths[-1]

    def encode_stats(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z | images)."""
        mu, logvar = self.to_stats(self.encoder(images)).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 6)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Posterior mean ``mu`` (N, latent_dim) of images in [-1, 1]."""
        return self.encode_stats(images)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (N, 3, 64, 64) from latents (N, latent_dim)."""
        h = self.from_z(z).view(len(z), self._top, 4, 4)
        return torch.tanh(self.decoder(h))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode_stats(images)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decode(z), mu, logvar
