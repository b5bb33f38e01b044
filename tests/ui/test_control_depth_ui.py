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
def engine(request, tmp_path_factory):
    mode = getattr(request, "param", "off")
    if mode == "local":  # the local engine with a tiny random DPT in models/depth
        from studio.engine.engine import Engine
        from tests.engine.test_control_depth import _dpt

        root = tmp_path_factory.mktemp("ui-depth") / "models"
        _dpt(root / "depth" / "tiny-dpt")
        return Engine(device="cpu", dtype="float32", model_dirs=[root],
                      embedded_dir=tmp_path_factory.mktemp("no-embedded"), hf_cache=False)
    features = OFF if mode == "off" else dataclasses.replace(FAKE_FEATURES, control=True)
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


@pytest.mark.parametrize("engine", ["local"], indirect=True)
def test_show_map_adds_the_estimated_depth_of_the_photo(qtbot, window, engine):
    from studio.engine.services import engine_services

    window.connection.services = engine_services(engine)  # the local engine's estimator
    layer = _photo_layer(window)
    window.doc.set_active_layer(layer.id)
    box = window.layers_panel.control_box
    box.kind_combo.setCurrentIndex(box.kind_combo.findData("depth-estimate"))
    count = len(window.doc.layers)
    box.show_map()
    # The estimator runs on the engine thread as a job: the window says so and goes on.
    assert "Estimating depth" in box.note.text() and not box.note.isHidden()
    qtbot.waitUntil(lambda: len(window.doc.layers) == count + 1, timeout=60000)
    assert box.note.isHidden()
    new = window.doc.layers[-1]
    assert new.name == "Depth from a photo map of photo"
    x, y, w, h = window.doc.generation_rect
    photo = layer.pixels[y - layer.y:y - layer.y + h, x - layer.x:x - layer.x + w, :3]
    expected = engine.controls.estimate_depth(photo)
    assert np.array_equal(new.pixels[..., 0], expected)
    assert expected.min() == 0 and expected.max() == 255  # a map, not a blank
