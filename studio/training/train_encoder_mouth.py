"""Fine-tune the shared autoencoder (encoder and decoder) so that its latents carry the mouth
on dark skin as strongly as on pale skin (issues 24 and 27).

``train_decoder`` found why the embedded models' smiles fail on dark skin: the renderer's
mouth (150, 30, 40) on dark skin (92, 58, 36) differs almost only in chroma, and the encoder
keeps it faintly. Measured on 1600 training portraits with a named mood and their twins (the
same portrait with the smile negated), the distance between a portrait's latent and its
twin's (scaled latents, the 4 x 6 cells where the mouth lies) is 5.1 on pale skin, 3.9 on
tan, 1.7 on brown and 0.76 on dark skin. The models' denoising loss weighs the mouth by that
distance, so on dark skin they learnt to draw no mouth at all (16 of 16 UNet portraits).

Three terms, on top of the shipped autoencoder:

1. **Reconstruction** as the autoencoder trained (the face-weighted L1 + L2 and the gradient
   loss), half of each batch brown or dark-skinned, the mouth weighed ``MOUTH_WEIGHT``.
2. **Twins apart**: for pairs of a portrait and its twin, a hinge that pushes the distance
   between their latents over the mouth cells up to ``TWIN_DISTANCE`` (tan skin's today).
3. **The latent space held**: the new encoder's latents held to the old one's everywhere on
   pale and tan skin and outside the mouth cells on brown and dark skin, so the models
   trained on those latents need only a fine-tune (``diffusion-mouth``, ``dit-mouth``), and
   the decoder held to the old decoder's pictures on latents the models generated (but the
   mouth, ``train_decoder.distill_weights``).

The new autoencoder is written into both pipelines that share it; the UNet and the DiT must
then be fine-tuned on its latents (their twin trainers re-encode, cached per encoder).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studio.engine.nets.tensors import to_tensor
from studio.training.common import TRAIN_SEED, Stopwatch, build_dataset, log, setup_torch

NAME = "studio-tiny-diffusion"
SHARING = ("studio-tiny-diffusion", "studio-tiny-dit")
MOUTH_WEIGHT = 8.0
TWIN_DISTANCE = 4.0  # scaled-latent distance of a portrait and its twin over the mouth cells
TWIN_RENDERED = 3000  # twins rendered (of the portraits with a named mood)
MOUTH_CELLS = (slice(8, 12), slice(5, 11))  # latent rows and columns of the mouth
ANCHOR_WEIGHT = 4.0
TWIN_WEIGHT = 0.05
BATCH = 16  # ordinary portraits a step
PAIRS = 8  # twin pairs a step
MOUTH_PIXEL_WEIGHT = 1.0  # the loss on the pixels where a portrait and its twin differ
# ``STUDIO_AE_ENCODER=0``: the decoder alone trains (the latent space stays, so the models
# on it need nothing); the twin and anchor terms are then constant.
TRAIN_ENCODER = os.environ.get("STUDIO_AE_ENCODER", "1") == "1"


def mouth_distance(a: torch.Tensor, b: torch.Tensor, scaling: float) -> torch.Tensor:
    """Per-sample distance of scaled latents ``a`` and ``b`` over ``MOUTH_CELLS``."""
    rows, cols = MOUTH_CELLS
    return ((a - b)[:, :, rows, cols] * scaling).flatten(1).norm(dim=1)


def anchor_mask(free_mouth: torch.Tensor) -> torch.Tensor:
    """(n, 1, 16, 16): 1 where the latent is held to the old encoder's, 0 on the mouth cells
    of the samples in ``free_mouth``."""
    m = torch.ones(len(free_mouth), 1, 16, 16)
    m[free_mouth.bool(), :, MOUTH_CELLS[0], MOUTH_CELLS[1]] = 0.0
    return m


def twin_probe(vae: Any, images: np.ndarray, twins: np.ndarray, skin: np.ndarray,
               scaling: float) -> dict[str, float]:
    """Mean mouth distance of portraits and twins per skin tone, under ``vae``'s encoder."""
    from studio.core.portraits.attributes import SKIN_TONES

    with torch.no_grad():
        a = torch.cat([vae.encode(to_tensor(images[s:s + 250])).latent_dist.mean
                       for s in range(0, len(images), 250)])
        b = torch.cat([vae.encode(to_tensor(twins[s:s + 250])).latent_dist.mean
                       for s in range(0, len(twins), 250)])
    d = mouth_distance(a, b, scaling)
    return {name: round(float(d[torch.from_numpy(skin == k)].mean()), 3)
            for k, name in enumerate(SKIN_TONES) if (skin == k).any()}


