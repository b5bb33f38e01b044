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
    """Whether we compute the embeddings ourselves for this family (else the pipeline does)."""
    return family in SD_FAMILIES or family in SDXL_FAMILIES


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
