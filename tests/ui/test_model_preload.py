"""The model shown in the window loads while the user writes the prompt: the status bar says
how long it has taken and, from the last start, about how long it takes; Cancel drops it; a
Generate pressed meanwhile runs once it is loaded, on the loaded model."""

from __future__ import annotations

import threading

from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from studio.ui.launch import LOAD_SECONDS_KEY, StudioSession
from tests.fakes import fake_services


class SlowLoad:
    """A preload whose work waits until the test lets it finish (a model loading)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.loaded: list[str] = []
        self.asked: list[str] = []

    def __call__(self, _services, model_id: str):
        self.asked.append(model_id)

        def work(_on_step, _cancel) -> bool:
            self.release.wait(10)
            self.loaded.append(model_id)
            return True

        return work


def start(qtbot, settings, preload) -> StudioSession:
    session = StudioSession(fake_services, [], settings, preload=preload)
    qtbot.addWidget(session.window)
    with qtbot.waitSignal(session.loader.loaded, timeout=5000):
        session.start()
    qtbot.waitUntil(lambda: session.runner is not None, timeout=2000)
    return session


def test_the_shown_model_loads_with_an_estimate_and_generate_waits_for_it(qtbot, settings):
    settings.setValue(LOAD_SECONDS_KEY + "fake-tiny", 9.0)  # the last start took 9 s
    load = SlowLoad()
    session = start(qtbot, settings, load)
    window, status = session.window, session.window.status
    try:
        assert load.asked == ["fake-tiny"]  # the model the prompt panel shows
        qtbot.waitUntil(lambda: status.message_label.text().startswith(
            "Loading Fake tiny"), timeout=3000)
        assert "of about 9 s" in status.message_label.text()
        assert status.progress.isVisible() and status.cancel_button.isVisible()
        assert status.progress.maximum() == 100  # a real fraction, not a busy bar
        window.prompt_panel.prompt_edit.setPlainText("red hair")
        window.actions["generate"].trigger()  # pressed while the model loads
        QTest.qWait(100)
        assert window.doc.log.gallery() == []  # waits behind the load
        with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
            load.release.set()
        assert load.loaded == ["fake-tiny"]
        assert window.doc.log.gallery()[0].request.prompt == "red hair"
        assert 0 <= float(settings.value(LOAD_SECONDS_KEY + "fake-tiny")) < 9  # remembered
    finally:
        load.release.set()
        window.close()
        session.shutdown()


def test_cancel_in_the_status_bar_drops_the_preload(qtbot, settings):
    load = SlowLoad()
    session = start(qtbot, settings, load)
    window, status = session.window, session.window.status
    try:
        qtbot.waitUntil(lambda: status.cancel_button.isVisible(), timeout=3000)
        assert status.progress.maximum() == 0  # no estimate yet: a busy bar, time so far
        with qtbot.waitSignal(window.bridge.job_cancelled, timeout=5000):
            status.cancel_button.click()
            load.release.set()  # the load in progress ends; its job is reported cancelled
        QApplication.processEvents()
        assert not status.cancel_button.isVisible() and not status.progress.isVisible()
        assert status.message_label.text() == "Cancelled"
        assert session.preload_job is None
    finally:
        load.release.set()
        window.close()
        session.shutdown()


def test_no_preload_for_a_backend_that_loads_its_own_models(qtbot, settings):
    session = start(qtbot, settings, lambda _services, _model: None)  # a server
    try:
        assert session.preload_job is None
        assert not session.window.status.cancel_button.isVisible()
    finally:
        session.window.close()
        session.shutdown()
