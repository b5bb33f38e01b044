"""SliderBench's oracle figures on portraits whose truth is known: the renderer's own
drawings stand in for a slider's images, so each figure has an answer to check."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from studio.bench.sliderbench import VALUES, SliderResult, format_table, oracle_score, score_slider
from studio.core.portraits.attributes import sample_attributes
from studio.core.portraits.render import render_portrait


def _portraits(glasses: list[str], seed: int = 5) -> np.ndarray:
    """One portrait per entry, the same people every call, each with the glasses given."""
    out = []
    for i, g in enumerate(glasses):
        attrs = sample_attributes(np.random.default_rng((seed, i)))
        out.append(render_portrait(dataclasses.replace(attrs, glasses=g),
                                   np.random.default_rng((seed, i, 1))))
    return np.stack(out)


def _glasses_slider(at_zero: list[str], at_plus: str, at_minus: str) -> SliderResult:
    n = len(at_zero)
    images = {v: _portraits(at_zero) for v in VALUES}
    images[2.0] = _portraits([at_plus] * n)
    images[-2.0] = _portraits([at_minus] * n)
    return oracle_score(SliderResult("diffusion", "glasses", "glasses", n=n), images)


def test_a_slider_that_adds_and_removes_scores_both_ways():
    res = _glasses_slider(["none", "round", "none", "square"], "round", "none")
    assert res.oracle_success == 1.0  # both portraits without glasses have them at 2
    assert res.oracle_removal == 1.0  # both with glasses lose them at -2
    assert res.oracle_kept == 1.0  # hair, background and mouth are the same people's


def test_a_slider_that_only_keeps_what_was_there_fails_both_ways():
    res = _glasses_slider(["none", "round", "none", "square"], "none", "round")
    assert res.oracle_success == 0.0 and res.oracle_removal == 0.0


def test_with_nothing_to_add_to_the_success_is_not_measured_rather_than_zero():
    # All held-out prompts of a short bench may name glasses: then there is no image the
    # slider could add them to, and the table says so instead of printing 0 %.
    res = _glasses_slider(["round", "square", "round"], "round", "none")
    assert math.isnan(res.oracle_success) and res.oracle_removal == 1.0


@pytest.fixture(scope="module")
def scorer():
    from studio.engine.latent_models import CLASSIFIER, AttributeScorer

    return AttributeScorer(Path(__file__).resolve().parents[2] / "resources" / "models"
                           / CLASSIFIER)


def test_the_table_says_n_a_where_there_was_nothing_to_add_to(scorer):
    images = {v: _portraits(["round", "square", "round"]) for v in VALUES}
    images[-2.0] = _portraits(["none"] * 3)
    res = score_slider(scorer, "diffusion", "glasses", "glasses", images)
    assert math.isnan(res.success) and math.isnan(res.oracle_success)
    assert res.removal == res.oracle_removal == 1.0  # the classifier agrees on these
    table = format_table({"sliders": [res.to_dict()], "diffusion_oracle_removal": 1.0})
    row = next(line for line in table.splitlines() if line.startswith("diffusion glasses"))
    assert row.count("n/a") == 2 and row.rstrip().endswith("100.0%")


def test_the_json_file_holds_null_where_nothing_was_measured():
    import json

    from studio.cli.bench_sliders import json_safe

    figures = {"edit_success": math.nan, "sliders": [{"removal": 1.0, "gain": {"2.0": math.nan}}]}
    text = json.dumps(json_safe(figures), allow_nan=False)
    assert json.loads(text) == {"edit_success": None,
                                "sliders": [{"removal": 1.0, "gain": {"2.0": None}}]}
