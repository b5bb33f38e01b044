"""The SHIPPED ``studio-tiny-dit`` (a diffusion transformer in the SD3 folder format) does
what its card says: diffusers loads it bare, the studio draws the same pixels, and it follows
prompts as people write them, judged by the oracle (``studio.core.portraits.oracle``)."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch

from studio.engine.nets.shipped import model_dir
from studio.training.common import DEFAULT_OUT
from studio.training.evaluate import DIT, dit_recommended, eval_partial_prompts

pytestmark = pytest.mark.models

ADHERENCE_TARGET = 0.85  # issue 24 point 1: per attribute, as studio-tiny-diffusion


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


@functools.lru_cache(maxsize=1)
def _pipe():
    from studio.training.train_dit import load_pipeline

    return load_pipeline(model_dir(DIT))


def test_dit_folder_is_a_small_sd3_folder_with_a_card() -> None:
    folder = model_dir(DIT)
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusion3Pipeline"
    assert index["transformer"] == ["diffusers", "SD3Transformer2DModel"]
    assert index["scheduler"] == ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    assert index["text_encoder_3"] == [None, None]  # no T5: the pipeline feeds zeros
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < 15e6, f"{size / 1e6:.1f} MB"
    assert list(folder.rglob("*.safetensors")) and not list(folder.rglob("*.bin"))
    assert (folder / "README.md").is_file() and (folder / "contact_sheet.png").is_file()
    rec = dit_recommended(DEFAULT_OUT)
    assert rec["height"] == rec["width"] == 64 and rec["scheduler"].startswith("FlowMatch")


PROMPT = "a person with red hair and glasses on a blue background"


@functools.lru_cache(maxsize=1)
def _engine():
    from studio.engine.engine import Engine

    return Engine(device="cpu", dtype="float32", model_dirs=[], embedded_dir=DEFAULT_OUT,
                  hf_cache=False)


def _request(**kw):
    from studio.core.jobs.request import GenerationRequest

    return GenerationRequest(**{**dict(prompt=PROMPT, model=DIT, scheduler="Flow Euler",
                                       seed=11, steps=6, guidance=5.0, width=64, height=64),
                                **kw})


@torch.no_grad()
def test_the_studio_draws_the_same_pixels_as_bare_diffusers() -> None:
    """The same request through the studio's engine (family sd3, Flow Euler) and through
    ``StableDiffusion3Pipeline`` with the same seed, on as many CPU threads as the engine
    gives this model (a sum split another way differs in its last bits on an AVX2-only CPU).
    The engine runs the pipeline's 256 identical zero "T5" tokens as one
    (``studio.engine.joint_context``): the bare call with that collapse gives identical
    pixels, and the bare call as diffusers ships it the same to rounding (one level at most,
    on at most 0.1 % of the values); the transformer's blocks see 78 context tokens, not 333."""
    from studio.engine.joint_context import identical_context_once
    from studio.engine.tuning import cpu_threads_for, torch_threads

    prompt = PROMPT
    info = _engine().resolve_model(DIT)
    assert info.family == "sd3" and info.kind == "diffusion"
    studio_image = _engine().generate(_request()).images[0]
    pipe = _pipe()

    def bare() -> np.ndarray:
        with torch_threads(cpu_threads_for(pipe, _engine().choice)):
            out = pipe(prompt, num_inference_steps=6, guidance_scale=5.0, height=64, width=64,
                       generator=[torch.Generator("cpu").manual_seed(11)], output_type="np")
        return (np.clip(out.images[0], 0, 1) * 255).round().astype(np.uint8)

    seen: list[int] = []
    hook = pipe.transformer.transformer_blocks[0].register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(kw["encoder_hidden_states"].shape[1]), with_kwargs=True)
    try:
        plain = bare()
        with identical_context_once(pipe.transformer):
            collapsed = bare()
    finally:
        hook.remove()
    assert seen == [333] * 6 + [78] * 6
    assert np.array_equal(studio_image, collapsed)
    apart = np.abs(studio_image.astype(int) - plain.astype(int))
    assert apart.max() <= 1 and (apart > 0).mean() <= 0.001, (apart.max(), (apart > 0).sum())


@functools.lru_cache(maxsize=1)
def _partial_figures() -> dict[str, float]:
    """60 held-out prompts as people write them (the same as studio-tiny-diffusion's test),
    20 Flow Euler steps at the card's guidance (3.5), judged by the oracle on the named
    attributes."""
    return eval_partial_prompts(DEFAULT_OUT, 60, ((None, 20),), pipe=_pipe(),
                                rec=dit_recommended(DEFAULT_OUT))


KEY = "FlowMatchEulerDiscrete@20"


def test_dit_follows_hair_and_background_as_people_write_them() -> None:
    """Issue 24's target (85 % per attribute) on the 60 held-out partial prompts of
    studio-tiny-diffusion's test, by the oracle on the named attributes only. Measured on
    the shipped weights (80 minutes with twins from the first step, then 77 minutes of twin
    fine-tunes on the mouth fine-tuned autoencoder's latents): hair 100 % (31 prompts),
    background 100 % (41); studio-tiny-diffusion: 100 / 100 %."""
    figures = _partial_figures()
    for kind in ("hair", "background"):
        assert figures[f"{KEY}/{kind}"] >= ADHERENCE_TARGET, (kind, figures)


def test_dit_follows_glasses_as_people_write_them() -> None:
    """Glasses named ("glasses", "no glasses", "round glasses" ...) are drawn or left out as
    asked, in 85 % of the prompts naming them (the oracle reads the frame's pixels).
    Measured: 94.1 % (32 of 34) on the shipped weights at their recommended guidance 3.5
    (the first DiT: 82.4 %; studio-tiny-diffusion: 100 %)."""
    figures = _partial_figures()
    assert figures[f"{KEY}/glasses"] >= ADHERENCE_TARGET, figures


@pytest.mark.xfail(strict=True, reason="issue 24 point 1: smiling / frowning follow the prompt "
                   "in 76.5 % (26 of 34 prompts; 84.1 % of the eval's 240; 70.6 and 77.5 % "
                   "before the oracle's mouth-line fix, 74.6 % of 240 before its eye fix; before the autoencoder's mouth fine-tune 50 %, the first "
                   "DiT, which ignored the word: 11.8 %): it rose with each fine-tune on the new "
                   "latents (66.7, 69.6, 74.6 % of 240 after 32, 57, 77 minutes; a fourth of 35 "
                   "minutes gave 78.3 % of 240 but 70.6 % here, not shipped), and the DiT's "
                   "training is past its 90-minute budget; remove this mark when a model meets it")
def test_dit_follows_smiling_and_frowning_as_people_write_them() -> None:
    """A prompt saying "smiling" ("frowning") gives a mouth the oracle reads above +0.35
    (below -0.35) in 85 % of the prompts naming it. Measured: 76.5 %."""
    figures = _partial_figures()
    assert figures[f"{KEY}/smile"] >= ADHERENCE_TARGET, figures


def test_seed_variation_on_the_dit_is_exact_at_zero_and_moves_the_image_above() -> None:
    """Issue 24 point 4 (seed variation): strength 0 gives the seed's own image, pixel for
    pixel; strength 0.5 gives another image of the same prompt."""
    plain = _engine().generate(_request()).images[0]
    zero = _engine().generate(_request(variation_seed=99, variation_strength=0.0)).images[0]
    half = _engine().generate(_request(variation_seed=99, variation_strength=0.5)).images[0]
    assert np.array_equal(plain, zero)
    assert np.abs(plain.astype(int) - half.astype(int)).mean() > 2.0
