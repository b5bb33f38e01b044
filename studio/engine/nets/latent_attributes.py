"""The latent attribute reader of the embedded GAN: attributes read from ``z``, not pixels."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from studio.core.portraits.attributes import CLASS_ATTRIBUTES


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
