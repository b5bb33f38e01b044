"""The DCGAN pair of the embedded portraits (``studio-tiny-gan``).

The generator has the layout of the ``FlatVAE`` decoder, so it can start from a trained
one (``Generator.from_vae``). Images are float NCHW in [-1, 1]."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from studio.engine.nets.vae import FlatVAE


class Generator(nn.Module):
    """Generator: ``z`` (N, z_dim) standard normal -> images (N, 3, 64, 64) in [-1, 1].

    DCGAN-style (a linear layer to 4 x 4, then transposed convolutions), with the layout of
    the ``FlatVAE`` decoder so it can start from a trained decoder (see ``from_vae``).
    """

    def __init__(self, z_dim: int = 128,
                 widths: tuple[int, ...] | list[int] = (32, 64, 96, 128), refine: int = 2) -> None:
        super().__init__()
        self.config: dict[str, Any] = {"z_dim": z_dim, "widths": list(widths), "refine": refine}
        self.z_dim = z_dim
        template = FlatVAE(z_dim, widths, refine)
        self.from_z = template.from_z
        self.decoder = template.decoder
        self._top = widths[-1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.from_z(z).view(len(z), self._top, 4, 4)
        return torch.tanh(self.decoder(h))

    @classmethod
    def from_vae(cls, vae: FlatVAE, mean: torch.Tensor, chol: torch.Tensor) -> Generator:
        """Start from a VAE decoder fed ``mean + chol @ z`` (a Gaussian fit of its latents)."""
        g = cls(vae.latent_dim, vae.config["widths"], vae.config["refine"])
        g.decoder.load_state_dict(vae.decoder.state_dict())
        with torch.no_grad():
            w, bias = vae.from_z.weight, vae.from_z.bias
            g.from_z.weight.copy_(w @ chol)
            g.from_z.bias.copy_(bias + w @ mean)
        return g


class Discriminator(nn.Module):
    """DCGAN discriminator with spectral norm: images -> one realness logit each."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.config: dict[str, Any] = {"width": width}
        sn = nn.utils.spectral_norm
        w = width
        self.net = nn.Sequential(
            sn(nn.Conv2d(3, w, 4, 2, 1)), nn.LeakyReLU(0.2, True),  # 32
            sn(nn.Conv2d(w, w * 2, 4, 2, 1)), nn.LeakyReLU(0.2, True),  # 16
            sn(nn.Conv2d(w * 2, w * 4, 4, 2, 1)), nn.LeakyReLU(0.2, True),  # 8
            sn(nn.Conv2d(w * 4, w * 8, 4, 2, 1)), nn.LeakyReLU(0.2, True),  # 4
            sn(nn.Conv2d(w * 8, 1, 4, 1, 0)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(len(x))
