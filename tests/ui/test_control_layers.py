"""The Control section of the layers panel: a layer marked as a control of a kind, with
strength and step range, goes with the next generation where the backend takes controls;
"Show map as layer" adds what the control model will read."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.fakes import FAKE_FEATURES, FakeEngine


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(features=dataclasses.replace(FAKE_FEATURES, control=True))


def _strokes(window):
    """A paint layer with two dark strokes on transparency, made active."""
    window.controller.add_image_layer(np.full((64, 64, 3), 200, np.uint8), "paper")
    window.controller.add_image_layer(np.zeros((64, 64, 3), np.uint8), "sketch")
    layer = window.doc.layers[-1]
    layer.pixels[..., 3] = 0
    layer.pixels[20:22, 10:50, 3] = 255
    layer.pixels[10:50, 30:32, 3] = 255
    window.doc.set_active_layer(layer.id)
    return layer


def test_a_layer_marked_as_a_control_goes_with_the_request(qtbot, window, engine):
    layer = _strokes(window)
    box = window.layers_panel.control_box
    assert box.kind_combo.isEnabled() and not box.strength_slider.isEnabled()
    box.kind_combo.setCurrentIndex(box.kind_combo.findData("scribble"))
    box.strength_slider.setValue(0.7)
    box.range_slider.setValue((0.0, 0.6))
    assert box.strength_slider.isEnabled() and box.show_map_button.isEnabled()
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    (control,) = engine.requests[-1].controls
    assert control.kind == "scribble" and control.start == 0.0
    assert control.strength == pytest.approx(0.7) and control.end == pytest.approx(0.6)
    req = engine.requests[-1]
    strokes = control.image.to_array()
    assert strokes.shape[:2] == (req.height, req.width)
    assert strokes[..., 3].max() == 255 and strokes[..., 3].min() == 0
    # Unmarked, the layer is no control any more.
    window.doc.set_active_layer(layer.id)
    box.kind_combo.setCurrentIndex(0)
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    assert engine.requests[-1].controls == ()


def test_show_map_adds_the_preprocessed_map_as_a_layer(qtbot, window):
    layer = _strokes(window)
    box = window.layers_panel.control_box
    box.kind_combo.setCurrentIndex(box.kind_combo.findData("lineart"))
    count = len(window.doc.layers)
    box.show_map_button.click()
    assert len(window.doc.layers) == count + 1
    shown = window.doc.layers[-1]
    assert shown.name == f"Line art map of {layer.name}"
    # White strokes on black, where the strokes were drawn.
    assert shown.pixels[21, 20, :3].tolist() == [255, 255, 255]
    assert shown.pixels[40, 10, :3].tolist() == [0, 0, 0]


def test_an_empty_control_layer_says_it_is_skipped(window):
    window.controller.add_image_layer(np.zeros((64, 64, 3), np.uint8), "blank")
    layer = window.doc.layers[-1]
    layer.pixels[..., 3] = 0
    window.doc.set_active_layer(layer.id)
    box = window.layers_panel.control_box
    box.kind_combo.setCurrentIndex(box.kind_combo.findData("scribble"))
    assert "empty" in box.note.text() and not box.note.isHidden()


def test_reference_images_are_offered_off_with_the_reason(window):
    box = window.layers_panel.control_box
    item = box.kind_combo.model().item(box.kind_combo.findData("reference"))
    assert not item.isEnabled() and "IP-Adapter" in item.toolTip()


def test_a_control_layer_is_no_content_to_inpaint(qtbot, window, engine):
    """A sketch alone on the canvas guides a text-to-image generation: its transparent
    parts are not a hole to inpaint, its strokes not an image to refine."""
    window.controller.add_image_layer(np.zeros((64, 64, 3), np.uint8), "sketch")
    layer = window.doc.layers[-1]
    layer.pixels[..., 3] = 0
    layer.pixels[20:22, 10:50, 3] = 255
    window.doc.set_active_layer(layer.id)
    box = window.layers_panel.control_box
    box.kind_combo.setCurrentIndex(box.kind_combo.findData("scribble"))
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    req = engine.requests[-1]
    assert req.task == "txt2img" and req.init_image is None and len(req.controls) == 1
    assert layer.visible  # shown as it was
