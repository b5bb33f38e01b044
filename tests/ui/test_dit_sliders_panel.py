"""The Sliders panel on an image from ``studio-tiny-dit`` (issue 24 point 4): the prompt
starters that act on the DiT are on (hair, glasses, smile; measured by SliderBench and
``tests/training/test_tiny_dit_sliders.py``). Smile was greyed on the first DiT, which drew
no smile; the twin-trained one follows it (SliderBench by the oracle: a smile at 2 on 25 %
of the portraits without one, gone at -2 from 100 % of those with one, monotone 0.96)."""

from __future__ import annotations

from studio.core.document.layers import Document
from studio.core.jobs.request import GenerationRequest
from tests.ui.test_sliders_panel import new_panel


def test_on_a_dit_image_the_starters_that_act_are_on(qtbot, services, runner):
    p = new_panel(qtbot, Document(), services, runner)
    try:
        p.session.set_base_request(GenerationRequest(
            "a person with brown hair on a grey background", model="studio-tiny-dit", seed=2,
            steps=20, width=64, height=64, scheduler="Flow Euler"))
        for sid in ("hair-red", "hair-blonde", "glasses", "smile"):
            assert p.row(sid).slider.isEnabled(), sid
        assert "draws no smile" not in p.row("smile").slider.toolTip()
    finally:
        p.session.connection.disconnect()
