"""The Region section on the newer transformer families (issue 25), with the local engine's
own declarations: Flux 2 and Z-Image take regions as Flux does; Chroma, Lumina 2, Qwen-Image
and HiDream are greyed out with their own one-line reason as the tooltip, and their
requests go without the regions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from studio.core.models import ModelInfo
from tests.fakes import FAKE_FEATURES, TINY, FakeEngine

Z_IMAGE = ModelInfo(id="fake-z", name="Fake z-image", kind="diffusion", family="z-image",
                    source="diffusers", path="/models/z", size_bytes=1234,
                    recommended=(("steps", 4), ("width", 64), ("height", 64)))
FLUX2 = dataclasses.replace(Z_IMAGE, id="fake-flux2", name="Fake flux2", family="flux2",
                            path="/models/flux2")
CHROMA = dataclasses.replace(Z_IMAGE, id="fake-chroma", name="Fake chroma", family="chroma",
                             path="/models/chroma")


@pytest.fixture
def engine(tmp_path) -> FakeEngine:
    from studio.engine.engine import Engine

    local = Engine(device="cpu", dtype="float32", model_dirs=[], embedded_dir=tmp_path,
                   hf_cache=False).features  # what the local engine declares about regions
    features = dataclasses.replace(FAKE_FEATURES, regions=True,
                                   regions_families=local.regions_families,
                                   why_not=local.why_not)
    return FakeEngine(models=[TINY, Z_IMAGE, FLUX2, CHROMA], features=features)


def _choose(window, model_id: str) -> None:
    combo = window.prompt_panel.model_combo
    combo.setCurrentIndex(combo.findData(model_id))
    assert window.prompt_panel.model_id == model_id


def test_flux2_and_z_image_take_regions_chroma_is_greyed_with_its_own_reason(
        qtbot, window, engine):
    window.controller.add_image_layer(np.full((64, 64, 3), 100, np.uint8), "left")
    panel = window.layers_panel
    _choose(window, "fake-chroma")
    assert not panel.region_box.isEnabled()
    assert panel.region_box.title() == "Region: off for this model"
    tip = panel.region_box.toolTip()
    assert tip.startswith("Regional prompts: Chroma's blocks are Flux's") and "\n" not in tip
    for model in ("fake-z", "fake-flux2"):
        _choose(window, model)
        assert panel.region_box.isEnabled() and panel.region_box.title() == "Region"
    panel.region_prompt_edit.setText("a lighthouse")
    panel.region_prompt_edit.editingFinished.emit()
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    (region,) = engine.requests[-1].regions  # the region goes with a Flux 2 request
    assert region.prompt == "a lighthouse" and engine.requests[-1].model == "fake-flux2"
    _choose(window, "fake-chroma")  # the region layer stays; Chroma's request goes without
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    assert engine.requests[-1].model == "fake-chroma" and engine.requests[-1].regions == ()
    assert "Regional prompts are left out" in window.banner.label.text()
