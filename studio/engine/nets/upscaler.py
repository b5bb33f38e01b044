"""The embedded upscaler's network (``studio-tiny-upscaler``): compact Real-ESRGAN."""

from __future__ import annotations

import math

import torch
from torch import nn


class CompactSR(nn.Module):
    """The compact Real-ESRGAN network (SRVGGNetCompact): convs + PReLU + pixel shuffle.

    The state-dict keys (``body.N.weight``) match Real-ESRGAN's, so spandrel and other tools
    load our weights as well, and we load theirs.
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 32,
                 num_conv: int = 8, upscale: int = 2) -> None:
        super().__init__()
        self.upscale = upscale
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1),
                                   nn.PReLU(num_parameters=num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_parameters=num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.shuffle = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.shuffle(out)
        return out + nn.functional.interpolate(x, scale_factor=self.upscale, mode="nearest")

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> CompactSR:
        """Rebuild the network from its weights (sizes are read from the tensors)."""
        convs = sorted(int(k.split(".")[1]) for k in state
                       if k.startswith("body.") and k.endswith(".weight")
                       and state[k].ndim == 4)
        first, last = state[f"body.{convs[0]}.weight"], state[f"body.{convs[-1]}.weight"]
        num_feat, num_in = int(first.shape[0]), int(first.shape[1])
        out_ch = int(last.shape[0])
        scale = int(round(math.sqrt(out_ch / num_in)))
        model = cls(num_in, num_in, num_feat, len(convs) - 2, scale)
        model.load_state_dict(state, assign=True)  # see nets.tensors.load_net
        return model
