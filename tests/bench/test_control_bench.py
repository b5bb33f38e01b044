"""``studio bench``'s control section (smoke: the tiny model stands in for SD 1.5): the
ratio is produced and printed, and the ControlNet it times really acted (no timed asserts)."""

from __future__ import annotations

import json
import math

import pytest

from studio.bench.suite import format_table


@pytest.fixture(scope="module")
def control_figures(smoke):
    """The control section of the shared ``studio bench --smoke`` run (tests/bench/conftest.py:
    every section, the tiny model standing in for SD 1.5, as ``--only control`` times it)."""
    return smoke[1]


@pytest.mark.models
def test_control_section_gives_the_step_ratio_of_a_controlnet_that_acted(control_figures):
    fig = control_figures
    ratio = fig["control_step_ratio_sd15"]
    assert isinstance(ratio, float) and math.isfinite(ratio) and ratio > 0
    c = fig["control_sd15"]
    assert c["ratio"] == ratio == c["control_step_s"] / c["step_s"]
    # Both sides were timed on real steps (steps after the first, warm-up left out).
    assert c["steps"] >= 3 and c["step_s"] > 0 and c["control_step_s"] > 0
    # The ControlNet was the model's shape and was applied: the same seed gives another image.
    assert c["controlnet_params"] > 0.3 * c["unet_params"]
    assert c["image_changed"] and c["mean_pixel_diff"] > 0
    json.dumps(fig, default=str)  # what --json writes


@pytest.mark.models
def test_control_row_is_in_the_table_with_its_target(control_figures):
    table = format_table(control_figures)
    row = next(line for line in table.splitlines() if line.startswith("control step"))
    assert "(tiny stand-in)" in row and "one ControlNet" in row
    assert f"{control_figures['control_step_ratio_sd15']:.2f}x" in row and "<= 1.60" in row
