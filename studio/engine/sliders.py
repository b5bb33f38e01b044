"""Slider directions in text-embedding and seed space, applied to one generation.

* Prompt directions: ``E(prompt(positive)) - E(prompt(negative))`` with the words placed in
  the request's own prompt where it has a place for them (``place_in_prompt``), else
  ``E(template(positive)) - E(template(negative))`` averaged over the templates; for the
  token embeddings and (SDXL, SD3, Flux) the pooled embedding. On the DiT families ``E`` is
  the pipeline's own ``encode_prompt`` (``conditioning.encode_dit``). ``value * delta`` is
  added to the prompt's embeddings; with ``start > 0`` only after that fraction of the
  steps (through ``callback_on_step_end``), so the composition of the base image stays;
  where the pipeline's callback cannot take the embeddings it changes (PixArt; Flux's pooled
  ones), from the first step (``late_fits``).
* Interpolation: the initial noise is slerped towards another seed's noise and the
  embeddings are lerped towards another prompt's.

A value of 0 never touches a tensor, so the base image comes back bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from studio.core.jobs.request import GenerationRequest, SliderValue
from studio.core.sliders.specs import INTERP, INVERT, PROMPT, fill_template
from studio.engine.conditioning import LRUCache, encode_dit, encodes_dit
from studio.engine.models.families import SDXL_FAMILIES


@dataclass(frozen=True)
class PromptDelta:
    """One prompt direction: token-embedding delta (1, S, D) and pooled delta (1, D) or None."""

    tokens: Any
    pooled: Any = None
    # Where the prompt itself sits on the slider: +1 it says the positive words, -1 the
    # negative ones, 0 neither (or the direction is the templates' average).
    end: int = 0


@dataclass(frozen=True)
class ScheduledDelta:
    """A delta with its value and the first step it applies at."""

    delta: PromptDelta
    value: float
    start_step: int


def compute_prompt_delta(pipe: Any, family: str, positive: str, negative: str,
                         templates: list[str], device: Any, clip_skip: int = 0) -> PromptDelta:
    """The mean embedding difference of the filled templates (positive minus negative)."""
    import torch

    templates = templates or ["{}"]
    pos = [fill_template(t, positive) for t in templates]
    neg = [fill_template(t, negative) for t in templates]
    skip = clip_skip or None
    with torch.inference_mode():
        if encodes_dit(family):  # SD3, Flux, PixArt, Sana, AuraFlow: their own encoders
            e = encode_dit(pipe, family, pos + neg, None, device, guidance=False,
                           clip_skip=clip_skip)
            n = len(pos)
            pe, pooled = e["prompt_embeds"], e.get("pooled_prompt_embeds")
            return PromptDelta((pe[:n] - pe[n:]).mean(0, keepdim=True),
                               None if pooled is None
                               else (pooled[:n] - pooled[n:]).mean(0, keepdim=True))
        if family in SDXL_FAMILIES:
            pe, _n, pooled, _np = pipe.encode_prompt(
                prompt=pos + neg, device=device, num_images_per_prompt=1,
                do_classifier_free_guidance=False, clip_skip=skip)
            n = len(pos)
            return PromptDelta((pe[:n] - pe[n:]).mean(0, keepdim=True),
                               (pooled[:n] - pooled[n:]).mean(0, keepdim=True))
        pe, _n = pipe.encode_prompt(pos + neg, device, 1, False, clip_skip=skip)
        n = len(pos)
        return PromptDelta((pe[:n] - pe[n:]).mean(0, keepdim=True))


class DirectionCache(LRUCache):
    """Prompt deltas, cached per model, LoRA state and text pair (small LRU)."""

    def __init__(self, size: int = 64) -> None:
        super().__init__(size)


def prompt_sliders(request: GenerationRequest) -> list[SliderValue]:
    return [s for s in request.sliders if s.space == PROMPT and s.value != 0]


def interp_slider(request: GenerationRequest) -> SliderValue | None:
    for s in request.sliders:
        if s.space == INTERP and s.value != 0:
            return s
    return None


def travel(delta: PromptDelta, value: float, beyond: float) -> float:
    """The multiple of ``delta`` a slider at ``value`` adds: ``value``, but ``beyond`` times
    that past the end of the slider the prompt already says (see ``SliderSpec.beyond``)."""
    return value * beyond if delta.end and value * delta.end > 0 else value


def schedule(deltas: list[tuple[PromptDelta, float, float]], steps: int) -> list[ScheduledDelta]:
    """(delta, value, start fraction) -> deltas with the first step each applies at."""
    out = []
    for delta, value, start in deltas:
        first = 0 if start <= 0 else min(steps, int(round(start * steps)))
        out.append(ScheduledDelta(delta, value, first))
    return out


def add_deltas(kwargs: dict[str, Any], active: list[ScheduledDelta]) -> dict[str, Any]:
    """Conditioning kwargs with ``value * delta`` added to the positive embeddings."""
    if not active:
        return kwargs
    out = dict(kwargs)
    pe = out["prompt_embeds"]
    for s in active:
        pe = pe + (s.value * s.delta.tokens).to(pe.dtype)
    out["prompt_embeds"] = pe
    if "pooled_prompt_embeds" in out:
        pooled = out["pooled_prompt_embeds"]
        for s in active:
            if s.delta.pooled is not None:
                pooled = pooled + (s.value * s.delta.pooled).to(pooled.dtype)
        out["pooled_prompt_embeds"] = pooled
    return out


def late_delta_callback(late: list[ScheduledDelta]) -> Callable[[Any, int, dict[str, Any]], None]:
    """An in-place update for ``callback_on_step_end``: after step ``i`` the deltas whose
    start step is ``i + 1`` join the positive half of the (CFG-batched) embeddings."""

    def update(pipe: Any, step: int, cb: dict[str, Any]) -> None:
        now = [s for s in late if s.start_step == step + 1]
        if not now:
            return
        cfg = bool(getattr(pipe, "do_classifier_free_guidance", False))
        latents = cb.get("latents")

        def first_positive(rows: int) -> int:
            # CFG-batched embeddings hold the negative rows first, then one per latent.
            if latents is not None and latents.dim() >= 3 and rows >= latents.shape[0]:
                return rows - latents.shape[0]
            return rows // 2 if cfg else 0

        pe = cb.get("prompt_embeds")
        if pe is not None:
            tokens = sum(s.value * s.delta.tokens for s in now).to(pe.dtype)
            pe = pe.clone()
            half = first_positive(pe.shape[0])
            pe[half:] = pe[half:] + tokens
            cb["prompt_embeds"] = pe
        key = next((k for k in POOLED_KEYS if k in cb), None)  # SDXL / SD3
        pooled = cb.get(key) if key else None
        if pooled is not None and any(s.delta.pooled is not None for s in now):
            extra = sum(s.value * s.delta.pooled for s in now if s.delta.pooled is not None)
            pooled = pooled.clone()
            half = first_positive(pooled.shape[0])
            pooled[half:] = pooled[half:] + extra.to(pooled.dtype)
            cb[key] = pooled

    return update


# The names the pipelines give their pooled text embeddings in ``callback_on_step_end``.
POOLED_KEYS = ("add_text_embeds", "pooled_prompt_embeds")


def late_fits(pipe: Any, deltas: list[ScheduledDelta]) -> bool:
    """Whether ``pipe`` lets late directions join at their step: its ``callback_on_step_end``
    hands over the embeddings they change (PixArt has no such callback; Flux's has no pooled
    embeddings). Where it does not, the directions act from the first step."""
    import inspect

    if "callback_on_step_end" not in inspect.signature(type(pipe).__call__).parameters:
        return False
    names = getattr(pipe, "_callback_tensor_inputs", None) or ()
    if "prompt_embeds" not in names:
        return False
    pooled = any(d.delta.pooled is not None for d in deltas)
    return not pooled or any(k in names for k in POOLED_KEYS)


def lerp_conditioning(a: dict[str, Any], b: dict[str, Any], t: float) -> dict[str, Any]:
    """Embeddings on the straight line from ``a`` (t=0, exactly) to ``b`` (t=1, exactly)."""
    if t <= 0:
        return a
    if t >= 1:
        return b
    return {k: (a[k] + t * (b[k] - a[k])) if k in b else a[k] for k in a}


def seed_noise(shape: tuple[int, ...], seed: int) -> Any:
    """The initial noise diffusers draws for ``seed`` (CPU generator, float32)."""
    import torch

    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(seed) % 2**32))


def noise_shape(pipe: Any, req: GenerationRequest) -> tuple[int, int, int, int]:
    """One image's starting noise as the pipeline draws it (4, 16 ... latent channels; the
    DiTs' layouts: see ``studio.engine.calls.noise_shape``)."""
    from studio.engine.calls import noise_shape as drawn_shape

    return drawn_shape(pipe, req)


