"""Every scheduler name builds the diffusers scheduler it says, and draws its own image.

Two checks per name, so that "every name is Euler" fails: the class and the config that
make it that sampler (Karras sigmas, SDE, solver order, the model's own training schedule
kept), and a golden 3x3 slice of the image it draws on the embedded model.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from studio.core.errors import InvalidRequestError
from studio.core.jobs.request import GenerationRequest
from studio.core.samplers import SCHEDULER_NAMES
from studio.engine.schedulers import SCHEDULERS, make_scheduler

SHIPPED = Path(__file__).resolve().parents[2] / "resources" / "models"
DIFFUSION = SHIPPED / "studio-tiny-diffusion"

# name -> (diffusers class, the config values that make it this sampler)
_2M = {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}
_SDE = {"algorithm_type": "sde-dpmsolver++"}
_K = {"use_karras_sigmas": True}
EXPECTED: dict[str, tuple[str, dict[str, object]]] = {
    "Euler": ("EulerDiscreteScheduler", {"use_karras_sigmas": False}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler Karras": ("EulerDiscreteScheduler", _K),
    "Euler Exponential": ("EulerDiscreteScheduler",
                          {"use_exponential_sigmas": True, "use_karras_sigmas": False}),
    "Heun": ("HeunDiscreteScheduler", {"use_karras_sigmas": False}),
    "Restart": ("HeunDiscreteScheduler", _K),
    "LMS": ("LMSDiscreteScheduler", {"use_karras_sigmas": False}),
    "LMS Karras": ("LMSDiscreteScheduler", _K),
    "DPM2": ("KDPM2DiscreteScheduler", {"use_karras_sigmas": False}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": False}),
    "DPM2 Karras": ("KDPM2DiscreteScheduler", _K),
    "DPM2 a Karras": ("KDPM2AncestralDiscreteScheduler", _K),
    "DPM fast": ("DPMSolverSinglestepScheduler", {**_2M, "solver_order": 3}),
    "DPM adaptive": ("DPMSolverSinglestepScheduler", {**_2M, "solver_order": 3}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", _2M),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {**_2M, **_K}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {**_2M, **_SDE}),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler", {**_2M, **_SDE, **_K}),
    "DPM++ 2M SDE Heun": ("DPMSolverMultistepScheduler",
                          {**_2M, **_SDE, "solver_type": "heun"}),
    "DPM++ 3M SDE": ("DPMSolverMultistepScheduler", {**_2M, **_SDE, "solver_order": 3}),
    "DPM++ 3M SDE Karras": ("DPMSolverMultistepScheduler",
                            {**_2M, **_SDE, **_K, "solver_order": 3}),
    "DPM++ 3M SDE Exponential": ("DPMSolverMultistepScheduler",
                                 {**_2M, **_SDE, "solver_order": 3,
                                  "use_exponential_sigmas": True}),
    "DPM++ SDE": ("DPMSolverSinglestepScheduler", _2M),
    "DPM++ SDE Karras": ("DPMSolverSinglestepScheduler", {**_2M, **_K}),
    "DPM++ 2S a": ("DPMSolverSinglestepScheduler", {**_2M, **_SDE}),
    "DPM++ 2S a Karras": ("DPMSolverSinglestepScheduler", {**_2M, **_SDE, **_K}),
    "DDIM": ("DDIMScheduler", {"clip_sample": False}),
    "DDPM": ("DDPMScheduler", {"clip_sample": False}),
    "PLMS": ("PNDMScheduler", {"skip_prk_steps": True}),
    "PNDM": ("PNDMScheduler", {"skip_prk_steps": False}),
    "UniPC": ("UniPCMultistepScheduler", {"use_karras_sigmas": False}),
    "DEIS": ("DEISMultistepScheduler", {"use_karras_sigmas": False}),
    "LCM": ("LCMScheduler", {"clip_sample": False}),
    "TCD": ("TCDScheduler", {"clip_sample": False}),
    "Flow Euler": ("FlowMatchEulerDiscreteScheduler", {}),
}
# Names whose 4-step goldens agree: one nearest diffusers setup for two A1111 names (DPM
# fast/adaptive), the same step (DDIM with eta 0 takes Euler's ODE step; DDPM's ancestral
# step is Euler a's), or a third order that 4 steps never reach (diffusers' multistep solver
# warms up one order a step and lowers the last two below 15 steps).
SAME_IMAGE = ({"Euler", "DDIM"}, {"Euler a", "DDPM"}, {"DPM fast", "DPM adaptive"},
              {"DPM++ 2M SDE", "DPM++ 3M SDE"}, {"DPM++ 2M SDE Karras", "DPM++ 3M SDE Karras"})

# Golden slices: image[43:46, 27:30, 0] (red channel, uint8) of PROMPT, seed 7, 4 steps,
# guidance 5, 64 x 64, CPU float32, on the shipped studio-tiny-diffusion through the
# engine. Made once from the code of 2025 (commit a7e899d plus the house refactor) with
# `python tests/engine/test_schedulers.py`, which prints this table again: rerun it when the
# embedded diffusion weights change. The slice was chosen where the samplers differ most
# (any two differ by 25 levels or more somewhere in it), except DDIM: with eta 0 it takes
# the same ODE step as Euler and draws the same image (its class tells it apart above).
# The DPM-Solver Karras/exponential slices were made again when their sigmas moved to the
# model's spaced range (studio.engine.schedulers._spaced_range).
PROMPT = "a person with red hair and round glasses on a blue background"
SLICE = (slice(43, 46), slice(27, 30), 0)
TOLERANCE = 3  # uint8 levels, for other CPUs and BLAS builds
GOLDEN: dict[str, list[list[int]]] = {
    "Euler": [[177, 190, 146], [138, 229, 191], [108, 251, 255]],
    "Euler a": [[235, 235, 236], [236, 235, 233], [118, 119, 137]],
    "Euler Karras": [[178, 209, 210], [102, 178, 108], [104, 255, 254]],
    "Euler Exponential": [[202, 220, 223], [119, 164, 95], [135, 255, 254]],
    "Heun": [[71, 148, 118], [57, 248, 243], [44, 255, 254]],
    "Restart": [[58, 120, 94], [42, 223, 255], [48, 209, 253]],
    "LMS": [[130, 182, 159], [110, 234, 202], [95, 255, 255]],
    "LMS Karras": [[99, 152, 111], [79, 235, 225], [61, 244, 255]],
    "DPM2": [[244, 247, 249], [92, 110, 113], [204, 252, 199]],
    "DPM2 a": [[208, 205, 204], [215, 206, 203], [223, 205, 193]],
    "DPM2 Karras": [[227, 255, 255], [53, 106, 100], [101, 255, 251]],
    "DPM2 a Karras": [[95, 80, 72], [179, 231, 229], [183, 232, 237]],
    "DPM fast": [[160, 186, 182], [125, 204, 126], [132, 255, 255]],
    "DPM adaptive": [[160, 186, 182], [125, 204, 126], [132, 255, 255]],
    "DPM++ 2M": [[169, 191, 179], [130, 211, 132], [126, 255, 255]],
    "DPM++ 2M Karras": [[241, 236, 216], [225, 225, 162], [196, 247, 247]],
    "DPM++ 2M SDE": [[236, 235, 236], [187, 218, 237], [125, 98, 66]],
    "DPM++ 2M SDE Karras": [[238, 238, 238], [205, 164, 132], [224, 221, 228]],
    "DPM++ 2M SDE Heun": [[236, 232, 232], [177, 187, 209], [174, 122, 71]],
    "DPM++ 3M SDE": [[236, 235, 236], [187, 218, 237], [125, 98, 66]],
    "DPM++ 3M SDE Karras": [[238, 238, 238], [205, 164, 132], [224, 221, 228]],
    "DPM++ 3M SDE Exponential": [[235, 230, 224], [237, 225, 173], [242, 234, 232]],
    "DPM++ SDE": [[206, 213, 203], [149, 190, 107], [154, 255, 254]],
    "DPM++ SDE Karras": [[218, 219, 199], [160, 198, 116], [156, 255, 255]],
    "DPM++ 2S a": [[236, 236, 237], [239, 231, 233], [142, 155, 196]],
    "DPM++ 2S a Karras": [[237, 235, 235], [235, 238, 237], [122, 118, 114]],
    "DDIM": [[177, 190, 145], [137, 229, 191], [108, 251, 255]],
    "DDPM": [[235, 235, 236], [236, 235, 233], [118, 119, 137]],
    "PLMS": [[181, 196, 202], [157, 187, 205], [143, 184, 210]],
    "PNDM": [[73, 134, 79], [57, 250, 251], [51, 246, 254]],
    "UniPC": [[159, 188, 155], [112, 213, 193], [89, 240, 255]],
    "DEIS": [[182, 199, 176], [137, 218, 143], [125, 255, 255]],
    "LCM": [[231, 231, 232], [232, 226, 227], [120, 150, 192]],
    "TCD": [[196, 204, 170], [148, 219, 155], [125, 253, 254]],
}


def _base_config() -> dict[str, object]:
    import json

    return json.loads((DIFFUSION / "scheduler" / "scheduler_config.json").read_text())


def test_the_tables_cover_every_name():
    assert set(EXPECTED) == set(SCHEDULERS) == set(SCHEDULER_NAMES)
    assert set(GOLDEN) == set(SCHEDULERS) - {"Flow Euler"}  # not for a diffusion model
    # The goldens themselves tell the samplers apart (but DDIM, see above).
    for a, b in itertools.combinations(GOLDEN, 2):
        if {a, b} not in SAME_IMAGE:
            gap = np.abs(np.subtract(GOLDEN[a], GOLDEN[b])).max()
            assert gap > 2 * TOLERANCE, (a, b, gap)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_name_builds_its_diffusers_class_and_config(name):
    cls_name, values = EXPECTED[name]
    base = _base_config()
    if name == "Flow Euler":
        with pytest.raises(InvalidRequestError, match="does not work with this diffusion"):
            make_scheduler(name, base)
        base = {**base, "_class_name": "FlowMatchEulerDiscreteScheduler"}
    scheduler = make_scheduler(name, base)
    assert type(scheduler).__name__ == cls_name
    config = scheduler.config
    for key, value in values.items():
        assert config[key] == value, (name, key, config[key])
    # The model's training schedule is kept, whatever the sampler.
    if name != "Flow Euler":
        for key in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule",
                    "prediction_type", "timestep_spacing", "steps_offset"):
            if key in config:
                assert config[key] == base[key], (name, key)


@pytest.fixture(scope="module")
def shipped_engine():
    from studio.engine.engine import Engine

    return Engine(device="cpu", dtype="float32", embedded_dir=SHIPPED, hf_cache=False)


def _request(name: str) -> GenerationRequest:
    return GenerationRequest(PROMPT, model="studio-tiny-diffusion", width=64, height=64,
                             steps=4, seed=7, guidance=5.0, scheduler=name)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_each_scheduler_draws_its_golden_slice(shipped_engine, name):
    image = shipped_engine.generate(_request(name)).images[0]
    got = image[SLICE].astype(int)
    assert np.abs(got - np.array(GOLDEN[name])).max() <= TOLERANCE, (name, got.tolist())


def test_flow_euler_on_a_diffusion_model_is_a_clear_error(shipped_engine):
    with pytest.raises(InvalidRequestError, match="try Euler"):
        shipped_engine.generate(_request("Flow Euler"))


if __name__ == "__main__":  # print the golden table from the current code
    from studio.engine.engine import Engine

    engine = Engine(device="cpu", dtype="float32", embedded_dir=SHIPPED, hf_cache=False)
    for scheduler_name in (n for n in SCHEDULERS if n != "Flow Euler"):
        img = engine.generate(_request(scheduler_name)).images[0]
        print(f'    "{scheduler_name}": {img[SLICE].tolist()},')
