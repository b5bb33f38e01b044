"""Train ``studio-tiny-vae``: the flat-latent convolutional VAE (encode -> edit -> decode)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from studio.training.common import (
    TRAIN_SEED,
    Stopwatch,
    batches,
    build_dataset,
    chained_record,
    log,
    optimizer_step,
    resume_from,
    save_module,
    setup_torch,
    to_tensor,
    write_training_record,
)
from studio.training.models import FlatVAE

NAME = "studio-tiny-vae"
KL_WEIGHT = 2e-4  # per latent dim relative to the per-pixel loss: sharp yet smooth latents


def _grad_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (F.l1_loss(a[..., :, 1:] - a[..., :, :-1], b[..., :, 1:] - b[..., :, :-1])
            + F.l1_loss(a[..., 1:, :] - a[..., :-1, :], b[..., 1:, :] - b[..., :-1, :]))


def train(out_root: Path, minutes: float = 12.0, seed: int = 0, n_data: int = 100_000,
          batch_size: int = 32, lr: float = 2e-3, resume: bool = False) -> Path:
    """Train for ``minutes`` of wall clock and save to ``out_root / NAME``.

    With ``resume`` training continues from the weights already in ``out_root / NAME``.
    """
    setup_torch(seed)
    data = build_dataset(TRAIN_SEED, n_data)
    model = FlatVAE()
    previous: dict[str, Any] = {}
    if resume:
        previous = resume_from(out_root / NAME, model)
        seed += 1000  # a fresh pass over the data
        lr = lr / 2
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    clock = Stopwatch(minutes)
    step = 0
    for idx in batches(len(data), batch_size, seed + 3):
        if clock.done():
            break
        f = clock.fraction
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / 20) * (0.03 + 0.97 * 0.5 * (1 + np.cos(np.pi * f)))
        x = to_tensor(data.images[idx])
        rec, mu, logvar = model(x)
        rec, mu, logvar = rec.float(), mu.float(), logvar.float()
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
        loss = (F.l1_loss(rec, x) + F.mse_loss(rec, x) + 0.5 * _grad_loss(rec, x)
                + KL_WEIGHT * kl / model.latent_dim)
        optimizer_step(opt, loss, clip=list(model.parameters()))
        step += 1
        if step % 100 == 0:
            mse = F.mse_loss((rec + 1) / 2, (x + 1) / 2).item()
            log(f"vae step {step} loss {loss.item():.4f} psnr {10 * np.log10(1 / mse):.2f} "
                f"kl {kl.item():.1f} t={clock.elapsed:.0f}s")
    model.eval()
    out_dir = out_root / NAME
    save_module(model, model.config, out_dir)
    command = f"python -m studio.training vae --minutes {minutes:g}"
    write_training_record(out_dir, {
        **chained_record(previous, command + (" --resume" if resume else ""), clock.elapsed,
                         step),
        "batch_size": batch_size, "train_samples": n_data, "kl_weight": KL_WEIGHT,
        "final_loss": round(loss.item(), 4)})
    log(f"vae saved to {out_dir} after {step} steps")
    return out_dir
