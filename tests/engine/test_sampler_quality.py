"""Every scheduler draws what the prompt asks, from 4 steps (or its stated minimum) on.

On the embedded model the judge is the portrait oracle (studio.core.portraits.oracle), which
reads hair and background colour where the procedural renderer always paints them: it was
built from the drawing code, not trained, so it cannot share the model's mistakes. Baseline:
Euler follows both prompts on every seed at 4, 8 and 20 steps; a broken scheduler reads as
the wrong colour (DPM++ 2M Karras at 4 steps used to read white/red for red/blue).
On the tiny random SD 1.x and SDXL models nothing can follow a prompt: there each scheduler
must give finite pixels that are not one flat colour, and the same image twice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from studio.core.jobs.request import GenerationRequest
from studio.core.portraits.oracle import read_portrait
from studio.core.samplers import SCHEDULER_MIN_STEPS, SCHEDULER_NAMES, steps_warning

SHIPPED = Path(__file__).resolve().parents[2] / "resources" / "models"
DIFFUSION_NAMES = tuple(n for n in SCHEDULER_NAMES if n != "Flow Euler")
# The model was trained on captions that name the glasses too; without them it reads
# "on a blue background" as purple under every scheduler (a prompt matter, not a sampler's).
PROMPTS = (("a person with red hair and no glasses on a blue background", "red", "blue"),
           ("a person with black hair and no glasses on a yellow background", "black", "yellow"))


def _least(name: str) -> int:
    return max(4, SCHEDULER_MIN_STEPS.get(name, 4))


@pytest.fixture(scope="module")
def shipped_engine():
    from studio.engine.engine import Engine

    return Engine(device="cpu", dtype="float32", embedded_dir=SHIPPED, hf_cache=False)


def _reads(engine, name: str, steps: int, prompt: str, seed: int,
           count: int = 1) -> list[tuple[str, str]]:
    """(hair, background) read from images of seeds ``seed`` .. ``seed + count - 1``, made
    as one batch (image i of a batch has seed + i's noise, as if it were made alone)."""
    images = engine.generate(GenerationRequest(
        prompt, model="studio-tiny-diffusion", width=64, height=64, steps=steps, seed=seed,
        guidance=5.0, scheduler=name, batch_size=count)).images
    return [(r.hair, r.background) for r in map(read_portrait, images)]


# Since the mouth fine-tune of studio-tiny-diffusion (issue 27) the blue background of
# PROMPTS[0] read purple at 4 steps on seed 1 or 2 with Euler a, DPM++ 2S a, DDPM and DDIM;
# since the autoencoder's mouth fine-tune and the UNet's on its latents (2026-12-07) all of
# them draw it blue again, and these marks are gone. What that retrain moved instead: with
# DPM++ 3M SDE Karras at 8 steps (its stated minimum), seed 2's yellow background comes out
# pink, half-washed (yellow at 12 and 20 steps, and on seeds 1 and 3). Marked so that a
# model that fixes it is noticed (strict).
_PINK_AT_8 = pytest.mark.xfail(strict=True, reason="issue 27: since the autoencoder's mouth "
                               "fine-tune, seed 2's yellow background comes out pink at 8 "
                               "steps of this stochastic sampler (yellow at 12 and 20)")
MISSED_AT = {("DPM++ 3M SDE Karras", 8)}


@pytest.mark.parametrize("name", DIFFUSION_NAMES)
def test_each_scheduler_follows_the_prompt_at_its_fewest_steps(shipped_engine, name):
    _, hair, background = PROMPTS[0]
    assert _reads(shipped_engine, name, _least(name), PROMPTS[0][0], 1) == [(hair, background)]


# Each scheduler at 4, 8 and 20 steps, or at its stated minimum where that is more (the
# UI and the CLI say so below it; test_a_scheduler_below_its_minimum_steps_says_so checks that).
AT_STEPS = sorted({(name, max(steps, SCHEDULER_MIN_STEPS.get(name, 0)))
                   for name in DIFFUSION_NAMES for steps in (4, 8, 20)})


@pytest.mark.models
@pytest.mark.parametrize(("name", "steps"), [pytest.param(*a, marks=_PINK_AT_8)
                                              if a in MISSED_AT else a for a in AT_STEPS])
def test_each_scheduler_follows_both_prompts_at_4_8_and_20_steps(shipped_engine, name, steps):
    wrong = [(seed, prompt, got) for prompt, hair, background in PROMPTS
             for seed, got in enumerate(_reads(shipped_engine, name, steps, prompt, 1, 3), 1)
             if got != (hair, background)]
    assert not wrong, wrong


def test_a_scheduler_below_its_minimum_steps_says_so_in_one_line():
    for name, least in SCHEDULER_MIN_STEPS.items():
        assert name in SCHEDULER_NAMES
        assert steps_warning(name, least) == ""
        line = steps_warning(name, least - 1)
        assert name in line and str(least) in line and "\n" not in line
    assert steps_warning("Euler", 1) == ""


# Schedulers that add fresh noise at each step (ancestral, SDE, DDPM, the few-step ones).
STOCHASTIC = tuple(n for n in DIFFUSION_NAMES
                   if n.endswith((" a", " a Karras")) or "SDE" in n or " 2S a" in n
                   or n in ("DDPM", "LCM", "TCD", "Restart"))


@pytest.mark.parametrize("kind", ("sd1", "sdxl"))
def test_each_scheduler_draws_a_deterministic_finite_image_on_tiny_sd_models(
        engine, tiny_sd1_dir, tiny_sdxl_dir, kind):
    model = tiny_sd1_dir if kind == "sd1" else tiny_sdxl_dir
    for name in DIFFUSION_NAMES:
        request = GenerationRequest("a photo of a cat", model=str(model), width=64, height=64,
                                    steps=4, seed=3, guidance=5.0, scheduler=name)
        first = engine.generate(request).images[0]
        assert np.isfinite(first.astype(float)).all(), name
        assert first.std() > 1.0, (name, "one flat colour")
        if name in STOCHASTIC:  # the ones that draw noise at each step: seeded, so repeatable
            again = engine.generate(request).images[0]
            assert np.array_equal(first, again), (name, "not deterministic")
