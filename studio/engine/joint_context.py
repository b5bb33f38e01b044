"""Identical context tokens of an SD3-style joint transformer, computed once.

Stable Diffusion 3 without its T5 encoder (``text_encoder_3=None``, as diffusers documents
it to save memory, and the embedded ``studio-tiny-dit``) feeds the transformer
``max_sequence_length`` (256) zero tokens in T5's place, after the 77 CLIP tokens. The same
input through the same per-token maps, they stay identical in every joint block: as keys
and values ``n`` identical tokens weigh in each softmax as one token whose logit is raised
by ``log(n)``, and their own outputs are identical too. So the transformer can run one of
them: the same function, to float rounding (a 64 px image of the embedded DiT: at most
1.3e-5 apart, one pixel in 12288 one level off), at a third of the embedded DiT's step
time (its 64 image tokens sat beside 333 context tokens; 142 in all once collapsed).

``identical_context_once(transformer)`` does it for a call: a forward pre-hook finds the run
of identical tokens that ends the context (every row of the batch alike), hands the
transformer the context up to its first token, and the joint attention processor
(``CollapsedJointProcessor``) weighs that token by the run's length. Where the tail is not
a run (a T5 encoder is loaded, or a prompt slider moved those tokens apart) nothing is
collapsed. Regional prompts on the joint blocks cut their streams the same way
(``collapsed_to``). It stays off where another processor owns the attention (an IP-Adapter)
and in bfloat16, whose 8-bit mantissa would round the ``log(n)`` bias by up to 1.6 % of the
run's weight (float16: 0.2 %, within the rounding of its own attention logits; float32:
none to speak of).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# Transformers whose blocks run every context token through per-token maps and joint
# attention only (the pre-hook relies on it: the context's only cross-token step is there).
COLLAPSIBLE = ("SD3Transformer2DModel",)


class CollapsedJointProcessor:
    """SD3 joint attention where the last context token stands for ``repeat`` identical
    ones (``repeat`` 1: diffusers' ``JointAttnProcessor2_0`` as it is)."""

    def __init__(self, repeat: int = 1) -> None:
        from diffusers.models.attention_processor import JointAttnProcessor2_0

        self.repeat = repeat
        self.inner = JointAttnProcessor2_0()

    def __call__(self, attn: Any, hidden_states: Any, encoder_hidden_states: Any = None,
                 attention_mask: Any = None, *args: Any, **kwargs: Any) -> Any:
        import torch
        import torch.nn.functional as F

        if (self.repeat <= 1 or encoder_hidden_states is None or attention_mask is not None
                or hidden_states.ndim != 3):
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask,
                              *args, **kwargs)
        b, n_img = hidden_states.shape[:2]

        def heads(x: Any) -> Any:
            return x.view(b, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)

        q, k, v = (heads(attn.to_q(hidden_states)), heads(attn.to_k(hidden_states)),
                   heads(attn.to_v(hidden_states)))
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        cq, ck, cv = (heads(attn.add_q_proj(encoder_hidden_states)),
                      heads(attn.add_k_proj(encoder_hidden_states)),
                      heads(attn.add_v_proj(encoder_hidden_states)))
        if attn.norm_added_q is not None:
            cq = attn.norm_added_q(cq)
        if attn.norm_added_k is not None:
            ck = attn.norm_added_k(ck)
        q, k, v = torch.cat([q, cq], 2), torch.cat([k, ck], 2), torch.cat([v, cv], 2)
        bias = torch.zeros(k.shape[2], dtype=q.dtype, device=q.device)
        bias[-1] = math.log(self.repeat)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None, :])
        out = out.transpose(1, 2).reshape(b, -1, attn.heads * q.shape[-1]).to(q.dtype)
        hidden, context = out[:, :n_img], out[:, n_img:]
        if not attn.context_pre_only:
            context = attn.to_add_out(context)
        hidden = attn.to_out[1](attn.to_out[0](hidden))
        return hidden, context


def identical_run(context: Any) -> int:
    """How many tokens at the end of ``context`` (batch, tokens, dim) equal its last one,
    in every row of the batch (1: the last token alone)."""
    same = (context == context[:, -1:]).all(dim=-1).all(dim=0)  # (tokens,)
    differs = (~same).nonzero()
    return int(same.shape[0]) - (int(differs[-1]) + 1 if differs.numel() else 0)


def collapsed_to(context: Any, length: int) -> Any:
    """``context`` with its run of identical end tokens cut to ``length`` tokens (its first
    kept), as ``identical_context_once`` cut the call's main context: a regional prompt's
    stream beside it. Unchanged where it is not longer; a ``ValueError`` where its run is too
    short to stand for the tokens cut (its text would then not be the one it says)."""
    if context.shape[1] <= length:
        return context
    if identical_run(context) < context.shape[1] - length + 1:
        raise ValueError(f"a text stream of {context.shape[1]} tokens cannot run beside the "
                         f"main prompt's {length}: its end tokens differ")
    return context[:, :length]


def collapsible(transformer: Any) -> bool:
    """Whether ``transformer`` is an SD3-style joint transformer whose every attention
    runs diffusers' joint processor (none owned by regions, an IP-Adapter or others)."""
    if transformer is None or type(transformer).__name__ not in COLLAPSIBLE:
        return False
    from diffusers.models.attention_processor import JointAttnProcessor2_0

    procs = getattr(transformer, "attn_processors", {})
    return bool(procs) and all(type(p) is JointAttnProcessor2_0 for p in procs.values())


@contextmanager
def identical_context_once(transformer: Any, enabled: bool = True) -> Iterator[None]:
    """For the calls inside, ``transformer`` runs a run of identical tokens at the end of its
    context as one (see the module docstring); its own processors are back afterwards, also
    when a call fails. Nothing changes where ``enabled`` is false or it does not apply."""
    if not enabled or not collapsible(transformer):
        yield
        return
    import torch

    original = dict(transformer.attn_processors)
    processor = CollapsedJointProcessor()
    weight = next(transformer.parameters())

    def bf16() -> bool:
        """Whether the attention will compute in bfloat16: bf16 weights, or a bf16 autocast
        that reaches the transformer (``tuning.without_autocast`` keeps it out of a small
        fp32 model)."""
        kind = weight.device.type
        return weight.dtype == torch.bfloat16 or (
            torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind) == torch.bfloat16
            and not getattr(transformer, "_studio_no_autocast", False))

    def before(_module: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        processor.repeat = 1
        context = kwargs.get("encoder_hidden_states")
        if args or context is None or context.ndim != 3 or context.shape[1] < 2 or bf16():
            return None
        run = identical_run(context)
        if run < 2:
            return None
        processor.repeat = run
        return args, {**kwargs, "encoder_hidden_states": context[:, :context.shape[1] - run + 1]}

    def after(_module: Any, _args: Any, _kwargs: Any, _output: Any) -> None:
        processor.repeat = 1

    transformer.set_attn_processor(processor)
    # first of the pre-hooks: regional prompts (``regions.JointRegions``) read the cut context
    pre = transformer.register_forward_pre_hook(before, with_kwargs=True, prepend=True)
    post = transformer.register_forward_hook(after, with_kwargs=True)
    try:
        yield
    finally:
        pre.remove()
        post.remove()
        transformer.set_attn_processor(original)
