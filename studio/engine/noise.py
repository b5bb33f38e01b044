"""Noise arithmetic shared by variations, interpolation and seed exploration."""

from __future__ import annotations

from typing import Any


def slerp(a: Any, b: Any, t: float, eps: float = 1e-7) -> Any:
    """Spherical interpolation between two noise tensors (keeps the noise's norm statistics).

    ``t = 0`` gives ``a`` exactly and ``t = 1`` gives ``b`` exactly.
    """
    import torch

    if t <= 0:
        return a.clone()
    if t >= 1:
        return b.clone()
    a32, b32 = a.float().flatten(), b.float().flatten()
    dot = torch.clamp((a32 / a32.norm()) @ (b32 / b32.norm()), -1.0, 1.0)
    omega = torch.arccos(dot)
    if omega.abs() < eps:
        out = (1 - t) * a32 + t * b32
    else:
        so = torch.sin(omega)
        out = (torch.sin((1 - t) * omega) / so) * a32 + (torch.sin(t * omega) / so) * b32
    return out.reshape(a.shape).to(a.dtype)
