"""Slow file work off the GUI thread, with the window still painting while it runs:
``run_while_painting`` (opening a project), ``run_cancellable`` (exports: progress, Cancel)."""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from PySide6.QtCore import QEventLoop, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QApplication, QProgressDialog, QWidget

from studio.core.document.edits import settle_vector_state
from studio.core.errors import CancelledError
from studio.core.jobs.runner import lower_thread_priority

T = TypeVar("T")

FAST_MS = 50  # work done within this never shows a busy cursor
#: While the worker runs, how soon the GUI thread gets the GIL back when it asks (Python's
#: default, 5 ms, is a whole frame's budget: many short numpy calls on the worker release
#: and retake the GIL before the waiting GUI thread wakes, so it waited the full interval).
SWITCH_INTERVAL_S = 0.0005
#: Nice increment of the worker thread (Linux). 0: measured with the 200-layer open under
#: load, a lower-priority worker gets descheduled while it holds the GIL and the GUI thread
#: then waits for it (open 25-27 s, stall max 132-245 ms at nice 5; 10-11 s, 90-126 ms at 0).
WORKER_NICE = 0
#: How long a worker thread waits for more work before it ends (the next work then starts
#: a new one). Starting a thread blocks the GUI thread until the new thread runs (2-3 ms
#: under load, 8000x8000 stall benchmark), so a generation's planning and its result's
#: preparation, a few seconds apart, reuse one.
IDLE_S = 10.0


class IdleThreads:
    """Daemon threads that run the calls submitted to them, started only when none is idle
    and ending after ``idle_s`` without work (so nothing is left running: tests check
    that no non-daemon thread outlives them, and an idle one costs nothing)."""

    def __init__(self, prefix: str, idle_s: float = IDLE_S) -> None:
        self.prefix = prefix
        self.idle_s = idle_s
        self._cond = threading.Condition()
        self._queue: deque[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = deque()
        self._idle = 0
        self._started = 0
        self.threads: set[int] = set()  # idents of the threads alive now

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn(*args)`` on an idle thread (a new one when none is)."""
        future: Future[T] = Future()
        with self._cond:
            self._queue.append((future, fn, args))
            if self._idle >= len(self._queue):
                self._cond.notify()
                return future
            self._started += 1
            thread = threading.Thread(target=self._serve, daemon=True,
                                      name=f"{self.prefix}-{self._started}")
        thread.start()
        return future

    def _serve(self) -> None:
        with self._cond:
            self.threads.add(threading.get_ident())
        try:
            while True:
                with self._cond:
                    self._idle += 1
                    found = self._cond.wait_for(lambda: bool(self._queue), self.idle_s)
                    self._idle -= 1
                    if not found:
                        return
                    future, fn, args = self._queue.popleft()
                if future.set_running_or_notify_cancel():
                    _call(future, fn, args)
                del future, fn, args  # nothing of the work kept alive while idle
        finally:
            with self._cond:
                self.threads.discard(threading.get_ident())


def _call(future: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """``fn(*args)``'s result or error into ``future`` (its own frame: nothing of it stays
    referenced by the waiting thread)."""
    try:
        future.set_result(fn(*args))
    except BaseException as err:  # noqa: BLE001  (handed to the waiting caller)
        future.set_exception(err)


#: The worker threads of ``run_while_painting`` and ``run_cancellable``.
WORKERS = IdleThreads("studio-io")


#: How long after an edit ``after_drawn`` runs its work: the edit's own slice and the
#: repaint it asks for are done by then (a call at the next turn of the event loop runs in
#: the same pass, before the window's timers: measured as part of the edit's stall).
AFTER_DRAWN_MS = 100


def after_drawn(fn: Callable[[], object]) -> None:
    """Run ``fn`` on the GUI thread once the edit being made now has been drawn (an undo
    stack's ``release_later``: freeing an undone 8000x8000 result, 1-2 ms, is not part of
    the slice of the edit that drops it)."""
    QTimer.singleShot(AFTER_DRAWN_MS, fn)


class _Done(QObject):
    """Carries "the work is done" from the worker thread to the waiting GUI loop."""

    done = Signal()


def run_while_painting(fn: Callable[..., T], *args: object) -> T:
    """Run ``fn(*args)`` on a worker thread and return its result (or raise its error).

    The GUI thread waits in an event loop, not on the thread: it keeps repainting and
    running timers (and posted progress), but takes no mouse or keyboard input (so nothing
    can change the document meanwhile), and shows a busy cursor once the work takes longer
    than a blink. The worker runs at a lower priority, and the GIL changes hands more
    often meanwhile, so that the GUI thread keeps its frames.
    """
    def work() -> T:
        settle_vector_state()  # clean vector registers: SSE code (Pillow) at full speed
        lower_thread_priority(WORKER_NICE)
        return fn(*args)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL_S))
    try:
        return _run(work)
    finally:
        sys.setswitchinterval(interval)


def _run(work: Callable[[], T]) -> T:
    return _wait_painting(WORKERS.submit(work))  # a waiting thread: none started each time


def _wait_painting(future: Future[T]) -> T:
    loop = QEventLoop()
    notifier = _Done()
    notifier.done.connect(loop.quit, Qt.ConnectionType.QueuedConnection)
    future.add_done_callback(lambda _f: notifier.done.emit())
    busy: list[bool] = []

    def show_busy() -> None:
        if not future.done():
            busy.append(True)
            QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)

    cursor_timer = QTimer(singleShot=True, interval=FAST_MS)
    cursor_timer.timeout.connect(show_busy)
    cursor_timer.start()
    try:
        while not future.done():
            loop.exec(QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents)
    finally:
        cursor_timer.stop()
        if busy:
            QApplication.restoreOverrideCursor()
    return future.result()


class _Reports(QObject):
    """Carries a task's progress from its worker thread to the GUI thread."""

    progressed = Signal(float, str)  # fraction done (< 0: unknown), what is being done


