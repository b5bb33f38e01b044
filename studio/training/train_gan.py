"""Train ``studio-tiny-gan``: a DCGAN generator and spectral-norm discriminator."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from studio.training.common import (
    TRAIN_SEED,
    Stopwatch,
    batches,
    build_dataset,
    log,
    save_module,
    setup_torch,
    to_tensor,
    write_training_record,
)
from studio.training.models import Discriminator, Generator

NAME = "studio-tiny-gan"
Z_DIM = 64
WIDTH = 48


def train(out_root: Path, minutes: float = 12.0, seed: int = 0, n_data: int = 100_000,
          batch_size: int = 64, lr: float = 2e-4) -> Path:
    """Non-saturating GAN loss, Adam(0.5, 0.999), EMA generator; save to ``out_root / NAME``."""
    setup_torch(seed)
    data = build_dataset(TRAIN_SEED, n_data)
    g, d = Generator(Z_DIM, WIDTH), Discriminator(WIDTH)
    g_ema = copy.deepcopy(g).eval()
    opt_g = torch.optim.Adam(g.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=lr, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(seed)
    clock = Stopwatch(minutes)
    step = 0
    for idx in batches(len(data), batch_size, seed + 4):
        if clock.done():
            break
        real = to_tensor(data.images[idx])
        z = torch.randn(batch_size, Z_DIM, generator=gen)
        fake = g(z)
        d_loss = F.softplus(-d(real)).mean() + F.softplus(d(fake.detach())).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        g_loss = F.softplus(-d(fake)).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        step += 1
        with torch.no_grad():
            decay = min(0.999, (1 + step) / (10 + step))
            for pe, p in zip(g_ema.parameters(), g.parameters(), strict=True):
                pe.lerp_(p, 1 - decay)
            for be, b in zip(g_ema.buffers(), g.buffers(), strict=True):
                be.copy_(b)
        if step % 100 == 0:
            log(f"gan step {step} d {d_loss.item():.3f} g {g_loss.item():.3f} t={clock.elapsed:.0f}s")
    out_dir = out_root / NAME
    save_module(g_ema, g_ema.config, out_dir / "generator", name="generator")
    d.eval()
    save_module(d, d.config, out_dir / "discriminator", name="discriminator")
    write_training_record(out_dir, {
        "command": f"python -m studio.training gan --minutes {minutes:g}",
        "seconds": round(clock.elapsed), "steps": step, "batch_size": batch_size,
        "train_samples": n_data, "z_dim": Z_DIM, "width": WIDTH,
        "final_d_loss": round(d_loss.item(), 4), "final_g_loss": round(g_loss.item(), 4)})
    log(f"gan saved to {out_dir} after {step} steps")
    return out_dir


def sample_z(n: int, seed: int, z_dim: int = Z_DIM) -> torch.Tensor:
    """Latents of the generator for ``seed`` (standard normal)."""
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, z_dim)).astype(np.float32))
