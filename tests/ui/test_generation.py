"""Generate, cancel, queue: the window drives the runner and never blocks."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from studio.core.errors import OutOfMemoryError
from tests.fakes import gradient


def ctrl_enter(window) -> None:
    QTest.keyClick(window, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)


def lock_seed(window, seed: int) -> None:
    panel = window.prompt_panel
    panel.seed_spin.setValue(seed)
    panel.seed_lock_button.setChecked(True)


def test_ctrl_enter_generates_a_new_layer(qtbot, window, engine):
    window.prompt_panel.prompt_edit.clear()
    qtbot.keyClicks(window.prompt_panel.prompt_edit, "a red fox")
    lock_seed(window, 42)
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        ctrl_enter(window)
    request = engine.requests[-1]
    assert request.prompt == "a red fox"
    assert (request.seed, request.task, request.width, request.height) == (42, "txt2img", 64, 64)
    doc = window.doc
    assert len(doc.layers) == 1
    layer = doc.layers[0]
    assert layer.kind == "generated"
    np.testing.assert_array_equal(layer.pixels[..., :3], gradient(42, 64, 64))
    assert (layer.pixels[..., 3] == 255).all()
    # The cached composite on screen shows it too.
    image = window.canvas.composite_image()
    assert image.pixelColor(10, 10).red() == int(gradient(42, 64, 64)[10, 10, 0])
    assert len(window.gallery_panel.items) == 1
    assert not window.canvas.has_preview


def test_previews_are_drawn_in_the_region_while_running(qtbot, window, engine):
    engine.step_delay = 0.02
    lock_seed(window, 1)
    window.prompt_panel.steps_slider.setValue(10)
    shown = []  # the controller's slot runs first: it draws the preview
    window.bridge.job_progressed.connect(lambda _e: shown.append(window.canvas.has_preview))
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        ctrl_enter(window)
    assert len(shown) == 10 and all(shown)
    assert not window.canvas.has_preview


def test_escape_cancels_the_running_job(qtbot, window, engine):
    engine.step_delay = 0.05
    window.prompt_panel.steps_slider.setValue(100)
    with qtbot.waitSignal(window.bridge.job_started, timeout=5000):
        ctrl_enter(window)
    with qtbot.waitSignal(window.bridge.job_cancelled, timeout=2000):
        QTest.keyClick(window, Qt.Key.Key_Escape)
    assert window.doc.layers == []
    assert not window.canvas.has_preview
    assert window.queue_panel.list.count() == 0


def test_queue_shows_reorders_and_cancels_jobs(qtbot, window, engine, runner):
    engine.step_delay = 0.05
    window.prompt_panel.steps_slider.setValue(100)
    window.prompt_panel.batch_spin.setValue(4)
    with qtbot.waitSignal(window.bridge.job_started, timeout=5000):
        ids = window.controller.generate()
    assert len(ids) == 4
    queue = window.queue_panel
    assert queue.running_job == ids[0]
    assert queue.job_ids() == ids[1:]
    # Move the last job up twice: it runs next.
    queue.select_job(ids[3])
    queue.up_button.click()
    queue.up_button.click()
    assert queue.job_ids() == [ids[3], ids[1], ids[2]]
    assert [job.job_id for job in runner.queued()] == [ids[3], ids[1], ids[2]]
    queue.down_button.click()
    assert [job.job_id for job in runner.queued()] == queue.job_ids() == [ids[1], ids[3], ids[2]]
    # Cancel a waiting one from the panel.
    queue.select_job(ids[2])
    with qtbot.waitSignal(window.bridge.job_cancelled, timeout=2000):
        queue.cancel_button.click()
    assert queue.job_ids() == [ids[1], ids[3]]
    window.controller.cancel_all()
    qtbot.waitUntil(lambda: queue.list.count() == 0, timeout=5000)
    assert window.doc.layers == []


def test_engine_error_shows_one_clear_message(qtbot, window, engine):
    engine.fail = OutOfMemoryError("Out of memory on cpu.", hint="Try a smaller size.")
    with qtbot.waitSignal(window.bridge.job_failed, timeout=5000):
        ctrl_enter(window)
    assert window.banner.isVisible()
    assert "Out of memory" in window.banner.text
    assert window.doc.layers == []
    # The app goes on: the next generation works.
    engine.fail = None
    window.banner.hide_message()
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        ctrl_enter(window)
    assert len(window.doc.layers) == 1


def test_unreadable_image_shows_a_message(qtbot, window, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    assert not window.commands.open_image(str(bad))
    assert window.banner.isVisible() and "broken.png" in window.banner.text
    assert window.doc.layers == []


def test_picking_a_model_applies_its_recommended_settings(window):
    panel = window.prompt_panel
    panel.model_combo.setCurrentIndex(panel.model_combo.findData("fake-large"))
    values = panel.values()
    assert (values["steps"], values["guidance"], values["width"], values["height"],
            values["scheduler"]) == (30, 6.5, 1024, 1024, "DPM++ 2M Karras")
    assert window.status.model_label.text() == "fake-large"


def test_invalid_request_shows_its_message(qtbot, window, monkeypatch):
    values = window.prompt_panel.values

    def bad_values():
        return {**values(), "steps": 0}

    monkeypatch.setattr(window.prompt_panel, "values", bad_values)
    assert window.controller.generate() == []
    assert "steps must be between 1 and 1000" in window.banner.text
    assert window.queue_panel.list.count() == 0


def test_generate_while_the_engine_loads_says_so(qtbot, settings):
    from studio.ui.main_window import MainWindow
    from tests.ui.conftest import dispose

    window = MainWindow(None, None, settings)
    window.show()
    try:
        assert "Loading engine" in window.status.message_label.text()
        window.actions["generate"].trigger()
        assert "still loading" in window.banner.text
    finally:
        # Deleted now: a closed window left alive keeps its pending activation, which the
        # next test's event processing would deliver to it (a hidden active window).
        dispose(window)
