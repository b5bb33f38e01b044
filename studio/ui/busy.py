"""Slow file work off the GUI thread, with the window still painting while it runs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from PySide6.QtCore import QEventLoop, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QApplication

from studio.core.jobs.runner import lower_thread_priority

T = TypeVar("T")

FAST_MS = 50  # work done within this never shows a busy cursor
#: While the worker runs, how soon the GUI thread gets the GIL back when it asks (Python's
#: default, 5 ms, is a whole frame's budget: many short numpy calls on the worker release
#: and retake the GIL before the waiting GUI thread wakes, so it waited the full interval).
SWITCH_INTERVAL_S = 0.0005
#: The worker yields the CPU to the GUI thread (nice increment, Linux).
WORKER_NICE = 5


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
        lower_thread_priority(WORKER_NICE)
        return fn(*args)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL_S))
    try:
        return _run(work)
    finally:
        sys.setswitchinterval(interval)


def _run(work: Callable[[], T]) -> T:
    with ThreadPoolExecutor(1, thread_name_prefix="studio-io") as pool:
        future: Future[T] = pool.submit(work)
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
