"""Prompt conditioning: text -> embeddings, computed by us so that they can be shaped.

Prompt weighting (``(word:1.3)``), slider directions in text-embedding space and the
embedding cache all act here, on the tensors the pipeline would otherwise compute from the
prompt strings itself. Unchanged embeddings give the same pixels as passing the strings.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from studio.core.jobs.request import GenerationRequest
from studio.engine.models.families import SD_FAMILIES, SDXL_FAMILIES


@dataclass
class Conditioning:
    """Pipeline keyword arguments holding the embeddings of one request's prompts."""

    kwargs: dict[str, Any]

    def replace(self, **changes: Any) -> Conditioning:
        return Conditioning({**self.kwargs, **changes})


def supports_embeddings(family: str) -> bool:
    """Whether we compute the CLIP embeddings ourselves with prompt weights, chunks, regions
    and local edits (SD 1.x/2.x/SDXL); the DiT families see ``encodes_dit``."""
    return family in SD_FAMILIES or family in SDXL_FAMILIES


# The DiT families whose embeddings we compute through the pipeline's own ``encode_prompt``
# (and hand back as ``prompt_embeds``), so that slider directions, prompt interpolation and
# the embedding cache act on them; the tuple its ``encode_prompt`` returns, by name.
DIT_OUTPUTS: dict[str, tuple[str, ...]] = {
    "sd3": ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
            "negative_pooled_prompt_embeds"),
    "flux": ("prompt_embeds", "pooled_prompt_embeds", "text_ids"),
    "pixart": ("prompt_embeds", "prompt_attention_mask", "negative_prompt_embeds",
               "negative_prompt_attention_mask"),
    "sana": ("prompt_embeds", "prompt_attention_mask", "negative_prompt_embeds",
             "negative_prompt_attention_mask"),
    "auraflow": ("prompt_embeds", "prompt_attention_mask", "negative_prompt_embeds",
                 "negative_prompt_attention_mask"),
}
# Arguments of a pipeline's ``__call__`` that it passes on to ``encode_prompt``: we pass
# the same (the call's defaults), so our embeddings are the ones the call would make.
_ENCODE_DEFAULTS = ("max_sequence_length", "clean_caption", "complex_human_instruction")


def encodes_dit(family: str) -> bool:
    """Whether the embeddings of this DiT family are computed here (see ``DIT_OUTPUTS``)."""
    return family in DIT_OUTPUTS


def encode_dit(pipe: Any, family: str, prompts: list[str], negative: str | None,
               device: Any, guidance: bool = True, clip_skip: int = 0) -> dict[str, Any]:
    """The embeddings of ``prompts`` (one row each) as the DiT pipeline's own call makes them:
    its ``encode_prompt`` with the arguments and defaults its ``__call__`` uses. Returns the
    pipeline keyword arguments (``prompt_embeds``, and the pooled embeddings, attention masks
    and negative ones where the family has them)."""
    import inspect

    enc = inspect.signature(pipe.encode_prompt).parameters
    call = inspect.signature(type(pipe).__call__).parameters
    args: dict[str, Any] = {"prompt": list(prompts), "device": device,
                            "num_images_per_prompt": 1}
    for name in _ENCODE_DEFAULTS:
        if name in enc and name in call:
            args[name] = call[name].default
    for name in ("prompt_2", "prompt_3"):  # SD3 and Flux: the same prompt for each encoder
        if name in enc:
            args[name] = None
    cfg = guidance and "do_classifier_free_guidance" in enc
    if "do_classifier_free_guidance" in enc:
        args["do_classifier_free_guidance"] = cfg
    if cfg and "negative_prompt" in enc:
        args["negative_prompt"] = [negative or ""] * len(prompts)
    if clip_skip and "clip_skip" in enc:
        args["clip_skip"] = clip_skip
    out = dict(zip(DIT_OUTPUTS[family], pipe.encode_prompt(**args), strict=True))
    out.pop("text_ids", None)  # Flux makes them again from the embeddings
    kwargs = {k: v for k, v in out.items() if v is not None and k in call}
    if "negative_prompt_embeds" in kwargs and "negative_prompt" in call:
        kwargs["negative_prompt"] = None  # PixArt's default "" would clash with the embeds
    return kwargs


def per_image(kwargs: dict[str, Any], family: str, batch: int) -> dict[str, Any]:
    """A DiT call's embeddings given one row per image, with ``num_images_per_prompt`` 1.

    Given ``prompt_embeds``, SD3's and Flux's pipelines do not repeat them for
    ``num_images_per_prompt`` (PixArt's and Sana's do): a batch then failed on a shape. Every
    family gets the same here: each embedding, pooled embedding and mask repeated to one row
    per image, and the pipeline told one image per row (the latents still come from one
    generator per image, so each image is the one its seed gives alone)."""
    if batch <= 1:
        return kwargs
    out = dict(kwargs)
    for name in DIT_OUTPUTS.get(family, ()):
        value = out.get(name)
        if value is not None and hasattr(value, "repeat_interleave") and value.shape[0] == 1:
            out[name] = value.repeat_interleave(batch, dim=0)
    out["num_images_per_prompt"] = 1
    return out


class LRUCache:
    """A small least-recently-used cache of values made on demand (embeddings, directions)."""

    def __init__(self, size: int = 32) -> None:
        self._size = size
        self._items: OrderedDict[tuple, Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get_or_make(self, key: tuple, make: Any) -> Any:
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            return hit
        value = make()
        self._items[key] = value
        while len(self._items) > self._size:
            self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        self._items.clear()


class ConditioningCache(LRUCache):
    """Prompt embeddings, keyed by model and everything that shapes them."""


def encode_prompts(pipe: Any, family: str, request: GenerationRequest, device: Any,
                   guidance: bool = True) -> Conditioning:
    """Embeddings of the request's prompt and negative prompt (one copy of each).

    Prompts with weighting syntax, ``BREAK``, LoRA tags or more than 75 tokens go through
    ``studio.engine.prompt_weights`` (A1111-style, chunked); plain prompts through diffusers'
    own ``encode_prompt``, so their embeddings stay exactly as before.
    """
    from studio.engine.prompt_weights import encode_weighted, needs_weighted_encoding

    if encodes_dit(family):  # T5/Gemma read brackets as words: the words, no weights
        from studio.engine.engine import plain_prompt_args

        text = plain_prompt_args(request, family)
        return Conditioning(encode_dit(pipe, family, [text["prompt"]],
                                       text.get("negative_prompt"), device, guidance,
                                       request.clip_skip))
    if needs_weighted_encoding(pipe, request):
        return Conditioning(encode_weighted(pipe, family, request, device, guidance))
    negative = request.negative_prompt or None
    clip_skip = request.clip_skip or None
    if family in SDXL_FAMILIES:
        pe, npe, pooled, npooled = pipe.encode_prompt(
            prompt=request.prompt, device=device, num_images_per_prompt=1,
            do_classifier_free_guidance=guidance, negative_prompt=negative, clip_skip=clip_skip)
        kwargs = {"prompt_embeds": pe, "pooled_prompt_embeds": pooled}
        if guidance:
            kwargs.update(negative_prompt_embeds=npe, negative_pooled_prompt_embeds=npooled)
        return Conditioning(kwargs)
    pe, npe = pipe.encode_prompt(request.prompt, device, 1, guidance, negative_prompt=negative,
                                 clip_skip=clip_skip)
    kwargs = {"prompt_embeds": pe}
    if guidance:
        kwargs["negative_prompt_embeds"] = npe
    return Conditioning(kwargs)
