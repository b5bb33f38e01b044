"""A restored prompt (the last session's, a project's, a past generation's) is replaced by
what the user types next, not prefixed or appended to; it does not come back when the engine
arrives; Ctrl+Z in the prompt brings it back."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from studio.core.document.layers import Document
from studio.core.project.store import ProjectStore
from studio.ui.main_window import MainWindow
from tests.ui.conftest import dispose
from tests.ui.test_first_hour import shown, type_text


def last_session(settings, prompt: str, negative: str = "") -> None:
    """What the window saved when it closed last time."""
    settings.setValue("prompt/state", json.dumps({"prompt": prompt,
                                                  "negative_prompt": negative, "steps": 25}))
    settings.sync()


def test_typing_after_a_restart_replaces_the_last_sessions_prompt(qtbot, settings, services,
                                                                  runner):
    last_session(settings, "red hair", "blurry")
    window = shown(qtbot, MainWindow(None, None, settings))
    try:
        panel = window.prompt_panel
        assert QApplication.focusWidget() is panel.prompt_edit
        assert panel.prompt_edit.toPlainText() == "red hair"  # restored, shown selected
        type_text("blue background")
        assert panel.prompt_edit.toPlainText() == "blue background"
        window.connection.connect(services, runner)  # the engine arrives afterwards
        assert panel.values()["model"] == "fake-tiny"
        assert panel.prompt_edit.toPlainText() == "blue background"  # not restored again
        assert panel.negative_edit.toPlainText() == "blurry"  # untouched: still restored
        QTest.keyClick(panel.prompt_edit, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
        assert panel.prompt_edit.toPlainText() == "red hair"  # the restored words come back
        QTest.keyClick(panel.prompt_edit, Qt.Key.Key_End)  # kept, to add to
        type_text(", glasses")
        assert panel.prompt_edit.toPlainText() == "red hair, glasses"
    finally:
        dispose(window)


def test_typing_after_restore_settings_replaces_the_generations_prompt(qtbot, window):
    panel = window.prompt_panel
    with qtbot.waitSignal(window.controller.generation_applied, timeout=10000):
        window.actions["generate"].trigger()  # "a portrait" (the fixture's prompt)
    record = window.doc.log.gallery()[0]
    panel.prompt_edit.setPlainText("something else")
    window.gallery_panel.item_clicked.emit(record)  # Restore settings
    assert panel.prompt_edit.toPlainText() == "a portrait"
    panel.prompt_edit.setFocus()
    type_text("a lighthouse")
    assert panel.prompt_edit.toPlainText() == "a lighthouse"


def test_typing_after_opening_a_project_replaces_its_prompt(qtbot, window, tmp_path):
    doc = Document()
    doc.prompt, doc.negative_prompt = "green background", "lowres"
    path = tmp_path / "kept.studio"
    ProjectStore.save(path, doc)
    assert window.projects.open_project(path)
    panel = window.prompt_panel
    assert panel.prompt_edit.toPlainText() == "green background"
    panel.prompt_edit.setFocus()
    type_text("black hair")
    assert panel.prompt_edit.toPlainText() == "black hair"
    assert panel.negative_edit.toPlainText() == "lowres"
