"""Train ``studio-tiny-gan``: generator + spectral-norm discriminator.

The generator starts from the trained ``studio-tiny-vae`` decoder fed a Gaussian fit of the
VAE's latents (so it draws portraits from step 0), then the adversarial game sharpens it:
blended, in-between samples of the Gaussian fit are what the discriminator learns to reject.
The discriminator is warmed up alone first so its first gradients are meaningful.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from studio.engine.nets.gan import Discriminator, Generator
from studio.engine.nets.tensors import to_tensor
from studio.training.common import (
    TRAIN_SEED,
    Stopwatch,
    batches,
    build_dataset,
    chained_record,
    log,
    resume_from,
    resume_seed,
    save_module,
    setup_torch,
    write_training_record,
)

NAME = "studio-tiny-gan"
D_WIDTH = 32
D_WARMUP_STEPS = 100
EMA_DECAY = 0.99  # of the generator weights saved
EMA_DECAY_RESUMED = 0.999  # a resumed run refines: a longer average


@torch.no_grad()
def latent_gaussian(vae: torch.nn.Module, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    mu = torch.cat([vae.encode(to_tensor(images[s:s + 250])) for s in range(0, len(images), 250)])
    mean = mu.mean(0)
    cov = torch.cov((mu - mean).T) + 1e-4 * torch.eye(mu.shape[1])
    return mean, torch.linalg.cholesky(cov)


def train(out_root: Path, minutes: float = 12.0, seed: int = 0, n_data: int = 100_000,
          batch_size: int = 32, lr_g: float = 5e-5, lr_d: float = 2e-4,
          resume: bool = False) -> Path:
    """Non-saturating GAN loss, Adam(0.5, 0.999), EMA generator; save to ``out_root / NAME``.

    With ``resume`` the saved (EMA) generator and the discriminator play on, without the
    discriminator warm-up, on a fresh pass over the data, averaging the generator over a
    longer window (``EMA_DECAY_RESUMED``).
    """
    from studio.engine.nets.shipped import load_discriminator, load_generator, load_vae

    previous: dict[str, Any] = resume_from(out_root / NAME) if resume else {}
    if resume:  # each resumed run draws other batches and latents
        seed = resume_seed(seed, previous)
    setup_torch(seed)
    clock = Stopwatch(minutes)
    data = build_dataset(TRAIN_SEED, n_data)
    if resume:
        g, d = load_generator(out_root).train(), load_discriminator(out_root).train()
    else:
        vae = load_vae(out_root)
        mean, chol = latent_gaussian(vae, data.images[:4000])
        g = Generator.from_vae(vae, mean, chol)
        d = Discriminator(D_WIDTH)
    warmup = 0 if resume else D_WARMUP_STEPS
    ema = EMA_DECAY_RESUMED if resume else EMA_DECAY
    g_ema = copy.deepcopy(g).eval()
    opt_g = torch.optim.Adam(g.parameters(), lr=lr_g, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=lr_d, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(seed)
    step = 0
    g_loss = torch.zeros(())
    for idx in batches(len(data), batch_size, seed + 4):
        if step and clock.done():  # at least one step: a busy CPU may spend a tiny budget
            break                  # on loading alone
        real = to_tensor(data.images[idx])
        z = torch.randn(batch_size, g.z_dim, generator=gen)
        fake = g(z)
        d_loss = F.softplus(-d(real)).mean() + F.softplus(d(fake.detach())).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        step += 1
        if step > warmup:
            g_loss = F.softplus(-d(fake)).mean()
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            with torch.no_grad():
                for pe, p in zip(g_ema.parameters(), g.parameters(), strict=True):
                    pe.lerp_(p, 1 - ema)
        if step % 25 == 0:
            log(f"gan step {step} d {d_loss.item():.3f} g {g_loss.item():.3f} t={clock.elapsed:.0f}s")
    out_dir = out_root / NAME
    save_module(g_ema, g_ema.config, out_dir / "generator", name="generator")
    d.eval()
    save_module(d, d.config, out_dir / "discriminator", name="discriminator")
    command = f"python -m studio.training gan --minutes {minutes:g}"
    write_training_record(out_dir, {
        **chained_record(previous, command + (" --resume" if resume else ""), clock.elapsed,
                         step),
        "d_warmup_steps": D_WARMUP_STEPS, "ema_decay": ema,
        "batch_size": batch_size, "init": "studio-tiny-vae decoder + Gaussian fit of its latents",
        "final_d_loss": round(d_loss.item(), 4), "final_g_loss": round(g_loss.item(), 4)})
    log(f"gan saved to {out_dir} after {step} steps")
    return out_dir


def sample_z(n: int, seed: int, z_dim: int = 128) -> torch.Tensor:
    """Latents of the generator for ``seed`` (standard normal)."""
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, z_dim)).astype(np.float32))
