"""Shortcuts from where the user's focus is, zoom and pan, drag and drop, object names."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QScrollArea

from studio.ui import canvas_tools as tools


def test_shortcuts_work_while_typing_in_the_prompt(qtbot, window):
    edit = window.prompt_panel.prompt_edit
    edit.clear()
    edit.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is edit, timeout=2000)
    # Single-letter tool shortcuts type text in the prompt instead of switching tools.
    QTest.keyClicks(edit, "bem")
    assert edit.toPlainText() == "bem"
    assert window.canvas.tool == tools.BRUSH
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        QTest.keyClick(edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert edit.toPlainText() == "bem"  # no newline added by Ctrl+Enter
    assert len(window.doc.layers) == 1


def test_escape_from_the_prompt_cancels(qtbot, window, engine):
    engine.step_delay = 0.05
    window.prompt_panel.steps_slider.setValue(100)
    edit = window.prompt_panel.prompt_edit
    edit.setFocus()
    with qtbot.waitSignal(window.bridge.job_started, timeout=5000):
        QTest.keyClick(edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    with qtbot.waitSignal(window.bridge.job_cancelled, timeout=2000):
        QTest.keyClick(edit, Qt.Key.Key_Escape)
    assert window.doc.layers == []


def wheel(canvas, pos: QPointF, delta: int) -> None:
    event = QWheelEvent(pos, canvas.mapToGlobal(pos), QPoint(0, 0), QPoint(0, delta),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(canvas, event)


def test_wheel_zooms_around_the_cursor_and_space_drag_pans(qtbot, window):
    window.controller.add_image_layer(np.zeros((256, 256, 3), np.uint8), "black")
    canvas = window.canvas
    canvas.fit()
    pos = QPointF(canvas.width() * 0.3, canvas.height() * 0.4)
    under = canvas.to_canvas(pos)
    zoom = canvas.zoom
    wheel(canvas, pos, 120)
    assert canvas.zoom > zoom
    after = canvas.to_canvas(pos)
    assert abs(after.x() - under.x()) < 1e-6 and abs(after.y() - under.y()) < 1e-6
    # Space + drag pans without painting.
    canvas.setFocus()
    offset = QPointF(canvas.offset)
    before = window.doc.layers[0].pixels.copy()
    QTest.keyPress(canvas, Qt.Key.Key_Space)
    start = QPoint(100, 100)
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=start)
    QTest.mouseMove(canvas, QPoint(140, 130))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=QPoint(140, 130))
    QTest.keyRelease(canvas, Qt.Key.Key_Space)
    assert canvas.offset - offset == QPointF(40, 30)
    np.testing.assert_array_equal(window.doc.layers[0].pixels, before)
    assert window.undo.count == 1  # only opening the image


def test_dropping_an_image_file_opens_it(qtbot, window, tmp_path):
    from PIL import Image

    path = tmp_path / "dropped.png"
    Image.new("RGB", (40, 24), (200, 10, 10)).save(path)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert (window.doc.width, window.doc.height) == (40, 24)
    assert window.doc.layers[0].name == "dropped"
    assert window.doc.layers[0].pixels[0, 0, 0] == 200


def test_key_widgets_have_object_names(window):
    for name in ("canvas_view", "prompt_edit", "negative_prompt_edit", "model_combo",
                 "seed_spin", "steps_slider", "guidance_slider", "scheduler_combo",
                 "size_combo", "batch_count_spin", "strength_slider", "generate_button",
                 "cancel_button", "layers_list", "gallery_list", "queue_list", "status_bar",
                 "prompt_dock", "layers_dock", "gallery_dock", "queue_dock", "sliders_dock"):
        assert window.findChild(object, name) is not None, name
    menus = [a.text().replace("&", "") for a in window.menuBar().actions()]
    assert menus == ["File", "Edit", "View", "Image", "Generate", "Models", "Help"]


def test_status_bar_shows_device_model_and_memory(window):
    status = window.status
    assert status.device_label.text() == "cpu"
    assert status.dtype_label.text() == "float32"
    assert status.model_label.text() == "fake-tiny"
    assert "256 MB" in status.memory_label.text()


def test_light_theme_is_available(qtbot, window):
    window.actions["theme_light"].trigger()
    assert "#f7f8fa" in QApplication.instance().styleSheet()
    window.actions["theme_dark"].trigger()
    assert "#23262d" in QApplication.instance().styleSheet()


def test_importing_the_ui_imports_no_torch_or_engine():
    code = ("import sys, studio.ui.launch, studio.ui.main_window; "
            "bad = [m for m in ('torch', 'diffusers', 'transformers', 'studio.engine') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"QT_QPA_PLATFORM": "offscreen", "PATH": ""}, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_action_is_in_a_menu(window):
    from studio.ui.actions import ACTIONS

    def walk(menu):
        for action in menu.actions():
            yield action
            if action.menu() is not None:
                yield from walk(action.menu())

    in_menus = {a.objectName() for m in window.menuBar().actions() for a in walk(m.menu())}
    missing = [spec.name for spec in ACTIONS if f"action_{spec.name}" not in in_menus]
    assert not missing


def test_prompt_and_sliders_docks_show_every_control_at_1400_px(qtbot, window):
    """A 1400 x 900 window (the default size) must not clip the seed dice button, the
    slider values or the style buttons behind a sideways scroll bar."""
    window.resize(1400, 900)
    window.show()
    qtbot.waitExposed(window)
    QApplication.processEvents()
    panel = window.prompt_panel
    assert window.docks["layers"].width() >= 280  # the first-run layout, not squeezed
    canvas_width = window.canvas.width()
    for dock_key, scroll in (("prompt", panel.findChild(QScrollArea)),
                             ("sliders", window.sliders_panel.findChild(QScrollArea,
                                                                        "sliders_scroll"))):
        window.docks[dock_key].raise_()
        QApplication.processEvents()
        assert scroll.horizontalScrollBar().maximum() == 0, dock_key
        body = scroll.widget()
        assert body.width() >= body.minimumSizeHint().width(), dock_key
        assert window.canvas.width() == canvas_width, dock_key  # switching tabs moves nothing
    window.docks["prompt"].raise_()
    QApplication.processEvents()
    viewport = panel.findChild(QScrollArea).viewport()
    for widget in (panel.seed_random_button, panel.steps_slider, panel.height_spin):
        right = widget.mapTo(viewport, QPoint(widget.width(), 0)).x()
        assert right <= viewport.width(), widget.objectName()
