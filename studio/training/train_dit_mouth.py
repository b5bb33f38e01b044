"""Fine-tune ``studio-tiny-dit`` on twins so that it follows "smiling", "frowning" and the
glasses (issues 24 and 27).

The base DiT (``train_dit``) learnt the colours from the words but drew the mouth from the
noise (swapping "smiling" for "frowning" changed its loss on the mouth by under 0.1 %; the
oracle found the named mood in 15 % of the held-out prompts) and followed the glasses in
78 %. ``train_diffusion_mouth`` found the cure for the UNet: **twins**. Part of each batch
is pairs: a training portrait and the same portrait rendered again by the renderer with one
attribute changed, each with a caption that names its own value and is otherwise the same,
both noised with the *same* noise at the *same* flow time. Everything but the changed
attribute and its word is shared, so the pair's loss is lowered only by drawing that
attribute from the word.

Two kinds of pairs here:

- **mood**: the smile negated (the twin's caption swaps "smiling" and "frowning"), as in
  ``train_diffusion_mouth`` and from the same cached latents;
- **glasses**: another glasses value (none, round, square); the two captions are drawn from
  one caption-generator state, so they differ only where the glasses are named, and each
  names its shape ("round", "square", "no glasses"), never the bare "glasses" that fits
  both shapes.

The rest of each batch is the ordinary caption stream (with the 10 % empty captions of
classifier-free guidance), so the colours and the unnamed attributes keep being learnt.
The loss is the base's flow-matching loss with the face weighting of
``train_diffusion.latent_face_weights`` (the mouth 6x, the eyes 2x). The transformer and
both text encoders train; the autoencoder and tokenizers stay.

**Not shipped (nor run by ``all``): it did not work in the time there was.** From the
shipped DiT, 2458 steps (25 min, 8 mood and 4 glasses pairs a batch; the 65 minutes of the
base run and these make the 90-minute budget of issue 24) left it where it was: on 120
held-out partial prompts glasses 79.1 % and smile 18.9 % (before, on 240: 78.3 / 15.2 %);
with the same seed "smiling" curved up more than "frowning" in 15 of 32 read pairs (chance).
Why: its text encoders hardly tell the two words apart. The CLIP hidden states of "a
smiling person" and "a frowning person" differ by 3.1 at most per token, against a token
norm of 30 (for "red hair" against "blue hair": 32), and on twin pairs the transformer's
prediction on the mouth moved by 0.2 to 0.4 where the pair's targets differ by 11.8 (at
flow times 0.3 to 0.9). The encoders started from ``studio-tiny-diffusion``'s before that
model's own mouth fine-tune, when its UNet ignored the word too (its encoder now separates
the two by 3.7 against a norm of 5). The next try: train the DiT from that encoder, or give
the mood words' embeddings a learning rate of their own.

Second try (2026-12-07), the mood words' input embeddings with an offset at 20x the learning
rate (``STUDIO_DIT_MOOD_LR_SCALE=20``; their rows had a norm of 0.23, the colours' 0.43),
2977 steps in 25 min from the shipped DiT: the encoders now set the words apart (the token
states of "a smiling person" and "a frowning person" differ by 14.6, from 3.2; colours 32)
and the transformer's mouth prediction moved 0.6-0.9 on twin pairs (from 0.2-0.3; the
targets differ by 11.8), but on 120 held-out prompts the smile was followed in 17.6 % and
glasses in 77.6 %: not shipped either. The transformer, not only the words, is what does not
yet draw the mood in the time there is.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studio.core.portraits.attributes import (
    BACKGROUNDS,
    GLASSES,
    HAIR_COLOURS,
    SKIN_TONES,
)
from studio.core.portraits.render import DATA_VERSION
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
    setup_torch,
    write_training_record,
)
from studio.training.train_dit import (
    NAME,
    SOURCE,
    T5_TOKENS,
    CollapsedJointProcessor,
    build_pipeline,
    encode_text,
    load_pipeline,
    save_pipeline,
)

MOOD_PAIRS = int(os.environ.get("STUDIO_DIT_MOOD_PAIRS", "8"))
# The mood words' input embeddings get an offset of their own at this multiple of the
# learning rate (0: off, as in the first run), so the text encoders can set "smiling" and
# "frowning" apart faster than the rest of their weights move.
MOOD_LR_SCALE = float(os.environ.get("STUDIO_DIT_MOOD_LR_SCALE", "0"))
MOOD_WORDS = ("smiling", "frowning")
GLASSES_PAIRS = int(os.environ.get("STUDIO_DIT_GLASSES_PAIRS", "4"))
# Share of the mood pairs drawn from brown- and dark-skinned portraits (0: from all, as the
# shipped runs; skin tones are uniform in the data, so about half are then). Tried once at
# 0.83 (5 of 6 pairs), 30 minutes from the shipped DiT (2026-12-08): the smile on the eval's
# 240 prompts fell from 77.5 to 50.7 %, because the model learnt that the mood words come
# with dark skin (122 of the 138 faces of prompts naming a mood came out dark), and on dark
# faces it still left out the mouth in about 4 of 10. Not shipped; leave it at 0.
DARK_MOOD_SHARE = float(os.environ.get("STUDIO_DIT_DARK_MOOD_SHARE", "0"))
# The transformer's text path (``text_path``) at this multiple of the learning rate.
TEXT_PATH_LR_SCALE = float(os.environ.get("STUDIO_DIT_TEXT_LR_SCALE", "1"))
BATCH = 32
GLASSES_TWINS = 6000  # portraits given a glasses twin (the first of the data set)
# How each glasses value is named when the caption names it for a pair: its shape, or none.
_GLASSES_NAMES = {"none": ("no glasses", "without glasses", "with no glasses"),
                  "round": ("round glasses",), "square": ("square glasses",)}
# The words two captions of a pair may differ in (the rest of the caption is the same).
_GLASSES_WORDS = {"no", "without", "with", "round", "square", "wearing", "glasses", "and"}


def other_glasses(indices: np.ndarray) -> np.ndarray:
    """For each portrait index, a glasses index other than its own (fixed per index)."""
    return np.array([int(np.random.default_rng((int(i), 24)).integers(1, 3)) for i in indices])


def render_glasses_twins(indices: np.ndarray, glasses: np.ndarray,
                         seed: int = TRAIN_SEED) -> np.ndarray:
    """The portraits ``indices`` of the data set ``seed`` rendered again with
    ``(own glasses + glasses[j]) % 3``: the same attributes and jitter (the frame colour's
    draw comes after every other shape's, so only the nose's colour jitter can differ)."""
    from studio.training.train_diffusion_mouth import render_changed

    def change(j: int, attrs: Any) -> Any:
        other = GLASSES[(GLASSES.index(attrs.glasses) + int(glasses[j])) % len(GLASSES)]
        return dataclasses.replace(attrs, glasses=other)

    return render_changed(indices, change, seed)


def glasses_caption_pair(data: Any, i: int, other: str, rng: np.random.Generator
                         ) -> tuple[str, str]:
    """Captions of portrait ``i`` with its own glasses and with ``other``, drawn from one
    caption-generator state (the same words elsewhere), each naming its glasses' shape."""
    from studio.training.train_diffusion import training_caption

    own = GLASSES[data.labels["glasses"][i]]
    rest = dict(hair=HAIR_COLOURS[data.labels["hair"][i]],
                background=BACKGROUNDS[data.labels["background"][i]],
                smile=float(data.smile[i]), skin=SKIN_TONES[data.labels["skin"][i]])
    for _ in range(200):
        state = rng.bit_generator.state
        first = " ".join(training_caption(glasses=own, rng=rng, **rest).split())
        after = rng.bit_generator.state
        rng.bit_generator.state = state
        second = " ".join(training_caption(glasses=other, rng=rng, **rest).split())
        rng.bit_generator.state = after
        if (any(n in first for n in _GLASSES_NAMES[own])
                and any(n in second for n in _GLASSES_NAMES[other])
                and set(first.split()) ^ set(second.split()) <= _GLASSES_WORDS):
            return first, second
    raise ValueError(f"no caption pair names the glasses of sample {i}")


