"""Regional prompts: masked cross-attention in the UNets of SD 1.x/2.x and SDXL and in the
cross-attention DiTs (PixArt, Sana), and a per-region text stream blended by mask in the
blocks of SD3 and Flux that carry text beside the image (further down).

A region (``studio.core.jobs.request.Region``) is a grey mask with its own prompt and a
strength. For one call we wrap the processor of every cross-attention layer (``attn2`` of
each transformer block) in a ``RegionalAttention``; ``regional_attention`` sets the
wrappers and puts the original processors back afterwards, so the cached pipeline never
keeps them (as ``studio.engine.engine.for_this_call`` does for LoRAs and schedulers).

In each cross-attention layer, for the query image tokens ``q`` (one per latent pixel at
that layer's resolution):

* ``main = A(q, main prompt)``: the layer's own processor over the main prompt's tokens,
  unchanged, everywhere.
* ``out_r = A(q, prompt_r)``: the same processor over region ``r``'s prompt tokens (same
  weights, same code path).
* ``alpha_r = strength_r * mask_r``, the mask area-averaged down to the layer's resolution
  (the latent halved once per UNet level); where the alphas add up to more than 1 they are
  divided by their sum, so overlapping regions share the place.
* ``out = main + sum_r alpha_r * (out_r - main)``: outside every region the main prompt
  alone; inside a region at strength 1, that region's prompt alone; between, a blend.
* Contrast: each ``alpha_r`` then becomes ``alpha_r + (CONTRAST - 1) * (alpha_r -
  mean(alpha_r))``, the mean taken over the layer's tokens (the region's share of the
  picture). Self-attention and the convolutions of the coarse levels spread every layer's
  output over the whole picture, so each place also receives the picture-wide mix of the
  prompts (``sum_w share_w * out_w``); on a model that learnt one background colour per
  picture (the retrained ``studio-tiny-diffusion``: partial captions, always a one-colour
  background) that mix won: two half-picture backgrounds, yellow | blue, came out as
  yellow | purple or grey | purple, 4 of 40 seeds, and the half left to the main prompt lost
  its own colour (7 of 40). The contrast subtracts the mix back out ``CONTRAST - 1`` times:
  with ``CONTRAST = 2`` the two backgrounds hold and the rest follows the main prompt (the
  figures in the README). It changes nothing where the weights are even (one region over
  everything at any strength: ``alpha_r`` equals its mean), so a region covering the whole
  picture at strength 1 is still its prompt's picture and at strength 0 the plain one, and
  where ``out_r == main`` the term is zero whatever its weight.

This is the "per-region attention outputs blended by mask" form of regional prompting
(as in A1111's Regional Prompter, attention mode) rather than one softmax over the
concatenated tokens with a ``-inf`` bias on keys outside the mask: the blend is exact when
it has nothing to do. A region covering the whole image with the main prompt's own text
gives ``out_r == main`` bit for bit (same inputs through the same processor), so
``out_r - main`` is zero and the pixels equal the plain generation's; a concatenated
softmax would only be equal up to rounding.

Classifier-free guidance: the UNet sees the unconditional rows first, then the
conditional ones (diffusers' order); the regions act on the conditional rows only, so the
negative prompt is unchanged. The pooled text embedding of SDXL and of the embedded model
(added to the time embedding, one vector per image) stays the main prompt's.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from studio.core.jobs.request import GenerationRequest, Region
from studio.engine.joint_context import collapsed_to

log = logging.getLogger(__name__)

CONTRAST = 2.0
"""How far the regions' weights are pushed from their picture-wide mean (1: a plain blend;
see the module docstring). Measured on the embedded model: 1.5 held two backgrounds in 2 of
4 seeds, 2 in 4 of 4 (and the 40-seed figures in the README)."""


@dataclass
class RegionPlan:
    """What the wrapped processors need for one call: each region's prompt embeddings
    (``(1, tokens, dim)``) and mask (float32 ``(height, width)`` in [0, 1], at the request's
    size), the strengths, the latent size and the number of images per prompt."""

    embeds: list[Any]
    masks: list[np.ndarray]
    strengths: list[float]
    latent_size: tuple[int, int]
    images: int
    contrast: float = 1.0
    # each region's prompt attention mask (``(1, tokens)``, 1 = a word, 0 = padding) where the
    # family's text encoder pads (T5, Gemma: PixArt, Sana); ``None`` where it does not matter
    attention_masks: list[Any] | None = None
    # the main prompt's embeddings where the pipeline encodes it itself and may run the
    # unconditional pass as a call of its own (Flux 2, Z-Image): the rows (or the calls)
    # whose text equals it carry the prompt, the others are the negative's
    main_embeds: Any = None
    # the model's own contrast (its ``studio.json``: ``"regions": {"contrast": c}``, see
    # ``model_contrast``) over the default of its kind of layer; ``None``: the default
    model_contrast: float | None = None
    _alphas: dict[tuple[int, Any, Any], list[Any]] = field(default_factory=dict, repr=False)

    def with_contrast(self, default: float) -> RegionPlan:
        """This plan for one call's layers: the model's own contrast, else ``default``."""
        contrast = default if self.model_contrast is None else self.model_contrast
        return replace(self, contrast=contrast, _alphas={})

    def cond_rows(self, batch: int) -> slice | None:
        """The rows of a UNet batch that carry the prompt (``None``: not a batch we know)."""
        if batch == 2 * self.images:  # classifier-free guidance: unconditional rows first
            return slice(self.images, batch)
        if batch == self.images:
            return slice(0, batch)
        return None

    def level_size(self, tokens: int) -> tuple[int, int] | None:
        """The (height, width) of a UNet level holding ``tokens`` image tokens."""
        h, w = self.latent_size
        while h * w > tokens and (h > 1 or w > 1):
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        return (h, w) if h * w == tokens else None

    def alphas(self, tokens: int, device: Any, dtype: Any) -> list[Any] | None:
        """Each region's blend weight per image token, ``(1, tokens, 1)``, at the level with
        ``tokens`` tokens (cached), or ``None`` for a token count of no level."""
        key = (tokens, device, dtype)
        if key in self._alphas:
            return self._alphas[key]
        size = self.level_size(tokens)
        if size is None:
            return None
        import torch
        import torch.nn.functional as F

        weights = []
        for mask, strength in zip(self.masks, self.strengths, strict=True):
            m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
            weights.append(F.adaptive_avg_pool2d(m, size).reshape(tokens) * float(strength))
        total = torch.stack(weights).sum(0)
        scale = 1.0 / total.clamp(min=1.0)
        weights = [w * scale for w in weights]
        if self.contrast != 1.0:  # see the module docstring: a = a + (c - 1) (a - mean a)
            weights = [w * self.contrast - w.mean() * (self.contrast - 1.0) for w in weights]
        out = [w.reshape(1, tokens, 1).to(device=device, dtype=dtype) for w in weights]
        self._alphas[key] = out
        return out


class RegionalAttention:
    """A cross-attention processor that adds the regions' prompts inside their masks
    around ``inner``, the layer's own processor (see the module docstring). ``state``: where
    a DiT projects the prompt before its blocks (``CrossRegions``), each region's projected
    text and attention bias for the running call; ``None``: the plan's embeddings as they
    are (a UNet's cross-attention reads the text encoder's output)."""

    def __init__(self, inner: Any, plan: RegionPlan, state: CrossRegions | None = None) -> None:
        self.inner = inner
        self.plan = plan
        self.state = state

    def _inner(self, attn: Any, hidden_states: Any, context: Any, mask: Any, temb: Any,
               args: tuple, kwargs: dict) -> Any:
        if temb is None and not args:  # processors without a temb argument (Sana's)
            return self.inner(attn, hidden_states, context, mask, **kwargs)
        return self.inner(attn, hidden_states, context, mask, temb, *args, **kwargs)

    def _contexts(self, encoder_hidden_states: Any, attention_mask: Any) -> list[tuple[Any, Any]]:
        if self.state is not None:
            return self.state.contexts
        batch = encoder_hidden_states.shape[0]
        pairs = []
        for embeds in self.plan.embeds:
            context = embeds.to(encoder_hidden_states.device, encoder_hidden_states.dtype)
            context = context.expand(batch, -1, -1)
            mask = (attention_mask if attention_mask is not None
                    and attention_mask.shape[-1] == context.shape[1] else None)
            pairs.append((context, mask))
        return pairs

    def __call__(self, attn: Any, hidden_states: Any, encoder_hidden_states: Any = None,
                 attention_mask: Any = None, temb: Any = None, *args: Any,
                 **kwargs: Any) -> Any:
        main = self._inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb,
                           args, kwargs)
        if encoder_hidden_states is None or hidden_states.ndim != 3:
            return main
        rows = self.plan.cond_rows(hidden_states.shape[0])
        alphas = self.plan.alphas(hidden_states.shape[1], main.device, main.dtype)
        contexts = self._contexts(encoder_hidden_states, attention_mask)
        if rows is None or alphas is None or len(contexts) != len(alphas):
            return main
        out = main.clone()
        for (context, mask), alpha in zip(contexts, alphas, strict=True):
            # The same processor over the whole batch, so that equal texts give equal
            # outputs bit for bit; the unconditional rows are computed and dropped.
            region = self._inner(attn, hidden_states, context, mask, temb, args, kwargs)
            out[rows] += alpha * (region[rows] - main[rows])
        return out


def cross_attention_modules(unet: Any) -> list[Any]:
    """The cross-attention layers of a UNet: ``attn2`` of its transformer blocks, and
    ``attn1`` where a block attends to the text only (``only_cross_attention``, as the
    embedded model's finest level does)."""
    return [module for name, module in unet.named_modules()
            if hasattr(module, "set_processor")
            and (name.endswith("attn2") and getattr(module, "is_cross_attention", True)
                 or name.endswith("attn1") and getattr(module, "is_cross_attention", False))]


@contextmanager
def regional_attention(unet: Any, plan: RegionPlan | None) -> Iterator[None]:
    """``plan``'s regions in every cross-attention layer of ``unet`` for the call; the
    original processors are put back afterwards, also when the call fails."""
    if plan is None or not plan.embeds:
        yield
        return
    plan = plan.with_contrast(CONTRAST)
    saved = [(module, module.processor) for module in cross_attention_modules(unet)]
    try:
        for module, processor in saved:
            module.set_processor(RegionalAttention(processor, plan))
        yield
    finally:
        for module, processor in saved:
            module.set_processor(processor)


# -- cross-attention DiTs (PixArt, Sana) -----------------------------------------------------
# Their blocks have a cross-attention layer (``attn2``) as a UNet's, so the same
# ``RegionalAttention`` wraps it; two things differ. The transformer projects the text
# encoder's output before the blocks (``caption_projection``, then Sana's ``caption_norm``),
# so each region's prompt is projected the same way once per call of the transformer (a
# forward pre-hook, ``CrossRegions.start``). And T5 and Gemma pad the prompt to a fixed
# length with an attention mask saying which tokens are words: each region's own mask is
# turned into the bias the transformer makes of the main prompt's (``(1 - mask) * -10000``),
# so a region's padding is never read. The blend is a plain one (``CROSS_CONTRAST = 1``):
# the UNet's contrast was measured on the UNet embedded model, and no PixArt or Sana model
# here has weights that would tell; one region over everything with the main prompt's text
# runs the same processor on the same projected text and bias, so it is exact as on a UNet.

CROSS_CONTRAST = 1.0
"""The regions' contrast in a cross-attention DiT (see above)."""


class CrossRegions:
    """The per-call state of the regions in a cross-attention DiT: each region's projected
    prompt and attention bias for the running call of the transformer."""

    def __init__(self, transformer: Any, plan: RegionPlan) -> None:
        self.transformer = transformer
        self.plan = plan
        self.contexts: list[tuple[Any, Any]] = []

    def start(self, _module: Any, args: tuple, kwargs: dict) -> None:
        """Forward pre-hook of the transformer: each region's text and bias for this call."""
        context = kwargs.get("encoder_hidden_states")
        if context is None and len(args) > 1:
            context = args[1]
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        if context is None or hidden is None:
            self.contexts = []
            return
        batch = context.shape[0]
        main_mask = kwargs.get("encoder_attention_mask")
        masks = self.plan.attention_masks or [None] * len(self.plan.embeds)
        norm = getattr(self.transformer, "caption_norm", None)
        self.contexts = []
        for embeds, mask in zip(self.plan.embeds, masks, strict=True):
            text = embeds[:1].to(context.device, context.dtype).expand(batch, -1, -1)
            text = self.transformer.caption_projection(text)
            if norm is not None:
                text = norm(text)
            bias = None
            if main_mask is not None and mask is not None:
                # as the transformer turns the main prompt's mask into a bias
                bias = (1 - mask[:1].to(main_mask.device).expand(batch, -1)
                        .to(hidden.dtype)) * -10000.0
                bias = bias.unsqueeze(1)
            self.contexts.append((text, bias))


def is_cross_dit(model: Any) -> bool:
    """Whether ``model`` is a DiT with cross-attention to a projected caption (PixArt, Sana)."""
    return hasattr(model, "caption_projection") and bool(cross_attention_modules(model))


@contextmanager
def regional_cross_dit(transformer: Any, plan: RegionPlan | None) -> Iterator[None]:
    """``plan``'s regions in every cross-attention layer of a PixArt or Sana transformer for
    the call; its processors are its own again afterwards, and the hook gone."""
    if plan is None or not plan.embeds:
        yield
        return
    state = CrossRegions(transformer, plan.with_contrast(CROSS_CONTRAST))
    saved = [(module, module.processor) for module in cross_attention_modules(transformer)]
    hook = transformer.register_forward_pre_hook(state.start, with_kwargs=True)
    try:
        for module, processor in saved:
            module.set_processor(RegionalAttention(processor, state.plan, state))
        yield
    finally:
        hook.remove()
        for module, processor in saved:
            module.set_processor(processor)


# -- transformers with a text stream: SD3 (MMDiT joint blocks) and Flux -------------------------
# An MMDiT has no cross-attention to wrap: each ``JointTransformerBlock`` runs one attention
# over the image tokens and the text tokens together, and both streams go on to the next
# block (the text tokens are changed by every block but the last). Flux has the same
# double-stream blocks (``FluxTransformerBlock``), then single-stream ones
# (``FluxSingleTransformerBlock``) that concatenate text and image tokens into one sequence
# and split them again on the way out; to the outside both kinds take and give back a text
# stream and the image tokens, so both are handled alike. A region's prompt needs a text
# stream of its own through all the blocks, and the blend is done per block:
#
# * the transformer's ``context_embedder`` turns each region's prompt embeddings into its
#   text stream once per call of the transformer (a forward pre-hook, ``_start``);
# * each block runs as usual with the main prompt's stream, giving ``main`` (image tokens)
#   and the main text stream for the next block; then again, the same block on the same image
#   tokens, with each region's stream, giving ``out_r`` and that region's stream for the next
#   block (Flux's rotary position embedding of the text tokens fits every stream: each
#   prompt is padded to the same number of T5 tokens, all at position 0);
# * the image tokens leaving the block are ``main + sum_r alpha_r * (out_r - main)`` on the
#   conditional rows, with the weights of the UNet form (``RegionPlan.alphas`` at the patch
#   grid: one token per ``patch x patch`` latent pixels, Flux's 2 x 2 packing included), so
#   all the streams see the same blended image at the next block.
#
# InvokeAI does regions on Flux the other way (after arXiv 2411.02395): the regions' text
# tokens concatenated to the main prompt's in one sequence, and an attention mask that lets
# the image tokens of a region attend to its own text tokens only. That costs one pass, not
# one per region, but the masked softmax over the longer sequence is equal to the plain one
# only up to rounding; here each region costs one more pass of every block, and a region
# with nothing to do changes no bit (below).
#
# The blend is a plain one by default (``JOINT_CONTRAST = 1``): each region's stream is its
# prompt's own picture-wide, and a random-weight Flux stays local with it (the tests). The
# joint self-attention over all image tokens still carries the picture-wide mix of the
# prompts, though, and how much it weighs depends on how a model learnt its words: the
# first embedded studio-tiny-dit held two half-picture backgrounds at 1 in 39 of 40 seeds,
# the twin-trained one in 5 of 20, and 20 of 20 at 2. A model folder can therefore set its
# own contrast in its ``studio.json`` (``model_contrast``); the embedded DiT sets 2.
#
# Each region's prompt thus only reaches the image tokens inside its mask (its own attention
# sees the whole picture, as a UNet region's does), and it is exact when it has nothing to
# do: one region over everything with the main prompt's text runs the same block on the same
# inputs (same batch), so ``out_r == main`` bit for bit and the pixels are the plain ones.
# The pooled text (SD3, Flux: added to the time embedding) stays the main prompt's.
#
# Flux 2 (``Flux2Transformer2DModel``: Flux 2 [dev] and Flux 2 Klein) has the same two kinds
# of blocks and is handled the same way, with two differences. Its single-stream blocks are
# called with the text and image tokens already joined (``encoder_hidden_states=None``, text
# first): each region's run joins its own stream to the same image tokens and splits them
# again at the text length (every prompt is padded to the same number of tokens). And its
# pipelines encode the prompt themselves and Klein runs the negative prompt as a call of
# its own (true classifier-free guidance): the plan holds the main prompt's embeddings
# (``RegionPlan.main_embeds``), and only the rows whose text equals it take the regions, so
# the negative call is left as it is.


JOINT_CONTRAST = 1.0
"""The regions' contrast in the joint blocks (see above; the UNet's is ``CONTRAST``)."""

STREAM_BLOCKS = ("JointTransformerBlock", "FluxTransformerBlock", "FluxSingleTransformerBlock",
                 "Flux2TransformerBlock", "Flux2SingleTransformerBlock")
"""The diffusers blocks that take and give back a text stream beside the image tokens."""


class JointRegions:
    """The per-call state of the regions in an SD3-style or Flux transformer."""

    def __init__(self, transformer: Any, plan: RegionPlan) -> None:
        self.transformer = transformer
        self.plan = plan
        self.streams: list[Any] = []
        self.rows: Any = None  # Flux 2: the rows of this call that carry the prompt
        self.matched = False  # whether any call carried the main prompt (Flux 2)

    def start(self, _module: Any, args: tuple, kwargs: dict) -> None:
        """Forward pre-hook of the transformer: each region's text stream for this call."""
        context = kwargs.get("encoder_hidden_states")
        if context is None and len(args) > 1:  # forward(hidden_states, encoder_hidden_states)
            context = args[1]
        self.rows = None
        if context is not None and self.plan.main_embeds is not None:
            self.rows = prompt_rows(context, self.plan.main_embeds)
            if self.rows is None:  # the negative prompt's own call (Flux 2 Klein's CFG)
                context = None
            else:
                self.matched = True
        if context is None:
            self.streams = []
            return
        embed = self.transformer.context_embedder
        self.streams = [embed(e[:1].to(context.device, context.dtype)
                              .expand(context.shape[0], -1, -1))
                        for e in self.plan.embeds]
        # SD3 without T5: the main context's run of identical zero tokens runs as one
        # (``joint_context``, its pre-hook ran first): each region's stream the same way
        self.streams = [collapsed_to(s, context.shape[1]) for s in self.streams]
        for stream in self.streams:
            if stream.shape[1] != context.shape[1]:  # Flux's rotary embedding would not fit
                raise ValueError(f"a region's prompt has {stream.shape[1]} text tokens, the "
                                 f"main prompt {context.shape[1]}")

    def wrap(self, block: Any) -> Any:
        if type(block).__name__.startswith("Flux2"):
            return self.wrap_flux2(block)
        inner = block.forward

        def forward(hidden_states: Any, encoder_hidden_states: Any, temb: Any,
                    **kwargs: Any) -> tuple[Any, Any]:
            context, main = inner(hidden_states=hidden_states,
                                  encoder_hidden_states=encoder_hidden_states, temb=temb,
                                  **kwargs)
            rows = self.plan.cond_rows(main.shape[0])
            alphas = self.plan.alphas(main.shape[1], main.device, main.dtype)
            if rows is None or alphas is None or len(self.streams) != len(alphas):
                return context, main
            out = main.clone()
            for r, alpha in enumerate(alphas):
                stream, region = inner(hidden_states=hidden_states,
                                       encoder_hidden_states=self.streams[r], temb=temb,
                                       **kwargs)
                self.streams[r] = stream
                out[rows] += alpha * (region[rows] - main[rows])
            return context, out

        return forward


    def wrap_flux2(self, block: Any) -> Any:
        """A Flux 2 block's ``forward`` with the regions' streams (see "Flux 2" above)."""
        import torch

        inner = block.forward
        single = type(block).__name__ == "Flux2SingleTransformerBlock"

        def forward(*args: Any, **kwargs: Any) -> Any:
            out = inner(*args, **kwargs)
            hidden = kwargs.get("hidden_states")
            if args or hidden is None or not self.streams:
                return out
            joined = single and kwargs.get("encoder_hidden_states") is None
            n = self.streams[0].shape[1] if joined else 0  # text tokens ahead of the image's
            main = out[:, n:] if joined else out[1]
            rows = self.rows if self.rows is not None else self.plan.cond_rows(main.shape[0])
            alphas = self.plan.alphas(main.shape[1], main.device, main.dtype)
            if rows is None or alphas is None or len(self.streams) != len(alphas):
                return out
            blended = main.clone()
            for r, alpha in enumerate(alphas):
                if joined:
                    step = inner(**{**kwargs, "hidden_states":
                                    torch.cat([self.streams[r], hidden[:, n:]], dim=1)})
                    self.streams[r], region = step[:, :n], step[:, n:]
                else:
                    self.streams[r], region = inner(
                        **{**kwargs, "encoder_hidden_states": self.streams[r]})
                blended[rows] += alpha * (region[rows] - main[rows])
            if joined:
                return torch.cat([out[:, :n], blended], dim=1)
            return out[0], blended

        return forward


def prompt_rows(context: Any, main: Any) -> Any:
    """The rows of ``context`` (the text a transformer is called with) that hold the main
    prompt's text ``main`` (one row, or a list of one tensor where the lengths vary), as an
    index tensor; ``None`` where no row does (the negative prompt's own call)."""
    import torch

    ref = main[0]
    rows = [i for i, row in enumerate(context)
            if row.shape == ref.shape and torch.equal(row, ref.to(row.device, row.dtype))]
    return torch.tensor(rows, dtype=torch.long, device=context[0].device) if rows else None


def joint_blocks(transformer: Any) -> list[Any]:
    """The blocks with a text stream of an SD3-style transformer (its joint blocks) or of
    Flux (double-stream, then single-stream), in order ([] for any other model)."""
    if not hasattr(transformer, "context_embedder"):
        return []
    blocks = [*(getattr(transformer, "transformer_blocks", None) or ()),
              *(getattr(transformer, "single_transformer_blocks", None) or ())]
    return [b for b in blocks if type(b).__name__ in STREAM_BLOCKS]


@contextmanager
def regional_joint_attention(transformer: Any, plan: RegionPlan | None) -> Iterator[None]:
    """``plan``'s regions in every block with a text stream of an SD3-style or Flux
    ``transformer`` for the call; the blocks' own ``forward`` is back afterwards, also when
    the call fails."""
    blocks = joint_blocks(transformer) if plan is not None and plan.embeds else []
    if not blocks:
        yield
        return
    state = JointRegions(transformer, plan.with_contrast(JOINT_CONTRAST))
    with _blocks_wrapped(transformer, state, blocks):
        yield


@contextmanager
def regions_for(model: Any, plan: RegionPlan | None) -> Iterator[None]:
    """``plan``'s regions in ``model``: a UNet's cross-attention layers, the joint blocks of
    an SD3-style transformer or Flux's blocks, or a PixArt or Sana transformer's
    cross-attention layers."""
    if joint_blocks(model):
        with regional_joint_attention(model, plan):
            yield
    elif is_z_image(model):
        with regional_z_image(model, plan):
            yield
    elif is_cross_dit(model):
        with regional_cross_dit(model, plan):
            yield
    else:
        with regional_attention(model, plan):
            yield


def region_mask(region: Region, width: int, height: int) -> np.ndarray:
    """A region's mask at the request's size, float32 in [0, 1] (bilinear where resized)."""
    from PIL import Image

    mask = Image.fromarray(np.asarray(region.mask.to_array())).convert("L")
    if mask.size != (width, height):
        mask = mask.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(mask, dtype=np.float32) / 255.0


def model_contrast(path: str | Path) -> float | None:
    """The regions' contrast a model folder's ``studio.json`` sets (``"regions":
    {"contrast": c}``), ``None`` where it sets none: then the default of its kind of layer
    (``CONTRAST``, ``CROSS_CONTRAST``, ``JOINT_CONTRAST``). How strongly a region's stream
    must be pushed against the picture-wide mix depends on how the model learnt to read its
    words, so a model trained here carries the contrast measured on it (``studio-tiny-dit``:
    see ``studio.training.train_dit.REGION_CONTRAST``)."""
    from studio.engine.models.families import read_json

    folder = Path(path)
    regions = read_json(folder / "studio.json").get("regions") if folder.is_dir() else None
    if not isinstance(regions, dict) or "contrast" not in regions:
        return None
    contrast = regions["contrast"]
    if (not isinstance(contrast, bool) and isinstance(contrast, (int, float))
            and 0.0 < contrast <= 8.0):
        return float(contrast)
    log.warning("%s: studio.json's regions contrast %r is not a number from 0 to 8; the "
                "regions use the default of the model's layers", folder, contrast)
    return None


def region_plan(req: GenerationRequest, embeds: list[Any], vae_scale: int = 8,
                attention_masks: list[Any] | None = None,
                contrast: float | None = None) -> RegionPlan:
    """The plan of ``req``'s regions with their prompt embeddings ``embeds`` (in order) and,
    where the text encoder pads, their prompt attention masks; ``contrast``: the model's own
    (``model_contrast``), else the default of the layers it meets."""
    return RegionPlan(
        embeds=list(embeds),
        masks=[region_mask(r, req.width, req.height) for r in req.regions],
        strengths=[r.strength for r in req.regions],
        latent_size=(req.height // vae_scale, req.width // vae_scale),
        images=req.batch_size, contrast=CONTRAST, model_contrast=contrast,
        attention_masks=(list(attention_masks)
                         if attention_masks and all(m is not None for m in attention_masks)
                         else None))


# -- Z-Image: one sequence of image and text tokens -------------------------------------------
# ``ZImageTransformer2DModel`` refines the image tokens (``noise_refiner``) and the prompt's
# tokens (``context_refiner``) apart, then joins them into one sequence per image, image
# first, each part padded to a multiple of 32 tokens, and runs its main ``layers`` (plain
# self-attention over the whole sequence, a mask where the prompts of a batch differ in
# length) on it. It is a single-stream model like Flux's single blocks, so the regions work
# the same way: a sequence of its own per region, blended by mask after every layer.
#
# * At each call (a forward pre-hook, ``ZImageRegions.start``) each region's sequence is made
#   by the transformer's own steps: the prompts of the call with the region's prompt in
#   place of the main one (the rows whose text equals the main prompt; the negative
#   prompt's rows of a classifier-free-guidance batch keep theirs), its tokens embedded and
#   refined, joined after the image tokens with the positions the transformer gives them
#   (the image's positions follow the prompt's length), and the attention mask.
# * Each main layer runs as usual on the main sequence, then once per region on the
#   region's sequence with the same image tokens (the main sequence's, which all lie at
#   ``[0, image tokens)``), and each region's text tokens go on to its next layer;
# * the image tokens leaving the layer are ``main + sum_r alpha_r * (out_r - main)`` on the
#   prompt's rows (``RegionPlan.alphas`` at the 2 x 2 patch grid; the padding after the
#   image tokens keeps the main's).
#
# A region over everything with the main prompt's words gives the same prompts, hence the
# same sequence, positions and mask: the same layer on the same inputs, ``out_r == main``
# bit for bit, the plain pixels. The blend is a plain one, as in the joint blocks.


class ZImageRegions:
    """The per-call state of the regions in a Z-Image transformer."""

    def __init__(self, transformer: Any, plan: RegionPlan) -> None:
        self.transformer = transformer
        self.plan = plan
        self.states: list[tuple[Any, Any, Any]] = []  # per region: sequence, mask, positions
        self.rows: Any = None
        self.image_tokens = 0  # the image tokens of the sequence, padding included
        self.matched = False  # whether any call carried the main prompt
        self.alphas: list[Any] | None = None

    def start(self, _module: Any, args: tuple, kwargs: dict) -> None:
        import torch

        self.states, self.alphas = [], None
        x = kwargs.get("x", args[0] if args else None)
        caps = kwargs.get("cap_feats", args[2] if len(args) > 2 else None)
        if x is None or caps is None or isinstance(x[0], list):  # Omni mode: not ours
            return
        self.rows = prompt_rows(caps, self.plan.main_embeds)
        if self.rows is None:
            return
        self.matched = True
        tr = self.transformer
        patch, f_patch = kwargs.get("patch_size", 2), kwargs.get("f_patch_size", 1)
        key = f"{patch}-{f_patch}"
        _c, _h, height, width = x[0].shape
        grid = (height // patch) * (width // patch)
        rows = set(self.rows.tolist())
        for embeds in self.plan.embeds:
            own = [embeds[0].to(c.device, c.dtype) if i in rows else c
                   for i, c in enumerate(caps)]
            (xs, cs, _size, x_pos, c_pos, x_pad, c_pad) = tr.patchify_and_embed(
                list(x), own, patch, f_patch)
            x_lens = [len(t) for t in xs]
            xe = tr.all_x_embedder[key](torch.cat(xs, dim=0))
            xe, x_freqs, _m, _l, _n = tr._prepare_sequence(
                list(xe.split(x_lens, dim=0)), x_pos, x_pad, tr.x_pad_token, None, xe.device)
            c_lens = [len(t) for t in cs]
            ce = tr.cap_embedder(torch.cat(cs, dim=0))
            ce, c_freqs, c_mask, _l, _n = tr._prepare_sequence(
                list(ce.split(c_lens, dim=0)), c_pos, c_pad, tr.cap_pad_token, None, ce.device)
            for layer in tr.context_refiner:
                ce = layer(ce, c_mask, c_freqs)
            seq, freqs, mask, _n = tr._build_unified_sequence(
                xe, x_freqs, x_lens, None, ce, c_freqs, c_lens, None, None, None, None, None,
                False, xe.device)
            self.states.append((seq, mask, freqs))
            self.image_tokens = x_lens[0]
        self.alphas = self.plan.alphas(grid, self.states[0][0].device,
                                       self.states[0][0].dtype) if self.states else None
        if self.alphas is None:
            self.states = []

    def wrap(self, layer: Any) -> Any:
        import torch

        inner = layer.forward

        def forward(x: Any, attn_mask: Any, freqs_cis: Any, *args: Any, **kwargs: Any) -> Any:
            main = inner(x, attn_mask, freqs_cis, *args, **kwargs)
            if not self.states or self.alphas is None:
                return main
            n = self.image_tokens
            grid = self.alphas[0].shape[1]
            out = main.clone()
            rows = self.rows
            for r, alpha in enumerate(self.alphas):
                seq, mask, freqs = self.states[r]
                step = inner(torch.cat([x[:, :n], seq[:, n:]], dim=1), mask, freqs,
                             *args, **kwargs)
                self.states[r] = (step, mask, freqs)
                out[rows, :grid] += alpha * (step[rows, :grid] - main[rows, :grid])
            return out

        return forward


@contextmanager
def _blocks_wrapped(transformer: Any, state: JointRegions | ZImageRegions,
                    blocks: list[Any]) -> Iterator[None]:
    """``state`` reads each call of ``transformer`` (a pre-hook) and runs ``blocks`` (their
    ``forward`` wrapped) for the body; all taken off afterwards, also when the call fails.
    A body that ends normally logs whether the regions found the main prompt."""
    hook = transformer.register_forward_pre_hook(state.start, with_kwargs=True)
    try:
        for block in blocks:
            block.forward = state.wrap(block)
        yield
        _said_unmatched(state)
    finally:
        hook.remove()
        for block in blocks:
            block.__dict__.pop("forward", None)


def _said_unmatched(state: JointRegions | ZImageRegions) -> None:
    """Says so in the log where the plan held the main prompt's embeddings and no call of
    the transformer carried them: the regions did nothing (the pipeline encoded the prompt
    otherwise than ``encode_with_pipeline``)."""
    if state.plan.main_embeds is not None and not state.matched:
        log.warning("The regional prompts were not applied: no call of the transformer "
                    "carried the main prompt's text as it was encoded for the regions.")


def is_z_image(model: Any) -> bool:
    """Whether ``model`` is a Z-Image transformer (refiners, then one joined sequence)."""
    return type(model).__name__ == "ZImageTransformer2DModel" and hasattr(model, "layers")


@contextmanager
def regional_z_image(transformer: Any, plan: RegionPlan | None) -> Iterator[None]:
    """``plan``'s regions in every main layer of a Z-Image ``transformer`` for the call; the
    layers' own ``forward`` is back afterwards, also when the call fails."""
    if plan is None or not plan.embeds or plan.main_embeds is None:
        yield
        return
    state = ZImageRegions(transformer, plan.with_contrast(JOINT_CONTRAST))
    with _blocks_wrapped(transformer, state, list(transformer.layers)):
        yield


# Families whose pipelines encode the prompt themselves (the engine hands them the words):
# each region's prompt, and the main prompt to tell its rows from the negative's, are encoded
# here by the pipeline's own ``encode_prompt`` with its call's defaults.
SELF_ENCODED = ("flux2", "flux2-klein", "z-image")


def encode_with_pipeline(pipe: Any, prompts: list[str], device: Any) -> list[Any]:
    """Each of ``prompts`` encoded as ``pipe``'s own call encodes its prompt: a ``(1, tokens,
    dim)`` tensor (Flux 2), or a list of one ``(tokens, dim)`` tensor (Z-Image, whose
    prompts keep their own length)."""
    import inspect

    enc = inspect.signature(pipe.encode_prompt).parameters
    call = inspect.signature(type(pipe).__call__).parameters
    args: dict[str, Any] = {"device": device}
    for name in ("max_sequence_length", "text_encoder_out_layers"):
        if name in enc and name in call:
            args[name] = call[name].default
    if "num_images_per_prompt" in enc:
        args["num_images_per_prompt"] = 1
    if "do_classifier_free_guidance" in enc:
        args["do_classifier_free_guidance"] = False
    out = []
    for prompt in prompts:
        embeds = pipe.encode_prompt(prompt=[prompt], **args)[0]
        out.append(list(embeds) if isinstance(embeds, list) else embeds)
    return out
