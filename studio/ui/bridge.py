"""``JobBridge``: runner events (engine thread) carried to the GUI thread as Qt signals."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from studio.core.jobs.events import (
    JobCancelled,
    JobEvent,
    JobFailed,
    JobFinished,
    JobProgress,
    JobQueued,
    JobStarted,
)


class JobBridge(QObject):
    """Listens to a ``JobRunner`` and re-emits its events as signals.

    ``on_event`` is called on the engine thread; it only emits signals. The bridge lives in
    the GUI thread, so Qt delivers them to GUI slots as queued calls: no widget is ever
    touched from the engine thread.
    """

    job_queued = Signal(object)  # JobQueued
    job_started = Signal(object)  # JobStarted
    job_progressed = Signal(object)  # JobProgress
    job_finished = Signal(object)  # JobFinished
    job_failed = Signal(object)  # JobFailed
    job_cancelled = Signal(object)  # JobCancelled
    _posted = Signal(object)  # a callable to run on the GUI thread

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._posted.connect(self._on_posted)
        self._signals = {
            JobQueued: self.job_queued,
            JobStarted: self.job_started,
            JobProgress: self.job_progressed,
            JobFinished: self.job_finished,
            JobFailed: self.job_failed,
            JobCancelled: self.job_cancelled,
        }

    def on_event(self, event: JobEvent) -> None:
        """The runner listener; safe to call from any thread."""
        signal = self._signals.get(type(event))
        if signal is not None:
            signal.emit(event)

    def post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the GUI thread (``JobQueue``'s ``post``); safe from any thread."""
        self._posted.emit(fn)

    def _on_posted(self, fn: Callable[[], None]) -> None:
        fn()
