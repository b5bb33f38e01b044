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

# Golden slices: image[24:27, 21:24, 0] (red channel, uint8) of PROMPT, seed 7, 4 steps,
# guidance 5, 64 x 64, CPU float32, on the shipped studio-tiny-diffusion through the
# engine, made with `python tests/engine/test_schedulers.py`, which prints this table again:
# rerun it when the embedded diffusion weights change, and choose the slice again where the
# samplers differ most (on the weights of 2026-12-06 any two that are not in SAME_IMAGE
# differ by 11 levels or more somewhere in this slice; the old one at [43:46, 27:30] told
# Euler from LMS by 5 levels only). DDIM with eta 0 takes the same ODE step as Euler and
# draws the same image (its class tells it apart above).
PROMPT = "a person with red hair and round glasses on a blue background"
SLICE = (slice(24, 27), slice(21, 24), 0)
TOLERANCE = 3  # uint8 levels, for other CPUs and BLAS builds
GOLDEN: dict[str, list[list[int]]] = {
    "Euler": [[45, 117, 168], [89, 201, 181], [114, 207, 145]],
    "Euler a": [[106, 173, 92], [89, 149, 77], [85, 83, 77]],
    "Euler Karras": [[50, 106, 182], [72, 203, 211], [98, 214, 197]],
    "Euler Exponential": [[47, 109, 179], [76, 202, 205], [102, 210, 183]],
    "Heun": [[27, 182, 229], [13, 212, 232], [22, 234, 231]],
    "Restart": [[36, 159, 215], [15, 194, 225], [22, 225, 225]],
    "LMS": [[37, 102, 166], [65, 192, 189], [87, 202, 163]],
    "LMS Karras": [[48, 104, 168], [49, 183, 206], [69, 210, 208]],
    "DPM2": [[165, 157, 181], [133, 171, 201], [84, 209, 218]],
    "DPM2 a": [[15, 142, 165], [21, 180, 196], [27, 206, 216]],
    "DPM2 Karras": [[123, 189, 214], [57, 194, 216], [58, 228, 216]],
    "DPM2 a Karras": [[13, 75, 76], [9, 115, 128], [16, 148, 156]],
    "DPM fast": [[41, 119, 196], [43, 203, 215], [61, 215, 201]],
    "DPM adaptive": [[41, 119, 196], [43, 203, 215], [61, 215, 201]],
    "DPM++ 2M": [[42, 106, 187], [41, 192, 215], [55, 214, 206]],
    "DPM++ 2M Karras": [[60, 105, 166], [47, 132, 206], [37, 199, 213]],
    "DPM++ 2M SDE": [[98, 200, 143], [47, 161, 108], [48, 79, 82]],
    "DPM++ 2M SDE Karras": [[230, 231, 227], [222, 212, 138], [127, 79, 67]],
    "DPM++ 2M SDE Heun": [[89, 199, 145], [43, 165, 115], [46, 81, 96]],
    "DPM++ 3M SDE": [[98, 200, 143], [47, 161, 108], [48, 79, 82]],
    "DPM++ 3M SDE Karras": [[230, 231, 227], [222, 212, 138], [127, 79, 67]],
    "DPM++ 3M SDE Exponential": [[205, 222, 163], [164, 180, 93], [102, 69, 95]],
    "DPM++ SDE": [[40, 109, 182], [57, 196, 207], [77, 209, 188]],
    "DPM++ SDE Karras": [[62, 109, 182], [46, 179, 211], [55, 214, 211]],
    "DPM++ 2S a": [[116, 200, 132], [100, 189, 85], [99, 115, 58]],
    "DPM++ 2S a Karras": [[91, 206, 198], [66, 226, 177], [62, 208, 92]],
    "DDIM": [[45, 115, 168], [88, 201, 182], [112, 207, 147]],
    "DDPM": [[105, 173, 93], [88, 149, 77], [84, 83, 77]],
    "PLMS": [[255, 255, 255], [255, 255, 255], [226, 255, 255]],
    "PNDM": [[45, 97, 143], [23, 113, 204], [24, 155, 208]],
    "UniPC": [[59, 104, 178], [43, 185, 220], [44, 223, 220]],
    "DEIS": [[40, 103, 182], [51, 196, 212], [67, 212, 199]],
    "LCM": [[186, 216, 114], [165, 184, 66], [126, 79, 81]],
    "TCD": [[44, 114, 171], [83, 201, 190], [106, 208, 160]],
}


def _base_config() -> dict[str, object]:
    import json

    return json.loads((DIFFUSION / "scheduler" / "scheduler_config.json").read_text())


def test_the_tables_cover_every_name():
    assert set(EXPECTED) == set(SCHEDULERS) == set(SCHEDULER_NAMES)
    assert set(GOLDEN) == set(SCHEDULERS) - {"Flow Euler"}  # not for a diffusion model


def test_the_golden_slices_tell_the_samplers_apart():
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
