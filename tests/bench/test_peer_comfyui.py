"""``studio bench --peer comfyui``: the figures it derives and prints, and its refusals.

The run itself (two cold processes a round on a 2 GB checkpoint) is a benchmark, not a
test: docs/benchmarks.md holds its latest output.
"""

from __future__ import annotations

import pytest

from studio.bench import peer_comfyui as peer
from studio.core.errors import InvalidRequestError


def _run(first_s, second_s, gaps, first_image_s, peak):
    return {"ready_s": 1.0, "first_image_s": first_image_s, "peak_rss_mb": peak,
            "images": [{"seconds": first_s, "step_gaps": gaps, "decode_s": 2.0},
                       {"seconds": second_s, "step_gaps": gaps, "decode_s": 2.0}]}


def test_the_summary_splits_steps_from_fixed_costs_and_derives_20_steps():
    runs = [_run(40.0, 18.0, [3.0, 3.0], 50.0, 3000), _run(44.0, 18.0, [3.0, 3.0], 54.0, 3200)]
    s = peer.summarise(runs, steps=4)
    assert s["step_s"] == 3.0
    assert s["fixed_s"] == pytest.approx(42.0 - 4 * 3.0)  # the first image less its steps
    assert s["image_s"] == 18.0 and s["first_image_s"] == 52.0 and s["peak_rss_mb"] == 3100
    # The loaded model's 20-step image: the second image's own fixed part plus 20 steps.
    assert s["image_20_steps_s"] == pytest.approx((18.0 - 12.0) + 20 * 3.0)
    assert peer.summarise(runs, steps=20)["image_20_steps_s"] == 18.0  # measured, not derived


def test_step_marks_count_each_step_once():
    from studio.core.jobs.events import StepProgress

    marks, on_step = peer._marks()
    for progress in (StepProgress(0, 2, phase="encoding"), StepProgress(1, 2),
                     StepProgress(1, 2), StepProgress(2, 2), StepProgress(2, 2, phase="decoding")):
        on_step(progress)
    assert len(marks["steps"]) == 2 and "encoding" in marks and "decoding" in marks


def test_the_table_shows_both_sides_the_ratios_and_the_load():
    runs = {"studio": [_run(40.0, 18.0, [3.0], 50.0, 3000)] * 2,
            "comfyui": [_run(80.0, 60.0, [10.0], 120.0, 6000)] * 2}
    s, c = peer.summarise(runs["studio"], 2), peer.summarise(runs["comfyui"], 2)
    s.update(policy="CPU (bf16)", load_s=5.0, imports_s=4.0)
    fig = {"studio": s, "comfyui": c, "ratios": {k: s[k] / c[k] for k in peer.TARGETS},
           "machine": {"cpu": "Test CPU", "cores": 2, "torch": "2", "cpu_capability": "AVX512"},
           "load_avg_during": [3.0, 4.0], "size": 512, "steps": 2, "rounds": 2,
           "checkpoint": "/x/sd15.safetensors", "comfyui_args": list(peer.COMFY_ARGS)}
    table = peer.format_peer(fig)
    assert "--use-pytorch-cross-attention" in table and "load avg 3.0, 4.0" in table
    assert "derived: 2-step runs" in table
    row = next(line for line in table.splitlines() if line.startswith("peak memory"))
    assert "3000 MB" in row and "6000 MB" in row and "0.50" in row


def test_without_the_comfyui_venv_it_says_how_to_build_it(monkeypatch, tmp_path):
    monkeypatch.setenv("STUDIO_COMFYUI_CACHE", str(tmp_path))
    monkeypatch.delenv("STUDIO_COMFYUI_ROOT", raising=False)
    with pytest.raises(InvalidRequestError) as err:
        peer.comfyui_root()
    assert "comfyui-venv.sh" in (err.value.hint or "")


@pytest.mark.parametrize("args,words", [(["--rounds", "1"], "--rounds"),
                                        (["--steps", "1"], "--steps")])
def test_bad_peer_arguments_are_one_clear_error(capsys, args, words):
    from studio.cli import main

    assert main(["bench", "--peer", "comfyui", *args]) != 0
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
