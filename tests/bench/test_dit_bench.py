"""``studio bench``'s DiT section (issue 24 point 5): the embedded ``studio-tiny-dit`` step
beside the tiny UNet's, and the engine's overhead against a bare diffusers call on the same
modules, which draws the same pixels (no timed asserts: the figures are printed)."""

from __future__ import annotations

import json
import math

import pytest

from studio.bench.suite import PLANS, format_table, run_bench


@pytest.fixture(scope="module")
def dit_figures(tmp_path_factory):
    cache = tmp_path_factory.mktemp("bench-cache")
    return run_bench(PLANS["smoke"], cache=cache, sections=("dit",), log=lambda _t: None)


@pytest.mark.models
def test_dit_section_compares_the_dit_step_and_a_bare_diffusers_call(dit_figures):
    fig = dit_figures
    o = fig["overhead_dit"]
    assert fig["overhead_ratio_dit"] == o["ratio"] and math.isfinite(o["ratio"]) and o["ratio"] > 0
    assert o["same_pixels"]  # the app's path and bare diffusers draw the same image
    assert o["step_s"] > 0 and o["tiny_step_s"] > 0
    assert o["step_ratio_vs_tiny"] == pytest.approx(o["step_s"] / o["tiny_step_s"])
    json.dumps(fig, default=str)  # what --json writes


@pytest.mark.models
def test_dit_rows_are_in_the_table_with_the_overhead_target(dit_figures):
    table = format_table(dit_figures)
    over = next(line for line in table.splitlines() if line.startswith("overhead tiny DiT"))
    assert f"{dit_figures['overhead_ratio_dit']:.3f}x" in over and "<= 1.03" in over
    step = next(line for line in table.splitlines()
                if line.startswith("tiny DiT step vs tiny UNet step"))
    assert f"{dit_figures['overhead_dit']['step_ratio_vs_tiny']:.2f}x" in step


@pytest.mark.models
def test_dit_section_sets_the_collapsed_zero_tokens_beside_diffusers_as_shipped(dit_figures):
    """The engine runs SD 3's 256 zero "T5" tokens as one (``studio.engine.joint_context``):
    the overhead is against the bare call with the same collapse (same pixels, above), and a
    row says what that gives against diffusers' own call, with how far apart the pixels are."""
    o = dit_figures["overhead_dit"]
    assert o["collapsed_context"] is True
    assert o["shipped_s"] > 0 and o["vs_shipped"] == pytest.approx(o["app_s"] / o["shipped_s"])
    assert o["shipped_max_pixel_diff"] <= 1 and o["shipped_pixels_apart"] <= 0.001
    row = next(line for line in format_table(dit_figures).splitlines()
               if line.startswith("tiny DiT vs diffusers as shipped"))
    assert f"{o['vs_shipped']:.2f}x" in row and "run as one" in row
