"""The Sliders panel on an image from ``studio-tiny-dit`` (issue 24 point 4): the prompt
starters that act on the DiT are on (hair, glasses; measured by SliderBench and
``tests/training/test_tiny_dit_sliders.py``), Smile is greyed with the measured reason."""

from __future__ import annotations

from studio.core.document.layers import Document
from studio.core.jobs.request import GenerationRequest
from tests.ui.test_sliders_panel import new_panel


def test_on_a_dit_image_the_starters_that_act_are_on_and_smile_says_why_not(
        qtbot, services, runner):
    p = new_panel(qtbot, Document(), services, runner)
    try:
        p.session.set_base_request(GenerationRequest(
            "a person with brown hair on a grey background", model="studio-tiny-dit", seed=2,
            steps=20, width=64, height=64, scheduler="Flow Euler"))
        smile = p.row("smile")
        assert not smile.slider.isEnabled()
        assert "studio-tiny-dit" in smile.slider.toolTip() and "VAE Smile" in smile.slider.toolTip()
        for sid in ("hair-red", "hair-blonde", "glasses"):
            assert p.row(sid).slider.isEnabled(), sid
        p.session.set_base_request(GenerationRequest("a person", model="another-dit", seed=2,
                                                     steps=4, width=64, height=64))
        assert smile.slider.isEnabled()
    finally:
        p.session.connection.disconnect()
