"""``studio bench``: the smoke run produces every figure with sane values, the control
section's among them (no timed asserts)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from studio.bench.measure import interleaved, percentile
from studio.bench.suite import format_table

KEYS = ["overhead_ratio_tiny", "overhead_ratio_sd15", "cpu_bf16_speedup", "preview_fraction",
        "ui_stall_max_ms", "ui_stall_p99_ms", "startup_window_s", "startup_first_image_s",
        "peak_rss_mb_tiny", "peak_rss_mb_sd15"]


# ``smoke``: the one ``studio bench --smoke --json`` run (tests/bench/conftest.py).


@pytest.mark.models
def test_smoke_run_writes_every_figure_with_sane_values(smoke):
    _, fig = smoke
    for key in KEYS:
        assert key in fig, key
        assert isinstance(fig[key], (int, float)) and math.isfinite(fig[key]), key
    assert fig["overhead_ratio_tiny"] > 0 and fig["overhead_ratio_sd15"] > 0
    assert fig["cpu_bf16_speedup"] > 0
    assert 0 <= fig["preview_fraction"] < 1
    assert 0 <= fig["ui_stall_p99_ms"] <= fig["ui_stall_max_ms"]
    assert 0 < fig["startup_window_s"] < fig["startup_first_image_s"]
    assert fig["peak_rss_mb_tiny"] > 50 and fig["peak_rss_mb_sd15"] > 50
    # The app's path gives the pixels of the bare diffusers call it is compared with.
    assert fig["overhead_tiny"]["same_pixels"]
    assert fig["ui"]["progress_events"] >= 1  # previews reached the window
    assert fig["machine"]["cores"] >= 1 and fig["machine"]["torch"]


@pytest.mark.models
def test_smoke_run_writes_issue_26_keys_measured_or_said_why_not(smoke):
    from studio.bench.suite import ISSUE_KEYS

    stdout, fig = smoke
    sources = fig["issue_sources"]
    for key in ISSUE_KEYS:
        assert key in fig and sources.get(key), key
    # Measured in the smoke plan (on tiny stand-ins, said so): finite and positive.
    for key in ("sd15_unet_step_s", "sd15_image_20_steps_s", "sd15_vae_decode_s",
                "sd15_peak_rss_gb", "sdxl_peak_rss_gb", "turbo_step_s", "first_image_tiny_s",
                "startup_window_s"):
        assert isinstance(fig[key], (int, float)) and math.isfinite(fig[key]) and fig[key] > 0, key
    for key in ("sd15_unet_step_s", "turbo_step_s", "sdxl_peak_rss_gb"):
        assert "stand-in" in sources[key], (key, sources[key])
    # 20 steps cost more than the step they are derived from.
    assert fig["sd15_image_20_steps_s"] > fig["image_sd15"]["step_s"]
    # The ComfyUI run is left out of the smoke plan, and the figure says so: null, not a guess.
    assert fig["peer_comfyui_ratio_sd15"] is None and "smoke" in sources["peer_comfyui_ratio_sd15"]
    assert "issue #26 figures" in stdout and "turbo_step_s" in stdout
    assert fig["machine"]["load_avg_end"] and "bf16 flags" in stdout.splitlines()[0]


@pytest.mark.models
def test_smoke_run_prints_the_table(smoke):
    stdout, fig = smoke
    assert "overhead tiny" in stdout and "UI stall" in stdout and "peak RSS" in stdout
    assert format_table(fig).splitlines()[0] == stdout.splitlines()[0]


def test_unknown_section_is_one_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "studio", "bench", "--only", "warp-drive"],
                          capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 1
    assert "Unknown bench section" in proc.stderr and "Traceback" not in proc.stderr


def test_interleaved_alternates_the_order_and_percentile_is_nearest_rank():
    calls: list[str] = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                        repeats=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert len(times["a"]) == len(times["b"]) == 3
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([5.0] * 10 + [100.0], 0.99) == 100.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux); "
                    "elsewhere ru_maxrss is the only peak there is")
def test_a_child_reports_its_own_peak_memory_not_its_parents():
    import numpy as np

    ballast = np.ones(400 * 2**20, np.uint8)  # the parent holds 400 MB more than the child
    code = "from studio.bench.measure import peak_rss_mb; print(peak_rss_mb())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert float(out) < 200, out
    assert ballast.sum() == 400 * 2**20


# The control section (the tiny model stands in for SD 1.5): the ratio is produced and
# printed, and the ControlNet it times really acted. In this file so that the one smoke run
# serves it (pytest-xdist's loadfile gives each file's worker its own session fixtures).


@pytest.mark.models
def test_control_section_gives_the_step_ratio_of_a_controlnet_that_acted(smoke):
    _, fig = smoke
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
def test_control_row_is_in_the_table_with_its_target(smoke):
    _, fig = smoke
    table = format_table(fig)
    row = next(line for line in table.splitlines() if line.startswith("control step"))
    assert "(tiny stand-in)" in row and "one ControlNet" in row
    assert f"{fig['control_step_ratio_sd15']:.2f}x" in row and "<= 1.60" in row
