"""Reference images in the layers panel's Control box: offered where the backend runs them
(the local engine with an IP-Adapter), greyed out with a one-line reason naming what to add
where it does not (no IP-Adapter; a ComfyUI server, naming the custom node); a reference
layer goes whole with the next generation, and "Use settings" asks for the same again."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from studio.core.control import REFERENCE_REMOTE_OFF
from studio.engine.reference import REFERENCE_OFF
from tests.fakes import FAKE_FEATURES, FakeEngine

LOCAL = dataclasses.replace(FAKE_FEATURES, backend="local", control=True)


@pytest.fixture
def engine(request) -> FakeEngine:
    mode = getattr(request, "param", "on")
    features = {"on": LOCAL,
                "none": dataclasses.replace(LOCAL, why_not=(("reference", REFERENCE_OFF),)),
                "comfyui": dataclasses.replace(LOCAL, backend="comfyui")}[mode]
    return FakeEngine(features=features)


def _look_layer(window):
    """A small picture placed partly off the generation rect, made active."""
    rng = np.random.default_rng(0)
    window.controller.add_image_layer(np.full((64, 64, 3), 200, np.uint8), "paper")
    window.controller.add_image_layer(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8),
                                      "look")
    layer = window.doc.layers[-1]
    layer.x, layer.y = 40, 30
    window.doc.set_active_layer(layer.id)
    return layer


def _item(box):
    return box.kind_combo.model().item(box.kind_combo.findData("reference"))


def test_a_reference_layer_goes_whole_with_the_request_and_use_settings_repeats_it(
        qtbot, window, engine):
    layer = _look_layer(window)
    box = window.layers_panel.control_box
    assert _item(box).isEnabled() and _item(box).text() == "Reference image"
    box.kind_combo.setCurrentIndex(box.kind_combo.findData("reference"))
    box.strength_slider.setValue(0.6)
    assert not box.show_map_button.isEnabled()  # read as is: no map to show
    assert "IP-Adapter" in box.model_edit.placeholderText()
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    first = engine.requests[-1]
    (ref,) = first.controls
    assert (ref.kind, ref.strength) == ("reference", 0.6)
    assert ref.image.to_array()[..., :3].tobytes() == layer.pixels[..., :3].tobytes()
    # The reference layer is no content: the flat paper alone is nothing to refine.
    assert first.task == "txt2img" and first.init_image is None
    record = window.doc.log.records[-1]
    window.prompt_panel.apply_request(record.request)  # "Use settings"
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    again = engine.requests[-1]
    assert again.controls == first.controls and again.seed == first.seed


@pytest.mark.parametrize("engine, why", [("none", REFERENCE_OFF),
                                         ("comfyui", REFERENCE_REMOTE_OFF)],
                         indirect=["engine"])
def test_reference_is_off_with_the_reason_where_the_backend_cannot(window, engine, why):
    _look_layer(window)
    box = window.layers_panel.control_box
    box.refresh_kinds()
    item = _item(box)
    assert not item.isEnabled() and item.toolTip() == why
    assert "\n" not in why and ("models/ipadapter" in why or "ComfyUI_IPAdapter_plus" in why)
    assert box.kind_combo.model().item(box.kind_combo.findData("scribble")).isEnabled()


@pytest.fixture
def local(tiny_sd1_dir, tiny_sdxl_dir, tmp_path_factory):
    """The local engine with the tiny SD 1.x model and IP-Adapters as users keep them."""
    from studio.engine.engine import Engine
    from tests.engine.reference_models import build_reference_root

    root = build_reference_root(tmp_path_factory.mktemp("ui-refs"), tiny_sd1_dir,
                                tiny_sdxl_dir)
    return Engine(device="cpu", dtype="float32", model_dirs=[tiny_sd1_dir, root],
                  embedded_dir=tmp_path_factory.mktemp("no-embedded"), hf_cache=False)


def test_the_model_list_of_a_reference_layer_offers_the_ip_adapters_that_fit(
        window, local):
    from studio.engine.services import engine_services

    window.connection.services = engine_services(local)  # the local engine's IP-Adapters
    panel = window.prompt_panel
    sd1 = next(m for m in local.list_models() if m.family.startswith("sd1"))
    panel._models[sd1.id] = sd1
    panel.model_combo.addItem(sd1.name, sd1.id)
    panel.model_combo.setCurrentIndex(panel.model_combo.findData(sd1.id))
    _look_layer(window)
    box = window.layers_panel.control_box
    box.kind_combo.setCurrentIndex(box.kind_combo.findData("reference"))
    names = [box.model_pick.itemData(i) for i in range(box.model_pick.count())]
    # The SD 1.x adapters (plain and Plus, with their encoder); not the SDXL one.
    assert names[0] == "" and set(names[1:]) == {"ip-adapter_tiny-sd1", "ip-adapter_tiny-sd1-b",
                                                 "ip-adapter-plus_tiny-sd1"}
    box.model_pick.setCurrentIndex(names.index("ip-adapter_tiny-sd1-b"))
    box.model_pick.activated.emit(names.index("ip-adapter_tiny-sd1-b"))
    layer = window.doc.layers[-1]
    from studio.ui.control_layers import marks_for

    assert marks_for(window.doc)[layer.id].model == "ip-adapter_tiny-sd1-b"
