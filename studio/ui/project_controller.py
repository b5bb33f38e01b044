"""``ProjectController``: New, Open, Save, Save As, autosave and recovery for one window.

The window shows one project. Its name and an unsaved-changes marker (``[*]``) are in the
title, driven by the undo stack's clean flag and by new generations in the log. Saving takes
a snapshot on the GUI thread and writes it on a thread of its own, one write at a time;
a failed save says why once and leaves the document dirty. Autosaves go to the project's side
file (``P.studio.autosave``), or for an untitled project to a file in the user's data folder.

A window made by ``StudioSession`` asks Save / Discard / Cancel before closing with unsaved
changes (``confirm_close``); a bare window (scripts, tests) closes without asking.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from studio.core.document.layers import Document
from studio.core.document.undo import UndoStack
from studio.core.errors import (
    ProjectCorruptError,
    ProjectSaveError,
    ProjectVersionError,
    StudioError,
)
from studio.core.project.generation_log import GenerationLog
from studio.core.project.store import (
    AUTOSAVE_SUFFIX,
    Project,
    ProjectSnapshot,
    ProjectStore,
    SaveReport,
    autosave_path,
)
from studio.session.document import DocumentModel
from studio.settings import DEFAULT_AUTOSAVE_MINUTES
from studio.ui.busy import run_while_painting
from studio.ui.recent_files import RecentFiles

PROJECT_SUFFIX = ".studio"
PROJECT_FILTER = "Latent Studio projects (*.studio)"
UNTITLED = "Untitled"


def _import_worker_library() -> None:
    import superqt.utils  # noqa: F401  (see ``warm_up_worker_library``)


def warm_up_worker_library(delay_ms: int = 2000) -> None:
    """Import superqt (the model manager's worker library, ~0.35 s; it was the save
    worker's) on a thread soon after start: kept off the start-up path, and not imported by
    the GUI thread later (at the first autosave it froze the window 1.8 s under load)."""
    def start() -> None:
        threading.Thread(target=_import_worker_library, name="import-superqt",
                         daemon=True).start()

    QTimer.singleShot(delay_ms, start)


def data_dir() -> Path:
    """Where autosaves of untitled projects go (``STUDIO_DATA_DIR`` overrides)."""
    env = os.environ.get("STUDIO_DATA_DIR")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("Latent Studio", appauthor=False))


def untitled_autosave_dir() -> Path:
    return data_dir() / "autosave"


def ask_save_changes(parent: Any, name: str) -> str:
    """``"save"``, ``"discard"`` or ``"cancel"``: what to do with unsaved changes."""
    buttons = (QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
               | QMessageBox.StandardButton.Cancel)
    answer = QMessageBox.question(parent, "Unsaved changes",
                                  f"Save the changes to “{name}” before closing it?",
                                  buttons, QMessageBox.StandardButton.Save)
    return {QMessageBox.StandardButton.Save: "save",
            QMessageBox.StandardButton.Discard: "discard"}.get(answer, "cancel")


def ask_restore(parent: Any, name: str, when: float) -> bool:
    """Whether to restore an autosave newer than the saved project."""
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(when)) if when else "recently"
    answer = QMessageBox.question(
        parent, "Restore autosave",
        f"Latent Studio did not close cleanly. An autosave of “{name}” from {stamp} holds "
        "changes that were not saved. Restore it?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.Yes)
    return answer == QMessageBox.StandardButton.Yes


class ProjectController(QObject):
    """The project side of one window: file, dirty state, title, saves and autosaves.

    Parameters
    ----------
    parent
        The window: its title shows the project, the dialogs belong to it.
    document
        The document the project fills (opening one replaces its contents).
    recent
        The recent projects list.
    prompts
        The prompt and negative prompt as typed, which the file keeps.
    show_status, show_error
        A line in the status bar; a problem, in one line.
    autosave_minutes
        The autosave interval (``0``: off), from the settings.
    confirm_close
        Ask about unsaved changes before closing (see the module docs).
    prepare_views
        Called on the reading thread with an opened project's document: draws what the
        views show of it (the canvas composite, thumbnails) and returns the call, made on
        the GUI thread just before the document is shown, that hands them over. The window
        keeps painting while a large project opens.
    """

    save_started = Signal(str)
    _write_ended = Signal(object)  # (report, error) of a write, from its thread
    save_finished = Signal(str)  # the project path
    save_failed = Signal(str)  # the message shown
    autosaved = Signal(str)  # the autosave file
    project_opened = Signal(str)
    # Opening: what is being done and how far along (0..1), from the reading thread too;
    # ``open_ended`` when the project is shown or could not be opened.
    open_progressed = Signal(str, float)
    open_ended = Signal()

    def __init__(self, parent: QWidget, document: DocumentModel, recent: RecentFiles,
                 prompts: Callable[[], tuple[str, str]], show_status: Callable[[str], None],
                 show_error: Callable[[str], None],
                 autosave_minutes: float = DEFAULT_AUTOSAVE_MINUTES,
                 confirm_close: bool = False,
                 prepare_views: Callable[[Document], Callable[[], None]] | None = None) -> None:
        super().__init__(parent)
        self.prepare_views = prepare_views
        self.parent_widget = parent
        self.document = document
        self.prompts = prompts
        self.show_status, self.show_error = show_status, show_error
        self.path: Path | None = None
        self.confirm_close = confirm_close  # see the module docs
        self.must_save_as = False  # the file on disk cannot be written (newer or damaged)
        self.recent = recent
        self._log_version = 0
        self._saved_log_version = 0
        self._forced_dirty = False
        self._untitled_base: Path | None = None
        self._worker: Any = None
        self._write_done = threading.Event()
        self._write_done.set()
        self._write_ended.connect(self._on_write_ended)
        self._queued_save: Path | None = None
        self._closing = False
        # The system is ending the app (SIGTERM): no one may be there to answer, so the
        # close saves without asking (see ``save_unattended``).
        self.shutting_down = False
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setObjectName("autosave_timer")
        self.autosave_timer.timeout.connect(self.autosave)
        self.set_autosave_interval(autosave_minutes * 60)
        document.undo_stack.add_listener(self._on_undo_changed)
        document.doc.log.add_listener(self._on_log_event)
        self.update_title()
        warm_up_worker_library()

    # -- state -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.stem if self.path is not None else UNTITLED

    @property
    def is_modified(self) -> bool:
        return (not self.document.undo_stack.clean or self._forced_dirty
                or self._log_version != self._saved_log_version)

    @property
    def saving(self) -> bool:
        return self._worker is not None

    def update_title(self) -> None:
        self.parent_widget.setWindowTitle(f"{self.name}[*] — Latent Studio")
        self.parent_widget.setWindowModified(self.is_modified)

    def _on_undo_changed(self, _name: str, _state: dict[str, Any]) -> None:
        self.update_title()

    def _on_log_event(self, name: str, _payload: dict[str, Any]) -> None:
        if name == "record_added":
            self._log_version += 1
            self.update_title()

    def _mark_saved(self, undo_index: int | None, log_version: int) -> None:
        self.document.undo_stack.set_clean(undo_index)
        self._saved_log_version = log_version
        self._forced_dirty = False
        self.update_title()

    # -- autosave settings -------------------------------------------------------------------
    def set_autosave_interval(self, seconds: float) -> None:
        """Autosave every ``seconds`` (``0`` turns autosave off)."""
        if seconds > 0:
            self.autosave_timer.start(max(1, int(seconds * 1000)))
        else:
            self.autosave_timer.stop()

    # -- new and open ------------------------------------------------------------------------
    def maybe_save(self) -> bool:
        """Ask about unsaved changes; ``False`` when the user cancelled (or a save failed)."""
        if not self.is_modified:
            return True
        answer = ask_save_changes(self.parent_widget, self.name)
        if answer == "cancel":
            return False
        if answer == "save":
            return self.save_now()
        return True

    def new_project(self) -> bool:
        if not self.maybe_save():
            return False
        self._discard_own_autosaves()
        self._adopt(Document(), None, GenerationLog(), None)
        self.show_status("New project")
        return True

    def open_project(self, path: str | os.PathLike[str] | None = None,
                     restore: bool | None = None) -> bool:
        """Open a ``.studio`` file into this window (asks about unsaved changes first).

        When its autosave is newer, ``restore`` says whether to open that instead; ``None``
        asks the user.
        """
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self.parent_widget, "Open project", "",
                                                  PROJECT_FILTER)
            if not path:
                return False
        target = Path(path)
        source = target
        restored = False
        if ProjectStore.is_newer_than_saved(target) and target.is_file():
            if restore is None:
                meta = self._meta(autosave_path(target))
                restore = ask_restore(self.parent_widget, target.stem,
                                      float(meta.get("saved_at", "0") or 0))
            if restore:
                source, restored = autosave_path(target), True
        self.show_status(f"Opening {target.name}…")
        try:
            project, show = self._read(source, target.name)
        except StudioError as err:
            self.show_status("")
            self.recent.prune()
            self.show_error(str(err))
            return False
        if not self.maybe_save():
            self.show_status("")
            return False
        self._discard_own_autosaves()
        if project.problems:
            # Opened as far as it could be read: an unsaved copy, so the damaged file is never
            # written over; one line says what was lost.
            self._adopt(project.document, project.undo_stack, project.log, None, show)
            self._forced_dirty = True
            self.update_title()
            more = (f" (and {len(project.problems) - 1} more problem(s))"
                    if len(project.problems) > 1 else "")
            self.show_error(f"{target.name} is damaged: {project.problems[0]}{more} It opened "
                            "as an unsaved copy; save it under a new name.")
            return True
        self._adopt(project.document, project.undo_stack, project.log, target, show)
        if restored:
            self._forced_dirty = True
            self.update_title()
        self.recent.add(target)
        self.show_status(
            f"Restored the autosave of {target.name}" if restored else f"Opened {target.name}")
        self.project_opened.emit(str(target))
        return True

    def restore_untitled(self, side_file: Path) -> bool:
        """Open the autosave of an untitled project (after a crash) as unsaved work."""
        try:
            project, show = self._read(side_file, UNTITLED)
        except StudioError as err:
            self.show_error(str(err))
            return False
        self._adopt(project.document, project.undo_stack, project.log, None, show)
        self._untitled_base = Path(str(side_file)[:-len(AUTOSAVE_SUFFIX)])
        self._forced_dirty = True
        self.update_title()
        self.show_status("Restored an unsaved project")
        return True

    def offer_recovery(self) -> bool:
        """At start: offer the newest autosave newer than its project (recent or untitled)."""
        candidates: list[tuple[float, Path, Path | None]] = []
        for recent in self.recent.paths():
            side = autosave_path(recent)
            if ProjectStore.is_newer_than_saved(recent):
                candidates.append((side.stat().st_mtime, side, Path(recent)))
        folder = untitled_autosave_dir()
        if folder.is_dir():
            for side in folder.glob(f"*{PROJECT_SUFFIX}{AUTOSAVE_SUFFIX}"):
                candidates.append((side.stat().st_mtime, side, None))
        if not candidates:
            return False
        _when, side, project = max(candidates, key=lambda c: c[0])
        meta = self._meta(side)
        name = project.stem if project is not None else UNTITLED
        if not ask_restore(self.parent_widget, name, float(meta.get("saved_at", "0") or 0)):
            ProjectStore.discard_autosave(project or Path(str(side)[:-len(AUTOSAVE_SUFFIX)]))
            return False
        if project is not None:
            return self.open_project(project, restore=True)
        return self.restore_untitled(side)

    @staticmethod
    def _meta(path: Path) -> dict[str, str]:
        try:
            return ProjectStore.read_meta(path)
        except Exception:  # an unreadable autosave: offer it anyway, without a date
            return {}

    def _read(self, source: Path, name: str) -> tuple[Project, Callable[[], None] | None]:
        """Read ``source`` and draw its views on a worker thread; the window keeps painting
        and shows how far along it is."""
        prepare = self.prepare_views

        said: list[tuple[str, int]] = [("", -1)]
        words = {"checking": "checking", "layers": "reading layers",
                 "gallery": "reading the gallery", "history": "reading the edit history"}

        def progress(fraction: float, what: str) -> None:
            text, percent = f"Opening {name}: {words.get(what, what)}", int(60 * fraction)
            if (text, percent) != said[0]:  # at most one message a percent
                said[0] = (text, percent)
                self.open_progressed.emit(text, percent / 100)
            time.sleep(0)  # between layers: the GUI thread takes the GIL if it waits

        def read() -> tuple[Project, Callable[[], None] | None]:
            project = ProjectStore.load(source, progress)
            if prepare is None:
                return project, None
            layers = len(project.document.layers)
            self.open_progressed.emit(f"Opening {name}: drawing {layers} layers", 0.6)
            return project, prepare(project.document)

        try:
            return run_while_painting(read)
        finally:
            self.open_ended.emit()

    def _adopt(self, doc: Document, stack: UndoStack | None, log: GenerationLog,
               path: Path | None, show: Callable[[], None] | None = None) -> None:
        """Show ``doc`` in the window: the panels keep their document and stack objects
        (``DocumentModel.replaced`` tells them to rebuild); ``show`` first hands them what
        was drawn while reading."""
        self.path = path
        self.must_save_as = False
        self._log_version = self._saved_log_version = 0
        self._forced_dirty = False
        if show is not None:
            show()
        self.document.replace(doc, stack, log)
        self.update_title()

    # -- saving ------------------------------------------------------------------------------
    def save(self) -> bool:
        """Save to the project's file in the background (Save As when it has none)."""
        if self.path is None or self.must_save_as:
            return self.save_as()
        return self.save_to(self.path)

    def save_as(self, path: str | os.PathLike[str] | None = None) -> bool:
        if path is None:
            start = str(self.path) if self.path is not None else f"{UNTITLED}{PROJECT_SUFFIX}"
            path, _ = QFileDialog.getSaveFileName(self.parent_widget, "Save project as", start,
                                                  PROJECT_FILTER)
            if not path:
                return False
        target = Path(path)
        if target.suffix.lower() != PROJECT_SUFFIX:
            target = target.with_name(target.name + PROJECT_SUFFIX)
        return self.save_to(target)

    def save_to(self, path: Path) -> bool:
        """Snapshot now, write on a worker; ``save_finished``/``save_failed`` tell the end."""
        if self._worker is not None:
            self._queued_save = path  # after the running write (an autosave, say)
            return True
        snap = self._snapshot()
        self._start(path, snap, autosave=False)
        return True

    def save_now(self) -> bool:
        """Save on this thread (when closing); ``False`` if it failed or was cancelled."""
        if self.path is None or self.must_save_as:
            path, _ = QFileDialog.getSaveFileName(
                self.parent_widget, "Save project as", f"{self.name}{PROJECT_SUFFIX}",
                PROJECT_FILTER)
            if not path:
                return False
            target = Path(path)
        else:
            target = self.path
        self.wait()
        return self._write_now(target)

    def _write_now(self, target: Path) -> bool:
        """Write the project to ``target`` on this thread; False (and said) when it failed."""
        snap = self._snapshot()
        try:
            report = ProjectStore.write(target, snap)
        except StudioError as err:
            self._on_failed(target, err)
            return False
        self._on_saved(target, snap, self._log_version, report)
        return True

    def _snapshot(self) -> ProjectSnapshot:
        doc = self.document.doc
        # The prompt text is view state the panel owns; the file keeps it for the reopen.
        doc.prompt, doc.negative_prompt = self.prompts()
        return ProjectStore.snapshot(doc, self.document.undo_stack, doc.log)

    def _start(self, path: Path, snap: ProjectSnapshot, autosave: bool) -> None:
        log_version = self._log_version

        def returned(report: SaveReport) -> None:
            if self._closing:
                return  # the window is going; a close-time save reports itself
            if autosave:
                self.autosaved.emit(str(report.path))
            else:
                self._on_saved(path, snap, log_version, report)

        def errored(err: Exception) -> None:
            if self._closing:
                return
            if autosave:
                self.show_status(f"Autosave failed: {err}")
            else:
                self._on_failed(path, err)

        self._handlers = (returned, errored)  # Qt holds plain callables weakly
        store = ProjectStore.autosave if autosave else ProjectStore.write
        done = self._write_done
        done.clear()

        def write() -> None:
            try:
                outcome: tuple[Any, Any] = (store(path, snap), None)
            except Exception as err:  # noqa: BLE001 (said to the user by ``errored``)
                outcome = (None, err)
            finally:
                done.set()  # lets ``wait`` return without running the event loop
            self._write_ended.emit(outcome)  # queued to the GUI thread

        # A thread of its own, started now: a pool worker started from the event loop is
        # queued on a timer, so a SIGTERM handled before that timer left ``wait`` (on the
        # GUI thread, blocking it) waiting for a write that could never start.
        worker = threading.Thread(target=write, name="project-write", daemon=True)
        self._worker = worker
        if not autosave:
            self.show_status("Saving…")
            self.save_started.emit(str(path))
        worker.start()

    def _on_write_ended(self, outcome: tuple[Any, Any]) -> None:
        report, err = outcome
        returned, errored = self._handlers
        if err is None:
            returned(report)
        else:
            errored(err)
        self._on_worker_finished()

    def _on_worker_finished(self) -> None:
        self._worker = None
        queued, self._queued_save = self._queued_save, None
        if queued is not None and not self._closing:
            self.save_to(queued)

    def _on_saved(self, path: Path, snap: ProjectSnapshot, log_version: int,
                  report: SaveReport) -> None:
        was_untitled = self.path is None
        self.path = path
        self.must_save_as = False
        self._mark_saved(snap.undo_index, log_version)
        if was_untitled:
            self._discard_untitled_autosave()
        ProjectStore.discard_autosave(path)
        self.document.doc.log.forget_images(set(report.image_hashes),
                                     lambda key: ProjectStore.read_image(path, key))
        self.recent.add(path)
        self.show_status(f"Saved {path.name}")
        self.save_finished.emit(str(path))

    def _on_failed(self, path: Path, err: Exception) -> None:
        if isinstance(err, ProjectVersionError | ProjectCorruptError) and path == self.path:
            self.must_save_as = True  # never write over it: the next Save asks for a name
        message = str(err) if isinstance(err, StudioError) else (
            f"Could not save “{path.name}”: {err}. Your work is still open; try another "
            "folder.")
        if isinstance(err, ProjectSaveError | ProjectVersionError | ProjectCorruptError):
            message += " Your work is still open: save it under another name or folder."
        self.show_status("Save failed")
        self.show_error(message)
        self.save_failed.emit(message)

    def wait(self, seconds: float = 120.0) -> None:
        """Block until the running write (if any) is done."""
        self._write_done.wait(seconds)

    # -- autosave ----------------------------------------------------------------------------
    def autosave_base(self) -> Path:
        if self.path is not None and not self.must_save_as:
            return self.path
        if self._untitled_base is None:
            folder = untitled_autosave_dir()
            folder.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            self._untitled_base = folder / f"{UNTITLED}-{stamp}-{os.getpid()}{PROJECT_SUFFIX}"
        return self._untitled_base

    def autosave(self) -> bool:
        """Write the autosave side file now if there are unsaved changes."""
        if not self.is_modified or self._worker is not None or self._closing:
            return False
        try:
            base = self.autosave_base()
        except OSError as err:
            self.show_status(f"Autosave failed: {err}")
            return False
        snap = self._snapshot()
        self._start(base, snap, autosave=True)
        return True

    def _discard_untitled_autosave(self) -> None:
        if self._untitled_base is not None:
            ProjectStore.discard_autosave(self._untitled_base)
            self._untitled_base = None

    def _discard_own_autosaves(self) -> None:
        self.wait()
        self._discard_untitled_autosave()
        if self.path is not None:
            ProjectStore.discard_autosave(self.path)

    # -- closing -----------------------------------------------------------------------------
    def close_requested(self) -> bool:
        """Called by the window's close event: ``False`` keeps the window open."""
        if self.shutting_down:
            self._closing = True
            self.autosave_timer.stop()
            self.wait()
            if self.save_unattended():
                self._discard_own_autosaves()  # saved: nothing to recover
            return True  # a failed save keeps the autosave: offered at the next start
        if self.confirm_close and not self.maybe_save():
            return False
        self._closing = True
        self.autosave_timer.stop()
        self.wait()
        if not self.is_modified or self.confirm_close:
            self._discard_own_autosaves()  # a clean close: nothing to recover
        return True

    def save_unattended(self) -> bool:
        """Save unsaved changes without asking: to the project's file, or (untitled, or a
        file that cannot be written) to a new project in the user's data folder, which
        Open Recent then lists. ``True`` when nothing is left unsaved."""
        if not self.is_modified:
            return True
        if self.path is not None and not self.must_save_as:
            target = self.path
        else:
            folder = data_dir() / "saved at shutdown"
            stamp = time.strftime("%Y-%m-%d %H-%M-%S")
            target = folder / f"{self.name} {stamp}{PROJECT_SUFFIX}"
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                self._on_failed(target, err)
                return False
        return self._write_now(target)

    def load(self, project: Project) -> None:
        """Show an already loaded project (for tests and scripts)."""
        self._adopt(project.document, project.undo_stack, project.log, project.path)
