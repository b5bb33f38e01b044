"""Control layers on a backend without them (a ComfyUI server today): the generation runs
without them, and the window says why once, instead of dropping them silently."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.fakes import FAKE_FEATURES, FakeEngine


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(features=dataclasses.replace(
        FAKE_FEATURES, control=False,
        why_not=(("control", "Control layers are not sent to servers yet."),)))


def test_marked_layers_are_left_out_with_the_reason(qtbot, window, engine):
    window.controller.add_image_layer(np.zeros((64, 64, 3), np.uint8), "sketch")
    box = window.layers_panel.control_box
    box.kind_combo.setCurrentIndex(box.kind_combo.findData("scribble"))
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
        # Said as the job is queued (the note goes after a few seconds).
        assert "Control layers are left out: Control layers are not sent to servers" in \
            window.banner.text
    assert engine.requests[-1].controls == ()
