"""The window in a newcomer's first minutes: typing goes to the prompt, an empty prompt asks,
the default model's settings from the start, nothing typed is overwritten, long work says
how long and can be cancelled, a large project opens while the window keeps painting."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from studio.core.jobs.events import JobProgress, JobStarted
from studio.core.jobs.request import GenerationRequest
from studio.core.project.store import ProjectStore
from studio.session.model_card import recommended_settings
from studio.ui import canvas_tools as tools
from studio.ui.main_window import MainWindow
from tests.ui.conftest import dispose


def shown(qtbot, window: MainWindow) -> MainWindow:
    """``window`` on screen and active, its keyboard focus inside it (the test disposes of it).

    Waits for *this* window to be active: the activation is delivered asynchronously, and
    until it is, the application's focus widget can still belong to an earlier window (one
    an earlier test closed but left alive, whose own late activation Qt delivers first)."""
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()

    def focused_here() -> bool:
        focus = QApplication.focusWidget()
        return window.isActiveWindow() and focus is not None and focus.window() is window

    qtbot.waitUntil(focused_here, timeout=2000)
    return window


def type_text(text: str) -> None:
    """Type as a person does: into whatever has the keyboard focus."""
    for char in text:
        QTest.keyClicks(QApplication.focusWidget(), char)


def test_typing_right_after_the_window_opens_writes_the_prompt(qtbot, settings):
    window = shown(qtbot, MainWindow(None, None, settings))
    try:
        type_text("a bright meadow [hires]")  # b, e, m, r, i, h, [ and ] are tool keys
        assert window.prompt_panel.prompt_edit.toPlainText() == "a bright meadow [hires]"
        assert window.canvas.tool == tools.BRUSH
        size = window.canvas.brush.size
        window.canvas.setFocus()  # on the canvas the same keys pick tools
        QTest.keyClick(window.canvas, Qt.Key.Key_E)
        assert window.canvas.tool == tools.ERASER
        QTest.keyClick(window.canvas, Qt.Key.Key_BracketRight)
        assert window.canvas.brush.size > size
        assert window.prompt_panel.prompt_edit.toPlainText() == "a bright meadow [hires]"
    finally:
        dispose(window)


def test_an_empty_prompt_asks_once_and_generate_anyway_generates(qtbot, window, engine):
    window.prompt_panel.prompt_edit.clear()
    edit = window.prompt_panel.prompt_edit
    QTest.keyClick(edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.wait(50)
    assert engine.requests == []  # nothing generated silently
    assert "prompt is empty" in window.banner.text
    anyway = window.banner.action_button
    assert anyway.isVisible() and anyway.text() == "Generate anyway"
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        anyway.click()
    assert len(engine.requests) == 1 and engine.requests[0].prompt == ""
    assert not window.banner.isVisible()
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        QTest.keyClick(edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert len(engine.requests) == 2  # asked once: the answer stands for this window


def test_before_the_engine_loads_the_default_models_settings_and_canvas_show(qtbot,
                                                                             settings):
    card = recommended_settings()  # the embedded model's card, read without torch
    assert card["width"] == 64 and card["steps"] == 25 and card["guidance"] == 5.0
    window = shown(qtbot, MainWindow(None, None, settings))
    try:
        values = window.prompt_panel.values()
        assert (values["width"], values["height"]) == (64, 64)
        assert values["steps"] == 25 and values["guidance"] == 5.0
        assert (window.doc.width, window.doc.height) == (64, 64)  # the empty canvas too
        assert window.status.message_label.text() == "Loading engine…"
    finally:
        dispose(window)


def test_what_is_typed_while_the_engine_loads_is_kept_when_it_arrives(qtbot, settings,
                                                                      services, runner):
    window = shown(qtbot, MainWindow(None, None, settings))
    try:
        panel = window.prompt_panel
        type_text("a lighthouse")
        panel.steps_slider.setValue(12)  # the user moves the steps slider
        window.connection.connect(services, runner)  # the engine arrives: fake-tiny's card
        values = panel.values()
        assert values["model"] == "fake-tiny"
        assert values["prompt"] == "a lighthouse" and values["steps"] == 12
        assert values["guidance"] == 3.0  # not touched: the model's own value
        # Picking a model on purpose applies its card in full.
        combo = panel.model_combo
        large = combo.findData("fake-large")
        combo.setCurrentIndex(large)
        combo.activated.emit(large)
        assert panel.values()["steps"] == 30
    finally:
        dispose(window)


def test_ctrl_enter_while_the_engine_loads_generates_once_it_is_ready(qtbot, settings,
                                                                     services, runner):
    # The README's first minute: start, type a prompt, Ctrl+Enter before the model is in.
    window = shown(qtbot, MainWindow(None, None, settings))
    try:
        type_text("a person with red hair")
        QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Return,
                       Qt.KeyboardModifier.ControlModifier)
        assert "starts as soon as it is ready" in window.banner.text
        window.actions["generate"].trigger()  # asked twice: still one generation
        with qtbot.waitSignal(window.controller.generation_applied, timeout=10000):
            window.connection.connect(services, runner)
        assert len(window.doc.log.gallery()) == 1
        assert window.doc.log.gallery()[0].request.prompt == "a person with red hair"
    finally:
        dispose(window)


def test_the_status_bar_says_loading_model_then_steps_with_the_time_left(qtbot, window):
    status = window.status
    request = GenerationRequest(prompt="a fox", steps=10)
    status.on_job_started(JobStarted(1, "render", request))
    assert status.cancel_button.isVisible() and status.progress.isVisible()
    status.on_job_progressed(JobProgress(1, "render", 0, 10, phase="loading"))
    assert status.message_label.text().startswith("Loading model…")
    status.on_job_progressed(JobProgress(1, "render", 0, 10, phase="encoding"))
    status.on_job_progressed(JobProgress(1, "render", 0, 10, phase="sampling"))
    qtbot.wait(30)
    status.on_job_progressed(JobProgress(1, "render", 4, 10, phase="sampling"))
    text = status.message_label.text()
    assert text.startswith("Step 4 of 10 · about ") and text.endswith(" left")
    assert status.progress.value() == 4


def test_cancel_in_the_status_bar_stops_a_long_job(qtbot, window, engine):
    engine.step_delay = 0.05
    window.prompt_panel.steps_slider.setValue(100)
    with qtbot.waitSignal(window.bridge.job_progressed, timeout=5000):
        window.actions["generate"].trigger()
    assert window.status.cancel_button.isVisible()
    with qtbot.waitSignal(window.bridge.job_cancelled, timeout=3000):
        window.status.cancel_button.click()
    assert window.doc.layers == []
    assert not window.status.cancel_button.isVisible()


def test_a_200_layer_project_opens_with_progress_while_the_window_paints(qtbot, window,
                                                                          tmp_path):
    from studio.bench.ui_stall import make_project

    path = make_project(tmp_path / "many.studio", 200, 256)
    ticks: list[str] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(window.status.message_label.text()))
    timer.start(5)
    steps: list[tuple[str, float]] = []
    window.projects.open_progressed.connect(lambda text, f: steps.append((text, f)))
    try:
        assert window.projects.open_project(path)
    finally:
        timer.stop()
    assert any("drawing 200 layers" in t for t in ticks)  # progress, painted meanwhile
    fractions = [f for _t, f in steps]
    assert fractions == sorted(fractions) and fractions[-1] == 0.6
    reading = [f for t, f in steps if t == "Opening many.studio: reading layers"]
    assert len(reading) > 20  # layer by layer, at most once a percent
    assert len(window.doc.layers) == 200
    assert window.layers_panel.count() == 200
    # What was drawn while reading is what the canvas would draw itself.
    expected = ProjectStore.load(path).document
    cached = window.canvas.composite_cache.array
    from studio.ui.canvas import composite_of

    assert np.array_equal(cached, composite_of(expected, expected.rect))
    assert window.status.message_label.text() == "Opened many.studio"


def test_the_scheduler_list_is_the_backends_once_it_is_ready(qtbot, settings, runner):
    from studio.core.engines import EngineFeatures, EngineServices
    from tests.fakes import FakeEngine

    window = MainWindow(None, None, settings)
    try:
        combo = window.prompt_panel.scheduler_combo
        before = [combo.itemText(i) for i in range(combo.count()) if combo.itemText(i)]
        assert len(before) > 10  # the local engine's list while nothing is connected
        features = EngineFeatures(backend="remote", schedulers=("Euler a", "DDIM"))
        window.connection.connect(EngineServices(FakeEngine(features=features)), runner)
        offered = [combo.itemText(i) for i in range(combo.count()) if combo.itemText(i)]
        assert offered == ["Euler a", "DDIM"] or sorted(offered) == ["DDIM", "Euler a"]
    finally:
        dispose(window)
