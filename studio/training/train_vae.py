"""Train ``studio-tiny-vae``: the flat-latent convolutional VAE (encode -> edit -> decode)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from studio.engine.nets.tensors import to_tensor
from studio.engine.nets.vae import FlatVAE
from studio.training.common import (
    TRAIN_SEED,
    Stopwatch,
    batches,
    build_dataset,
    chained_record,
    log,
    optimizer_step,
    resume_from,
    resume_seed,
    save_module,
    setup_torch,
    write_training_record,
)

NAME = "studio-tiny-vae"
KL_WEIGHT = 2e-4  # per latent dim relative to the per-pixel loss: sharp yet smooth latents
# Weight of the perceptual term: without it the pixel losses let the decoder drop the face's
# few-pixel details (eyes, mouth, thin frames) for an average face, and the smile is lost.
PERCEPTUAL_WEIGHT = 0.5


class PerceptualLoss(torch.nn.Module):
    """Feature matching on the trained attribute classifier's convolutions and hidden layer.

    The LPIPS idea with our own network: each stage's squared feature difference relative to
    the real image's feature energy, summed over the stages. The classifier's features are
    made to see hair, glasses, smile, skin and background, which are what a reconstruction
    must keep. Its weights stay frozen.
    """

    def __init__(self, classifier: torch.nn.Module) -> None:
        super().__init__()
        self.stages = torch.nn.ModuleList()
        layers = list(classifier.features)
        for i in range(0, len(layers), 3):  # conv, norm, activation
            self.stages.append(torch.nn.Sequential(*layers[i:i + 3]))
        self.stages.append(classifier.fc)  # the hidden layer all attribute heads read
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> PerceptualLoss:  # always frozen (BatchNorm stats)
        return super().train(False)

    def forward(self, rec: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        loss = rec.new_zeros(())
        a, b = rec, real
        for stage in self.stages:
            a, b = stage(a), stage(b)
            loss = loss + (a - b).pow(2).mean() / (b.pow(2).mean() + 1e-6)
        return loss


def _grad_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (F.l1_loss(a[..., :, 1:] - a[..., :, :-1], b[..., :, 1:] - b[..., :, :-1])
            + F.l1_loss(a[..., 1:, :] - a[..., :-1, :], b[..., 1:, :] - b[..., :-1, :]))


def train(out_root: Path, minutes: float = 12.0, seed: int = 0, n_data: int = 100_000,
          batch_size: int = 32, lr: float = 2e-3, resume: bool = False,
          perceptual: float = PERCEPTUAL_WEIGHT) -> Path:
    """Train for ``minutes`` of wall clock and save to ``out_root / NAME``.

    With ``resume`` training continues from the weights already in ``out_root / NAME``.
    ``perceptual`` > 0 adds the feature-matching term of the attribute classifier in
    ``out_root`` (train the classifier first).
    """
    from studio.engine.nets.shipped import load_classifier

    setup_torch(seed)
    percept = PerceptualLoss(load_classifier(out_root)) if perceptual > 0 else None
    data = build_dataset(TRAIN_SEED, n_data)
    model = FlatVAE()
    previous: dict[str, Any] = {}
    if resume:
        previous = resume_from(out_root / NAME, model)
        seed = resume_seed(seed, previous)  # a fresh pass over the data
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
        p_loss = percept(rec, x) if percept is not None else torch.zeros(())
        loss = loss + perceptual * p_loss
        optimizer_step(opt, loss, clip=list(model.parameters()))
        step += 1
        if step % 100 == 0:
            mse = F.mse_loss((rec + 1) / 2, (x + 1) / 2).item()
            log(f"vae step {step} loss {loss.item():.4f} psnr {10 * np.log10(1 / mse):.2f} "
                f"kl {kl.item():.1f} perceptual {p_loss.item():.3f} t={clock.elapsed:.0f}s")
    model.eval()
    out_dir = out_root / NAME
    save_module(model, model.config, out_dir)
    save_latent_prior(model, data.images, out_dir)
    command = f"python -m studio.training vae --minutes {minutes:g}"
    write_training_record(out_dir, {
        **chained_record(previous, command + (" --resume" if resume else ""), clock.elapsed,
                         step),
        "batch_size": batch_size, "train_samples": n_data, "kl_weight": KL_WEIGHT,
        "perceptual_weight": perceptual,
        "final_loss": round(loss.item(), 4)})
    log(f"vae saved to {out_dir} after {step} steps")
    return out_dir


PRIOR_ANCHORS = 4000  # encoded training portraits a seed can start near
PRIOR_BANDWIDTH = 0.25  # of the Gaussian fit's spread, around an anchor (0.35 for the earlier VAE)


@torch.no_grad()
def save_latent_prior(vae: FlatVAE, images: np.ndarray, out_dir: Path) -> Path:
    """Save what the app draws a VAE seed's latent from (the engine's ``LATENT_PRIOR_FILE``,
    read as ``studio.engine.latent_models.LatentPrior``): the mean and Cholesky factor of the
    latents of ``images`` and those latents themselves as anchors (fp16).

    The KL term is kept small for sharp reconstructions, so the latents are not standard
    normal: a seed's noise decoded as it is gives no portrait. The GAN starts from the same
    Gaussian fit.
    """
    from safetensors.torch import save_file

    from studio.engine.latent_models import LATENT_PRIOR_FILE
    from studio.training.train_gan import latent_gaussian

    images = images[:PRIOR_ANCHORS]
    mean, chol = latent_gaussian(vae, images)
    with torch.no_grad():
        anchors = torch.cat([vae.encode(to_tensor(images[s:s + 250]))
                             for s in range(0, len(images), 250)])
    path = out_dir / LATENT_PRIOR_FILE
    save_file({"mean": mean.float().contiguous(), "chol": chol.float().contiguous(),
               "anchors": anchors.half().contiguous(),
               "bandwidth": torch.tensor([PRIOR_BANDWIDTH])}, str(path))
    return path


def write_prior(out_root: Path) -> Path:
    """``python -m studio.training prior``: rewrite the shipped VAE's latent prior."""
    from studio.engine.nets.shipped import load_vae

    vae = load_vae(out_root)
    data = build_dataset(TRAIN_SEED, 100_000)
    path = save_latent_prior(vae, data.images, out_root / NAME)
    log(f"latent prior written to {path}")
    return path
