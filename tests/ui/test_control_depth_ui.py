"""Depth from a photo in the layers panel: greyed out with the backend's reason where it has
no depth-estimation model, offered (and sent) where it has one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from studio.core.control import DEPTH_ESTIMATE_OFF
from tests.fakes import FAKE_FEATURES, FakeEngine

OFF = dataclasses.replace(FAKE_FEATURES, control=True,
                          why_not=(("depth-estimate", DEPTH_ESTIMATE_OFF),))


@pytest.fixture
def engine(request) -> FakeEngine:
    features = OFF if getattr(request, "param", "off") == "off" else \
        dataclasses.replace(FAKE_FEATURES, control=True)
    return FakeEngine(features=features)


def _photo_layer(window):
    window.controller.add_image_layer(
        np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8), "photo")
    return window.doc.layers[-1]


def test_depth_from_a_photo_is_off_with_the_reason_without_a_depth_model(window):
    _photo_layer(window)
    box = window.layers_panel.control_box
    item = box.kind_combo.model().item(box.kind_combo.findData("depth-estimate"))
    assert item.text() == "Depth from a photo"
    assert not item.isEnabled() and item.toolTip() == DEPTH_ESTIMATE_OFF
    depth = box.kind_combo.model().item(box.kind_combo.findData("depth"))
    assert depth.isEnabled()  # a depth image as is still works


@pytest.mark.parametrize("engine", ["on"], indirect=True)
def test_depth_from_a_photo_is_offered_and_sent_with_a_depth_model(qtbot, window, engine):
    layer = _photo_layer(window)
    window.doc.set_active_layer(layer.id)
    box = window.layers_panel.control_box
    item = box.kind_combo.model().item(box.kind_combo.findData("depth-estimate"))
    assert item.isEnabled() and item.toolTip() == ""
    box.kind_combo.setCurrentIndex(box.kind_combo.findData("depth-estimate"))
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    (control,) = engine.requests[-1].controls
    assert control.kind == "depth-estimate"
    # "Show map" needs the backend's estimator: the fake has none, so it says why and adds
    # no layer.
    window.doc.set_active_layer(layer.id)
    count = len(window.doc.layers)
    box.show_map()
    assert len(window.doc.layers) == count
    assert "depth-estimation model" in box.note.text() and not box.note.isHidden()
