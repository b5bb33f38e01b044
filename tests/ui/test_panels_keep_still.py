"""Small things a newcomer notices: the prompt panel's mode line stays one line (the panel
does not jump when a layer appears; the whole text is in its tooltip), and History shows the
whole caption of every thumbnail (task, seed, variation seed), the selected one too."""

from __future__ import annotations

from PySide6.QtCore import QRect, Qt
from PySide6.QtWidgets import QApplication

from studio.ui.gallery_panel import THUMB, caption
from tests.ui.test_canvas import open_grey


def test_the_mode_line_stays_one_line_when_a_layer_appears(qtbot, window):
    panel = window.prompt_panel
    label, button = panel.mode_label, panel.generate_button
    window.resize(1280, 800)
    QApplication.processEvents()
    one_line = label.fontMetrics().lineSpacing()
    before = button.mapTo(window, button.rect().topLeft()).y()
    open_grey(window, (64, 64), 150)
    panel.set_values({"strength": 1.0})
    qtbot.waitUntil(lambda: "new layer" in label.text(), timeout=2000)
    QApplication.processEvents()
    whole = label.text()
    assert whole.startswith("Text to image: a new layer over the canvas")
    assert label.fontMetrics().horizontalAdvance(whole) > label.width()  # too long to fit
    assert label.height() < 2 * one_line  # one line: shown elided, not wrapped
    assert button.mapTo(window, button.rect().topLeft()).y() == before  # nothing moved
    assert whole in label.toolTip()  # the rest of it, on hover


def test_history_shows_each_caption_whole(qtbot, window):
    panel = window.prompt_panel
    panel.set_values({"seed": 4000000000, "seed_locked": True})
    panel.prompt_edit.setPlainText("a portrait")
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    gallery = window.gallery_panel
    gallery.list.setCurrentRow(0)
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        gallery.vary_button.click()  # a variation of that seed
    record = gallery.items[0]
    text = caption(record)
    assert text.count("\n") == 2  # task, seed, variation seed
    gallery.list.setCurrentRow(0)  # selected
    QApplication.processEvents()
    shown = gallery.list.visualItemRect(gallery.list.item(0))  # the cell as drawn
    needed = gallery.list.fontMetrics().boundingRect(
        QRect(0, 0, shown.width() - 6, 1000),
        int(Qt.AlignmentFlag.AlignHCenter | Qt.TextFlag.TextWordWrap), text)
    assert needed.height() <= shown.height() - THUMB - 8  # room for every line under it
    assert needed.width() <= shown.width()
    assert gallery.list.textElideMode() == Qt.TextElideMode.ElideNone