def interpolated_noise(pipe: Any, req: GenerationRequest, slider: SliderValue,
                       start: Any | None) -> Any:
    """Initial noise slerped from this request's (``start``, or its seeds' noise) towards
    the noise of ``seed_b`` (image ``i`` of a batch goes towards ``seed_b + i``); ``start``
    and the result are in ``noise_shape``'s layout (Flux packs it after: ``pack_latents``)."""
    import torch

    from studio.engine.noise import slerp

    shape = noise_shape(pipe, req)
    t = min(1.0, max(0.0, float(slider.value)))
    seed_b = int(dict(slider.payload).get("seed_b", 0))
    out = []
    for i, seed in enumerate(req.seeds):
        a = start[i:i + 1].cpu().float() if start is not None else seed_noise(shape, seed)
        out.append(slerp(a, seed_noise(shape, seed_b + i), t))
    return torch.cat(out)


# -- inversion of an imported image ------------------------------------------------------
def inversion_slider(request: GenerationRequest) -> SliderValue | None:
    """The marker that asks to start from the DDIM inversion of the init image."""
    if request.init_image is None:
        return None
    return next((s for s in request.sliders if s.space == INVERT), None)


class InversionCache(LRUCache):
    """Inverted noise per model, image, prompt and steps (a drag inverts only once)."""

    def __init__(self, size: int = 8) -> None:
        super().__init__(size)


