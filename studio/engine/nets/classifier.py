"""The attribute classifier of the embedded portraits (``studio-tiny-attributes``).

Built from its ``config.json`` (``AttributeClassifier(**config)``); images are float NCHW
in [-1, 1]."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from studio.core.portraits.attributes import CLASS_ATTRIBUTES


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