def glasses_twin_latents(vae: Any, data: Any) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """(portrait indices, their twins' glasses offsets, the twins' latents), cached."""
    from studio.training.train_diffusion import encode_latents
    from studio.training.train_diffusion_mouth import _encoder_key

    work = common.CACHE_DIR / f"dit_glasses_v{DATA_VERSION}_{_encoder_key(vae)}"
    work.mkdir(parents=True, exist_ok=True)
    indices = np.arange(min(GLASSES_TWINS, len(data.smile)))
    offsets = other_glasses(indices)
    path = work / f"twins_n{len(indices)}.pt"
    if path.exists():
        return indices, offsets, torch.load(path, weights_only=True)
    log(f"rendering and encoding {len(indices)} glasses twins")
    with torch.no_grad():
        twins = encode_latents(vae, render_glasses_twins(indices, offsets))
    torch.save(twins, path)
    return indices, offsets, twins


class MoodOffsets:
    """A trainable offset added to the input embedding of each of ``MOOD_WORDS`` in each
    text encoder (a forward hook on its token embedding), folded into the weights to save."""

    def __init__(self, encoders: list[Any], tokenizer: Any) -> None:
        ids = [tokenizer(w).input_ids for w in MOOD_WORDS]
        if any(len(i) != 3 for i in ids):
            raise ValueError(f"each of {MOOD_WORDS} must be one token: {ids}")
        self.ids = [i[1] for i in ids]
        self.tables = [te.text_model.embeddings.token_embedding for te in encoders]
        self.offsets = [torch.zeros(len(self.ids), t.weight.shape[1], requires_grad=True)
                        for t in self.tables]
        for table, offset in zip(self.tables, self.offsets, strict=True):
            table.register_forward_hook(self._hook(offset))

    def _hook(self, offset: torch.Tensor) -> Any:
        def add(_module: Any, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
                ) -> torch.Tensor:
            ids = inputs[0]
            for k, token in enumerate(self.ids):
                output = output + (ids == token).unsqueeze(-1).to(output.dtype) * offset[k]
            return output
        return add

    @torch.no_grad()
    def fold(self, sign: int) -> None:
        """Put the offsets into the embedding tables (``sign`` +1; the offsets read 0 while
        they are in, so a saved or evaluated model has them once) or take them back out (-1)."""
        if sign > 0:
            self._saved = [(o.detach().clone(), t.weight[self.ids].clone())
                           for o, t in zip(self.offsets, self.tables, strict=True)]
            for table, offset in zip(self.tables, self.offsets, strict=True):
                table.weight[self.ids] += offset
                offset.zero_()
        else:
            for table, offset, (own, rows) in zip(self.tables, self.offsets, self._saved,
                                                  strict=True):
                table.weight[self.ids] = rows
                offset.copy_(own)


