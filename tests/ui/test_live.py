"""Live mode in the artist's hand: the real window, the real engine thread, the embedded model.

A portrait (drawn by the procedural renderer, not by the model) is on the canvas; with Live on,
each stroke sends the canvas through a fast image to image on the preview channel and the
picture comes back in the live view. The independent oracle (``studio.core.portraits.oracle``)
reads the pictures: painting the background yellow gives a yellow background and keeps the
rest. A backend without live mode (the fake one) greys the toggle out with its reason.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest

from studio.core.jobs.events import GenerationResult
from studio.core.jobs.runner import JobRunner
from studio.core.portraits.oracle import read_background, read_portrait
from studio.core.portraits.render import render_sample
from studio.session.live import OFF, ON, PAUSED
from studio.ui import canvas_tools as tools
from studio.ui.canvas_tools import BrushSettings
from studio.ui.main_window import MainWindow
from tests.fakes import FAKE_FEATURES, FakeEngine, fake_services
from tests.ui.conftest import dispose

ROOT = Path(__file__).resolve().parents[2]
YELLOW = (246, 218, 60)  # the renderer's yellow background
# Three strokes over the background of a 64 px portrait: left, right and top edges.
STROKES = (((6, 2), (6, 62)), ((57, 2), (57, 62)), ((2, 6), (62, 6)))


@pytest.fixture(scope="module")
def embedded_engine():
    from studio.engine.engine import Engine

    return Engine(device="cpu", dtype="auto", model_dirs=[],
                  embedded_dir=ROOT / "resources" / "models", hf_cache=False)


@pytest.fixture
def studio(qtbot, embedded_engine, settings):
    """The window on the embedded model, a blue-background portrait on its canvas, Live on
    and its first picture shown."""
    from studio.engine.services import engine_services

    runner = JobRunner(embedded_engine)
    w = MainWindow(engine_services(embedded_engine), runner, settings)
    w.show()
    qtbot.waitExposed(w)
    w.prompt_panel.set_values({"width": 64, "height": 64, "guidance": 5.0,
                               "scheduler": "Euler", "seed": 3})
    w.prompt_panel.prompt_edit.setPlainText("a portrait of a person")
    portrait = render_sample(5, 1)[0]  # blue background, black hair
    assert read_background(portrait) == "blue"
    w.controller.add_image_layer(np.dstack([portrait, np.full((64, 64), 255, np.uint8)]),
                                 "portrait")
    w.canvas.fit()
    w.canvas.set_tool(tools.BRUSH)
    w.canvas.set_brush(BrushSettings(16, 1.0, 1.0, YELLOW))
    # These tests are about the pictures: a busy test machine must not turn live mode off
    # (that is test_live_turns_itself_off_for_a_model_too_slow_to_follow_the_brush).
    w.live.max_update_s = 1e9
    with qtbot.waitSignal(w.live_controller.shown, timeout=180_000):
        qtbot.mouseClick(w.prompt_panel.live_button, Qt.MouseButton.LeftButton)
    assert w.live.state == ON and w.live_view.isVisible()
    yield w
    w.detach_engine()
    assert runner.shutdown(30)
    dispose(w)


def point(canvas, x: float, y: float) -> QPoint:
    return canvas.to_widget(QPointF(x, y)).toPoint()


def stroke(qtbot, canvas, start, end, moves: int = 8) -> None:
    """A brush stroke with the mouse: press, moves, release."""
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=point(canvas, *start))
    for i in range(1, moves + 1):
        t = i / moves
        QTest.mouseMove(canvas, point(canvas, start[0] + (end[0] - start[0]) * t,
                                      start[1] + (end[1] - start[1]) * t))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=point(canvas, *end))


def picture_after_stroke(qtbot, w, start, end):
    """Paint a stroke; the live picture of the canvas with that stroke."""
    shown = []
    w.live_controller.shown.connect(shown.append)
    stroke(qtbot, w.canvas, start, end)
    seq = w.live.last_seq
    qtbot.waitUntil(lambda: any(live.seq >= seq for live in shown), timeout=60_000)
    w.live_controller.shown.disconnect(shown.append)
    return shown[-1]


def test_strokes_repaint_the_live_picture_where_painted(qtbot, studio):
    w = studio
    first = w.live.latest
    assert first is not None and w.live_view.picture.array is first.image
    assert read_background(first.image) == "blue"  # the portrait as it was
    hair = read_portrait(first.image).hair
    layers = len(w.doc.layers)
    for start, end in STROKES:
        live = picture_after_stroke(qtbot, w, start, end)
    # The oracle reads the picture: the background the artist painted yellow is yellow, and
    # the figure they did not touch keeps its hair.
    assert read_background(live.image) == "yellow"
    assert read_portrait(live.image).hair == hair
    # It changed where the paint went far more than on the face, which no stroke touched.
    diff = np.abs(live.image.astype(int) - first.image.astype(int)).mean(axis=2)
    assert diff[:, :10].mean() > 3 * diff[24:44, 24:40].mean()
    # The request as run: image to image of the canvas at live's strength, the locked seed.
    req = live.request
    assert req.task == "img2img" and req.strength == w.live_view.strength and req.seed == 3
    assert int(req.steps * req.strength) == w.live_view.steps
    # Live pictures are shown beside the canvas: no layer, no undo entry of their own.
    assert len(w.doc.layers) == layers and w.undo.undo_text == "Brush stroke"


def test_a_stroke_during_an_update_cancels_it_latest_wins(qtbot, studio):
    w = studio
    w.live_view.steps_slider.setValue(12)  # a longer update, to end a stroke during it
    w.live_controller.request_update()  # (at once, not after the settings settle)
    qtbot.waitUntil(lambda: not w.live.busy, timeout=60_000)
    started, cancelled, shown = [], [], []
    w.bridge.job_started.connect(lambda e: started.append(e.job_id))
    w.bridge.job_cancelled.connect(lambda e: cancelled.append(e.job_id))
    w.live_controller.shown.connect(shown.append)
    stroke(qtbot, w.canvas, *STROKES[0])
    first_job = w.live.job_id
    assert first_job is not None
    qtbot.waitUntil(lambda: first_job in started, timeout=60_000)  # the engine is on it
    layer = w.doc.layers[-1]
    before = layer.pixels[30:34, 56:60].copy()
    stroke(qtbot, w.canvas, *STROKES[1])
    # The brush never waits for the engine: the stroke is on the layer at once.
    assert not np.array_equal(layer.pixels[30:34, 56:60], before)
    second_job = w.live.job_id
    assert second_job is not None and second_job != first_job
    qtbot.waitUntil(lambda: bool(shown), timeout=60_000)
    assert first_job in cancelled  # the stale update was cancelled on the engine thread
    assert [live.seq for live in shown] == [w.live.last_seq]  # only the newest was shown
    qtbot.wait(50)
    assert len(shown) == 1


def test_keep_adds_one_undoable_layer_with_its_request_in_history(qtbot, studio):
    w = studio
    live = picture_after_stroke(qtbot, w, *STROKES[0])
    layers, records = len(w.doc.layers), len(w.doc.log)
    qtbot.mouseClick(w.live_view.keep_button, Qt.MouseButton.LeftButton)
    assert len(w.doc.layers) == layers + 1 and len(w.doc.log) == records + 1
    kept = w.doc.layers[-1]
    record = w.doc.log.get(kept.record_id)
    assert record.request == live.request  # the full request, as the engine ran it
    assert record.request.task == "img2img" and record.request.init_image is not None
    assert np.array_equal(kept.pixels[..., :3], live.image)
    assert kept.rect == (0, 0, 64, 64)
    assert w.gallery_panel.list.count() == records + 1  # History shows it
    assert w.undo.undo_text == "Keep live picture"
    w.document.undo()
    assert len(w.doc.layers) == layers
    w.document.redo()
    assert len(w.doc.layers) == layers + 1 and w.doc.layers[-1].record_id == record.id


# -- backends: the fake one ----------------------------------------------------------------
def fake_window(qtbot, settings, engine):
    runner = JobRunner(engine)
    w = MainWindow(fake_services(engine), runner, settings)
    w.show()
    qtbot.waitExposed(w)
    w.prompt_panel.prompt_edit.setPlainText("a portrait")
    return w, runner


def close(w, runner):
    w.detach_engine()
    assert runner.shutdown(5)
    dispose(w)


def test_live_is_off_with_the_reason_on_a_backend_without_it(qtbot, settings):
    why = "The fake backend paints no live pictures."
    engine = FakeEngine(features=dataclasses.replace(
        FAKE_FEATURES, live_mode=False, why_not=(("live_mode", why),)))
    w, runner = fake_window(qtbot, settings, engine)
    button = w.prompt_panel.live_button
    assert not button.isEnabled() and why in button.toolTip()
    assert not w.live_controller.set_live(True)
    assert w.live.state == OFF and not w.live_view.isVisible() and not button.isChecked()
    stroke(qtbot, w.canvas, (5, 5), (30, 30))
    qtbot.wait(50)
    assert engine.requests == []  # nothing was sent
    close(w, runner)


class SlowEngine(FakeEngine):
    """A fake engine that reports the time a large model takes on a CPU."""

    def generate(self, request, on_step, cancel) -> GenerationResult:
        result = super().generate(request, on_step, cancel)
        return dataclasses.replace(result, seconds=2.4)


def test_live_turns_itself_off_for_a_model_too_slow_to_follow_the_brush(qtbot, settings):
    engine = SlowEngine(features=dataclasses.replace(FAKE_FEATURES, live_mode=True))
    w, runner = fake_window(qtbot, settings, engine)
    w.controller.add_image_layer(np.full((64, 64, 3), 128, np.uint8), "grey")
    updates: list = []
    w.live.updated.connect(updates.append)
    assert w.live_controller.set_live(True)
    qtbot.waitUntil(lambda: len(updates) == 1, timeout=10_000)
    for i in range(3):  # the first update may load the model: it does not count
        if w.live.state == OFF:
            break
        shown = len(updates)
        stroke(qtbot, w.canvas, (5, 5 + 10 * i), (50, 5 + 10 * i))
        qtbot.waitUntil(lambda n=shown: len(updates) > n or w.live.state == OFF,
                        timeout=10_000)
    assert len(updates) == 2  # two pictures shown, the third update measured it too slow
    assert w.live.state == OFF and not w.prompt_panel.live_button.isChecked()
    assert not w.live_view.isVisible() and not w.live_view.keep_button.isEnabled()
    assert "2.4 s an update" in w.banner.text and "a step" in w.banner.text
    # Turning it on again for the same model and size is refused with the same reason.
    assert not w.live_controller.set_live(True)
    assert "2.4 s an update" in w.banner.text
    close(w, runner)


def test_live_pauses_while_the_window_is_minimised(qtbot, settings):
    import sys

    from studio.ui.live import SWITCH_INTERVAL_S

    engine = FakeEngine(features=dataclasses.replace(FAKE_FEATURES, live_mode=True))
    w, runner = fake_window(qtbot, settings, engine)
    w.controller.add_image_layer(np.full((64, 64, 3), 128, np.uint8), "grey")
    interval = sys.getswitchinterval()
    assert interval > SWITCH_INTERVAL_S  # Python's own (5 ms)
    with qtbot.waitSignal(w.live.updated, timeout=10_000):
        assert w.live_controller.set_live(True)
    # while updates run, the GUI thread gets the GIL back within half a millisecond
    assert sys.getswitchinterval() == SWITCH_INTERVAL_S
    w.showMinimized()
    qtbot.waitUntil(lambda: w.live.state == PAUSED, timeout=5_000)
    assert sys.getswitchinterval() == interval
    assert "minimised" in w.live_view.status_label.text()
    sent = len(engine.requests)
    w.live_controller.request_update()
    w.live.update(w.prompt_panel.values(), w.live_controller.source())
    qtbot.wait(100)
    assert len(engine.requests) == sent  # nothing runs while no one can see it
    with qtbot.waitSignal(w.live.updated, timeout=10_000):
        w.showNormal()
    assert w.live.state == ON and sys.getswitchinterval() == SWITCH_INTERVAL_S
    w.live_controller.set_live(False)
    assert sys.getswitchinterval() == interval
    close(w, runner)


def _full_collections_while_promoting(count: int) -> int:
    """Promote ``count`` new objects to the oldest generation (each survives two young
    collections, as long-lived state does), then let the collector decide; returns how many
    full collections Python started meanwhile, on its own."""
    import gc

    started: list[int] = []

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == 2:
            started.append(1)

    kept: list[list] = []
    gc.callbacks.append(on_gc)
    try:
        for _ in range(count):
            kept.append([])  # tracked: each allocation counts towards a collection
    finally:
        gc.callbacks.remove(on_gc)
    return len(started)


def test_a_full_garbage_collection_never_freezes_the_brush_while_live_mode_runs(
        qtbot, settings):
    """A full collection walks every object with the GIL held (0.3 to 1.3 s here once a
    server's live bench run, on the remote backend's thread): live mode holds the automatic
    ones back, and they are due again once it pauses or turns off."""
    import gc

    engine = FakeEngine(features=dataclasses.replace(FAKE_FEATURES, live_mode=True))
    w, runner = fake_window(qtbot, settings, engine)
    w.controller.add_image_layer(np.full((64, 64, 3), 128, np.uint8), "grey")
    # The objects already here set aside (``gc.freeze``: not walked, so the test stays
    # quick), new long-lived ones make Python collect everything as soon as it looks at the
    # oldest generation: after 11 x 11 x 700 allocations (its defaults), with room to spare.
    gc.freeze()
    try:
        gc.collect()
        promote = 150_000
        with qtbot.waitSignal(w.live.updated, timeout=10_000):
            assert w.live_controller.set_live(True)
        assert _full_collections_while_promoting(promote) == 0
        w.showMinimized()  # paused: nobody paints
        qtbot.waitUntil(lambda: w.live.state == PAUSED, timeout=5_000)
        assert _full_collections_while_promoting(promote) >= 1
        w.live_controller.set_live(False)
    finally:
        gc.unfreeze()
    close(w, runner)


def test_the_live_bench_counts_full_collections_only_while_it_measures():
    import gc

    from studio.bench.live_bench import FullCollections

    seen = FullCollections()
    gc.collect(1)  # a young generation: not counted
    gc.collect()
    seen.stop()
    gc.collect()
    assert len(seen.ms) == 1 and seen.ms[0] > 0


def test_the_live_bench_table_says_why_when_no_picture_came():
    from studio.bench.live_bench import table_rows

    fig = {"live_update_p50_ms": float("nan"), "live_update_p95_ms": float("nan"),
           "live_strokes": 0, "live_missed": 5,
           "live_messages": ["Live mode is off: studio-tiny-diffusion takes 2.8 s an update"]}
    (row,) = table_rows(fig)
    assert "no picture" in row[1] and "nan" not in " ".join(row)
    assert "5 strokes" in row[3] and "takes 2.8 s an update" in row[3]
    fig.update(live_strokes=5, live_missed=0, live_update_p50_ms=120.0,
               live_update_p95_ms=200.0, live_ui_stall_max_ms=9.0, live_ui_stall_p99_ms=4.0,
               live_idle_stall_max_ms=3.0, live_engine_update_p50_ms=1100.0,
               live_rapid_strokes=3, live_rapid_cancelled=2, live_steps=2,
               live_strength=0.55, live_size=64, live_model="m", engine_nice=5,
               load_avg=[7.5, 7, 7], live_would_turn_off=True)
    rows = table_rows(fig)
    assert [r[1] for r in rows] == ["120ms", "200ms", "max 9.0ms, p99 4.0ms"]
    assert "load avg 7.5" in rows[0][3] and "would turn live mode off" in rows[0][3]
    # The stall's row says whether Python walked every object meanwhile (a full garbage
    # collection holds the GIL: it froze the brush for 0.3-1.3 s before live mode held
    # them back).
    fig.update(live_gc_full_count=0, live_gc_full_max_ms=0.0)
    assert table_rows(fig)[2][3].endswith("; no full garbage collection")
    fig.update(live_gc_full_count=1, live_gc_full_max_ms=840.2)
    assert "1 full garbage collection (the longest 840 ms)" in table_rows(fig)[2][3]


def test_the_same_canvas_again_lets_the_running_update_finish(qtbot, settings):
    """The brush rests (an update starts), then the stroke ends where it rested: the same
    picture is asked for again, and the update already running is kept, not restarted."""
    engine = FakeEngine(features=dataclasses.replace(FAKE_FEATURES, live_mode=True),
                        step_delay=0.05)
    w, runner = fake_window(qtbot, settings, engine)
    w.controller.add_image_layer(np.full((64, 64, 3), 128, np.uint8), "grey")
    updates: list = []
    w.live.updated.connect(updates.append)
    cancelled: list = []
    w.bridge.job_cancelled.connect(lambda e: cancelled.append(e.job_id))
    assert w.live_controller.set_live(True)
    qtbot.waitUntil(lambda: len(updates) == 1, timeout=10_000)
    sent = len(engine.requests)
    first = w.live_controller.request_update()
    again = w.live_controller.request_update()  # nothing changed in between
    assert first is not None and again == first and w.live.last_seq == updates[0].seq + 1
    qtbot.waitUntil(lambda: len(updates) == 2, timeout=10_000)
    assert cancelled == [] and len(engine.requests) == sent + 1
    # A stroke changes the canvas: a new update (latest wins is the test above).
    stroke(qtbot, w.canvas, (5, 5), (50, 50))
    qtbot.waitUntil(lambda: len(updates) == 3, timeout=10_000)
    assert updates[-1].seq == w.live.last_seq and len(engine.requests) == sent + 2
    close(w, runner)
