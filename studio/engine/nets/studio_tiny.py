"""Pure-torch modules of studio-tiny: attribute classifier, flat-latent VAE, DCGAN pair.

Every module is built from a plain ``config`` dict (saved as ``config.json`` next to the
safetensors weights), so ``Module(**config)`` rebuilds it. Images are float NCHW in [-1, 1].
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from studio.core.portraits.render import CLASS_ATTRIBUTES


class AttributeClassifier(nn.Module):
    """CNN predicting hair, glasses, skin and background classes plus the smile value.

    Parameters
    ----------
    widths
        Channels of the four stride-2 convolutions (64 -> 4 px).
    hidden
        Width of the shared fully connected layer.
    """

    def __init__(self, widths: tuple[int, ...] | list[int] = (24, 48, 64, 96),
                 hidden: int = 192) -> None:
        super().__init__()
        self.config: dict[str, Any] = {"widths": list(widths), "hidden": hidden}
        layers: list[nn.Module] = []
        cin = 3
        for w in widths:
            layers += [nn.Conv2d(cin, w, 4, 2, 1), nn.BatchNorm2d(w), nn.SiLU()]
            cin = w
        self.features = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(cin * 4 * 4, hidden), nn.SiLU())
        self.heads = nn.ModuleDict({k: nn.Linear(hidden, len(v))
                                    for k, v in CLASS_ATTRIBUTES.items()})
        self.smile = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per categorical attribute and ``"smile"`` (N,) in [-1, 1]."""
        h = self.fc(self.features(x))
        out = {k: head(h) for k, head in self.heads.items()}
        out["smile"] = torch.tanh(self.smile(h)).squeeze(1)
        return out


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


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1, 1]."""
    mse = F.mse_loss((a.float() + 1) / 2, (b.float() + 1) / 2, reduction="none").mean((1, 2, 3))
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


class LatentAttributeNet(nn.Module):
    """MLP reading the attributes from a GAN latent ``z`` (N, z_dim), not from pixels.

    Outputs the logits of every categorical attribute and the smile value, like
    ``AttributeClassifier``. Trained on the image classifier's readings of the generator's
    samples; its gradients give the latent sliders a curved path that keeps the other
    attributes (``studio.core.sliders.latent_flow``). Plain ``Linear``/``SiLU`` layers so that the
    engine evaluates it and its Jacobian in numpy.
    """

    def __init__(self, z_dim: int = 128, hidden: int = 256, depth: int = 2) -> None:
        super().__init__()
        self.config: dict[str, Any] = {"z_dim": z_dim, "hidden": hidden, "depth": depth}
        layers: list[nn.Module] = []
        cin = z_dim
        for _ in range(depth):
            layers += [nn.Linear(cin, hidden), nn.SiLU()]
            cin = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cin, sum(len(v) for v in CLASS_ATTRIBUTES.values()) + 1)
        # E[J^T J] of the generator's pixels over z (set after training, see
        # ``studio.training.train_gan_attributes.pixel_metric``): how much a step in z
        # changes the image, direction by direction.
        self.register_buffer("pixel_metric", torch.zeros(z_dim, z_dim))

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.head(self.body(z))
        res: dict[str, torch.Tensor] = {}
        i = 0
        for k, names in CLASS_ATTRIBUTES.items():
            res[k] = out[:, i:i + len(names)]
            i += len(names)
        res["smile"] = torch.tanh(out[:, i])
        return res
