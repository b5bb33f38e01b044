"""Live mode on a model that lives on a server, in the real window with a fake backend that
says it is a ComfyUI server (the real server's round trip: tests/remote/test_live_remote.py).

What differs from the local engine: an update asks for live's steps themselves (ComfyUI's
sampler runs all its steps at denoise = strength), and a server that drops out, or goes
quiet in the middle of an update, turns live mode off with one line on the toggle, and the
canvas keeps everything painted.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

from studio.core.jobs.runner import JobRunner
from studio.remote.errors import ServerUnreachableError
from studio.session.live import OFF, ON
from studio.ui.main_window import MainWindow
from tests.fakes import FAKE_FEATURES, FakeEngine, fake_services
from tests.ui.conftest import dispose
from tests.ui.test_live import stroke

SERVER = dataclasses.replace(FAKE_FEATURES, backend="comfyui", live_mode=True)


class ServerEngine(FakeEngine):
    """A fake server: after ``answers`` updates it fails as unreachable (``gone``), or it
    takes the update and never says another word (``quiet``) until cancelled."""

    def __init__(self, answers: int, mode: str) -> None:
        super().__init__(features=SERVER)
        self.answers, self.mode = answers, mode
        self.stop = threading.Event()

    def generate(self, request, on_step, cancel):
        if len(self.requests) >= self.answers:
            self.requests.append(request)
            if self.mode == "gone":
                raise ServerUnreachableError("Cannot reach the server at http://gpu-box:8188: "
                                             "connection refused (is ComfyUI running there, "
                                             "on this port?).")
            while not cancel.cancelled and not self.stop.is_set():
                self.stop.wait(0.01)
            cancel.raise_if_cancelled()
        return super().generate(request, on_step, cancel)


def server_window(qtbot, settings, engine):
    runner = JobRunner(engine)
    w = MainWindow(fake_services(engine), runner, settings)
    w.show()
    qtbot.waitExposed(w)
    w.prompt_panel.prompt_edit.setPlainText("a portrait")
    w.controller.add_image_layer(np.full((64, 64, 3), 128, np.uint8), "grey")
    with qtbot.waitSignal(w.live.updated, timeout=10_000):
        assert w.live_controller.set_live(True)
    return w, runner


def close(w, runner, engine):
    engine.stop.set()
    w.detach_engine()
    assert runner.shutdown(5)
    dispose(w)


def test_a_servers_update_asks_for_lives_steps_themselves(qtbot, settings):
    engine = ServerEngine(answers=100, mode="gone")
    w, runner = server_window(qtbot, settings, engine)
    try:
        w.live_view.steps_slider.setValue(3)
        with qtbot.waitSignal(w.live.updated, timeout=10_000):
            w.live_controller.request_update()
        req = w.live.latest.request
        assert req.steps == 3 and req.strength == w.live_view.strength  # not ceil(3 / 0.55)
    finally:
        close(w, runner, engine)


def test_a_server_that_drops_out_turns_live_off_with_its_line(qtbot, settings):
    engine = ServerEngine(answers=1, mode="gone")
    w, runner = server_window(qtbot, settings, engine)
    try:
        before = [layer.pixels.copy() for layer in w.doc.layers]
        stroke(qtbot, w.canvas, (5, 5), (50, 50))
        qtbot.waitUntil(lambda: w.live.state == OFF, timeout=10_000)
        button = w.prompt_panel.live_button
        assert button.toolTip() == ("Live mode is off: Cannot reach the server at "
                                    "http://gpu-box:8188: connection refused (is ComfyUI "
                                    "running there, on this port?).")
        assert w.banner.text == button.toolTip()
        assert button.isEnabled() and not button.isChecked() and not w.live_view.isVisible()
        # The canvas keeps the stroke; nothing was added or taken away.
        assert len(w.doc.layers) == len(before)
        assert not np.array_equal(w.doc.layers[0].pixels, before[0])
        assert w.undo.undo_text == "Brush stroke"
        # The server is back: turning live on again works, and the toggle's tip with it.
        engine.answers = 100
        with qtbot.waitSignal(w.live.updated, timeout=10_000):
            assert w.live_controller.set_live(True)
        assert w.live.state == ON and "off" not in button.toolTip()
    finally:
        close(w, runner, engine)


def test_a_server_that_goes_quiet_mid_update_turns_live_off(qtbot, settings, monkeypatch):
    from studio.ui import live

    monkeypatch.setattr(live, "SILENT_S", 0.5)
    engine = ServerEngine(answers=1, mode="quiet")
    w, runner = server_window(qtbot, settings, engine)
    try:
        stroke(qtbot, w.canvas, (5, 5), (50, 50))
        qtbot.waitUntil(lambda: w.live.state == OFF, timeout=10_000)
        tip = w.prompt_panel.live_button.toolTip()
        assert tip.startswith("Live mode is off: The server") and "has not answered" in tip
        qtbot.waitUntil(lambda: runner.is_idle(), timeout=5_000)  # the update was cancelled
    finally:
        close(w, runner, engine)


def test_a_local_update_keeps_its_steps_as_before(qtbot, settings):
    engine = FakeEngine(features=dataclasses.replace(FAKE_FEATURES, live_mode=True))
    engine.stop = threading.Event()
    w, runner = server_window(qtbot, settings, engine)
    try:
        req = w.live.latest.request
        assert int(req.steps * req.strength) == w.live_view.steps  # ceil(steps / strength)
    finally:
        close(w, runner, engine)


def test_the_bench_paints_on_a_server_with_only_live_and_remote(monkeypatch, capsys):
    """``studio bench --only live --remote URL`` replays the strokes on that server (in the
    bench's child) and its table adds the server's rows: updates a second, with the GPU
    target said to be unmeasured here, and the most live prompts the server held."""
    import argparse

    from studio.bench import measure
    from studio.cli import bench

    asked: list[list[str]] = []
    fig = {"live_update_p50_ms": 6412.0, "live_update_p95_ms": 15584.0,
           "live_ui_stall_max_ms": 20.0, "live_ui_stall_p99_ms": 9.0,
           "live_idle_stall_max_ms": 3.9, "live_engine_update_p50_ms": 6392.0,
           "live_strokes": 20, "live_missed": 0, "live_rapid_strokes": 10,
           "live_rapid_cancelled": 9, "live_steps": 2, "live_strength": 0.55, "live_size": 64,
           "live_model": "tiny-sd1.safetensors", "engine_nice": 5, "load_avg": [10.4, 10, 10],
           "live_would_turn_off": True, "live_remote": "http://gpu-box:8188",
           "live_updates_per_s": 0.156, "live_server_prompts_max": 1,
           "live_server_queue_samples": 286}

    def child(module, argv, **_kw):
        asked.append([module, *argv])
        return dict(fig)

    monkeypatch.setattr(measure, "run_child", child)
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    assert bench.run(parser.parse_args(["--only", "live", "--remote", "http://gpu-box:8188",
                                        "--smoke"])) == 0
    assert asked == [["studio.bench.live_bench", "--strokes", "5", "--rapid", "3",
                      "--remote", "http://gpu-box:8188"]]
    out = capsys.readouterr().out
    assert "on the server http://gpu-box:8188" in out
    rows = {line.split("  ")[0]: line for line in out.splitlines() if line.startswith("live:")}
    assert "0.16/s" in rows["live: updates a second (server)"]
    assert "not measured here" in rows["live: updates a second (server)"]
    assert "max 1" in rows["live: live prompts on the server"]


def test_control_layers_go_with_each_update_where_the_backend_runs_them(qtbot, settings):
    from studio.ui.control_layers import ControlMark, marks_for

    engine = ServerEngine(answers=100, mode="gone")
    engine._features = dataclasses.replace(SERVER, control=True)
    w, runner = server_window(qtbot, settings, engine)
    try:
        assert w.live.latest.request.controls == ()  # no control layer yet
        sketch = np.zeros((64, 64, 4), np.uint8)
        sketch[20:40, 10:50] = 255
        w.controller.add_image_layer(sketch, "sketch")
        marks_for(w.doc)[w.doc.layers[-1].id] = ControlMark("scribble", 0.8)
        with qtbot.waitSignal(w.live.updated, timeout=10_000):
            w.live_controller.request_update()
        (control,) = w.live.latest.request.controls
        assert control.kind == "scribble" and control.strength == 0.8
        assert (control.image.width, control.image.height) == (64, 64)
        # The sketch guides the update; it is not painted into the picture to repaint.
        sent = w.live.latest.request.init_image.to_array()
        assert (sent[..., :3] == 128).all(), "the control layer's strokes were sent as paint"
    finally:
        close(w, runner, engine)