def sdxl_added_cond(pooled: Any, size: tuple[int, int]) -> dict[str, Any]:
    """SDXL's extra UNet inputs for a direct call: the pooled text embeddings and the size
    conditioning the pipeline uses by default (original and target size = the image's
    ``(height, width)``, no crop), one row per pooled row."""
    import torch

    h, w = int(size[0]), int(size[1])
    time_ids = torch.tensor([[h, w, 0, 0, h, w]], device=pooled.device, dtype=pooled.dtype)
    return {"text_embeds": pooled, "time_ids": time_ids.expand(pooled.shape[0], -1)}


def ddim_invert(pipe: Any, image: Any, prompt_embeds: Any, steps: int, device: Any,
                dtype: Any, pooled_prompt_embeds: Any = None) -> Any:
    """DDIM inversion (Song et al. 2021; as in null-text inversion, Mokady et al. 2023).

    Encodes ``image`` (uint8 HxWx3, the request's size) with the pipeline's VAE and runs the
    deterministic DDIM update backwards, conditioned on ``prompt_embeds`` without guidance,
    to the initial noise that DDIM sampling with the same prompt turns back into the image.
    SDXL also needs ``pooled_prompt_embeds``; its size conditioning is the one the pipeline
    uses by default (original and target size = the image's, no crop).
    """
    import numpy as np
    import torch
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(pipe.scheduler.config)
    sched.set_timesteps(steps, device=device)
    x = torch.from_numpy(np.array(image[..., :3], dtype=np.uint8)).permute(2, 0, 1)[None]
    x = (x.float() / 127.5 - 1.0).to(device, dtype)
    unet_kwargs: dict[str, Any] = {}
    if pooled_prompt_embeds is not None:
        unet_kwargs["added_cond_kwargs"] = sdxl_added_cond(pooled_prompt_embeds,
                                                           tuple(x.shape[-2:]))
    with torch.inference_mode():
        vae = pipe.vae
        if x.dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
            # SDXL's VAE overflows in fp16 (as the pipelines do, encode in fp32).
            vae.to(torch.float32)
            try:
                latents = vae.encode(x.float()).latent_dist.mean.to(dtype)
            finally:
                vae.to(torch.float16)
        else:
            latents = vae.encode(x).latent_dist.mean
        latents = latents * vae.config.scaling_factor
        alphas = sched.alphas_cumprod.to(device)
        stride = sched.config.num_train_timesteps // steps
        v_pred = sched.config.prediction_type == "v_prediction"
        for t in sched.timesteps.flip(0):
            t = int(t)
            t_from = t - stride
            a_from = alphas[t_from] if t_from >= 0 else sched.final_alpha_cumprod.to(device)
            a_to = alphas[t]
            out = pipe.unet(latents, t_from if t_from >= 0 else 0,
                            encoder_hidden_states=prompt_embeds, **unet_kwargs).sample
            if v_pred:
                eps = a_from.sqrt() * out + (1 - a_from).sqrt() * latents
            else:
                eps = out
            x0 = (latents - (1 - a_from).sqrt() * eps) / a_from.sqrt()
            latents = a_to.sqrt() * x0 + (1 - a_to).sqrt() * eps
    return latents