def finetune(vae: Any, data: Any, minutes: float, seed: int, scaling: float,
             generated: torch.Tensor | None = None, lr: float = 3e-4) -> dict[str, Any]:
    """Train ``vae`` (in place) with the three terms of the module's docstring."""
    import copy

    from studio.core.portraits.attributes import SKIN_TONES
    from studio.training.train_decoder import distill_weights
    from studio.training.train_diffusion import SMILE_NAMED, _grad_loss, face_weights
    from studio.training.train_diffusion_mouth import render_twins

    setup_torch(seed)
    old = copy.deepcopy(vae).eval().requires_grad_(False)
    skin = data.labels["skin"]
    deep = np.isin(skin, [SKIN_TONES.index("brown"), SKIN_TONES.index("dark")])
    strong = np.flatnonzero(np.abs(data.smile) > SMILE_NAMED)
    rng = np.random.default_rng((seed, 2828))
    # the twins: every brown or dark one first, then the others, TWIN_RENDERED in all
    order = np.concatenate([strong[deep[strong]], strong[~deep[strong]]])[:TWIN_RENDERED]
    twin_idx = np.sort(order)
    log(f"rendering {len(twin_idx)} twins")
    twins = render_twins(twin_idx)
    # the probe: 400 other portraits with a named mood, every skin tone, and their twins
    pool = np.setdiff1d(strong, twin_idx)
    pool = pool if len(pool) else twin_idx  # a small data set: the training twins themselves
    probe_idx = np.sort(rng.choice(pool, min(400, len(pool)), replace=False))
    probe_twins = render_twins(probe_idx)
    probe_old = twin_probe(old, data.images[probe_idx], probe_twins, skin[probe_idx], scaling)
    log(f"twin mouth distance before: {probe_old}")
    weights = face_weights()
    weights[weights == weights.max()] = MOUTH_WEIGHT
    hold = distill_weights()
    generated = torch.zeros(0, 4, 16, 16) if generated is None else generated
    with torch.no_grad():
        held = torch.cat([torch.zeros(0, 3, 64, 64),
                          *(old.decode(generated[s:s + 200]).sample
                            for s in range(0, len(generated), 200))])
    if not TRAIN_ENCODER:
        for module in (vae.encoder, vae.quant_conv):
            module.requires_grad_(False)
    params = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    deep_idx, all_idx = np.flatnonzero(deep), np.arange(len(data.images))
    twin_deep = np.flatnonzero(deep[twin_idx])
    clock = Stopwatch(minutes)
    step = 0
    parts = {"rec": 0.0, "anchor": 0.0, "twin": 0.0, "hold": 0.0}
    vae.train()
    while not clock.done():
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / 50) * (
                0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * clock.fraction)))
        idx = np.concatenate([rng.choice(all_idx, BATCH // 2, replace=False),
                              rng.choice(deep_idx, BATCH // 2, replace=False)])
        # pairs: half brown or dark
        pj = np.concatenate([rng.choice(len(twin_idx), PAIRS // 2, replace=False),
                             rng.choice(twin_deep, PAIRS // 2, replace=False)])
        x = to_tensor(np.concatenate([data.images[idx], data.images[twin_idx[pj]], twins[pj]]))
        free = torch.from_numpy(np.concatenate([deep[idx], deep[twin_idx[pj]],
                                                deep[twin_idx[pj]]]))
        z = vae.encode(x).latent_dist.mean
        with torch.no_grad():
            z_old = old.encode(x).latent_dist.mean
        rec = vae.decode(z).sample
        diff = rec - x
        loss_rec = ((diff.abs() + diff.square()) * weights).mean() / weights.mean() \
            + 0.5 * _grad_loss(rec, x)
        # the mouth's own pixels: where the portrait and its twin differ (one pixel around)
        n = len(idx)
        pair_x = x[n:]
        differ = (pair_x[:PAIRS] - pair_x[PAIRS:]).abs().amax(1, keepdim=True) > 0.02
        differ = torch.nn.functional.max_pool2d(differ.float(), 3, 1, 1).repeat(2, 1, 1, 1)
        pix = diff[n:].abs() + diff[n:].square()
        loss_pixels = (pix * differ).sum() / (differ.sum() * 3).clamp(min=1)
        loss_rec = loss_rec + MOUTH_PIXEL_WEIGHT * loss_pixels
        mask = anchor_mask(free)
        loss_anchor = (((z - z_old) * scaling).square() * mask).mean() / mask.mean()
        dist = mouth_distance(z[n:n + PAIRS], z[n + PAIRS:], scaling)
        loss_twin = torch.relu(TWIN_DISTANCE - dist).square().mean()
        loss = loss_rec + ANCHOR_WEIGHT * loss_anchor + TWIN_WEIGHT * loss_twin
        loss_hold = torch.zeros(())
        if len(generated):
            g = torch.from_numpy(rng.choice(len(generated), 16, replace=False))
            off = vae.decode(generated[g]).sample - held[g]
            loss_hold = ((off.abs() + off.square()) * hold).mean() / hold.mean()
            loss = loss + loss_hold
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        for k, v in (("rec", loss_rec), ("anchor", loss_anchor), ("twin", loss_twin),
                     ("hold", loss_hold)):
            parts[k] = 0.98 * parts[k] + 0.02 * v.item() if step > 1 else v.item()
        if step % 50 == 0 or step == 1:
            log(f"autoencoder step {step} " + " ".join(f"{k} {v:.4f}" for k, v in parts.items())
                + f" t={clock.elapsed:.0f}s")
    vae.eval()
    probe = twin_probe(vae, data.images[probe_idx], probe_twins, skin[probe_idx], scaling)
    log(f"twin mouth distance before {probe_old} after {probe}")
    return {"autoencoder_mouth_steps": step, "autoencoder_mouth_encoder_trained": TRAIN_ENCODER, "autoencoder_mouth_seconds": round(clock.elapsed),
            "autoencoder_mouth_twin_distance": {"before": probe_old, "after": probe},
            "autoencoder_mouth_losses": {k: round(v, 4) for k, v in parts.items()}}


def write_autoencoder(vae: Any, out_root: Path, record: dict[str, Any], command: str) -> None:
    """Write ``vae``'s weights into every pipeline of ``SHARING`` under ``out_root`` (each
    keeps its own config: scaling and shift factors) and note ``record`` in its training
    record."""
    from diffusers import AutoencoderKL

    from studio.training.train_decoder import write_shared_vae

    state = vae.state_dict()
    for name in SHARING:
        target = out_root / name / "vae"
        if not target.is_dir():
            continue
        shared = AutoencoderKL.from_pretrained(target).float()
        shared.load_state_dict(state)
        write_shared_vae(shared, out_root / name, record, command,
                         "studio-tiny-diffusion's (fine-tuned by `autoencoder-mouth`)")
        log(f"{name}: autoencoder written")


def train(out_root: Path, minutes: float = 15.0, seed: int = 0, resume: bool = False) -> Path:
    """Fine-tune ``out_root / NAME``'s autoencoder and write it into every pipeline of
    ``SHARING`` under ``out_root``."""
    from diffusers import AutoencoderKL

    from studio.training.train_decoder import generated_latents

    del resume  # always from the saved autoencoder
    folder = out_root / NAME / "vae"
    vae = AutoencoderKL.from_pretrained(folder).float()
    scaling = float(vae.config.scaling_factor)
    data = build_dataset(TRAIN_SEED, 20_000)
    generated = generated_latents(out_root)
    record = finetune(vae, data, minutes, seed, scaling, generated=generated)
    write_autoencoder(vae, out_root, record,
                      f"python -m studio.training autoencoder-mouth --minutes {minutes:g}")
    return out_root / NAME
