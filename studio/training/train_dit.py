"""Train ``studio-tiny-dit``: a diffusion transformer in the Stable Diffusion 3 folder format.

A small ``SD3Transformer2DModel`` (MMDiT: joint attention over image and text tokens,
pooled text in the adaLN modulation) learns flow matching (rectified flow: ``x_s = (1 - s) x0
+ s noise``, the transformer predicts ``noise - x0``, logit-normal ``s``) on the latents of
``studio-tiny-diffusion``'s autoencoder, reused as it is. Its two CLIP text encoders start
from ``studio-tiny-diffusion``'s text encoder (which already knows the portrait words) and
train with the transformer; the tokenizer is that model's too. There is no T5
(``text_encoder_3=None``, as diffusers documents for SD3 without T5): the pipeline feeds
``max_sequence_length`` zero tokens in its place. The folder loads with
``StableDiffusion3Pipeline.from_pretrained(folder, text_encoder_3=None, tokenizer_3=None)``
and samples with ``FlowMatchEulerDiscreteScheduler``.

**Twins from the first step** (the shipped recipe, issues 24 and 27): each batch of 32 holds
6 mood pairs and 3 glasses pairs (``train_dit_mouth``: a portrait and the same portrait drawn
again with the smile negated or other glasses, captions that differ only in those words, the
same noise at the same flow time) beside 14 ordinary samples, and the transformer's text
path (context embedder, the joint blocks' text stream, the pooled text's embedding) learns
at 2x the rate. ``train`` hands a fresh run to ``train_dit_mouth.train(scratch=True)``.
Trained on the caption stream alone (``STUDIO_DIT_TWINS=0``, the first shipped DiT, 65 min),
the DiT drew the mouth from the noise: smiling and frowning were followed in 15 % of the
held-out prompts, and two twin fine-tunes of that model (``dit-mouth``) did not change it.

**Regions** (``REGION_CONTRAST``, written to ``studio.json``): a region's text stream pulls
the image tokens of the twin-trained DiT less per joint block than the first DiT's did, and
the picture-wide mix of the prompts (self-attention over all image tokens) won at a plain
blend: two half-picture backgrounds held in 5 of 20 seeds, a left region alone in 0 of 20.
With the regions' weights pushed from their mean as in the UNet (``studio.engine.regions``,
contrast 2) they held in 20 of 20 and 19 of 20, the half outside keeping the main prompt in
20 of 20 (contrast 3: 20 / 20 / 20). The engine reads the model's contrast from its
``studio.json`` (``model_contrast``); users' models keep the default of their layers.

Training cost: the pipeline's 256 zero "T5" tokens are identical in every layer (the same
input through the same per-token maps), so training runs one of them with its attention
logit raised by log(256) (``studio.engine.joint_context.CollapsedJointProcessor``): the same
function as the 256 tokens, at a third of the cost. The saved model uses diffusers' own
attention processor; the engine collapses the zeros at inference the same way.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studio.core.portraits.render import DATA_VERSION
from studio.engine.joint_context import CollapsedJointProcessor
from studio.training.common import (
    CACHE_DIR,
    TRAIN_SEED,
    Stopwatch,
    batches,
    build_dataset,
    chained_record,
    ema_update,
    log,
    optimizer_step,
    resume_seed,
    save_pretrained_folder,
    setup_torch,
    write_training_record,
)

NAME = "studio-tiny-dit"
SOURCE = "studio-tiny-diffusion"  # the model whose autoencoder, tokenizer and text encoder start this one
T5_TOKENS = 256  # StableDiffusion3Pipeline's default max_sequence_length (zero tokens without T5)
RECOMMENDED = {"scheduler": "FlowMatchEulerDiscreteScheduler", "steps": 20, "guidance": 3.5,
               "height": 64, "width": 64}
TRANSFORMER_CONFIG: dict[str, Any] = dict(
    sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=4,
    attention_head_dim=32, num_attention_heads=4, joint_attention_dim=128,
    caption_projection_dim=128, pooled_projection_dim=128, pos_embed_max_size=32)
SCHEDULER_CONFIG: dict[str, Any] = dict(num_train_timesteps=1000, shift=1.0)
# A fresh run trains with twins from the first step (see the module docstring); "0": the
# caption stream alone (the recipe of the first DiT).
TWINS = os.environ.get("STUDIO_DIT_TWINS", "1") != "0"
TWIN_RECIPE = dict(mood_pairs=6, glasses_pairs=3, text_lr_scale=2.0)
REGION_CONTRAST = 2.0  # the regions' contrast measured on the twin-trained DiT (docstring)


def build_pipeline(source: Path, transformer: Any | None = None) -> Any:
    """A ``StableDiffusion3Pipeline`` of a fresh (or the given) transformer, with the
    autoencoder, tokenizer and text encoder (twice) of the model in ``source``."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer

    vae = AutoencoderKL.from_pretrained(source / "vae").float().eval()
    tokenizer = CLIPTokenizer.from_pretrained(source / "tokenizer")
    encoders = [CLIPTextModelWithProjection.from_pretrained(source / "text_encoder").float()
                for _ in range(2)]
    for i, te in enumerate(encoders):  # text_projection is new: start near an identity
        with torch.no_grad():
            g = torch.Generator().manual_seed(100 + i)
            eye = torch.eye(te.config.projection_dim, te.config.hidden_size)
            te.text_projection.weight.copy_(
                eye + 0.02 * torch.randn(eye.shape, generator=g))
    return StableDiffusion3Pipeline(
        transformer=transformer or SD3Transformer2DModel(**TRANSFORMER_CONFIG),
        scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG), vae=vae,
        text_encoder=encoders[0], tokenizer=tokenizer, text_encoder_2=encoders[1],
        tokenizer_2=tokenizer, text_encoder_3=None, tokenizer_3=None)