# -- local edits: the image is kept where the slider's words do not act --------------------
# DiffEdit (Couairon et al. 2022) finds where two prompts disagree: noise the image's latents
# half way, predict the noise under both prompts, and keep the places where the predictions
# differ more than ``MASK_RATIO`` times their mean difference. Blended latent diffusion
# (Avrahami et al. 2023) then runs the edited generation and, after every step, puts back
# the base generation's latents outside that mask, so hair, glasses or the background that
# the words do not name stay as they were. The last 10% of the steps run free: with the base
# put back to the end, a hair style that changed length left a smudge where the old hair was.
MASK_STRENGTH = 0.5  # noise level of the mask's estimate (DiffEdit's default)
MASK_MAPS = 4  # noise draws averaged (DiffEdit uses 10; 4 gives the same mask on portraits)
MASK_RATIO = 3.0  # a latent pixel is edited where its difference > 0.5 * RATIO * mean
BLEND_UNTIL = 0.9  # the share of the steps that put the base back (the last ones join the seams)
MASK_GROW = 0  # latent pixels added around the mask (DiffEdit adds none; 1 trades kept for edit)
# Flow-matching transformers whose call this module makes for the mask (SD 3.x:
# ``SD3Transformer2DModel``, the embedded studio-tiny-dit among them): the latents noised on
# the straight path towards the noise, the velocity predicted under both prompts. The other
# DiTs' local sliders change the whole image.
LOCAL_FLOW_FAMILIES = ("sd3",)


def local_sliders(request: GenerationRequest) -> list[SliderValue]:
    """Prompt sliders that edit only where their words act (``local`` in their payload)."""
    return [s for s in prompt_sliders(request) if dict(s.payload).get("local")]


def without_sliders(request: GenerationRequest, sliders: list[SliderValue]) -> GenerationRequest:
    """The base generation a local slider edit is blended with."""
    return request.replace(sliders=tuple(s for s in request.sliders if s not in sliders))


class TrajectoryCache(LRUCache):
    """Base generations' latents after every step (a drag runs its base only once)."""

    def __init__(self, size: int = 4) -> None:
        super().__init__(size)


