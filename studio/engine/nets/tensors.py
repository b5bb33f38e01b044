"""Images and weights of the embedded networks: uint8 NHWC <-> float NCHW, safetensors states."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [-1, 1]."""
    arr = np.ascontiguousarray(images)
    if not arr.flags.writeable:  # e.g. np.asarray of a PIL image (torch warns on those)
        arr = arr.copy()
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float NCHW in [-1, 1] -> uint8 NHWC."""
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round()
    return x.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1, 1]."""
    mse = F.mse_loss((a.float() + 1) / 2, (b.float() + 1) / 2, reduction="none").mean((1, 2, 3))
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))



def load_state(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors state dict as float32."""
    return {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(path)).items()}


def load_net(cls: type[ModuleT], folder: Path, weights: str = "model.safetensors",
             frozen: bool = False) -> ModuleT:
    """``cls(**config.json)`` with the weights of ``folder / weights``, in eval mode.

    ``frozen`` also turns off the parameters' gradients (the engine's inference copies).
    """
    config = json.loads((folder / "config.json").read_text())
    module = cls(**config)
    # assign=True: the loaded tensors become the parameters. A module built while diffusers
    # loads a model on another thread can get meta parameters (accelerate's init_empty_weights
    # patches nn.Module process-wide), and copying into those would silently do nothing.
    module.load_state_dict(load_state(folder / weights), assign=True)
    module.eval()
    if frozen:
        for p in module.parameters():
            p.requires_grad_(False)
    return module
