"""Slow file work off the GUI thread, with the window still painting while it runs."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TypeVar

from PySide6.QtCore import QCoreApplication, QEventLoop, Qt
from PySide6.QtWidgets import QApplication

T = TypeVar("T")

FAST_SECONDS = 0.05  # work done within this never shows a busy cursor
POLL_SECONDS = 0.02


def run_while_painting(fn: Callable[..., T], *args: object) -> T:
    """Run ``fn(*args)`` on a worker thread and return its result (or raise its error).

    The GUI thread waits without freezing: it keeps repainting and running timers, but
    takes no mouse or keyboard input (so nothing can change the document meanwhile), and
    shows a busy cursor once the work takes longer than a blink.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="studio-io") as pool:
        future = pool.submit(fn, *args)
        wait([future], timeout=FAST_SECONDS)
        if not future.done():
            QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
            try:
                while not future.done():
                    QCoreApplication.processEvents(
                        QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents, 20)
                    wait([future], timeout=POLL_SECONDS)
            finally:
                QApplication.restoreOverrideCursor()
        return future.result()