@dataclass(frozen=True)
class LocalBlend:
    """The base generation's latents after each step and the edit's mask (B, 1, h, w)."""

    trajectory: tuple[Any, ...]
    mask: Any
    until: float = BLEND_UNTIL  # the share of the steps blended (the last join the seams)

    def apply(self, step: int, latents: Any) -> Any:
        """``latents`` after step ``step`` with the base's put back outside the mask."""
        if step >= len(self.trajectory) or step >= self.until * len(self.trajectory):
            return latents
        base = self.trajectory[step].to(latents.device, latents.dtype)
        mask = self.mask.to(latents.device, latents.dtype)
        return mask * latents + (1 - mask) * base


def edit_mask(pipe: Any, latents: Any, prompt_embeds: Any, delta: PromptDelta, seed: int,
              pooled_prompt_embeds: Any = None, size: tuple[int, int] | None = None,
              strength: float = MASK_STRENGTH, maps: int = MASK_MAPS,
              ratio: float = MASK_RATIO, grow: int = MASK_GROW) -> Any:
    """Where ``prompt_embeds + delta`` and ``prompt_embeds`` disagree about ``latents``
    (the base image's final latents, (B, C, h, w)): a {0, 1} mask (B, 1, h, w)."""
    import torch
    import torch.nn.functional as F

    b = latents.shape[0]
    device, dtype = latents.device, latents.dtype
    gen = torch.Generator("cpu").manual_seed(int(seed) % 2**32)
    noise = torch.randn((maps * b, *latents.shape[1:]), generator=gen).to(device, dtype)
    x0 = latents.repeat(maps, 1, 1, 1)
    base = prompt_embeds[:1].to(dtype)
    edited = base + delta.tokens.to(device, dtype)
    n = maps * b
    embeds = torch.cat([edited.expand(n, -1, -1), base.expand(n, -1, -1)])
    pooled_pair = None
    if pooled_prompt_embeds is not None:  # SDXL, SD3: the pooled text with its direction
        pooled = pooled_prompt_embeds[:1].to(dtype)
        pooled_e = pooled + (delta.pooled.to(device, dtype) if delta.pooled is not None else 0)
        pooled_pair = torch.cat([pooled_e.expand(n, -1), pooled.expand(n, -1)])
    if getattr(pipe, "unet", None) is None:  # a flow-matching transformer (SD3)
        x_t = ((1 - strength) * x0.float() + strength * noise.float()).to(dtype)
        timestep = torch.full((2 * n,), strength * 1000.0, device=device, dtype=dtype)
        out = pipe.transformer(hidden_states=torch.cat([x_t, x_t]), timestep=timestep,
                               encoder_hidden_states=embeds, pooled_projections=pooled_pair,
                               return_dict=False)[0]
    else:
        alphas = pipe.scheduler.alphas_cumprod
        t = int(round(strength * (len(alphas) - 1)))
        a = alphas[t].to(device=device, dtype=torch.float32)
        x_t = (a.sqrt() * x0.float() + (1 - a).sqrt() * noise.float()).to(dtype)
        kwargs: dict[str, Any] = {}
        if pooled_pair is not None:  # SDXL: pooled text and size conditioning
            kwargs["added_cond_kwargs"] = sdxl_added_cond(
                pooled_pair, size or (latents.shape[-2] * 8, latents.shape[-1] * 8))
        out = pipe.unet(torch.cat([x_t, x_t]), t, encoder_hidden_states=embeds,
                        **kwargs).sample
    diff = (out[:n].float() - out[n:].float()).abs().mean(1, keepdim=True)  # (n, 1, h, w)
    diff = diff.view(maps, b, 1, *diff.shape[-2:]).mean(0)
    scale = diff.mean(dim=(1, 2, 3), keepdim=True) * ratio + 1e-12
    mask = ((diff / scale).clamp(0, 1) > 0.5).float()
    if grow > 0:
        mask = F.max_pool2d(mask, 2 * grow + 1, stride=1, padding=grow)
    return mask.to(dtype)
