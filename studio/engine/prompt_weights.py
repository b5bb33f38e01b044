"""Weighted, chunked prompt encoding in the manner of A1111, for SD 1.x/2.x and SDXL.

The prompt is parsed by ``studio.core.prompt_syntax``; each fragment is tokenised on its own
and its tokens carry its weight. Tokens are packed into chunks of 75 (``BREAK`` starts a new
one; a chunk that overflows is cut after its last comma within 20 tokens, as A1111 does),
each chunk is encoded as ``[BOS] tokens [EOS] [PAD]...`` of 77 like diffusers' own encoding,
the hidden states are scaled by the token weights and rescaled to the unweighted mean, and
the chunks are concatenated. A plain prompt of at most 75 tokens gives exactly the tensors of
``pipe.encode_prompt`` (the caller keeps using diffusers for those).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from studio.core.jobs.request import GenerationRequest
from studio.core.prompt_syntax import ParsedPrompt, extract_loras, has_syntax, parse_prompt
from studio.engine.models.families import SDXL_FAMILIES

COMMA_BACKTRACK = 20  # how far back a full chunk looks for a comma to break at


@dataclass
class TokenChunk:
    """Up to 75 token ids and one weight per token."""

    ids: list[int]
    weights: list[float]


def _primary_tokenizer(pipe: Any) -> Any:
    return getattr(pipe, "tokenizer", None) or pipe.tokenizer_2


def token_count(tokenizer: Any, text: str) -> int:
    """Tokens ``text`` takes without BOS/EOS (``BREAK`` and LoRA tags included as words)."""
    return len(tokenizer(text, add_special_tokens=False, truncation=False).input_ids)


def needs_weighted_encoding(pipe: Any, request: GenerationRequest) -> bool:
    """Whether the prompts use any syntax or are too long for one plain 77-token pass."""
    tok = _primary_tokenizer(pipe)
    limit = int(tok.model_max_length) - 2
    for text in (request.prompt, request.negative_prompt):
        if has_syntax(text) or token_count(tok, text) > limit:
            return True
    return False


def tokenize_chunks(tokenizer: Any, parsed: ParsedPrompt) -> list[TokenChunk]:
    """The prompt's tokens packed into 75-token chunks with their weights."""
    size = int(tokenizer.model_max_length) - 2
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    chunks: list[TokenChunk] = []
    for part in parsed.chunks or ((),):
        ids: list[int] = []
        weights: list[float] = []
        for frag in part:
            tokens = tokenizer(frag.text, add_special_tokens=False, truncation=False).input_ids
            ids.extend(tokens)
            weights.extend([frag.weight] * len(tokens))
        while len(ids) > size:
            cut = size
            for back in range(1, COMMA_BACKTRACK + 1):
                if ids[size - back] == comma:
                    cut = size - back + 1
                    break
            chunks.append(TokenChunk(ids[:cut], weights[:cut]))
            ids, weights = ids[cut:], weights[cut:]
        chunks.append(TokenChunk(ids, weights))
    return chunks


def _ids_tensor(tokenizer: Any, chunk: TokenChunk) -> tuple[torch.Tensor, torch.Tensor,
                                                             torch.Tensor]:
    """(ids, attention mask, weights) of one chunk laid out as diffusers pads a prompt."""
    length = int(tokenizer.model_max_length)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    body = [tokenizer.bos_token_id, *chunk.ids, tokenizer.eos_token_id]
    n = len(body)
    ids = body + [pad] * (length - n)
    mask = [1] * n + [0] * (length - n)
    weights = [1.0, *chunk.weights] + [1.0] * (length - n + 1)
    return (torch.tensor([ids]), torch.tensor([mask]), torch.tensor([weights]))


