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
