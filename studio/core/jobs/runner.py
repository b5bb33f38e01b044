"""``JobRunner``: one engine thread owns the device and runs jobs from two channels.

* ``render``: a FIFO queue. Every job can be cancelled, queued ones can be reordered.
* ``preview``: one slot. A newer preview request replaces a waiting one and cancels a running
  one (latest wins), as slider drags need. Previews run before queued renders.

Events (queued, started, progress, finished, failed, cancelled) go to the listeners, called on
the engine thread (``JobQueued`` on the caller's). Listeners must not block; the UI bridge turns
them into Qt signals.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from studio.core.errors import CancelledError, StudioError
from studio.core.jobs.cancel import CancelToken
from studio.core.jobs.events import (
    GenerationResult,
    JobCancelled,
    JobEvent,
    JobFailed,
    JobFinished,
    JobProgress,
    JobQueued,
    JobStarted,
    StepProgress,
)
from studio.core.jobs.request import GenerationRequest

log = logging.getLogger(__name__)

RENDER = "render"
PREVIEW = "preview"

Work = Callable[[Callable[[StepProgress], None], CancelToken], Any]


class Generator(Protocol):
    """What the runner needs of an engine."""

    def generate(self, request: GenerationRequest, on_step: Callable[[StepProgress], None],
                 cancel: CancelToken) -> GenerationResult: ...


@dataclass
class Job:
    """A unit of work on the engine thread; ``request`` is ``None`` for custom work."""

    job_id: int
    channel: str
    request: GenerationRequest | None
    work: Work | None = None
    label: str = ""
    cancel: CancelToken = field(default_factory=CancelToken)

    @property
    def title(self) -> str:
        if self.label:
            return self.label
        return self.request.prompt if self.request is not None else f"job {self.job_id}"


def lower_thread_priority(increment: int) -> bool:
    """Raise the calling thread's nice value by ``increment``; threads it starts later (torch's
    OpenMP workers) inherit it. Linux only (elsewhere a thread id is not a process id for
    ``setpriority``); returns whether it was applied."""
    if not sys.platform.startswith("linux") or increment <= 0:
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid)
                                                 + increment))
    except OSError as err:
        log.info("engine thread priority left as it is: %s", err)
        return False
    return True


class JobRunner:
    """Runs generation jobs on one thread that owns the device."""

    def __init__(self, engine: Generator | None, *, name: str = "studio-engine",
                 nice: int = 0) -> None:
        """``nice`` lowers the engine thread's CPU priority by that much (Linux), and with it
        the priority of the compute threads it starts: a window then gets the CPU at once
        when it needs it, even on a machine with few cores. The CLI leaves it at 0."""
        self._engine = engine
        self._nice = nice
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._queue: deque[Job] = deque()
        self._preview: Job | None = None
        self._current: Job | None = None
        self._listeners: list[Callable[[JobEvent], None]] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # -- listeners -----------------------------------------------------------------------
    def add_listener(self, listener: Callable[[JobEvent], None]) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[JobEvent], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, event: JobEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken listener must not kill the engine thread
                log.exception("job listener failed")

    # -- submitting ----------------------------------------------------------------------
    def submit(self, request: GenerationRequest | None = None, channel: str = RENDER, *,
               work: Work | None = None, label: str = "") -> int:
        """Queue a request (or custom ``work``) and return its job id."""
        if channel not in (RENDER, PREVIEW):
            raise ValueError(f"unknown channel {channel!r}")
        if request is None and work is None:
            raise ValueError("submit needs a request or work")
        job = Job(next(self._ids), channel, request, work, label)
        with self._cond:
            if self._stopping:
                raise RuntimeError("the job runner is shut down")
            stale: list[Job] = []
            if channel == PREVIEW:
                if self._preview is not None:
                    stale.append(self._preview)
                if self._current is not None and self._current.channel == PREVIEW:
                    self._current.cancel.cancel()
                self._preview = job
            else:
                self._queue.append(job)
            self._cond.notify_all()
        self._emit(JobQueued(job.job_id, channel, request))
        for old in stale:
            self._emit(JobCancelled(old.job_id, old.channel))
        return job.job_id

    def cancel(self, job_id: int) -> bool:
        """Cancel a queued or running job. Returns False if no such job is pending."""
        removed: Job | None = None
        with self._cond:
            if self._current is not None and self._current.job_id == job_id:
                self._current.cancel.cancel()
                return True
            if self._preview is not None and self._preview.job_id == job_id:
                removed, self._preview = self._preview, None
            else:
                for job in self._queue:
                    if job.job_id == job_id:
                        removed = job
                        self._queue.remove(job)
                        break
        if removed is None:
            return False
        self._emit(JobCancelled(removed.job_id, removed.channel))
        return True

    def cancel_current(self) -> bool:
        with self._cond:
            job = self._current
        return self.cancel(job.job_id) if job is not None else False

    def cancel_all(self) -> None:
        with self._cond:
            pending = list(self._queue)
            if self._preview is not None:
                pending.append(self._preview)
            self._queue.clear()
            self._preview = None
            if self._current is not None:
                self._current.cancel.cancel()
        for job in pending:
            self._emit(JobCancelled(job.job_id, job.channel))

    def move(self, job_id: int, index: int) -> bool:
        """Move a queued render job to position ``index`` of the queue."""
        with self._cond:
            for job in self._queue:
                if job.job_id == job_id:
                    self._queue.remove(job)
                    index = max(0, min(index, len(self._queue)))
                    self._queue.insert(index, job)
                    return True
        return False

    def queued(self) -> list[Job]:
        """The waiting render jobs, in the order they will run."""
        with self._cond:
            return list(self._queue)

    @property
    def current(self) -> Job | None:
        with self._cond:
            return self._current

    def is_idle(self) -> bool:
        with self._cond:
            return self._current is None and not self._queue and self._preview is None

    def wait_idle(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._current is not None or self._queue or self._preview is not None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    # -- shutting down -------------------------------------------------------------------
    def shutdown(self, timeout: float = 30.0) -> bool:
        """Cancel everything and join the engine thread. Returns True once it has ended."""
        self.cancel_all()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the engine thread ---------------------------------------------------------------
    def _next_job(self) -> Job | None:
        with self._cond:
            while not self._stopping and self._preview is None and not self._queue:
                self._cond.wait()
            if self._stopping:
                return None
            if self._preview is not None:
                job, self._preview = self._preview, None
            else:
                job = self._queue.popleft()
            self._current = job
            return job

    def _loop(self) -> None:
        if self._nice:
            lower_thread_priority(self._nice)
        while True:
            job = self._next_job()
            if job is None:
                return
            try:
                self._run(job)
            finally:
                with self._cond:
                    self._current = None
                    self._cond.notify_all()

    def _run(self, job: Job) -> None:
        self._emit(JobStarted(job.job_id, job.channel, job.request))

        def on_step(progress: StepProgress) -> None:
            job.cancel.raise_if_cancelled()
            self._emit(JobProgress(job.job_id, job.channel, progress.step, progress.total,
                                   progress.preview, progress.phase))

        try:
            job.cancel.raise_if_cancelled()
            if job.work is not None:
                result = job.work(on_step, job.cancel)
            else:
                if self._engine is None:
                    raise StudioError("No engine is available to run this job.")
                assert job.request is not None
                result = self._engine.generate(job.request, on_step, job.cancel)
            job.cancel.raise_if_cancelled()
        except CancelledError:
            self._emit(JobCancelled(job.job_id, job.channel))
        except StudioError as err:
            self._emit(JobFailed(job.job_id, job.channel, str(err), err.kind))
        except MemoryError:
            self._emit(JobFailed(job.job_id, job.channel,
                                 "Out of memory. Try a smaller size or batch.", "out-of-memory"))
        except Exception as err:  # an engine bug: report it, keep the thread alive
            log.error("job %s failed:\n%s", job.job_id, traceback.format_exc())
            self._emit(JobFailed(job.job_id, job.channel,
                                 f"Generation failed: {type(err).__name__}: {err}", "internal"))
        else:
            self._emit(JobFinished(job.job_id, job.channel, result))