def load_pipeline(folder: Path) -> Any:
    """The saved ``studio-tiny-dit`` folder as diffusers loads it (fp32, CPU)."""
    from diffusers import StableDiffusion3Pipeline

    pipe = StableDiffusion3Pipeline.from_pretrained(
        folder, text_encoder_3=None, tokenizer_3=None, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_pipeline(out_dir: Path, pipe: Any, extra: dict[str, Any]) -> None:
    """Write the pipeline folder (fp32 safetensors) plus ``studio.json``, atomically."""
    from diffusers.models.attention_processor import JointAttnProcessor2_0

    saved = copy.deepcopy(pipe)
    saved.transformer.set_attn_processor(JointAttnProcessor2_0())
    save_pretrained_folder(out_dir, saved.save_pretrained,
                           {"family": "sd3", "recommended": dict(RECOMMENDED),
                            "regions": {"contrast": REGION_CONTRAST}, **extra})


def encode_text(pipe: Any, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(context, pooled) exactly as the pipeline encodes them, with one zero "T5" token
    (``CollapsedJointProcessor`` weighs it as ``T5_TOKENS``)."""
    context, _, pooled, _ = pipe.encode_prompt(
        prompt=captions, prompt_2=captions, prompt_3=None, do_classifier_free_guidance=False,
        max_sequence_length=1, device=torch.device("cpu"))
    return context, pooled


def latents_of(vae: Any, images: np.ndarray, work: Path) -> torch.Tensor:
    """Posterior means of the images under the source autoencoder (cached)."""
    from studio.training.train_diffusion import encode_latents

    path = work / f"latents_n{len(images)}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    log("encoding latents")
    latents = encode_latents(vae, images)
    torch.save(latents, path)
    return latents


def train(out_root: Path, minutes: float = 60.0, seed: int = 0, n_data: int = 20_000,
          batch_size: int = 32, lr: float = 5e-4, checkpoint_minutes: float = 6.0,
          resume: bool = False, source: Path | None = None) -> Path:
    """Transformer + text encoders within ``minutes``; save to ``out_root / NAME``.

    With ``resume`` the pipeline already in ``out_root / NAME`` trains on (a fresh pass over
    the data, half the learning rate).
    """
    if TWINS and not resume and source is None:
        from studio.training import train_dit_mouth

        return train_dit_mouth.train(
            out_root, minutes=minutes, seed=seed, scratch=True, lr=lr,
            checkpoint_minutes=checkpoint_minutes, **TWIN_RECIPE,  # type: ignore[arg-type]
            command=f"python -m studio.training dit --minutes {minutes:g}")
    from diffusers.models.attention_processor import JointAttnProcessor2_0

    from studio.training.train_diffusion import (
        FACE_WEIGHTED,
        caption_stream,
        latent_face_weights,
        weighted_mse,
    )

    total = Stopwatch(minutes)
    source = source or out_root / SOURCE
    previous: dict[str, Any] = {}
    if resume:
        pipe = load_pipeline(out_root / NAME)
        previous = json.loads((out_root / NAME / "training.json").read_text())
        seed = resume_seed(seed, previous)
        lr = lr / 2
    else:
        pipe = build_pipeline(source)
    data = build_dataset(TRAIN_SEED, n_data)
    work = CACHE_DIR / f"dit_v{DATA_VERSION}"
    work.mkdir(parents=True, exist_ok=True)
    latents = latents_of(pipe.vae, data.images[:n_data], work)
    shift = latents.float().mean().item()
    std = latents.float().std().item()
    if resume:
        shift, scaling = pipe.vae.config.shift_factor, pipe.vae.config.scaling_factor
    else:
        scaling = 1.0 / std
    # StableDiffusion3Pipeline decodes latents / scaling_factor + shift_factor.
    pipe.vae.register_to_config(scaling_factor=scaling, shift_factor=shift)
    log(f"latents {tuple(latents.shape)} mean {shift:.3f} std {std:.3f}")

    setup_torch(seed)
    captions = caption_stream(data, seed)
    face = latent_face_weights() if FACE_WEIGHTED else torch.ones(16, 16)  # see there
    transformer = pipe.transformer
    encoders = [pipe.text_encoder, pipe.text_encoder_2]
    transformer.set_attn_processor(CollapsedJointProcessor(T5_TOKENS))
    params = list(transformer.parameters())
    text_params = [p for te in encoders for p in te.parameters()]
    ema = [p.detach().clone() for p in params + text_params]
    opt = torch.optim.AdamW([{"params": params, "weight_decay": 1e-2, "scale": 1.0},
                             {"params": text_params, "weight_decay": 1e-2, "scale": 0.5}],
                            lr=lr)
    log(f"transformer {sum(p.numel() for p in params) / 1e6:.2f}M params, text encoders "
        f"{sum(p.numel() for p in text_params) / 1e6:.2f}M")

    step = 0
    clock = Stopwatch(max(min(1.0, minutes), minutes - total.elapsed / 60))

    def checkpoint(final: bool) -> None:
        live = [p.detach().clone() for p in params + text_params]
        with torch.no_grad():
            for p, e in zip(params + text_params, ema, strict=True):
                p.copy_(e)
        extra = {"scaling_factor": scaling, "shift_factor": shift, "final": final,
                 "train_steps": previous.get("dit_steps", 0) + step,
                 "train_seconds": previous.get("seconds", 0) + round(total.elapsed)}
        save_pipeline(out_root / NAME, pipe, extra)
        with torch.no_grad():
            for p, v in zip(params + text_params, live, strict=True):
                p.copy_(v)
        log(f"checkpoint saved at step {step}")

    last_ckpt = 0.0
    gen = torch.Generator().manual_seed(seed)
    empty = [""]
    transformer.train()
    for te in encoders:
        te.train()
    loss = torch.zeros(())
    for idx in batches(len(latents), batch_size, seed + 2):
        if clock.done():
            break
        f = clock.fraction
        for g in opt.param_groups:
            g["lr"] = g["scale"] * lr * min(1.0, (step + 1) / 100) * (
                0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * f)))
        idx_t = torch.from_numpy(np.sort(idx))
        x0 = (latents[idx_t].float() - shift) * scaling
        caps = captions(idx_t.tolist())
        drop = torch.rand(len(caps), generator=gen) < 0.1
        caps = [empty[0] if d else c for c, d in zip(caps, drop.tolist(), strict=True)]
        context, pooled = encode_text(pipe, caps)
        noise = torch.randn(x0.shape, generator=gen)
        s = torch.sigmoid(torch.randn(len(x0), generator=gen))  # logit-normal sigmas
        xs = (1 - s[:, None, None, None]) * x0 + s[:, None, None, None] * noise
        pred = transformer(hidden_states=xs, encoder_hidden_states=context,
                           pooled_projections=pooled, timestep=s * 1000).sample
        loss = weighted_mse(pred, noise - x0, face).mean()
        optimizer_step(opt, loss, clip=params + text_params)
        step += 1
        ema_update(ema, [p.detach() for p in params + text_params],
                    min(0.995, (1 + step) / (10 + step)))
        if step % 25 == 0:
            log(f"dit step {step} loss {loss.item():.4f} lr {opt.param_groups[0]['lr']:.2e}"
                f" t={clock.elapsed:.0f}s")
        if clock.elapsed - last_ckpt > checkpoint_minutes * 60:
            checkpoint(final=False)
            last_ckpt = clock.elapsed
    transformer.set_attn_processor(JointAttnProcessor2_0())
    checkpoint(final=True)
    command = f"python -m studio.training dit --minutes {minutes:g}"
    record = {
        **chained_record(previous, command + (" --resume" if resume else ""), total.elapsed,
                         step, "dit_steps"),
        "batch_size": batch_size, "train_samples": n_data, "scaling_factor": scaling,
        "shift_factor": shift, "final_loss": round(loss.item(), 4),
        "autoencoder": f"{SOURCE}'s, unchanged"}
    write_training_record(out_root / NAME, record)
    log(f"dit saved after {step} steps, {total.elapsed / 60:.1f} min")
    return out_root / NAME
