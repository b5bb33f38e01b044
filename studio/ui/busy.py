"""Slow file work off the GUI thread, with the window still painting while it runs."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from PySide6.QtCore import QEventLoop, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QApplication

T = TypeVar("T")

FAST_MS = 50  # work done within this never shows a busy cursor


class _Done(QObject):
    """Carries "the work is done" from the worker thread to the waiting GUI loop."""

    done = Signal()


def run_while_painting(fn: Callable[..., T], *args: object) -> T:
    """Run ``fn(*args)`` on a worker thread and return its result (or raise its error).

    The GUI thread waits in an event loop, not on the thread: it keeps repainting and
    running timers (and posted progress), but takes no mouse or keyboard input (so nothing
    can change the document meanwhile), and shows a busy cursor once the work takes longer
    than a blink.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="studio-io") as pool:
        future: Future[T] = pool.submit(fn, *args)
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
