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

# Golden slices: image[29:32, 25:28, 0] (red channel, uint8) of PROMPT, seed 7, 4 steps,
# guidance 5, 64 x 64, CPU float32, on the shipped studio-tiny-diffusion through the
# engine, made with `python tests/engine/test_schedulers.py`, which prints this table again:
# rerun it when the embedded diffusion weights change, and choose the slice again where the
# samplers differ most (on the weights after the autoencoder's mouth fine-tune any two that
# are not in SAME_IMAGE differ by 13 levels or more somewhere in this slice, the most any
# 3x3 slice of one channel gives; the slice of the weights before it, [23:26, 45:48] of the
# blue channel, told Euler Exponential and DPM++ 2M apart by 5 levels only). DDIM with eta 0
# takes the same ODE step as Euler and draws the same image (its class tells it apart above).
PROMPT = "a person with red hair and round glasses on a blue background"
SLICE = (slice(29, 32), slice(25, 28), 0)
TOLERANCE = 3  # uint8 levels, for other CPUs and BLAS builds
GOLDEN: dict[str, list[list[int]]] = {
    "Euler": [[14, 44, 120], [142, 18, 21], [180, 155, 38]],
    "Euler a": [[47, 69, 60], [13, 12, 14], [74, 47, 48]],
    "Euler Karras": [[60, 24, 116], [216, 65, 5], [209, 215, 87]],
    "Euler Exponential": [[37, 28, 118], [192, 47, 10], [198, 199, 77]],
    "Heun": [[120, 2, 93], [253, 141, 2], [241, 245, 157]],
    "Restart": [[0, 17, 102], [76, 0, 0], [246, 218, 77]],
    "LMS": [[2, 65, 146], [73, 7, 25], [184, 157, 77]],
    "LMS Karras": [[97, 7, 118], [221, 68, 0], [213, 219, 147]],
    "DPM2": [[133, 4, 7], [255, 107, 0], [255, 255, 86]],
    "DPM2 a": [[116, 12, 66], [255, 206, 62], [255, 254, 254]],
    "DPM2 Karras": [[173, 21, 119], [255, 141, 4], [247, 251, 111]],
    "DPM2 a Karras": [[255, 255, 255], [255, 255, 255], [255, 255, 255]],
    "DPM fast": [[21, 10, 118], [198, 44, 4], [206, 210, 111]],
    "DPM adaptive": [[21, 10, 118], [198, 44, 4], [206, 210, 111]],
    "DPM++ 2M": [[37, 15, 116], [208, 52, 4], [207, 213, 94]],
    "DPM++ 2M Karras": [[155, 1, 64], [241, 131, 0], [233, 237, 201]],
    "DPM++ 2M SDE": [[16, 20, 19], [24, 18, 27], [106, 97, 95]],
    "DPM++ 2M SDE Karras": [[5, 2, 4], [70, 57, 57], [183, 179, 176]],
    "DPM++ 2M SDE Heun": [[8, 10, 10], [43, 39, 55], [104, 99, 97]],
    "DPM++ 3M SDE": [[16, 20, 19], [24, 18, 27], [106, 97, 95]],
    "DPM++ 3M SDE Karras": [[5, 2, 4], [70, 57, 57], [183, 179, 176]],
    "DPM++ 3M SDE Exponential": [[1, 0, 0], [84, 81, 90], [158, 152, 148]],
    "DPM++ SDE": [[24, 35, 121], [180, 30, 12], [198, 190, 52]],
    "DPM++ SDE Karras": [[148, 16, 89], [227, 116, 0], [216, 221, 144]],
    "DPM++ 2S a": [[47, 84, 84], [6, 14, 24], [76, 28, 19]],
    "DPM++ 2S a Karras": [[25, 107, 150], [0, 17, 77], [141, 43, 0]],
    "DDIM": [[14, 43, 119], [143, 19, 21], [179, 156, 39]],
    "DDPM": [[47, 69, 60], [13, 12, 14], [74, 47, 48]],
    "PLMS": [[255, 255, 249], [252, 248, 233], [242, 231, 201]],
    "PNDM": [[21, 18, 166], [208, 27, 16], [234, 236, 108]],
    "UniPC": [[85, 12, 94], [226, 96, 0], [213, 220, 116]],
    "DEIS": [[29, 18, 112], [193, 47, 6], [199, 203, 91]],
    "LCM": [[54, 76, 65], [2, 12, 15], [62, 32, 32]],
    "TCD": [[20, 37, 114], [155, 27, 16], [181, 169, 49]],
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
