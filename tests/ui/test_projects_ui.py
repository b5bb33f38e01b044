"""Projects in the window: save, reopen with undo, the unsaved marker, autosave and recovery,
damaged files, exports and importing another tool's settings."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QFileDialog, QMessageBox

from studio.core.project.store import ProjectStore, autosave_path
from studio.ui.main_window import MainWindow
from tests.fakes import fake_services
from tests.ui.conftest import dispose
from tests.ui.test_canvas import drag, open_grey


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    monkeypatch.setenv("STUDIO_DATA_DIR", str(folder))
    return folder


def paint_stroke(qtbot, window):
    window.canvas.setFocus()
    QTest.keyClick(window.canvas, Qt.Key.Key_B)
    window.tool_bars.set_color((255, 0, 0))
    drag(qtbot, window.canvas, [(10, 10), (30, 12), (40, 30)])


def answer_file_dialogs(monkeypatch, path):
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))


def answer_questions(monkeypatch, button):
    asked = []

    def question(_parent, title, text, *args, **kwargs):
        asked.append((title, text))
        return button

    monkeypatch.setattr(QMessageBox, "question", question)
    return asked


def new_window(qtbot, engine, runner, settings):
    w = MainWindow(fake_services(engine), runner, settings)  # the test disposes of it
    w.show()
    qtbot.waitExposed(w)
    return w


def save_as(qtbot, window, monkeypatch, path):
    answer_file_dialogs(monkeypatch, path)
    with qtbot.waitSignal(window.projects.save_finished, timeout=10000):
        window.actions["save_project_as"].trigger()


def test_save_reopen_and_undo_the_last_stroke(qtbot, window, engine, runner, settings,
                                              tmp_path, monkeypatch):
    layer = open_grey(window)
    before = layer.pixels.copy()
    paint_stroke(qtbot, window)
    painted = window.doc.layers[0].pixels.copy()
    assert not np.array_equal(painted, before)
    assert window.isWindowModified()
    path = tmp_path / "stroke.studio"
    save_as(qtbot, window, monkeypatch, path)
    assert path.is_file() and not window.isWindowModified()
    assert window.windowTitle().startswith("stroke[*]")
    assert "Saved" in window.status.message_label.text()
    window.close()

    second = new_window(qtbot, engine, runner, settings)
    answer_file_dialogs(monkeypatch, path)
    with qtbot.waitSignal(second.projects.project_opened, timeout=5000):
        second.actions["open_image"].trigger()
    np.testing.assert_array_equal(second.doc.layers[0].pixels, painted)
    assert not second.isWindowModified()
    second.activateWindow()
    second.actions["undo"].trigger()  # Ctrl+Z
    np.testing.assert_array_equal(second.doc.layers[0].pixels, before)
    assert second.isWindowModified()
    # Open Recent lists it
    assert second.projects.recent.paths()[0] == str(path.resolve())
    dispose(second)


def test_gallery_survives_a_reopen_and_generations_mark_the_project_modified(
        qtbot, window, engine, runner, settings, tmp_path, monkeypatch):
    window.prompt_panel.prompt_edit.setPlainText("a lighthouse at dusk")
    with qtbot.waitSignal(window.controller.generation_applied, timeout=10000):
        window.actions["generate"].trigger()
    assert window.isWindowModified()
    path = tmp_path / "gallery.studio"
    save_as(qtbot, window, monkeypatch, path)
    image = window.doc.log.image(window.gallery_panel.items[0].image_hashes[0]).copy()
    second = new_window(qtbot, engine, runner, settings)
    assert second.projects.open_project(path)
    assert second.prompt_panel.prompt_edit.toPlainText() == \
        window.prompt_panel.prompt_edit.toPlainText()
    assert len(second.gallery_panel.items) == 1
    assert second.gallery_panel.list.count() == 1
    np.testing.assert_array_equal(
        second.doc.log.image(second.gallery_panel.items[0].image_hashes[0]), image)
    dispose(second)


def test_close_with_unsaved_changes_asks_and_cancel_keeps_the_window(qtbot, window,
                                                                     monkeypatch):
    window.projects.confirm_close = True
    open_grey(window)
    asked = answer_questions(monkeypatch, QMessageBox.StandardButton.Cancel)
    assert not window.close()
    assert window.isVisible() and asked and asked[0][0] == "Unsaved changes"
    answer_questions(monkeypatch, QMessageBox.StandardButton.Discard)
    assert window.close()


def test_close_prompt_save_writes_the_project(qtbot, window, tmp_path, monkeypatch):
    window.projects.confirm_close = True
    open_grey(window)
    path = tmp_path / "on-close.studio"
    answer_file_dialogs(monkeypatch, path)
    answer_questions(monkeypatch, QMessageBox.StandardButton.Save)
    assert window.close()
    project = ProjectStore.load(path)
    assert len(project.document.layers) == 1


def test_new_asks_about_unsaved_changes(qtbot, window, monkeypatch):
    open_grey(window)
    answer_questions(monkeypatch, QMessageBox.StandardButton.Cancel)
    window.actions["new_project"].trigger()
    assert len(window.doc.layers) == 1
    answer_questions(monkeypatch, QMessageBox.StandardButton.Discard)
    window.actions["new_project"].trigger()
    assert window.doc.layers == [] and window.undo.count == 0
    assert not window.isWindowModified() and window.windowTitle().startswith("Untitled")


def test_failed_save_says_so_once_and_keeps_the_work(qtbot, window, tmp_path, monkeypatch):
    open_grey(window)
    not_a_folder = tmp_path / "file"  # like a read-only folder, even for root
    not_a_folder.write_text("x")
    answer_file_dialogs(monkeypatch, not_a_folder / "x.studio")
    with qtbot.waitSignal(window.projects.save_failed, timeout=10000) as blocker:
        window.actions["save_project"].trigger()
    assert "Could not save" in blocker.args[0]
    assert "Could not save" in window.banner.text
    assert window.isWindowModified() and window.projects.path is None
    assert len(window.doc.layers) == 1


def test_autosave_after_the_interval_and_the_restore_offer(qtbot, window, engine, runner,
                                                          settings, tmp_path, monkeypatch):
    open_grey(window)
    path = tmp_path / "auto.studio"
    save_as(qtbot, window, monkeypatch, path)
    paint_stroke(qtbot, window)
    painted = window.doc.layers[0].pixels.copy()
    with qtbot.waitSignal(window.projects.autosaved, timeout=10000) as blocker:
        window.projects.set_autosave_interval(0.2)
    assert blocker.args[0] == str(autosave_path(path))
    window.projects.set_autosave_interval(0)
    assert ProjectStore.is_newer_than_saved(path)
    # A crash: the window goes without a clean close; the next one offers the autosave.
    window.projects.close_requested = lambda: True
    second = new_window(qtbot, engine, runner, settings)
    asked = answer_questions(monkeypatch, QMessageBox.StandardButton.Yes)
    assert second.projects.offer_recovery()
    assert asked and asked[0][0] == "Restore autosave"
    np.testing.assert_array_equal(second.doc.layers[0].pixels, painted)
    assert second.isWindowModified() and second.projects.path == path
    with qtbot.waitSignal(second.projects.save_finished, timeout=10000):
        second.actions["save_project"].trigger()
    assert not autosave_path(path).exists()
    np.testing.assert_array_equal(ProjectStore.load(path).document.layers[0].pixels, painted)
    dispose(second)


def test_untitled_project_autosaves_to_the_data_folder(qtbot, window, data_dir,
                                                       monkeypatch):
    open_grey(window)
    with qtbot.waitSignal(window.projects.autosaved, timeout=10000) as blocker:
        window.projects.autosave()
    side = Path(blocker.args[0])
    assert side.parent == data_dir / "autosave" and side.is_file()
    window.projects.confirm_close = True
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: QMessageBox.StandardButton.Discard)
    assert window.close()  # a clean close: the autosave goes
    assert not side.exists()


@pytest.mark.parametrize("damage", ["corrupt", "newer"])
def test_damaged_or_newer_project_is_refused_and_untouched(qtbot, window, tmp_path,
                                                           monkeypatch, damage):
    path = tmp_path / f"{damage}.studio"
    if damage == "corrupt":
        path.write_bytes(b"SQLite format 3\x00" + b"\x13" * 400)
    else:
        from studio.core.document.layers import Document

        ProjectStore.save(path, Document())
        data = bytearray(path.read_bytes())
        data[60:64] = (999).to_bytes(4, "big")
        path.write_bytes(bytes(data))
    original = path.read_bytes()
    open_grey(window)
    assert not window.projects.open_project(path)
    expected = "newer version" if damage == "newer" else "damaged"
    assert expected in window.banner.text or "not a Latent Studio" in window.banner.text
    assert len(window.doc.layers) == 1  # the open document is kept
    # Saving over it is refused too, and the file is never written.
    with qtbot.waitSignal(window.projects.save_failed, timeout=10000):
        window.projects.save_to(path)
    assert path.read_bytes() == original
    assert window.isWindowModified()


def test_dropping_a_project_opens_it(qtbot, window, tmp_path):
    from studio.core.document.layers import Document, Layer

    doc = Document(width=32, height=16)
    doc.layers.append(Layer(name="dropped", pixels=np.full((16, 32, 3), 77, np.uint8)))
    path = tmp_path / "drop.studio"
    ProjectStore.save(path, doc)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert (window.doc.width, window.doc.height) == (32, 16)
    assert window.doc.layers[0].name == "dropped"
    assert window.windowTitle().startswith("drop[*]")


def test_export_canvas_png_ora_psd_and_open_layers_back(qtbot, window, tmp_path,
                                                        monkeypatch):
    from PIL import Image

    from studio.core.formats.metadata import read_settings

    with qtbot.waitSignal(window.controller.generation_applied, timeout=10000):
        window.actions["generate"].trigger()
    alone = tmp_path / "alone.png"
    assert window.file_actions.export_canvas(str(alone))
    assert read_settings(alone) is not None  # the one generated image: its settings go along
    open_grey(window, (16, 16), 30)
    png = tmp_path / "out.png"
    answer_file_dialogs(monkeypatch, png)
    window.actions["export_image"].trigger()
    assert Image.open(png).size == (window.doc.width, window.doc.height)
    assert read_settings(png) is None  # issue 29: a composite no generation made
    window.actions["strip_metadata"].setChecked(True)
    stripped = tmp_path / "stripped.png"
    assert window.file_actions.export_canvas(str(stripped))
    assert read_settings(stripped) is None
    for suffix in (".ora", ".psd"):
        target = tmp_path / f"layers{suffix}"
        assert window.file_actions.export_canvas(str(target)), window.banner.text
        assert target.stat().st_size > 0
    assert zipfile.ZipFile(tmp_path / "layers.ora").read("mimetype") == b"image/openraster"
    answer_questions(monkeypatch, QMessageBox.StandardButton.Discard)
    window.actions["new_project"].trigger()
    assert window.file_actions.open_path(str(tmp_path / "layers.psd"))
    assert len(window.doc.layers) == 2


def test_export_gallery_with_a_template_and_a_contact_sheet(qtbot, window, tmp_path):
    window.prompt_panel.prompt_edit.setPlainText("a red fox")
    window.prompt_panel.batch_spin.setValue(2)
    with qtbot.waitSignal(window.controller.busy_changed, timeout=10000,
                          check_params_cb=lambda busy: not busy):
        window.actions["generate"].trigger()
    assert len(window.gallery_panel.items) == 2
    out = tmp_path / "gallery"
    out.mkdir()
    files = window.file_actions.export_gallery(str(out), "{index}-{seed}-{prompt}-{model}",
                                               contact_sheet=True)
    seeds = sorted(r.request.seed for r in window.gallery_panel.items)
    names = sorted(p.name for p in files)
    assert len(files) == 3 and "contact_sheet.png" in names
    assert any(n.endswith(f"-{seeds[0]}-a_red_fox-fake-tiny.png") for n in names), names
    window.gallery_panel.list.setCurrentRow(0)
    only = window.file_actions.export_gallery(str(out), "{seed}", selected_only=True)
    assert [p.name for p in only] == [f"{window.gallery_panel.items[0].request.seed}.png"]


def test_import_settings_from_an_a1111_image(qtbot, window, monkeypatch, foreign_metadata):
    path = foreign_metadata / "AUTOMATIC1111-automatic1111_cropped.png"
    answer_file_dialogs(monkeypatch, path)
    window.actions["import_settings"].trigger()
    values = window.prompt_panel.values()
    # As the file's "parameters" text says (read by hand, not by the parser under test):
    # photo of a duck / Negative prompt: monochrome / Steps: 15, Sampler: UniPC,
    # CFG scale: 5, Seed: 235284042, Size: 512x400
    assert values["prompt"] == "photo of a duck"
    assert values["negative_prompt"] == "monochrome"
    assert values["seed"] == 235284042
    assert values["steps"] == 15
    assert values["guidance"] == pytest.approx(5.0)
    assert values["scheduler"] == "UniPC"
    assert (values["width"], values["height"]) == (512, 400)
    assert "AUTOMATIC1111" in window.status.message_label.text()


def test_import_settings_from_an_image_without_any(qtbot, window, tmp_path):
    from PIL import Image

    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(path)
    assert not window.file_actions.import_settings(str(path))
    assert "no generation settings" in window.banner.text


def test_saving_runs_off_the_gui_thread_and_the_window_stays_responsive(
        qtbot, window, tmp_path, monkeypatch):
    import threading
    import time

    from PySide6.QtCore import QTimer

    original = ProjectStore.write
    threads = []

    def slow_write(*args, **kwargs):
        threads.append(threading.current_thread())
        time.sleep(0.3)
        return original(*args, **kwargs)

    monkeypatch.setattr(ProjectStore, "write", staticmethod(slow_write))
    open_grey(window)
    ticks = []
    timer = QTimer(interval=20)
    timer.timeout.connect(lambda: ticks.append(window.status.message_label.text()))
    timer.start()
    answer_file_dialogs(monkeypatch, tmp_path / "slow.studio")
    with qtbot.waitSignal(window.projects.save_finished, timeout=10000):
        window.actions["save_project"].trigger()
    timer.stop()
    assert threads and threads[0] is not threading.main_thread()
    assert ticks.count("Saving…") >= 5  # the event loop ran while the file was written
    assert window.status.message_label.text() == "Saved slow.studio"


def test_declining_the_restore_offer_discards_the_autosave(qtbot, window, data_dir,
                                                           monkeypatch):
    open_grey(window)
    with qtbot.waitSignal(window.projects.autosaved, timeout=10000) as blocker:
        window.projects.autosave()
    side = Path(blocker.args[0])
    window.projects.close_requested = lambda: True  # a crash
    second = MainWindow(None, None, window.settings)
    try:
        asked = answer_questions(monkeypatch, QMessageBox.StandardButton.No)
        assert not second.projects.offer_recovery()
        assert asked and not side.exists() and second.doc.layers == []
    finally:
        dispose(second)


def test_open_recent_lists_at_most_ten_existing_files_and_opens_them(qtbot, window,
                                                                     tmp_path):
    from studio.core.document.layers import Document

    recent = window.projects.recent
    paths = []
    for i in range(12):
        path = tmp_path / f"p{i}.studio"
        ProjectStore.save(path, Document(width=8 + i, height=8))
        recent.add(path)
        paths.append(path)
    paths[11].unlink()
    menu = window.menuBar().findChild(type(recent.menu), "recent_menu")
    recent.refresh_menu()
    entries = [a for a in menu.actions() if a.data()]
    assert len(entries) == 9  # ten kept, the newest of them gone from the disk
    assert entries[0].data() == str(paths[10].resolve())
    entries[0].trigger()
    assert Path(window.projects.path).resolve() == paths[10].resolve()
    assert window.doc.width == 18


# Prompt, seed and steps as each file's own metadata says them (read by hand: the ComfyUI
# prompt graph's KSampler and CLIPTextEncode nodes, Fooocus' "parameters" JSON, InvokeAI's
# "invokeai_metadata", NovelAI's Description and Comment, the JPEG's EXIF user comment).
IMPORTED = {
    "ComfyUI-img2img_cropped.png": (
        "photograph of victorian woman with wings, sky clouds, meadow grass",
        280823642470253, 20),
    "Fooocus-fooocus1_cropped.png": ("a smiling goldfish", 6952411511246973023, 30),
    "InvokeAI-invokeai_imeta1.png": (
        "digital artwork, oil painting. painterly brushstrokes, holidays,", 3293022630, 35),
    "NovelAI-novelai1_cropped.png": ("masterpiece, best quality,  cat, space, icon",
                                     2253955223, 50),
    "AUTOMATIC1111-automatic1111_cropped.jpg": ("photo of a duck", 235284042, 15),
}


@pytest.mark.parametrize("name", sorted(IMPORTED))
def test_import_settings_from_other_tools(qtbot, window, name, foreign_metadata):
    assert window.file_actions.import_settings(str(foreign_metadata / name)), window.banner.text
    values = window.prompt_panel.values()
    prompt, seed, steps = IMPORTED[name]
    assert values["prompt"] == prompt
    assert values["seed"] == seed % 2**32  # the seed box holds 32 bits
    assert values["steps"] == steps


def test_an_edit_made_while_saving_keeps_the_project_modified(qtbot, window, tmp_path,
                                                              monkeypatch):
    import threading

    original = ProjectStore.write
    release = threading.Event()

    def held_write(*args, **kwargs):
        release.wait(5)
        return original(*args, **kwargs)

    monkeypatch.setattr(ProjectStore, "write", staticmethod(held_write))
    open_grey(window)
    path = tmp_path / "busy.studio"
    with qtbot.waitSignal(window.projects.save_finished, timeout=10000):
        window.projects.save_as(path)
        open_grey(window, (8, 8), 5)  # while the file is being written
        release.set()
    assert window.isWindowModified()
    assert len(ProjectStore.load(path).document.layers) == 1
    window.actions["undo"].trigger()
    assert not window.isWindowModified()  # back at the saved state


def test_a_slow_project_opens_without_freezing_the_window(qtbot, window, tmp_path,
                                                         monkeypatch):
    """Reading a big project happens off the GUI thread: the window keeps painting (timers
    run, the status says what is happening) and opens the project when the read is done."""
    import threading
    import time

    from PySide6.QtCore import QTimer

    from studio.core.document.layers import Document, Layer

    doc = Document(width=24, height=24)
    doc.layers.append(Layer(name="big", pixels=np.full((24, 24, 3), 9, np.uint8)))
    path = tmp_path / "big.studio"
    ProjectStore.save(path, doc)
    real_load = ProjectStore.load
    seen: dict[str, object] = {}

    def slow_load(p, progress=None):
        seen["thread"] = threading.current_thread() is not threading.main_thread()
        time.sleep(0.6)  # a project of a few hundred generations on a slow disk
        return real_load(p, progress)

    monkeypatch.setattr(ProjectStore, "load", staticmethod(slow_load))
    ticks: list[str] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(window.status.message_label.text()))
    timer.start(20)
    try:
        assert window.projects.open_project(path)
    finally:
        timer.stop()
    assert seen["thread"] is True
    assert len(ticks) >= 5  # the event loop ran during the read (a frozen window: 0)
    assert "Opening big.studio" in ticks[0]
    assert window.doc.layers[0].name == "big"
    assert window.status.message_label.text() == "Opened big.studio"


def test_an_export_shows_progress_and_cancel_leaves_no_file(qtbot, window, tmp_path):
    open_grey(window, (64, 48), 30)
    target = tmp_path / "keep.png"
    target.write_bytes(b"the user's older file")
    seen: list[str] = []

    def cancel_at_first_report(task) -> None:
        task.listeners.append(lambda _fraction, text: (seen.append(text), task.cancel()))

    window.file_actions.task_started.connect(cancel_at_first_report)
    for name in ("keep.png", "layers.ora", "layers.psd"):
        assert not window.file_actions.export_canvas(str(tmp_path / name))
    assert seen and seen[0].startswith("Flattening")
    assert window.status.message_label.text() == "Export cancelled: layers.psd was not written"
    assert target.read_bytes() == b"the user's older file"  # as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]  # no partial file


def test_a_cancelled_gallery_export_writes_nothing(qtbot, window, tmp_path):
    window.prompt_panel.batch_spin.setValue(3)
    with qtbot.waitSignal(window.controller.busy_changed, timeout=10000,
                          check_params_cb=lambda busy: not busy):
        window.actions["generate"].trigger()
    out = tmp_path / "gallery"
    out.mkdir()
    reports: list[tuple[float, str]] = []

    def cancel_at_third_image(task) -> None:
        def listen(fraction: float, text: str) -> None:
            reports.append((fraction, text))
            if text.startswith("Writing image 3"):
                task.cancel()  # two images are written by now
        task.listeners.append(listen)

    window.file_actions.task_started.connect(cancel_at_third_image)
    assert window.file_actions.export_gallery(str(out), "{index}", contact_sheet=True) == []
    assert [t for _f, t in reports][:2] == ["Writing image 1 of 3: 1.png",
                                            "Writing image 2 of 3: 2.png"]
    assert list(out.iterdir()) == []
    assert window.status.message_label.text() == "Export cancelled: no image was written"


def test_a_slow_export_opens_a_progress_window_whose_cancel_stops_it(qtbot, window,
                                                                      tmp_path):
    import threading

    from PySide6.QtWidgets import QProgressDialog

    from studio.core.errors import CancelledError
    from studio.ui.busy import run_cancellable

    release = threading.Event()

    def slow(task) -> str:
        task.report(0.25, "Writing a quarter…")
        release.wait(5)
        task.check()
        return "done"

    def press_cancel() -> None:
        dialog = window.findChild(QProgressDialog, "task_progress_dialog")
        assert dialog is not None and dialog.isVisible()
        assert dialog.labelText() == "Writing a quarter…" and dialog.value() == 25
        dialog.canceled.emit()  # what its Cancel button (or Esc) does
        release.set()

    QTimer.singleShot(300, press_cancel)
    with pytest.raises(CancelledError):
        run_cancellable(window, "Exporting…", slow, show_after_ms=50)
    release.set()


def test_a_save_just_started_is_waited_for_without_the_event_loop(qtbot, window, tmp_path):
    """SIGTERM's close waits for the running write on the GUI thread, without turning the
    event loop. The write must then already run: a pool worker started from the event loop
    was only queued on a timer, so a SIGTERM handled before it left the window waiting for
    a write that never started (60 s and more, then killed: tests/ui/test_launch.py)."""
    from PySide6.QtCore import QTimer

    open_grey(window)
    path = tmp_path / "waited.studio"
    seen = {}

    def in_the_event_loop():  # as SIGTERM's handler runs: from the loop, blocking it
        window.projects.save_to(path)
        window.projects.wait(10)
        seen["written"] = path.is_file()

    with qtbot.waitSignal(window.projects.save_finished, timeout=60000):
        QTimer.singleShot(0, in_the_event_loop)
        qtbot.waitUntil(lambda: "written" in seen, timeout=60000)
    assert seen["written"]
    assert len(ProjectStore.load(path).document.layers) == 1