class TaskState:
    """What slow file work sees (it runs on a worker thread): ``report`` how far along it
    is, and ``check`` (raises ``CancelledError``) or ``cancelled`` between its steps.

    ``listeners`` are called on the worker thread at each report (tests cancel from one).
    """

    def __init__(self) -> None:
        self._cancel = threading.Event()
        self.reports = _Reports()
        self.listeners: list[Callable[[float, str], None]] = []

    def report(self, fraction: float | None, text: str) -> None:
        value = -1.0 if fraction is None else max(0.0, min(1.0, fraction))
        for listener in list(self.listeners):
            listener(value, text)
        self.reports.progressed.emit(value, text)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise CancelledError()


def _lowered(work: Callable[[TaskState], T], state: TaskState) -> T:
    settle_vector_state()  # clean vector registers: SSE code (Pillow) at full speed
    lower_thread_priority(WORKER_NICE)  # the window keeps its frames while the work runs
    return work(state)


def run_cancellable(parent: QWidget | None, title: str, work: Callable[[TaskState], T],
                    state: TaskState | None = None, show_after_ms: int = 400) -> T:
    """Run ``work(state)`` on a worker thread with a progress window and a Cancel button.

    The window opens only if the work takes longer than ``show_after_ms``; it is modal to
    the studio window, so nothing changes the document meanwhile (before it opens the
    window takes no input, as in ``run_while_painting``). Cancel (or Esc) sets the state's
    flag; the work stops at its next ``check`` and this raises ``CancelledError``.
    """
    state = state if state is not None else TaskState()
    dialog = QProgressDialog(title, "Cancel", 0, 100, parent)
    dialog.setObjectName("task_progress_dialog")
    dialog.setWindowTitle(title.rstrip("…"))
    dialog.setWindowModality(Qt.WindowModality.WindowModal)
    dialog.setAutoClose(False)
    dialog.setAutoReset(False)
    dialog.setMinimumDuration(2**30)  # shown by the timer below, not by setValue
    dialog.cancel()  # no window until the timer says so (cancel() also hides it)
    dialog.reset()

    def on_progress(fraction: float, text: str) -> None:
        if fraction < 0:
            dialog.setRange(0, 0)
        else:
            dialog.setRange(0, 100)
            dialog.setValue(int(round(100 * fraction)))
        if text and not state.cancelled:
            dialog.setLabelText(text)

    def on_cancel() -> None:
        state.cancel()
        dialog.setLabelText("Cancelling…")
        dialog.setCancelButtonText("")  # nothing more to press; the work stops soon

    state.reports.progressed.connect(on_progress, Qt.ConnectionType.QueuedConnection)
    future: Future[T] = WORKERS.submit(_lowered, work, state)  # no thread started each time
    loop = QEventLoop()
    notifier = _Done()
    notifier.done.connect(loop.quit, Qt.ConnectionType.QueuedConnection)
    future.add_done_callback(lambda _f: notifier.done.emit())
    shown: list[bool] = []

    def show() -> None:
        if not future.done():
            shown.append(True)
            dialog.canceled.connect(on_cancel)
            dialog.show()
            loop.quit()  # back in with user input let through (to the dialog only)

    timer = QTimer(singleShot=True, interval=show_after_ms)
    timer.timeout.connect(show)
    timer.start()
    try:
        while not future.done():
            loop.exec(QEventLoop.ProcessEventsFlag.AllEvents if shown
                      else QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents)
    finally:
        timer.stop()
        state.reports.progressed.disconnect(on_progress)
        dialog.hide()
        dialog.deleteLater()
    if state.cancelled:
        future.exception()  # the work's own error, if any, gives way to the cancel
        raise CancelledError()
    return future.result()
