"""Fine-tune ``studio-tiny-diffusion`` so its mouths follow "smiling" and "frowning" (issue 27).

The base recipe (``train_diffusion``) learns the colours and the glasses from the words but
drew the mouth from the noise: with the same seed, "a smiling person" and "a frowning person"
came out the same, and the oracle found the named mood in 6 to 12 % of the held-out prompts.
The smile is the curvature of a 2-pixel line, a few of the 1024 latent values, so in an
ordinary batch its share of the denoising loss is far below the noise of everything else's
gradient. Weighing the mouth's loss 6x and a plain epsilon loss (tried alone: 12 -> 15 %)
did not change that.

Three changes, on top of the trained base:

1. **Twins.** Part of each batch is pairs: a portrait of the training set and its twin, the
   same portrait rendered again by the renderer with the smile negated (same jitter, colours
   and glasses), each with a caption naming its mood (the twin's caption is the portrait's
   with "smiling" and "frowning" swapped), both noised with the *same* noise at the *same*
   timestep. Everything but the mouth and the mood word is shared, so the only way to lower
   the pair's loss is to draw the mouth from the word: the gradient carries that alone.
   8 pairs per batch of 32 took the oracle's smile from 22 to 61 % in 1520 steps.
2. **Attention at the 16 x 16 level** (a transformer block as at the other levels: self-
   and cross-attention), where the mouth is a few latent pixels (the base has it only at
   8 x 8 and 4 x 4). Its output projections start at zero, so the fine-tune starts from the
   base's function exactly. Its cost: nothing to see at the model's 64 px; the
   self-attention over the finest grid grows with the square of the image's area, so a
   step at 256 px took 7x and at 512 px 12x as long as the base's (one thread). A variant
   with attention to the text only there (``only_cross_attention``: 1.3x at 512 px) learnt
   the mouth more slowly in the time there was (23 % after 1332 steps), so it is not the
   one shipped.
3. **The face-weighted epsilon loss** (``train_diffusion.latent_face_weights``: mouth 6x,
   eyes 2x, SD's plain epsilon loss over all timesteps).

The rest of each batch is the ordinary caption stream, so colours, glasses and the unnamed
attributes keep being learnt. ``STUDIO_MOUTH_PAIRS`` sets the pairs per batch (0: the
ordinary stream alone, with changes 2 and 3).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studio.core.portraits.attributes import (
    BACKGROUNDS,
    GLASSES,
    HAIR_COLOURS,
    SKIN_TONES,
    PortraitAttributes,
    sample_attributes,
)
from studio.core.portraits.render import DATA_VERSION, render_portrait
from studio.training import common
from studio.training.common import (
    TRAIN_SEED,
    Stopwatch,
    batches,
    build_dataset,
    chained_record,
    ema_update,
    ema_weights,
    log,
    optimizer_step,
    resume_seed,
    setup_torch,
    write_training_record,
)
from studio.training.train_diffusion import (
    NAME,
    SCHEDULER_CONFIG,
    SMILE_NAMED,
    _load_previous,
    caption_stream,
    encode_latents,
    latent_face_weights,
    save_pipeline,
    tokenize,
    training_caption,
    weighted_mse,
)

PAIRS = int(os.environ.get("STUDIO_MOUTH_PAIRS", "8"))  # twin pairs in each batch of 32
BATCH = 32


def add_fine_attention(unet: Any) -> Any:
    """``unet`` with cross-attention at its first (finest) level too, the new attention's
    output projections zeroed so that the result computes what ``unet`` did. A UNet that
    has it already is returned as it is."""
    from diffusers import UNet2DConditionModel

    if unet.config.down_block_types[0] == "CrossAttnDownBlock2D":
        return unet
    config = dict(unet.config)
    levels = len(config["down_block_types"])
    config["down_block_types"] = ["CrossAttnDownBlock2D"] * levels
    config["up_block_types"] = ["CrossAttnUpBlock2D"] * levels
    wider = UNet2DConditionModel.from_config(config)
    missing, unexpected = wider.load_state_dict(unet.state_dict(), strict=False)
    assert not unexpected, unexpected
    new = {name.rsplit(".", 1)[0] for name in missing}
    with torch.no_grad():
        for name, module in wider.named_modules():
            if name in new and name.endswith("proj_out"):
                module.weight.zero_()
                module.bias.zero_()
    return wider.float()


def render_changed(indices: np.ndarray, change: Callable[[int, PortraitAttributes],
                                                          PortraitAttributes],
                   seed: int = TRAIN_SEED) -> np.ndarray:
    """The portraits ``indices`` of the data set ``seed`` rendered again with their
    attributes changed by ``change(j, attributes)`` (``j``: the place in ``indices``): the
    renderer draws the attributes and then the nuisance jitter from one random stream, so
    the twin keeps everything the change does not touch."""
    out = np.empty((len(indices), 64, 64, 3), np.uint8)
    for j, i in enumerate(indices):
        rng = np.random.default_rng((int(seed), int(i)))
        out[j] = render_portrait(change(j, sample_attributes(rng)), rng)
    return out


def render_twins(indices: np.ndarray, seed: int = TRAIN_SEED) -> np.ndarray:
    """The portraits ``indices`` of the data set ``seed`` rendered again with the smile
    negated (the smile takes no draw of its own: the same jitter)."""
    return render_changed(indices, lambda _j, a: dataclasses.replace(a, smile=-a.smile), seed)


def swap_mood(caption: str) -> str:
    """``caption`` with "smiling" and "frowning" exchanged."""
    return (caption.replace("smiling", "\0").replace("frowning", "smiling")
            .replace("\0", "frowning"))


def mood_captions(data: Any, seed: int) -> Any:
    """``draw(i) -> caption`` of sample ``i`` that names its mood (the ordinary caption
    generator, drawn until the mood is among the attributes it names)."""
    rng = np.random.default_rng((int(seed), 2727))

    def draw(i: int) -> str:
        args = (HAIR_COLOURS[data.labels["hair"][i]], GLASSES[data.labels["glasses"][i]],
                BACKGROUNDS[data.labels["background"][i]], float(data.smile[i]),
                SKIN_TONES[data.labels["skin"][i]])
        for _ in range(100):
            caption = " ".join(training_caption(*args, rng).split())
            if "smiling" in caption or "frowning" in caption:
                return caption
        raise ValueError(f"sample {i} has no mood to name (smile {data.smile[i]})")

    return draw


def _encoder_key(vae: Any) -> str:
    """A short hash of the encoder's weights: the cached latents are that encoder's."""
    import hashlib

    digest = hashlib.sha256()
    for name, value in sorted(vae.state_dict().items()):
        if name.startswith(("encoder.", "quant_conv.")):
            digest.update(name.encode())
            digest.update(value.detach().float().numpy().tobytes())
    return digest.hexdigest()[:12]


def twin_latents(vae: Any, data: Any) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """(indices of the portraits with a named mood, the latents of every portrait, the
    latents of those portraits' twins), under ``vae``'s encoder (cached per encoder)."""
    work = common.CACHE_DIR / f"diffusion_mouth_v{DATA_VERSION}_{_encoder_key(vae)}"
    work.mkdir(parents=True, exist_ok=True)
    strong = np.flatnonzero(np.abs(data.smile) > SMILE_NAMED)
    lat_path, twin_path = (work / f"latents_n{len(strong)}_of_{len(data.smile)}.pt",
                           work / f"twins_n{len(strong)}_of_{len(data.smile)}.pt")
    if lat_path.exists() and twin_path.exists():
        return (strong, torch.load(lat_path, weights_only=True),
                torch.load(twin_path, weights_only=True))
    log(f"encoding latents and rendering {len(strong)} twins")
    with torch.no_grad():
        latents = encode_latents(vae, data.images)
        twins = encode_latents(vae, render_twins(strong))
    torch.save(latents, lat_path)
    torch.save(twins, twin_path)
    return strong, latents, twins


def train(out_root: Path, minutes: float = 60.0, seed: int = 0, resume: bool = True,
          lr: float = 5e-4, checkpoint_minutes: float = 8.0) -> Path:
    """Fine-tune the pipeline in ``out_root / NAME`` (UNet and text encoder; the autoencoder
    and tokenizer stay) for ``minutes``; save it in place."""
    del resume  # always from the saved pipeline
    from diffusers import DDPMScheduler

    total = Stopwatch(minutes)
    vae, unet, text_encoder, tokenizer, previous = _load_previous(out_root / NAME)
    unet = add_fine_attention(unet)
    # other batches and noise than the runs before it (``resume_seed`` counts "--resume")
    seed = resume_seed(seed, previous) + 1000 * str(previous.get("command", "")).count(
        "diffusion-mouth")
    data = build_dataset(TRAIN_SEED, 20_000)
    scaling = float(vae.config.scaling_factor)
    strong, latents, twins = twin_latents(vae, data)

    setup_torch(seed)
    captions = caption_stream(data, seed)
    moods = mood_captions(data, seed)
    empty = tokenize(tokenizer, [""])[0]
    noise_sched = DDPMScheduler(**SCHEDULER_CONFIG)
    face = latent_face_weights()
    params = list(unet.parameters()) + list(text_encoder.parameters())
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(seed)
    pair_rng = np.random.default_rng((seed, 22))
    n_plain = BATCH - 2 * PAIRS
    log(f"mouth fine-tune: {PAIRS} twin pairs and {n_plain} ordinary samples a batch, "
        f"{len(strong)} portraits with a named mood")

    def checkpoint(final: bool) -> None:
        extra = {"scaling_factor": scaling, "final": final,
                 "train_steps": previous.get("diffusion_steps", 0) + step,
                 "train_seconds_diffusion": previous.get("seconds", 0) + round(clock.elapsed)}
        with ema_weights(params, ema):
            save_pipeline(out_root / NAME, vae, unet, text_encoder, tokenizer, extra)
        # the record at every checkpoint, so that a run stopped early says what it did
        command = f"python -m studio.training diffusion-mouth --minutes {minutes:g}"
        if PAIRS != 8:
            command = f"STUDIO_MOUTH_PAIRS={PAIRS} {command}"
        record = chained_record(previous, command, total.elapsed, step, "diffusion_steps")
        record.update({"mouth_pairs": PAIRS, "final_loss": round(loss.item(), 4),
                       "final": final})
        write_training_record(out_root / NAME, record)
        log(f"checkpoint saved at step {step}")

    clock = Stopwatch(max(min(1.0, minutes), minutes - total.elapsed / 60))
    last_ckpt = 0.0
    step = 0
    loss = torch.zeros(())
    unet.train()
    text_encoder.train()
    for idx in batches(len(latents), n_plain, seed + 2):
        if clock.done():
            break
        f = clock.fraction
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / 30) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * f)))
        plain = torch.from_numpy(np.sort(idx))
        picks = pair_rng.choice(len(strong), PAIRS, replace=False)
        firsts = [moods(int(i)) for i in strong[picks]]
        x0 = torch.cat([latents[plain], latents[torch.from_numpy(strong[picks])],
                        twins[torch.from_numpy(picks)]]).float() * scaling
        tok = tokenize(tokenizer, captions(plain.tolist()) + firsts
                       + [swap_mood(c) for c in firsts])
        drop = torch.rand(n_plain, generator=gen) < 0.1  # the ordinary stream's CFG dropout
        tok[:n_plain][drop] = empty
        pair_noise = torch.randn((PAIRS, *x0.shape[1:]), generator=gen)
        noise = torch.cat([torch.randn((n_plain, *x0.shape[1:]), generator=gen),
                           pair_noise, pair_noise])
        pair_t = torch.randint(0, 1000, (PAIRS,), generator=gen)
        t = torch.cat([torch.randint(0, 1000, (n_plain,), generator=gen), pair_t, pair_t])
        noisy = noise_sched.add_noise(x0, noise, t)
        pred = unet(noisy, t, text_encoder(tok).last_hidden_state).sample
        loss = weighted_mse(pred, noise, face).mean()
        optimizer_step(opt, loss, clip=params)
        step += 1
        ema_update(ema, [p.detach() for p in params], min(0.995, (1 + step) / (10 + step)))
        if step % 50 == 0:
            log(f"mouth step {step} loss {loss.item():.4f} t={clock.elapsed:.0f}s")
        if clock.elapsed - last_ckpt > checkpoint_minutes * 60:
            checkpoint(final=False)
            last_ckpt = clock.elapsed
    checkpoint(final=True)
    log(f"mouth fine-tune saved after {step} steps, {total.elapsed / 60:.1f} min")
    return out_root / NAME
