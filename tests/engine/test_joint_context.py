"""SD3 without T5 feeds its transformer 256 identical zero tokens: the engine runs them as one
(``studio.engine.joint_context``), the same function to float rounding, and only where the
tokens really are identical and nothing else owns the attention."""

from __future__ import annotations

import pytest
import torch

from studio.engine.joint_context import collapsible, identical_context_once, identical_run


def _model():
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(0)
    model = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
        attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
        caption_projection_dim=16, pooled_projection_dim=16, pos_embed_max_size=16).eval()
    with torch.no_grad():  # diffusers zero-initialises the output layers: give them weight
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model


def _inputs(tail: torch.Tensor) -> dict:
    torch.manual_seed(1)
    clip = torch.randn(2, 7, 16)
    return dict(hidden_states=torch.randn(2, 4, 8, 8), pooled_projections=torch.randn(2, 16),
                timestep=torch.tensor([250.0, 900.0]),
                encoder_hidden_states=torch.cat([clip, tail], 1))


def _run(model, inputs) -> tuple[torch.Tensor, list[int]]:
    seen: list[int] = []
    hook = model.transformer_blocks[0].register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(kw["encoder_hidden_states"].shape[1]), with_kwargs=True)
    try:
        with torch.no_grad():
            return model(**inputs).sample, seen
    finally:
        hook.remove()


def test_identical_run_counts_the_tokens_that_end_like_the_last_in_every_row() -> None:
    x = torch.zeros(2, 10, 3)
    x[:, :4] = torch.randn(2, 4, 3)
    assert identical_run(x) == 6
    x[1, 7] = 1.0  # one row differs at token 7: the run is what follows it
    assert identical_run(x) == 2
    assert identical_run(torch.randn(1, 5, 3)) == 1
    assert identical_run(torch.ones(1, 5, 3)) == 5


def test_256_zero_tokens_run_as_one_give_the_same_output() -> None:
    model = _model()
    inputs = _inputs(torch.zeros(2, 256, 16))
    full, seen_full = _run(model, inputs)
    with identical_context_once(model):
        short, seen_short = _run(model, inputs)
    assert seen_full == [263] and seen_short == [8]  # 7 CLIP tokens and one zero token
    assert torch.allclose(full, short, atol=1e-5), (full - short).abs().max()
    # a plain single zero token is another function: the weight of the run is what keeps it
    single, _ = _run(model, _inputs(torch.zeros(2, 1, 16)))
    assert (full - single).abs().max() > 1e-2
    # the model's own processors are back afterwards
    from diffusers.models.attention_processor import JointAttnProcessor2_0

    assert all(type(p) is JointAttnProcessor2_0 for p in model.attn_processors.values())


def test_the_trainers_fixed_run_of_one_zero_token_is_the_pipelines_256() -> None:
    """The DiT trainer encodes captions with one zero "T5" token and the processor fixed at
    256 (``train_dit``): the same function as the 256 the pipeline feeds, so the model it
    trains is the model users run."""
    from studio.engine.joint_context import CollapsedJointProcessor

    model = _model()
    full, _ = _run(model, _inputs(torch.zeros(2, 256, 16)))
    model.set_attn_processor(CollapsedJointProcessor(256))
    short, seen = _run(model, _inputs(torch.zeros(2, 1, 16)))
    assert seen == [8]
    assert torch.allclose(full, short, atol=1e-5), (full - short).abs().max()


def test_a_context_without_a_run_of_identical_tokens_is_left_whole() -> None:
    """A loaded T5 (its tokens differ) or a slider that moved one zero token apart."""
    model = _model()
    moved = torch.zeros(2, 256, 16)
    moved[0, -1, 3] = 0.5
    for tail in (torch.randn(2, 256, 16), moved):
        inputs = _inputs(tail)
        full, _ = _run(model, inputs)
        with identical_context_once(model):
            same, seen = _run(model, inputs)
        assert seen == [263]
        assert torch.equal(full, same)


def test_no_collapse_where_another_processor_owns_the_attention_or_in_bfloat16() -> None:
    from diffusers.models.attention_processor import AttnProcessor2_0

    model = _model()
    assert collapsible(model) and not collapsible(None)
    inputs = _inputs(torch.zeros(2, 256, 16))
    with identical_context_once(model, enabled=False):
        _, seen = _run(model, inputs)
    assert seen == [263]
    with torch.autocast("cpu", dtype=torch.bfloat16), identical_context_once(model):
        _, seen = _run(model, inputs)
    assert seen == [263]  # log(256) would round by up to 1.6 % in bfloat16
    from studio.engine.tuning import without_autocast

    without_autocast(model)  # a small model the policy keeps in fp32 inside a bf16 engine
    with torch.autocast("cpu", dtype=torch.bfloat16), identical_context_once(model):
        _, seen = _run(model, inputs)
    assert seen == [8]
    name = next(iter(model.attn_processors))
    model.set_attn_processor({n: (AttnProcessor2_0() if n == name else p)
                              for n, p in model.attn_processors.items()})
    assert not collapsible(model)


def test_the_processors_come_back_when_a_call_fails() -> None:
    model = _model()
    before = {n: type(p) for n, p in model.attn_processors.items()}
    with pytest.raises(RuntimeError), identical_context_once(model):
        raise RuntimeError("cancelled")
    assert {n: type(p) for n, p in model.attn_processors.items()} == before
    assert not model._forward_pre_hooks and not model._forward_hooks


def test_a_regional_stream_is_cut_as_the_main_context_was() -> None:
    from studio.engine.joint_context import collapsed_to

    stream = torch.cat([torch.randn(2, 7, 16), torch.zeros(2, 256, 16)], 1)
    assert torch.equal(collapsed_to(stream, 8), stream[:, :8])
    assert collapsed_to(stream, 263) is stream
    stream[0, -3, 0] = 1.0  # its end tokens differ: it cannot stand beside a cut context
    with pytest.raises(ValueError, match="end tokens differ"):
        collapsed_to(stream, 8)
