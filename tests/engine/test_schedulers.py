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

# Golden slices: image[23:26, 45:48, 2] (blue channel, uint8) of PROMPT, seed 7, 4 steps,
# guidance 5, 64 x 64, CPU float32, on the shipped studio-tiny-diffusion through the
# engine, made with `python tests/engine/test_schedulers.py`, which prints this table again:
# rerun it when the embedded diffusion weights change, and choose the slice again where the
# samplers differ most (on the weights after the mouth fine-tune any two that are not in
# SAME_IMAGE differ by 10 levels or more somewhere in this slice, the most any 3x3 slice
# of one channel gives; the slice of the weights before it, [24:27, 21:24] of the red
# channel, told some apart by 3 levels only). DDIM with eta 0 takes the same ODE step as
# Euler and draws the same image (its class tells it apart above).
PROMPT = "a person with red hair and round glasses on a blue background"
SLICE = (slice(23, 26), slice(45, 48), 2)
TOLERANCE = 3  # uint8 levels, for other CPUs and BLAS builds
GOLDEN: dict[str, list[list[int]]] = {
    "Euler": [[0, 9, 75], [14, 112, 200], [52, 209, 243]],
    "Euler a": [[16, 108, 222], [68, 181, 240], [82, 207, 239]],
    "Euler Karras": [[6, 0, 5], [12, 29, 94], [26, 46, 148]],
    "Euler Exponential": [[0, 1, 29], [9, 67, 147], [39, 133, 217]],
    "Heun": [[12, 7, 24], [14, 69, 151], [42, 169, 206]],
    "Restart": [[10, 12, 8], [14, 21, 47], [56, 62, 102]],
    "LMS": [[2, 9, 76], [18, 118, 203], [62, 217, 242]],
    "LMS Karras": [[8, 8, 0], [15, 18, 34], [31, 21, 54]],
    "DPM2": [[13, 16, 14], [19, 20, 19], [70, 78, 29]],
    "DPM2 a": [[143, 121, 109], [133, 117, 107], [125, 112, 105]],
    "DPM2 Karras": [[8, 12, 17], [12, 16, 17], [65, 61, 44]],
    "DPM2 a Karras": [[28, 35, 104], [96, 128, 235], [98, 162, 247]],
    "DPM fast": [[7, 4, 29], [14, 89, 176], [43, 178, 230]],
    "DPM adaptive": [[7, 4, 29], [14, 89, 176], [43, 178, 230]],
    "DPM++ 2M": [[6, 3, 27], [13, 82, 167], [41, 168, 228]],
    "DPM++ 2M Karras": [[4, 10, 9], [20, 18, 25], [60, 28, 32]],
    "DPM++ 2M SDE": [[47, 142, 219], [170, 237, 239], [177, 238, 237]],
    "DPM++ 2M SDE Karras": [[6, 18, 106], [38, 28, 96], [58, 43, 100]],
    "DPM++ 2M SDE Heun": [[65, 172, 229], [210, 232, 232], [214, 229, 231]],
    "DPM++ 3M SDE": [[47, 142, 219], [170, 237, 239], [177, 238, 237]],
    "DPM++ 3M SDE Karras": [[6, 18, 106], [38, 28, 96], [58, 43, 100]],
    "DPM++ 3M SDE Exponential": [[17, 49, 192], [104, 99, 190], [122, 107, 189]],
    "DPM++ SDE": [[3, 4, 46], [13, 98, 186], [47, 190, 237]],
    "DPM++ SDE Karras": [[8, 11, 3], [20, 17, 27], [43, 20, 35]],
    "DPM++ 2S a": [[5, 29, 138], [25, 58, 120], [34, 84, 116]],
    "DPM++ 2S a Karras": [[21, 5, 0], [24, 26, 30], [18, 30, 33]],
    "DDIM": [[0, 9, 75], [14, 112, 199], [52, 208, 243]],
    "DDPM": [[16, 108, 221], [69, 184, 240], [84, 211, 239]],
    "PLMS": [[37, 51, 80], [37, 57, 90], [50, 77, 113]],
    "PNDM": [[10, 13, 4], [22, 22, 32], [42, 22, 45]],
    "UniPC": [[7, 2, 14], [12, 67, 140], [41, 151, 217]],
    "DEIS": [[2, 2, 40], [11, 87, 176], [40, 171, 231]],
    "LCM": [[13, 23, 139], [8, 17, 60], [29, 62, 62]],
    "TCD": [[0, 7, 68], [12, 103, 192], [48, 196, 240]],
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
