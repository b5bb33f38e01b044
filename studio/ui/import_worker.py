"""Reading files off the GUI thread: an image's generation settings (File > Import
Settings…), an opened or dropped image, a layered file.

The file is opened and parsed on a worker thread while the window keeps painting; a read
that takes longer than a blink shows a small progress window with Cancel
(``run_cancellable``). Cancel abandons the read at once, even one stuck inside a parser on a
hostile file: the read runs on a daemon thread of its own, and its result is dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from PySide6.QtWidgets import QWidget

from studio.core.document.edits import settle_vector_state
from studio.core.jobs.runner import lower_thread_priority
from studio.ui.busy import WORKER_NICE, TaskState, run_cancellable

POLL_S = 0.02  # how often the waiting task looks for Cancel
T = TypeVar("T")


def run_in_background(parent: QWidget | None, title: str, fn: Callable[..., T],
                      *args: object, state: TaskState | None = None) -> T:
    """``fn(*args)`` on a daemon thread of its own: its result, or its error raised here.

    The window paints meanwhile and takes no input; past a blink a progress window titled
    ``title`` offers Cancel, which raises ``CancelledError`` at once and drops the result.
    """
    box: dict[str, Any] = {}
    finished = threading.Event()

    def run() -> None:
        settle_vector_state()  # clean vector registers: SSE code (Pillow) at full speed
        lower_thread_priority(WORKER_NICE)
        try:
            box["result"] = fn(*args)
        except BaseException as err:  # handed to the GUI thread, raised there
            box["error"] = err
        finally:
            finished.set()

    def wait(task: TaskState) -> T:
        threading.Thread(target=run, name="studio-file-read", daemon=True).start()
        while not finished.wait(POLL_S):
            task.check()  # Cancel: the read is left to finish on its own, unheard
        if "error" in box:
            raise box["error"]
        return box["result"]

    return run_cancellable(parent, title, wait, state)


def read_settings_in_background(parent: QWidget | None, path: str | Path,
                                state: TaskState | None = None) -> Any:
    """``read_settings(path)`` on a worker thread: its result, or its error raised here.

    Raises
    ------
    CancelledError
        When the user pressed Cancel (the read is abandoned, nothing is applied).
    StudioError
        What ``read_settings`` raises for a missing, damaged or hostile file.
    """
    from studio.core.formats.metadata import read_settings

    return run_in_background(parent, f"Reading the settings of {Path(path).name}…",
                             read_settings, path, state=state)
