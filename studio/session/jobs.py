"""``JobQueue``: the jobs this window sent to the runner, and the runner's events as signals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from psygnal import Signal

from studio.core.errors import StudioError
from studio.core.jobs.events import (
    JobCancelled,
    JobEvent,
    JobFailed,
    JobFinished,
    JobProgress,
    JobQueued,
    JobStarted,
)
from studio.core.jobs.request import GenerationRequest

Work = Callable[[Any, Any], Any]  # (on_step, cancel) -> result


class Runner(Protocol):
    """What the queue uses of ``studio.core.jobs.runner.JobRunner``."""

    def submit(self, request: GenerationRequest | None = None, channel: str = ..., *,
               work: Work | None = ..., label: str = ...) -> int: ...

    def cancel(self, job_id: int) -> bool: ...

    def cancel_current(self) -> bool: ...

    def cancel_all(self) -> None: ...

    def move(self, job_id: int, index: int) -> bool: ...

    def add_listener(self, listener: Callable[[JobEvent], None]) -> None: ...

    def remove_listener(self, listener: Callable[[JobEvent], None]) -> None: ...


def call_now(fn: Callable[[], None]) -> None:
    fn()


class EngineNotReadyError(StudioError):
    """A job was asked for before the engine was ready."""


class JobQueue:
    """Submits jobs to the runner (once there is one) and re-emits its events.

    The runner reports on its own thread; ``post`` carries each event to the thread the
    subscribers live on (the window posts to the GUI thread through its Qt bridge). The
    default calls at once, on the runner's thread: enough for tests and scripts.
    """

    queued = Signal(object)  # JobQueued
    started = Signal(object)  # JobStarted
    progressed = Signal(object)  # JobProgress
    finished = Signal(object)  # JobFinished
    failed = Signal(object)  # JobFailed
    cancelled = Signal(object)  # JobCancelled

    def __init__(self, post: Callable[[Callable[[], None]], None] = call_now) -> None:
        self.post = post
        self.runner: Runner | None = None
        self.running: int | None = None  # the job started last of those running
        self.running_jobs: dict[int, str] = {}  # every running job -> where ("" = here); with
        # several servers several run at once
        self.waiting: dict[int, GenerationRequest | None] = {}  # job id -> request, run order
        self.labels: dict[int, str] = {}  # job id -> what a job that is not a generation does
        self._listeners: list[Callable[[JobEvent], None]] = []
        self._signals = {JobQueued: self.queued, JobStarted: self.started,
                         JobProgress: self.progressed, JobFinished: self.finished,
                         JobFailed: self.failed, JobCancelled: self.cancelled}

    @property
    def ready(self) -> bool:
        return self.runner is not None

    def attach(self, runner: Runner | None) -> None:
        """Send jobs to ``runner`` and listen to its events (None: no runner)."""
        self.detach()
        self.runner = runner
        if runner is not None:
            runner.add_listener(self._on_runner_event)

    def detach(self) -> None:
        """Stop listening to the runner (before it shuts down)."""
        if self.runner is not None:
            self.runner.remove_listener(self._on_runner_event)

    def _on_runner_event(self, event: JobEvent) -> None:  # on the runner's thread
        if isinstance(event, JobFinished) and hasattr(event.result, "workflow_for"):
            from studio.session.workflows import WORKFLOWS

            WORKFLOWS.remember(event.result)  # a server's: exports carry its workflow
        self.post(lambda: self.on_event(event))

    # -- actions -------------------------------------------------------------------------
    def submit(self, request: GenerationRequest, channel: str = "render", *,
               label: str = "") -> int:
        if label:
            job_id = self._require().submit(request, channel, label=label)
            self.labels[job_id] = label
            return job_id
        return self._require().submit(request, channel)

    def submit_work(self, work: Work, label: str) -> int:
        """Run ``work(on_step, cancel)`` on the engine thread as a queued job."""
        job_id = self._require().submit(work=work, label=label)
        self.labels[job_id] = label
        return job_id

    def cancel(self, job_id: int) -> bool:
        return self.runner.cancel(job_id) if self.runner is not None else False

    def cancel_current(self) -> bool:
        return self.runner.cancel_current() if self.runner is not None else False

    def cancel_all(self) -> None:
        if self.runner is not None:
            self.runner.cancel_all()

    def move(self, job_id: int, index: int) -> bool:
        return self.runner.move(job_id, index) if self.runner is not None else False

    def add_listener(self, listener: Callable[[JobEvent], None]) -> None:
        """Call ``listener(event)`` for every event, after the signals (where ``post`` runs
        them): the runner's listener interface, so a grid run can sit on this queue."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[JobEvent], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _require(self) -> Runner:
        if self.runner is None:
            raise EngineNotReadyError("The engine is still loading; try again in a moment.")
        return self.runner

    # -- events --------------------------------------------------------------------------
    def on_event(self, event: JobEvent) -> None:
        """Book-keep one runner event and emit it."""
        if isinstance(event, JobQueued):
            self.waiting[event.job_id] = event.request
        elif isinstance(event, JobStarted):
            self.waiting.pop(event.job_id, None)
            self.running = event.job_id
            self.running_jobs[event.job_id] = ""
        elif isinstance(event, JobProgress):
            if event.where and event.job_id in self.running_jobs:
                self.running_jobs[event.job_id] = event.where
        elif isinstance(event, (JobFinished, JobFailed, JobCancelled)):
            self.waiting.pop(event.job_id, None)
            self.labels.pop(event.job_id, None)
            self.running_jobs.pop(event.job_id, None)
            if self.running == event.job_id:
                self.running = next(reversed(self.running_jobs), None)
        signal = self._signals.get(type(event))
        if signal is not None:
            signal.emit(event)
        for listener in list(self._listeners):
            listener(event)
