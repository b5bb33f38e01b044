"""Sliders on the DiT families (issue 24 point 4), on the tiny random folders.

Prompt sliders move the embeddings that the family's own ``encode_prompt`` makes (and the
pooled ones where it has them: SD3, Flux); seed variation and the A<->B slider move the
starting noise in the pipeline's own layout (SD3's 16 channels, Flux's packed latents).
Each is exact at 0 (the same pixels as without it) and grows with its value; a seed change
re-runs no text encoder (the embeddings are cached).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_dit_families import _req, built_families  # tests/engine is on sys.path

from studio.core.errors import InvalidRequestError
from studio.core.formats.metadata import read_settings
from studio.core.jobs.request import GenerationRequest, SliderValue
from studio.core.sliders.specs import (
    apply_sliders,
    interpolation_slider,
    slider_value,
    starter_sliders,
)
from studio.engine.models.families import check_request, detect_family, spec_for

SLIDER_FAMILIES = ("pixart", "sd3", "flux", "sana")  # their text reaches the pixels
# AuraFlow's tiny random transformer hardly reads its text (two different prompts differ by
# 0.001 of a level on average), so it is checked for exactness and effect, not growth.
ALL = (*SLIDER_FAMILIES, "auraflow")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return built_families(tmp_path_factory)  # shared with test_dit_families


@pytest.fixture(scope="module")
def engine(root, tmp_path_factory):
    from studio.engine.engine import Engine

    return Engine(device="cpu", dtype="float32", model_dirs=[root],
                  embedded_dir=tmp_path_factory.mktemp("none"), hf_cache=False)


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize("kind", ALL)
def test_prompt_slider_is_exact_at_zero_and_grows_with_its_value(engine, root, kind):
    req = _req(root, kind)
    base = engine.generate(req).images[0]
    spec = starter_sliders()["smile"]
    # Recorded at 0 (a file or project keeps it): the engine's path, the same pixels.
    at_zero = engine.generate(req.replace(sliders=(slider_value(spec, 0.0),)))
    assert at_zero.request.sliders and np.array_equal(at_zero.images[0], base)
    diffs = [_diff(engine.generate(apply_sliders(req, [(spec, v)])).images[0], base)
             for v in (0.5, 1.0, 2.0)]
    assert diffs[0] > 0, "the slider did not change the image"
    if kind in SLIDER_FAMILIES:
        assert diffs[0] < diffs[1] < diffs[2], diffs


@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_directions_move_the_pooled_embeddings_too(engine, root, kind):
    req = _req(root, kind)
    loaded = engine.load(req.model)
    spec = starter_sliders()["hair-red"]
    slider = apply_sliders(req, [(spec, 1.0)]).sliders[0]
    delta = engine.prompt_delta(loaded, req, slider)
    assert delta.pooled is not None and float(delta.pooled.abs().max()) > 0
    assert delta.tokens.shape[1:] == engine.conditioning(loaded, req).kwargs[
        "prompt_embeds"].shape[1:]


@pytest.mark.parametrize("kind", ["sd3", "sana", "pixart", "flux"])
def test_a_late_slider_runs_where_the_callback_takes_it_and_from_the_start_elsewhere(
        engine, root, kind):
    """hair-red starts after 15 % of the steps: the step callbacks of SD3 (tokens and pooled)
    and Sana take the embeddings late; PixArt has no such callback and Flux's has no pooled
    embeddings, so there it acts from the first step."""
    req = _req(root, kind, steps=6)
    spec = starter_sliders()["hair-red"]
    assert spec.start > 0
    base = engine.generate(req).images[0]
    late = engine.generate(apply_sliders(req, [(spec, 2.0)])).images[0]
    early = engine.generate(apply_sliders(req, [(replace(spec, start=0.0), 2.0)])).images[0]
    assert _diff(late, base) > 0
    assert np.array_equal(late, early) == (kind in ("pixart", "flux"))


def test_the_written_file_records_a_slider_that_acted(engine, root, tmp_path):
    from studio.core.formats.metadata import save_image

    req = apply_sliders(_req(root, "sd3"), [(starter_sliders()["smile"], 1.0)])
    res = engine.generate(req)
    out = tmp_path / "slid.png"
    save_image(out, res.images[0], res.request)
    recorded = read_settings(out).request
    assert recorded is not None and recorded.sliders and recorded.sliders[0].value == 1.0
    again = engine.generate(recorded.replace(model=req.model)).images[0]
    assert np.array_equal(again, res.images[0])  # "Use settings" redraws the same edit


@pytest.mark.parametrize("kind", ["sd3", "flux", "sana"])
def test_seed_interpolation_is_exact_at_both_ends_in_the_pipelines_latent_layout(
        engine, root, kind):
    a = engine.generate(_req(root, kind, seed=3)).images[0]
    b = engine.generate(_req(root, kind, seed=11)).images[0]
    spec = interpolation_slider(11)

    def at(v: float) -> np.ndarray:
        return engine.generate(apply_sliders(_req(root, kind, seed=3), [(spec, v)])).images[0]

    at_zero = engine.generate(_req(root, kind, seed=3).replace(
        sliders=(slider_value(spec, 0.0),))).images[0]
    assert np.array_equal(at_zero, a)
    assert np.array_equal(at(1.0), b)  # all the way: seed B's own image
    mid = at(0.5)
    assert not np.array_equal(mid, a) and not np.array_equal(mid, b)


@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_variation_at_strength_zero_is_the_seeds_own_image(engine, root, kind):
    base = engine.generate(_req(root, kind)).images[0]
    zero = engine.generate(_req(root, kind, variation_seed=9, variation_strength=0.0))
    assert np.array_equal(zero.images[0], base)
    near = _diff(engine.generate(_req(root, kind, variation_seed=9,
                                      variation_strength=0.1)).images[0], base)
    far = _diff(engine.generate(_req(root, kind, variation_seed=9,
                                     variation_strength=0.6)).images[0], base)
    assert 0 < near < far


def test_interpolation_with_a_variation_on_flux_keeps_the_packed_layout(engine, root):
    req = _req(root, "flux", variation_seed=9, variation_strength=0.3)
    varied = engine.generate(req).images[0]
    spec = interpolation_slider(11)
    at_zero = req.replace(sliders=(slider_value(spec, 0.0),))
    assert np.array_equal(engine.generate(at_zero).images[0], varied)
    moved = engine.generate(apply_sliders(req, [(spec, 0.5)])).images[0]
    assert moved.shape == varied.shape and not np.array_equal(moved, varied)


@pytest.mark.parametrize("kind", ["sd3", "pixart"])
def test_a_seed_change_runs_no_text_encoder(engine, root, kind):
    """The embeddings are cached per model and prompt: only the first request encodes."""
    req = _req(root, kind, seed=21)
    loaded = engine.load(req.model)
    calls: list[str] = []
    encoders = [(n, m) for n, m in loaded.pipe.components.items()
                if n.startswith("text_encoder") and m is not None]
    hooks = [m.register_forward_hook(lambda *_a, n=n: calls.append(n)) for n, m in encoders]
    try:
        engine.generate(req.replace(prompt="a cat with glasses"))
        first = len(calls)
        for seed in (22, 23):
            engine.generate(req.replace(prompt="a cat with glasses", seed=seed))
    finally:
        for h in hooks:
            h.remove()
    assert first > 0 and len(calls) == first


def test_a_family_without_sliders_refuses_them_in_one_line():
    chroma = detect_family({"_class_name": "ChromaPipeline"}, None,
                           {"_class_name": "FlowMatchEulerDiscreteScheduler"})
    assert not spec_for(chroma).prompt_sliders and spec_for("sd3").prompt_sliders
    req = GenerationRequest("a cat", width=64, height=64,
                            sliders=(SliderValue("smile", 1.0, "prompt"),))
    with pytest.raises(InvalidRequestError) as err:
        check_request(req, chroma)
    assert "smile" in err.value.message and "\n" not in err.value.message
    check_request(req, "sd3")  # declared: runs
