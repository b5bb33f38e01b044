"""The Region section of the layers panel follows what the chosen model takes (issue 25):
with the local engine's declarations, Flux takes regions as SD models do, AuraFlow refuses
them, and the section is greyed out there with the engine's reason as its tooltip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from studio.core.models import ModelInfo
from studio.engine.models.families import REGION_FAMILIES, REGIONS_WHY_NOT
from tests.fakes import FAKE_FEATURES, TINY, FakeEngine

FLUX = ModelInfo(id="fake-flux", name="Fake flux", kind="diffusion", family="flux",
                 source="diffusers", path="/models/flux", size_bytes=1234,
                 recommended=(("steps", 4), ("width", 64), ("height", 64)))
AURA = dataclasses.replace(FLUX, id="fake-aura", name="Fake aura", family="auraflow",
                           path="/models/aura")


@pytest.fixture
def engine() -> FakeEngine:
    # what studio.engine.engine.Engine.features declares about regions
    features = dataclasses.replace(
        FAKE_FEATURES, regions=True, regions_families=REGION_FAMILIES,
        why_not=(("regions_families", "Regional prompts: " + REGIONS_WHY_NOT),))
    return FakeEngine(models=[TINY, FLUX, AURA], features=features)


def _choose(window, model_id: str) -> None:
    combo = window.prompt_panel.model_combo
    combo.setCurrentIndex(combo.findData(model_id))
    assert window.prompt_panel.model_id == model_id


def test_the_region_section_is_on_for_flux_and_greyed_with_the_reason_for_auraflow(
        qtbot, window, engine):
    window.controller.add_image_layer(np.full((64, 64, 3), 100, np.uint8), "left")
    panel = window.layers_panel
    _choose(window, "fake-aura")
    assert not panel.region_box.isEnabled()
    assert panel.region_box.title() == "Region: off for this model"
    tip = panel.region_box.toolTip()
    assert tip.startswith("Regional prompts:") and "AuraFlow" in tip  # the engine's reason
    _choose(window, "fake-flux")
    assert panel.region_box.isEnabled() and panel.region_box.title() == "Region"
    assert panel.region_box.toolTip().startswith("A regional prompt: it applies where")
    panel.region_prompt_edit.setText("a lighthouse")
    panel.region_prompt_edit.editingFinished.emit()
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    (region,) = engine.requests[-1].regions  # the region goes with a Flux request
    assert region.prompt == "a lighthouse" and engine.requests[-1].model == "fake-flux"
    _choose(window, "fake-aura")  # the region layer stays; AuraFlow's request goes without it
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    assert engine.requests[-1].model == "fake-aura" and engine.requests[-1].regions == ()
    assert "Regional prompts are left out" in window.banner.label.text()
    _choose(window, TINY.id)
    assert panel.region_box.isEnabled()
