"""Train the GAN's latent attribute reader (``studio-tiny-gan/latent-attributes``).

The GAN's latent ``z`` is entangled: one straight direction that adds a smile also flips
hair or background colours for some latents (a linear step crosses the generator's class
boundaries). The latent sliders of the GAN therefore follow a curved path (see
``studio.core.sliders.latent_flow``), steered by this small MLP that reads every attribute from ``z``
itself: the gradient of the target attribute, with the gradients of the other attributes'
log-probabilities projected out, as in latent-classifier editing (Khrulkov et al. 2021,
"Latent Transformations via NeuralODEs for GAN-based Image Editing"; Zhuang et al. 2021,
"Enjoy Your Editing").

Labels are the shipped image classifier's probabilities on the generator's samples (soft
targets). Gaussian noise on ``z`` during training (``NOISE``) smooths the reader, so its
gradients follow what the generator draws rather than quirks of the fit (side by side on
the 48 SliderBench portraits, value 2, without the pixel metric: noise 0.3 kept 90.2% of the
other attributes at 95.1% edit success, no noise 91.3% at 79.3%, noise 0.6 89.3% at 94.5%).
The reader also carries the generator's pixel metric (``pixel_metric``), so that the path
prefers steps that change few pixels: what no attribute names (the shirt's colour, the
hair's length) stays too.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from studio.core.portraits.attributes import CLASS_ATTRIBUTES, smile_bin_index
from studio.engine.nets.latent_attributes import LatentAttributeNet
from studio.engine.nets.tensors import to_tensor, to_uint8
from studio.training.common import Stopwatch, log, save_module, setup_torch, write_training_record

SAMPLE_SEED = 31_337  # latents of the training samples (none of them a slider test seed)
NOISE = 0.3  # std of the Gaussian noise added to z in training
SMILE_WEIGHT = 4.0


@torch.no_grad()
def label_samples(generator: torch.nn.Module, classifier: torch.nn.Module, n: int,
                  seed: int = SAMPLE_SEED, batch: int = 500) -> dict[str, torch.Tensor]:
    """``n`` latents with the classifier's class probabilities and smile values."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator.z_dim, generator=gen)
    parts: list[dict[str, torch.Tensor]] = []
    for s in range(0, n, batch):
        # Through uint8, as the image classifier sees a saved image.
        out = classifier(to_tensor(to_uint8(generator(z[s:s + batch]))))
        parts.append({k: (v.softmax(1) if k != "smile" else v) for k, v in out.items()})
        if (s // batch) % 40 == 0:
            log(f"labelled {s + len(parts[-1]['smile'])}/{n} generator samples")
    labels = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    return {"z": z, **labels}


def accuracy(net: LatentAttributeNet, data: dict[str, torch.Tensor]) -> dict[str, float]:
    """Agreement of the reader's decisions with the image classifier's."""
    with torch.no_grad():
        out = net(data["z"])
    acc = {k: float((out[k].argmax(1) == data[k].argmax(1)).float().mean())
           for k in CLASS_ATTRIBUTES}
    acc["smile"] = float(np.mean(smile_bin_index(out["smile"].numpy())
                                 == smile_bin_index(data["smile"].numpy())))
    return acc


def pixel_metric(generator: torch.nn.Module, n: int = 48, seed: int = SAMPLE_SEED + 1
                 ) -> torch.Tensor:
    """``E[J^T J]`` (z_dim, z_dim) over ``n`` latents, ``J`` the Jacobian of the generator's
    pixels with respect to z (forward mode, one latent at a time: about 0.4 s each)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator.z_dim, generator=gen)
    metric = torch.zeros(generator.z_dim, generator.z_dim, dtype=torch.float64)
    for i in range(n):
        jac = torch.func.jacfwd(lambda x: generator(x[None])[0].reshape(-1))(z[i]).double()
        metric += jac.T @ jac
    return (metric / n).float()


def train(out_root: Path, minutes: float = 12.0, seed: int = 0, n_samples: int = 200_000,
          epochs: int = 20, hidden: int = 256, held_out: int = 5_000,
          batch_size: int = 256, lr: float = 2e-3, resume: bool = False) -> Path:
    """Label ``n_samples`` generator samples, fit the reader, save it into the GAN folder.

    ``minutes`` caps the fitting after the labelling (200 000 samples: about 5 minutes on 2
    cores); ``resume`` is accepted for the ``all`` command and ignored (a fit is short).
    """
    from studio.engine.latent_models import ATTRIBUTE_READER_DIR
    from studio.engine.nets.shipped import GAN, load_classifier, load_generator, model_dir

    del resume
    setup_torch(seed)
    start = time.perf_counter()
    generator, classifier = load_generator(out_root), load_classifier(out_root)
    data = label_samples(generator, classifier, n_samples + held_out)
    labelling = time.perf_counter() - start
    clock = Stopwatch(minutes)
    train_set = {k: v[:n_samples] for k, v in data.items()}
    test_set = {k: v[n_samples:] for k, v in data.items()}
    net = LatentAttributeNet(generator.z_dim, hidden)
    opt = torch.optim.AdamW(net.parameters(), lr, weight_decay=1e-4)
    per_epoch = n_samples // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * per_epoch)
    gen = torch.Generator().manual_seed(seed + 1)
    steps = 0
    for epoch in range(epochs):
        perm = torch.randperm(n_samples, generator=gen)
        for s in range(per_epoch):
            idx = perm[s * batch_size:(s + 1) * batch_size]
            z = train_set["z"][idx]
            out = net(z + NOISE * torch.randn(z.shape, generator=gen))
            loss = sum(F.cross_entropy(out[k], train_set[k][idx]) for k in CLASS_ATTRIBUTES)
            loss = loss + SMILE_WEIGHT * F.mse_loss(out["smile"], train_set["smile"][idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            steps += 1
        log(f"latent attributes epoch {epoch + 1}/{epochs} loss {loss.item():.3f} "
            f"held-out {json.dumps({k: round(v, 3) for k, v in accuracy(net, test_set).items()})}")
        if clock.done():
            break
    out_dir = model_dir(GAN, out_root) / ATTRIBUTE_READER_DIR
    net.eval()
    for p in generator.parameters():
        p.requires_grad_(False)
    net.pixel_metric.copy_(pixel_metric(generator))
    save_module(net, net.config, out_dir, half=False)
    held = accuracy(net, test_set)
    write_training_record(out_dir, {
        "command": f"python -m studio.training gan-attributes --minutes {minutes:g}",
        "seconds": round(clock.elapsed + labelling, 1),
        "labelling_seconds": round(labelling, 1), "steps": steps, "epochs": epoch + 1,
        "samples": n_samples, "held_out": held_out, "noise": NOISE, "sample_seed": SAMPLE_SEED,
        "held_out_agreement": {k: round(v, 4) for k, v in held.items()},
        "labels": "studio-tiny-attributes on studio-tiny-gan samples"})
    log(f"latent attribute reader saved to {out_dir}: held-out agreement {held}")
    return out_dir
