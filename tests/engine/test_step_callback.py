"""The step callback alone: cancel, late directions, local blend, previews."""

from __future__ import annotations

import pytest
import torch

from studio.core.errors import CancelledError
from studio.core.jobs.cancel import CancelToken
from studio.engine.sliders import LocalBlend, PromptDelta, ScheduledDelta
from studio.engine.step_callback import StepCallback


class _Pipe:
    num_timesteps = 4
    do_classifier_free_guidance = True
    _callback_tensor_inputs = ["latents", "prompt_embeds", "add_text_embeds"]


def test_it_reports_each_step_with_a_preview_every_few_steps():
    seen = []
    cb = StepCallback(seen.append, CancelToken(), steps=9, previewer=lambda lat: "preview",
                      preview_every=3)
    for step in range(4):
        out = cb(_Pipe(), step, None, {"latents": torch.zeros(1, 4, 2, 2)})
        assert set(out) == {"latents"}
    steps = [p for p in seen if p.phase == "sampling"]
    assert [(p.step, p.total) for p in steps] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    # Every third step, and always the last one.
    assert [p.preview for p in steps] == [None, None, "preview", "preview"]
    # After the last step the VAE decodes: said as it happens.
    assert [p.phase for p in seen[len(steps):]] == ["decoding"]


def test_no_previewer_means_no_previews():
    seen = []
    cb = StepCallback(seen.append, CancelToken(), steps=2, previewer=None, preview_every=1)
    cb(_Pipe(), 0, None, {"latents": torch.zeros(1)})
    assert seen[0].preview is None


def test_a_cancelled_token_stops_at_the_next_step():
    token = CancelToken()
    seen = []
    cb = StepCallback(seen.append, token, steps=4)
    cb(_Pipe(), 0, None, {"latents": torch.zeros(1)})
    token.cancel()
    with pytest.raises(CancelledError):
        cb(_Pipe(), 1, None, {"latents": torch.zeros(1)})
    assert len(seen) == 1


def test_late_directions_join_the_positive_embeddings_at_their_step():
    delta = PromptDelta(torch.ones(1, 3, 2), None)
    cb = StepCallback(lambda _p: None, CancelToken(), steps=4,
                      late=[ScheduledDelta(delta, 2.0, 2)])
    assert cb.tensor_inputs(_Pipe(), "sd1") == ["latents", "prompt_embeds"]
    assert cb.tensor_inputs(_Pipe(), "sdxl") == ["latents", "prompt_embeds", "add_text_embeds"]
    embeds = torch.zeros(2, 3, 2)  # negative half, positive half
    state = {"latents": torch.zeros(1), "prompt_embeds": embeds}
    state = cb(_Pipe(), 0, None, state)
    assert state["prompt_embeds"].abs().sum() == 0  # starts after step 2
    state = cb(_Pipe(), 1, None, state)
    assert torch.equal(state["prompt_embeds"][0], torch.zeros(3, 2))
    assert torch.equal(state["prompt_embeds"][1], torch.full((3, 2), 2.0))


def test_without_late_directions_only_the_latents_are_asked_for():
    cb = StepCallback(lambda _p: None, CancelToken(), steps=4)
    kwargs = cb.kwargs(_Pipe(), "sdxl")
    assert kwargs["callback_on_step_end"] is cb
    assert kwargs["callback_on_step_end_tensor_inputs"] == ["latents"]


def test_the_local_blend_puts_the_base_back_outside_the_mask():
    base = tuple(torch.full((1, 1, 1, 2), float(i)) for i in range(4))
    mask = torch.tensor([[[[1.0, 0.0]]]])
    cb = StepCallback(lambda _p: None, CancelToken(), steps=4)
    cb.blend = LocalBlend(base, mask, until=0.5)
    out = cb(_Pipe(), 1, None, {"latents": torch.full((1, 1, 1, 2), 9.0)})
    assert out["latents"].flatten().tolist() == [9.0, 1.0]  # edited inside, base outside
    late = cb(_Pipe(), 3, None, {"latents": torch.full((1, 1, 1, 2), 9.0)})
    assert late["latents"].flatten().tolist() == [9.0, 9.0]  # past ``until``: left alone
