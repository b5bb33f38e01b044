"""The layers panel's Control box offers the control models that fit the chosen model: SD3
ControlNets on an SD 3.x model, Flux ones (and Flux unions) on Flux, SDXL ControlNets and
unions on SDXL; picking one goes with the request."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from studio.core.models import ModelInfo
from studio.engine.control_models import ControlModelInfo
from tests.fakes import FAKE_FEATURES, LARGE, TINY, FakeEngine

FLUX = ModelInfo(id="fake-flux", name="Fake flux", kind="diffusion", family="flux",
                 source="diffusers", path="/models/flux", size_bytes=1234,
                 recommended=(("steps", 4), ("width", 64), ("height", 64)))
SD3 = dataclasses.replace(FLUX, id="fake-sd3", name="Fake sd3", family="sd3",
                          path="/models/sd3")
NETS = [
    ControlModelInfo("a", "sd15-canny", "controlnet", "sd1", "/m/ControlNet/sd15-canny"),
    ControlModelInfo("b", "xinsir-union", "controlnet", "sdxl", "/m/ControlNet/xinsir-union",
                     arch="ControlNetUnionModel", modes=8),
    ControlModelInfo("c", "sd35-canny", "controlnet", "sd3", "/m/ControlNet/sd35-canny",
                     arch="SD3ControlNetModel"),
    ControlModelInfo("d", "flux-canny", "controlnet", "flux", "/m/ControlNet/flux-canny",
                     arch="FluxControlNetModel"),
    ControlModelInfo("e", "flux-union", "controlnet", "flux", "/m/ControlNet/flux-union",
                     arch="FluxControlNetModel", modes=7),
]


@pytest.fixture
def engine() -> FakeEngine:
    fake = FakeEngine(models=[TINY, LARGE, FLUX, SD3],
                      features=dataclasses.replace(FAKE_FEATURES, control=True))
    # The local engine's own choice of what fits (ControlModels.fitting) over these files.
    from studio.engine.control import ControlModels

    found = SimpleNamespace(list=lambda: list(NETS))
    fake.controls = SimpleNamespace(list=found.list,
                                    fitting=lambda model: ControlModels.fitting(found, model))
    return fake


def _offered(box) -> list[str]:
    box.refresh_models()
    return [box.model_pick.itemText(i) for i in range(box.model_pick.count())]


def test_the_control_box_offers_the_controlnets_that_fit_the_model(qtbot, window, engine):
    window.controller.add_image_layer(np.zeros((64, 64, 3), np.uint8), "edges")
    layer = window.doc.layers[-1]
    layer.pixels[20:40, 20:40, :3] = 255
    window.doc.set_active_layer(layer.id)
    box = window.layers_panel.control_box
    box.kind_combo.setCurrentIndex(box.kind_combo.findData("edges"))
    assert box.model_pick.isEnabled()
    panel = window.prompt_panel
    offered = {}
    for model in (FLUX, SD3, LARGE, TINY):
        panel.model_combo.setCurrentIndex(panel.model_combo.findData(model.id))
        offered[model.family] = _offered(box)
    assert offered["flux"] == ["Auto: the one that fits", "ControlNet flux-canny (Flux)",
                               "ControlNet-Union flux-union (Flux)"]
    assert offered["sd3"] == ["Auto: the one that fits", "ControlNet sd35-canny (SD 3.x)"]
    assert offered["sdxl"] == ["Auto: the one that fits",
                               "ControlNet-Union xinsir-union (SDXL)"]
    assert offered["sd1"] == ["Auto: the one that fits", "ControlNet sd15-canny (SD 1.x)"]
    # Picked on the Flux model, the union goes with the request.
    panel.model_combo.setCurrentIndex(panel.model_combo.findData(FLUX.id))
    box.refresh_models()
    index = box.model_pick.findData("flux-union")
    box.model_pick.setCurrentIndex(index)
    box.model_pick.activated.emit(index)
    assert box.model_edit.text() == "flux-union"
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    (control,) = engine.requests[-1].controls
    assert (control.kind, control.model) == ("edges", "flux-union")
    assert engine.requests[-1].model == FLUX.id