def text_path(transformer: Any) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The transformer's parameters split into (those the words pass through on their way
    to the image tokens: the context embedder, the text stream of each joint block and the
    pooled text's embedding; the rest)."""
    words, rest = [], []
    for name, p in transformer.named_parameters():
        on_path = ("context" in name or ".add_" in name or "norm_added" in name
                   or "text_embedder" in name)
        (words if on_path else rest).append(p)
    return words, rest


def train(out_root: Path, minutes: float = 25.0, seed: int = 0, resume: bool = True,
          lr: float | None = None, checkpoint_minutes: float = 5.0,
          scratch: bool | None = None, mood_pairs: int | None = None,
          glasses_pairs: int | None = None, text_lr_scale: float | None = None,
          command: str | None = None) -> Path:
    """Fine-tune the pipeline in ``out_root / NAME`` for ``minutes``; save it in place.

    With ``scratch`` (or ``STUDIO_DIT_SCRATCH=1``) a fresh transformer and text encoders (from
    ``out_root / SOURCE``, as ``train_dit`` builds them) train with the twins in their batches
    from the first step, at the base run's learning rate.
    """
    del resume  # always from the saved pipeline, unless scratch
    if scratch is None:
        scratch = os.environ.get("STUDIO_DIT_SCRATCH", "0") == "1"
    lr = lr if lr is not None else (5e-4 if scratch else 2.5e-4)
    mood_pairs = MOOD_PAIRS if mood_pairs is None else mood_pairs
    glasses_pairs = GLASSES_PAIRS if glasses_pairs is None else glasses_pairs
    text_lr_scale = TEXT_PATH_LR_SCALE if text_lr_scale is None else text_lr_scale
    from diffusers.models.attention_processor import JointAttnProcessor2_0

    from studio.training.train_diffusion import (
        caption_stream,
        latent_face_weights,
        weighted_mse,
    )
    from studio.training.train_diffusion_mouth import mood_captions, swap_mood, twin_latents

    total = Stopwatch(minutes)
    if scratch:
        pipe = build_pipeline(out_root / SOURCE)
        previous: dict[str, Any] = {}
    else:
        pipe = load_pipeline(out_root / NAME)
        previous = json.loads((out_root / NAME / "training.json").read_text())
        seed = seed + 1000 * (1 + str(previous.get("command", "")).count("dit-mouth")) + 77
    data = build_dataset(TRAIN_SEED, 20_000)
    strong, latents, mood_twins = twin_latents(pipe.vae, data)
    g_idx, g_off, g_twins = glasses_twin_latents(pipe.vae, data)
    if scratch:  # as train_dit: SD3 decodes latents / scaling_factor + shift_factor
        shift = float(latents.float().mean())
        scaling = 1.0 / float(latents.float().std())
        pipe.vae.register_to_config(scaling_factor=scaling, shift_factor=shift)
    else:
        shift = float(pipe.vae.config.shift_factor)
        scaling = float(pipe.vae.config.scaling_factor)

    setup_torch(seed)
    captions = caption_stream(data, seed)
    moods = mood_captions(data, seed)
    cap_rng = np.random.default_rng((seed, 2424))
    face = latent_face_weights()
    transformer = pipe.transformer
    encoders = [pipe.text_encoder, pipe.text_encoder_2]
    transformer.set_attn_processor(CollapsedJointProcessor(T5_TOKENS))
    params = list(transformer.parameters())
    text_params = [p for te in encoders for p in te.parameters()]
    words, rest = text_path(transformer)
    groups = [{"params": rest, "scale": 1.0}, {"params": words, "scale": text_lr_scale},
              {"params": text_params, "scale": 0.5}]
    mood = MoodOffsets(encoders, pipe.tokenizer) if MOOD_LR_SCALE > 0 else None
    if mood is not None:
        groups.append({"params": mood.offsets, "scale": MOOD_LR_SCALE})
        log(f"mood words' embedding offsets at {MOOD_LR_SCALE:g}x the learning rate")
    every = params + text_params + (mood.offsets if mood is not None else [])
    ema = [p.detach().clone() for p in every]
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(seed)
    pair_rng = np.random.default_rng((seed, 22))
    n_plain = BATCH - 2 * (mood_pairs + glasses_pairs)
    dark = np.flatnonzero(np.isin(data.labels["skin"][strong],
                                  [SKIN_TONES.index("brown"), SKIN_TONES.index("dark")]))
    n_dark = int(round(DARK_MOOD_SHARE * mood_pairs))
    n_pairs = mood_pairs + glasses_pairs
    log(f"dit twin fine-tune: {mood_pairs} mood and {glasses_pairs} glasses pairs and "
        f"{n_plain} ordinary samples a batch")
    command = command or (f"{'STUDIO_DIT_SCRATCH=1 ' if scratch else ''}"
                          f"python -m studio.training dit-mouth --minutes {minutes:g}")

    step = 0
    loss = torch.zeros(())
    clock = Stopwatch(max(min(1.0, minutes), minutes - total.elapsed / 60))

    def checkpoint(final: bool) -> None:
        extra = {"scaling_factor": scaling, "shift_factor": shift, "final": final,
                 "train_steps": previous.get("dit_steps", 0) + step,
                 "train_seconds": previous.get("seconds", 0) + round(total.elapsed)}
        with ema_weights(every, ema):
            transformer.set_attn_processor(JointAttnProcessor2_0())
            if mood is not None:
                mood.fold(+1)
            save_pipeline(out_root / NAME, pipe, extra)
            if mood is not None:
                mood.fold(-1)
            transformer.set_attn_processor(CollapsedJointProcessor(T5_TOKENS))
        record = {**previous, **chained_record(previous, command, total.elapsed, step,
                                                 "dit_steps"),
                  "twin_pairs": {"mood": mood_pairs, "glasses": glasses_pairs},
                  "batch_size": BATCH, "text_path_lr_scale": text_lr_scale,
                  **({"scaling_factor": scaling, "shift_factor": shift,
                      "autoencoder": f"{SOURCE}'s, unchanged"} if scratch else {}),
                  **({"mood_lr_scale": MOOD_LR_SCALE} if mood is not None else {}),
                  **({"dark_mood_share": DARK_MOOD_SHARE} if n_dark else {}),
                  "final_loss": round(loss.item(), 4), "final": final}
        write_training_record(out_root / NAME, record)
        log(f"checkpoint saved at step {step}")

    last_ckpt = 0.0
    transformer.train()
    for te in encoders:
        te.train()
    for idx in batches(len(latents), max(1, n_plain), seed + 2):
        if clock.done():
            break
        f = clock.fraction
        for g in opt.param_groups:
            g["lr"] = g["scale"] * lr * min(1.0, (step + 1) / (100 if scratch else 30)) * (
                0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * f)))
        plain = np.sort(idx)[:n_plain]
        if n_dark:
            m = np.concatenate([pair_rng.choice(dark, n_dark, replace=False),
                                pair_rng.choice(len(strong), mood_pairs - n_dark,
                                                replace=False)])
        else:
            m = pair_rng.choice(len(strong), mood_pairs, replace=False)
        gp = pair_rng.choice(len(g_idx), glasses_pairs, replace=False)
        mood_first = [moods(int(i)) for i in strong[m]]
        glasses_caps = [glasses_caption_pair(
            data, int(g_idx[j]),
            GLASSES[(data.labels["glasses"][g_idx[j]] + g_off[j]) % len(GLASSES)], cap_rng)
            for j in gp]
        x0 = torch.cat([latents[torch.from_numpy(plain)],
                        latents[torch.from_numpy(strong[m])],
                        latents[torch.from_numpy(g_idx[gp])],
                        mood_twins[torch.from_numpy(m)],
                        g_twins[torch.from_numpy(gp)]]).float()
        x0 = (x0 - shift) * scaling
        plain_caps = captions(plain.tolist())
        drop = (torch.rand(n_plain, generator=gen) < 0.1).tolist()
        plain_caps = ["" if d else c for c, d in zip(plain_caps, drop, strict=True)]
        caps = (plain_caps + mood_first + [a for a, _ in glasses_caps]
                + [swap_mood(c) for c in mood_first] + [b for _, b in glasses_caps])
        context, pooled = encode_text(pipe, caps)
        pair_noise = torch.randn((n_pairs, *x0.shape[1:]), generator=gen)
        noise = torch.cat([torch.randn((n_plain, *x0.shape[1:]), generator=gen),
                           pair_noise, pair_noise])
        pair_s = torch.sigmoid(torch.randn(n_pairs, generator=gen))
        s = torch.cat([torch.sigmoid(torch.randn(n_plain, generator=gen)), pair_s, pair_s])
        s4 = s[:, None, None, None]
        xs = (1 - s4) * x0 + s4 * noise
        pred = transformer(hidden_states=xs, encoder_hidden_states=context,
                           pooled_projections=pooled, timestep=s * 1000).sample
        loss = weighted_mse(pred, noise - x0, face).mean()
        optimizer_step(opt, loss, clip=every)
        step += 1
        ema_update(ema, [p.detach() for p in every], min(0.995, (1 + step) / (10 + step)))
        if step % 25 == 0:
            log(f"dit twin step {step} loss {loss.item():.4f} t={clock.elapsed:.0f}s")
        if clock.elapsed - last_ckpt > checkpoint_minutes * 60:
            checkpoint(final=False)
            last_ckpt = clock.elapsed
    checkpoint(final=True)
    log(f"dit twin fine-tune saved after {step} steps, {total.elapsed / 60:.1f} min")
    return out_root / NAME
