"""X/Y/Z grids: the cells' requests, the labels, and the labelled image."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.grids import GridError, grid_image, parse_axis, plan_grid
from studio.core.jobs.request import GenerationRequest, LoraWeight, SliderValue

BASE = GenerationRequest("a cat on a sofa", negative_prompt="blurry cat", seed=5, steps=10,
                         width=64, height=64, batch_size=3,
                         loras=(LoraWeight("/m/loras/ink.safetensors", 1.0, "ink"),),
                         sliders=(SliderValue("smile", 0.0, "text"),))


def test_xy_grid_has_one_request_per_cell_in_row_major_order():
    plan = plan_grid(BASE, ["seed=1,2,3", "guidance=3,7"])
    assert plan.shape == (3, 2, 1) and len(plan.cells) == 6
    assert [(c.request.seed, c.request.guidance) for c in plan.cells] == [
        (1, 3.0), (2, 3.0), (3, 3.0), (1, 7.0), (2, 7.0), (3, 7.0)]
    assert all(c.request.batch_size == 1 and c.request.steps == 10 for c in plan.cells)
    assert plan.caption(plan.cells[4]) == "seed 2 · CFG 7"


def test_xyz_grid_with_every_axis_kind():
    plan = plan_grid(BASE, ["S/R=cat,dog,fox", "lora:ink=0,0.5", "slider:smile=-1,1"])
    assert plan.shape == (3, 2, 2) and len(plan.cells) == 12
    last = plan.cells[-1].request
    assert last.prompt == "a fox on a sofa" and last.negative_prompt == "blurry fox"
    assert last.loras[0].weight == 0.5 and last.sliders[0].value == 1.0
    assert plan.cells[0].request.prompt == BASE.prompt


def test_latent_slider_axis_whose_id_has_an_equals_sign():
    axis = parse_axis("slider:vae:hair=blonde=0,1,2")
    assert (axis.kind, axis.target, axis.values) == ("slider", "vae:hair=blonde", ("0", "1", "2"))
    plan = plan_grid(BASE.replace(model="studio-tiny-vae"), ["slider:vae:hair=blonde=0,2"])
    moved = {sv.slider_id: sv for sv in plan.cells[1].request.sliders}["vae:hair=blonde"]
    assert moved.space == "vae" and moved.value == 2.0
    assert dict(moved.payload)["attribute"] == "hair=blonde"
    # At 0 the request is the base one (the image is reproduced exactly).
    assert plan.cells[0].request.sliders == BASE.sliders
    with pytest.raises(GridError):
        plan_grid(BASE, ["slider:no-such-slider=0,1"])


def test_ranges_aliases_and_schedulers():
    assert parse_axis("seed=1-4").values == ("1", "2", "3", "4")
    assert parse_axis("cfg=3, 5").kind == "guidance"
    plan = plan_grid(BASE, ["sampler=Euler,DPM++ 2M Karras", "steps=4,8"])
    assert plan.cells[1].request.scheduler == "DPM++ 2M Karras"


def test_lora_tag_in_the_prompt_is_reweighted():
    base = GenerationRequest("a cat <lora:grain:1>")
    plan = plan_grid(base, ["lora:grain=0,0.25"])
    assert plan.cells[1].request.prompt == "a cat <lora:grain:0.25>"


@pytest.mark.parametrize("axes, message", [
    ([], "one to three"),
    (["seed=1", "seed=2", "seed=3", "seed=4"], "one to three"),
    (["colour=red"], "Cannot vary 'colour'"),
    (["seed"], "looks like seed=1,2,3"),
    (["steps=ten"], "not a valid value"),
    (["steps=0,10"], "steps must be between"),
    (["S/R=horse,dog"], "'horse' is not in the prompt"),
    (["lora:other=0,1"], "does not use it"),
    (["seed=1-500"], "at most"),
])
def test_bad_axes_give_one_clear_message(axes, message):
    with pytest.raises(GridError, match=message):
        plan_grid(BASE, axes)


def test_grid_image_has_labels_and_every_cell():
    plan = plan_grid(BASE, ["seed=1,2,3", "guidance=3,7"])
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200),
               (200, 30, 200)]
    images = [np.full((64, 64, 3), c, np.uint8) for c in colours]
    images[4] = None  # a cancelled cell is grey
    sheet = grid_image(plan, images)
    h, w = sheet.shape[:2]
    c = 128  # 64 px images are shown at twice their size (sharp pixels)
    assert w > 3 * c and h > 2 * c  # cells plus the label margins
    # The cells sit bottom-right: find each by its colour.
    left, top = w - 3 * c, h - 2 * c
    for i, cell in enumerate(plan.cells):
        y, x = top + cell.y * c + c // 2, left + cell.x * c + c // 2
        expected = (128, 128, 128) if i == 4 else colours[i]
        assert tuple(sheet[y, x]) == expected
    # Labels: dark text above every column and left of every row.
    for x in range(3):
        assert (sheet[:top, left + x * c:left + (x + 1) * c] < 100).any()
    for y in range(2):
        assert (sheet[top + y * c:top + (y + 1) * c, :left] < 100).any()


def test_axes_are_labelled_in_words_not_syntax():
    plan = plan_grid(BASE.replace(model="studio-tiny-vae"), [
        "slider:vae:hair=blonde=-2,2", "steps=10,20", "lora:ink=0,1"])
    labels = [[axis.label(i) for i in range(len(axis.values))] for axis in plan.axes]
    assert labels == [["blonde hair -2", "blonde hair 2"], ["10 steps", "20 steps"],
                      ["LoRA ink 0", "LoRA ink 1"]]
    assert [parse_axis(a).label(0) for a in ("slider:smile=-1", "cfg=7", "sampler=Euler a",
                                              "slider:gan:glasses=round=1", "seed=3")] == [
        "smile -1", "CFG 7", "Euler a", "round glasses 1", "seed 3"]


def test_long_labels_are_wrapped_or_shrunk_and_never_cross_their_cell():
    from studio.core.grids import _label_layout, _text_size

    words = "a very long replacement with an unbreakable-word-that-goes-on-and-on"
    plan = plan_grid(BASE.replace(prompt="a cat"), [f"S/R=cat,{words},dog",
                                                   f"S/R=a,{words.replace('a ', 'the ')}"])
    sheet = grid_image(plan, [np.zeros((64, 64, 3), np.uint8)] * 6)
    assert sheet.shape[1] <= 4 * 128  # the row labels' column is at most a cell wide
    x_labels = [plan.axes[0].label(i) for i in range(3)]
    y_labels = [plan.axes[1].label(i) for i in range(2)]
    font, line_h, lines_x, lines_y, _ = _label_layout(x_labels, y_labels, [""], 128, 128, 128,
                                                      4, 4 * 128)
    assert all(_text_size(font, line)[0] <= 128 - 4 for lines in lines_x for line in lines)
    assert all(_text_size(font, line)[0] <= 128 - 8 for lines in lines_y for line in lines)
    assert max(len(lines) for lines in lines_x) <= 3
    assert all(len(lines) * line_h <= 128 for lines in lines_y)
    # Nothing is lost: the wrapped lines hold every letter of the label.
    assert "".join(lines_x[1]).replace(" ", "") == x_labels[1].replace(" ", "")


def test_z_axis_makes_one_labelled_panel_per_value():
    plan = plan_grid(BASE, ["seed=1,2", "steps=5,6", "guidance=1,2"])
    sheet = grid_image(plan, {i: np.zeros((32, 32, 3), np.uint8) for i in range(8)})
    one = grid_image(plan_grid(BASE, ["seed=1,2", "steps=5,6"]),
                     [np.zeros((32, 32, 3), np.uint8)] * 4)
    assert sheet.shape[0] > 2 * one.shape[0] - 1 and sheet.shape[1] == one.shape[1]


class ColourEngine:
    """Makes a flat image whose red channel is the seed; waits on a gate when asked."""

    def __init__(self, gate=None):
        self.gate = gate

    def generate(self, request, on_step, cancel):
        from studio.core.jobs.events import GenerationResult

        if self.gate is not None:
            while not self.gate.wait(0.01):
                cancel.raise_if_cancelled()
        image = np.full((16, 16, 3), (request.seed, request.steps, 0), np.uint8)
        return GenerationResult(request, (image,))


def test_grid_run_queues_one_job_per_cell_and_collects_them():
    from studio.core.grids import GridRun
    from studio.core.jobs.runner import JobRunner

    runner = JobRunner(ColourEngine())
    seen = []
    try:
        run = GridRun(runner, plan_grid(BASE, ["seed=1,2,3", "steps=4,8"]),
                      on_cell=lambda i, r: seen.append(i))
        assert len(run.job_ids) == 6 and run.wait(10)
        assert sorted(seen) == list(range(6))
        assert [tuple(run.images()[i][0, 0]) for i in range(6)] == [
            (1, 4, 0), (2, 4, 0), (3, 4, 0), (1, 8, 0), (2, 8, 0), (3, 8, 0)]
        assert run.image().shape[0] > 32
    finally:
        runner.shutdown()


def test_grid_run_cancel_stops_the_remaining_cells():
    import threading

    from studio.core.grids import GridRun
    from studio.core.jobs.runner import JobRunner

    gate = threading.Event()
    runner = JobRunner(ColourEngine(gate))
    try:
        run = GridRun(runner, plan_grid(BASE, ["seed=1-5"]))
        run.cancel()
        gate.set()
        assert run.wait(10)
        assert not run.results  # nothing finished; the grid image is all grey cells
        assert run.image().shape[1] >= 5 * 256
    finally:
        runner.shutdown()