def _apply_weights(z: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    if bool((weights == 1.0).all()):
        return z
    w = weights.to(z.device, z.dtype)
    original_mean = z.mean()
    weighted = z * w[..., None]
    new_mean = weighted.mean()
    # A1111 restores the original mean; where the mean is ~0 (layer-normed features with no
    # offset) that ratio is noise, so the weights are then applied as they are.
    scale = z.abs().mean() * 1e-3
    if original_mean.abs() > scale and new_mean.abs() > scale:
        weighted = weighted * (original_mean / new_mean)
    return weighted


def _pad_chunks(a: list[TokenChunk], b: list[TokenChunk]) -> None:
    while len(a) < len(b):
        a.append(TokenChunk([], []))
    while len(b) < len(a):
        b.append(TokenChunk([], []))


def _encoder_device(encoder: Any) -> torch.device:
    return next(encoder.parameters()).device


# -- SD 1.x / 2.x -------------------------------------------------------------------------
def _sd_chunk(pipe: Any, chunk: TokenChunk, clip_skip: int | None) -> torch.Tensor:
    ids, mask, weights = _ids_tensor(pipe.tokenizer, chunk)
    enc = pipe.text_encoder
    dev = _encoder_device(enc)
    use_mask = bool(getattr(enc.config, "use_attention_mask", False))
    attention = mask.to(dev) if use_mask else None
    if clip_skip is None:
        z = enc(ids.to(dev), attention_mask=attention)[0]
    else:
        out = enc(ids.to(dev), attention_mask=attention, output_hidden_states=True)
        z = enc.text_model.final_layer_norm(out[-1][-(clip_skip + 1)])
    return _apply_weights(z, weights)


def encode_sd(pipe: Any, prompt: str, negative: str, device: Any, guidance: bool,
              clip_skip: int | None) -> dict[str, torch.Tensor]:
    pos = tokenize_chunks(pipe.tokenizer, parse_prompt(prompt))
    neg = tokenize_chunks(pipe.tokenizer, parse_prompt(negative))
    _pad_chunks(pos, neg)
    dtype = pipe.text_encoder.dtype
    pe = torch.cat([_sd_chunk(pipe, c, clip_skip) for c in pos], dim=1)
    out = {"prompt_embeds": pe.to(dtype=dtype, device=device)}
    if guidance:
        # diffusers encodes the negative prompt without clip skip; so do we, to stay equal.
        npe = torch.cat([_sd_chunk(pipe, c, None) for c in neg], dim=1)
        out["negative_prompt_embeds"] = npe.to(dtype=dtype, device=device)
    return out


# -- SDXL ---------------------------------------------------------------------------------
def _sdxl_encode(pipe: Any, text: str, clip_skip: int | None,
                 n_chunks: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    parsed = parse_prompt(text)
    pairs = [(t, e) for t, e in ((pipe.tokenizer, pipe.text_encoder),
                                 (pipe.tokenizer_2, pipe.text_encoder_2)) if t is not None]
    per_encoder = [tokenize_chunks(t, parsed) for t, _ in pairs]
    count = max([n_chunks, *(len(c) for c in per_encoder)])
    for chunks in per_encoder:
        while len(chunks) < count:
            chunks.append(TokenChunk([], []))
    hidden: list[torch.Tensor] = []
    pooled: torch.Tensor | None = None
    for i in range(count):
        parts = []
        for (tok, enc), chunks in zip(pairs, per_encoder, strict=True):
            ids, _mask, weights = _ids_tensor(tok, chunks[i])
            out = enc(ids.to(_encoder_device(enc)), output_hidden_states=True)
            if pooled is None and out[0].ndim == 2:
                pooled = out[0]
            h = out.hidden_states[-2] if clip_skip is None else out.hidden_states[-(clip_skip + 2)]
            parts.append(_apply_weights(h, weights))
        hidden.append(torch.cat(parts, dim=-1))
    assert pooled is not None
    return torch.cat(hidden, dim=1), pooled


def encode_sdxl(pipe: Any, prompt: str, negative: str, device: Any, guidance: bool,
                clip_skip: int | None) -> dict[str, torch.Tensor]:
    n_pos = len(tokenize_chunks(_primary_tokenizer(pipe), parse_prompt(prompt)))
    n_neg = len(tokenize_chunks(_primary_tokenizer(pipe), parse_prompt(negative)))
    count = max(n_pos, n_neg)
    dtype = pipe.text_encoder_2.dtype
    pe, pooled = _sdxl_encode(pipe, prompt, clip_skip, count)
    out = {"prompt_embeds": pe.to(dtype=dtype, device=device),
           "pooled_prompt_embeds": pooled.to(dtype=dtype, device=device)}
    if guidance:
        if not negative and pipe.config.force_zeros_for_empty_prompt:
            npe, npooled = torch.zeros_like(pe), torch.zeros_like(pooled)
        else:
            npe, npooled = _sdxl_encode(pipe, negative, None, count)
        out["negative_prompt_embeds"] = npe.to(dtype=dtype, device=device)
        out["negative_pooled_prompt_embeds"] = npooled.to(dtype=dtype, device=device)
    return out


def encode_weighted(pipe: Any, family: str, request: GenerationRequest, device: Any,
                    guidance: bool = True) -> dict[str, torch.Tensor]:
    """Pipeline keyword arguments with the weighted embeddings of the request's prompts.

    ``<lora:...>`` tags are dropped here: ``request.loras`` carries them (see
    ``studio.core.prompt_syntax.with_prompt_loras``).
    """
    prompt = extract_loras(request.prompt)[0]
    negative = extract_loras(request.negative_prompt)[0]
    clip_skip = request.clip_skip or None
    if family in SDXL_FAMILIES:
        return encode_sdxl(pipe, prompt, negative, device, guidance, clip_skip)
    return encode_sd(pipe, prompt, negative, device, guidance, clip_skip)
