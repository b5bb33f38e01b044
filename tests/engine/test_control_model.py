"""The SHIPPED studio-tiny-control: a ControlNet for the shipped studio-tiny-diffusion that
the engine finds and uses, and whose card's figures hold (models tier: the full run, or a
change to the weights or the training code)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from studio.core.control import ControlLayer
from studio.core.document.pixels import Pixels
from studio.core.jobs.request import GenerationRequest
from studio.paths import embedded_models_dir

pytestmark = pytest.mark.models

FOLDER = embedded_models_dir() / "studio-tiny-control"
DIFFUSION = embedded_models_dir() / "studio-tiny-diffusion"


def test_it_is_a_controlnet_folder_for_the_shipped_diffusion_weights():
    from studio.engine.control_models import folder_info
    from studio.engine.models.hashing import model_hash

    info = folder_info(FOLDER, "embedded")
    assert info is not None and info.kind == "controlnet" and info.family == "studio-tiny"
    assert {"lineart", "scribble"} <= set(info.kinds)
    studio = json.loads((FOLDER / "studio.json").read_text())
    # A ControlNet is tied to its UNet: retrain it with studio-tiny-diffusion.
    assert studio["base_model_hash"] == model_hash(DIFFUSION), \
        "studio-tiny-control was trained for other diffusion weights: retrain it"
    assert (FOLDER / "README.md").is_file() and (FOLDER / "contact_sheet.png").is_file()
    total = sum(p.stat().st_size for p in embedded_models_dir().rglob("*") if p.is_file())
    assert total < 40e6, f"the embedded models take {total / 1e6:.1f} MB"


def test_the_engine_uses_it_by_default_for_line_art():
    from studio.engine.engine import Engine
    from studio.training.train_control import HELD_OUT_SEED, sample

    engine = Engine(device="cpu", dtype="float32", hf_cache=False)
    _, lines, _, _ = sample(HELD_OUT_SEED, 3)
    ctrl = ControlLayer("lineart", Pixels.from_array(lines))
    req = GenerationRequest("a person with red hair and glasses on a blue background",
                            model="studio-tiny-diffusion", width=64, height=64, steps=20,
                            guidance=5.0, seed=9, controls=(ctrl,))
    with_control = engine.generate(req).images[0]
    without = engine.generate(req.replace(controls=())).images[0]
    assert not np.array_equal(with_control, without)
    assert engine.controls.resolve("", "lineart", "studio-tiny").name == "studio-tiny-control"


def test_on_a_bf16_cpu_it_runs_as_its_card_measured_it(monkeypatch):
    # Where the CPU policy stores large models in bf16 (native bf16: AMX), the small
    # embedded models stay float32 without autocast, the ControlNet as the UNet it steers:
    # the same pixels as on a CPU without bf16, as the card's figures were measured.
    import studio.engine.device
    from studio.engine.engine import Engine
    from studio.training.train_control import HELD_OUT_SEED, sample

    _, lines, _, _ = sample(HELD_OUT_SEED, 5)
    req = GenerationRequest("a person with black hair on a green background",
                            model="studio-tiny-diffusion", width=64, height=64, steps=6,
                            guidance=5.0, seed=4,
                            controls=(ControlLayer("lineart", Pixels.from_array(lines)),))
    fp32 = Engine(device="cpu", dtype="float32", hf_cache=False)
    monkeypatch.setattr(studio.engine.device, "cpu_has_fast_bf16", lambda: True)
    bf16 = Engine(device="cpu", dtype="auto", hf_cache=False)
    assert bf16.device_info().autocast  # the policy of a CPU with native bf16
    assert np.array_equal(fp32.generate(req).images[0], bf16.generate(req).images[0])


def test_its_card_figures_hold():
    """The issue's measures on the card's 48 held-out layouts chosen to differ from what each
    seed gives without control (see ``studio.training.train_control``), recomputed: the
    layout the control shows is the one generated in at least 90 % of cases, and the
    figures are the card's (up to a layout or two read differently on another CPU)."""
    from studio.training.train_control import evaluate

    f = evaluate(embedded_models_dir(), n=48, write=False)
    card = json.loads((FOLDER / "eval.json").read_text())
    assert f["hair_style_followed"] >= 0.9 and f["glasses_shape_followed"] >= 0.9, f
    assert f["hair_style_followed"] > f["hair_style_chance_without_control"] + 0.3, f
    assert f["glasses_shape_followed"] > f["glasses_shape_chance_without_control"] + 0.3, f
    assert f["edge_f1_with_control"] > f["edge_f1_without_control"] + 0.2, f
    keep = f["prompt_attributes_kept_ratio"]
    assert min(keep.values()) >= 0.9, f
    for key in ("hair_style_followed", "glasses_shape_followed", "edge_f1_with_control",
                "edge_f1_without_control"):
        assert abs(f[key] - card[key]) <= 0.05, (key, f[key], card[key])
