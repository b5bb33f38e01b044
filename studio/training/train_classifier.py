"""Train ``studio-tiny-attributes``: the attribute classifier used to score the other models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from studio.core.portraits.attributes import CLASS_ATTRIBUTES
from studio.engine.nets.classifier import AttributeClassifier
from studio.engine.nets.tensors import to_tensor
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

NAME = "studio-tiny-attributes"


def degrade(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random blur, noise and colour shift so generated (softer) images classify too."""
    n = len(x)
    blur = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
    mix = torch.rand(n, 1, 1, 1, generator=generator) * (torch.rand(n, 1, 1, 1, generator=generator) < 0.5)
    x = x * (1 - mix) + blur * mix
    x = x + torch.randn(x.shape, generator=generator) * 0.04 * torch.rand(n, 1, 1, 1, generator=generator)
    x = x + (torch.rand(n, 3, 1, 1, generator=generator) - 0.5) * 0.06
    return x.clamp(-1, 1)


def classifier_loss(out: dict[str, torch.Tensor], labels: dict[str, torch.Tensor],
                    smile: torch.Tensor) -> torch.Tensor:
    loss = sum(F.cross_entropy(out[k].float(), labels[k]) for k in CLASS_ATTRIBUTES)
    return loss + 4.0 * F.mse_loss(out["smile"].float(), smile)


def train(out_root: Path, minutes: float = 6.0, seed: int = 0, n_data: int = 100_000,
          batch_size: int = 128, lr: float = 2e-3, resume: bool = False) -> Path:
    """Train for ``minutes`` of wall clock and save to ``out_root / NAME``.

    With ``resume`` training continues from the weights already in ``out_root / NAME``.
    """
    setup_torch(seed)
    previous: dict[str, Any] = {}
    if resume:  # the saved architecture (config.json), then its weights
        config = json.loads((out_root / NAME / "config.json").read_text())
        model = AttributeClassifier(**config)
        previous = resume_from(out_root / NAME, model)
        lr = lr / 2
        # Each resumed run draws other batches and augmentations.
        seed = resume_seed(seed, previous)
        setup_torch(seed)
    else:
        model = AttributeClassifier()
    data = build_dataset(TRAIN_SEED, n_data)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    clock = Stopwatch(minutes)
    step = 0
    for idx in batches(len(data), batch_size, seed):
        if clock.done():
            break
        for g in opt.param_groups:  # linear warm-up, cosine decay over the time budget
            f = clock.fraction
            g["lr"] = lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + torch.cos(torch.tensor(f * 3.14159)).item())
        x = degrade(to_tensor(data.images[idx]), gen)
        labels = {k: torch.from_numpy(data.labels[k][idx]) for k in CLASS_ATTRIBUTES}
        smile = torch.from_numpy(data.smile[idx])
        out = model(x)
        loss = classifier_loss(out, labels, smile)
        optimizer_step(opt, loss)
        step += 1
        if step % 100 == 0:
            acc = {k: (out[k].argmax(1) == labels[k]).float().mean().item() for k in CLASS_ATTRIBUTES}
            log(f"classifier step {step} loss {loss.item():.4f} "
                + " ".join(f"{k}={v:.3f}" for k, v in acc.items()) + f" t={clock.elapsed:.0f}s")
    model.eval()
    out_dir = out_root / NAME
    save_module(model, model.config, out_dir)
    command = f"python -m studio.training classifier --minutes {minutes:g}"
    write_training_record(out_dir, {
        **chained_record(previous, command + (" --resume" if resume else ""), clock.elapsed,
                         step),
        "batch_size": batch_size, "train_samples": n_data, "final_loss": round(loss.item(), 4)})
    log(f"classifier saved to {out_dir} after {step} steps")
    return out_dir
