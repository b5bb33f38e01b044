"""The Regions section of the layers panel: a layer's alpha (or mask) as a regional prompt,
undoable, sent with the next generation where the backend takes regions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.fakes import FAKE_FEATURES, FakeEngine


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(features=dataclasses.replace(FAKE_FEATURES, regions=True))


def test_a_layer_marked_as_a_region_goes_with_the_request(qtbot, window, engine):
    window.controller.add_image_layer(np.full((64, 64, 3), 100, np.uint8), "grey")
    half = np.zeros((64, 64, 4), np.uint8)
    half[:, :32] = (255, 255, 0, 255)
    window.controller.add_image_layer(half[..., :3], "left")
    layer = window.doc.layers[-1]
    layer.pixels[..., 3] = half[..., 3]  # only its left half has pixels
    panel = window.layers_panel
    window.doc.set_active_layer(layer.id)
    assert panel.region_box.isEnabled() and not panel.region_strength_slider.isEnabled()
    panel.region_prompt_edit.setText("on a yellow background")
    panel.region_prompt_edit.editingFinished.emit()
    assert layer.region_prompt == "on a yellow background"
    panel.region_strength_slider.setValue(0.6)
    assert layer.region_strength == pytest.approx(0.6)
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    (region,) = engine.requests[-1].regions
    assert region.prompt == "on a yellow background" and region.strength == pytest.approx(0.6)
    mask = region.mask.to_array()
    assert mask[:, :30].min() == 255 and mask[:, 34:].max() == 0
    window.undo.undo()  # the generation
    window.undo.undo()  # the strength
    window.undo.undo()  # the prompt
    assert layer.region_prompt == "" and panel.region_prompt_edit.text() == ""
