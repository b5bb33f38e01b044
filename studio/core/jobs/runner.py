"""``JobRunner``: one engine thread owns the device and runs jobs from two channels.

* ``render``: a FIFO queue. Every job can be cancelled, queued ones can be reordered.
* ``preview``: one slot. A newer preview request replaces a waiting one and cancels a running
  one (latest wins), as slider drags need. Previews run before queued renders.

Events (queued, started, progress, finished, failed, cancelled) go to the listeners, called on
the engine thread (``JobQueued`` on the caller's). Listeners must not block; the UI bridge turns
them into Qt signals.

An engine with several places to run jobs (``Placing``: the remote backend's servers) gets
that many engine threads: each queued render job starts as soon as the engine can place it
(a free server that has its model), in queue order, several at once, one per place. A job
that is not a generation (custom ``work``) or a preview runs alone. The local engine has one
place: one job at a time, as before.
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
from studio.core.jobs.cancel import CancelToken, set_active_token
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


class Placing(Protocol):
    """An engine that runs several jobs at once (optional; ``studio.remote.engine``).

    ``places``: how many jobs may run at once. ``place(request)``: reserve a place for it
    now (True), or say none is free for it (False; the runner asks again when a job ends or
    a moment later). ``unplace(request)``: give back a reservation ``generate`` did not take
    (the job was cancelled or failed first); harmless when it did.
    """

    places: int

    def place(self, request: GenerationRequest) -> bool: ...

    def unplace(self, request: GenerationRequest) -> None: ...


PLACE_RETRY_S = 0.25  # how often a waiting job asks again for a place (servers come back)


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
        self._running: dict[int, Job] = {}  # started, not ended, in start order
        self._placed: set[int] = set()  # running jobs the engine reserved a place for
        self._listeners: list[Callable[[JobEvent], None]] = []
        self._stopping = False
        places = getattr(engine, "places", 1) if callable(getattr(engine, "place", None)) else 1
        self._places = max(1, int(places or 1))
        self._threads = [threading.Thread(target=self._loop, daemon=True,
                                          name=name if i == 0 else f"{name}-{i + 1}")
                         for i in range(self._places)]
        for thread in self._threads:
            thread.start()

    @property
    def places(self) -> int:
        """How many jobs may run at once (1: the local engine)."""
        return self._places

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
                for running in self._running.values():
                    if running.channel == PREVIEW:
                        running.cancel.cancel()
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
            if job_id in self._running:
                self._running[job_id].cancel.cancel()
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
        """Cancel the running job(s) (several when several servers run jobs); the queue
        stays."""
        with self._cond:
            running = list(self._running.values())
        for job in running:
            job.cancel.cancel()
        return bool(running)

    def cancel_all(self) -> None:
        with self._cond:
            pending = list(self._queue)
            if self._preview is not None:
                pending.append(self._preview)
            self._queue.clear()
            self._preview = None
            for job in self._running.values():
                job.cancel.cancel()
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
        """The running job (the first started of those running)."""
        with self._cond:
            return next(iter(self._running.values()), None)

    def running(self) -> list[Job]:
        """The running jobs, in the order they started."""
        with self._cond:
            return list(self._running.values())

    def is_idle(self) -> bool:
        with self._cond:
            return not self._running and not self._queue and self._preview is None

    def wait_idle(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._running or self._queue or self._preview is not None:
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
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not self.alive

    @property
    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    # -- the engine thread ---------------------------------------------------------------
    def _next_job(self) -> Job | None:
        with self._cond:
            while True:
                if self._stopping:
                    return None
                job = self._pick()
                if job is not None:
                    self._running[job.job_id] = job
                    return job
                # Jobs wait for a place: ask again when one ends, or a moment later.
                waiting = bool(self._queue) and bool(self._running)
                self._cond.wait(PLACE_RETRY_S if waiting else None)

    def _pick(self) -> Job | None:
        """The next job this thread may start now (called with the lock held): a preview or
        custom work only when nothing else runs; else the first queued render job the engine
        can place (one place per job)."""
        exclusive = any(j.channel == PREVIEW or j.request is None
                        for j in self._running.values())
        if self._preview is not None:
            if self._running:
                return None
            job, self._preview = self._preview, None
            return job
        if not self._queue or exclusive or len(self._running) >= self._places:
            return None
        if self._places == 1:
            return self._queue.popleft()
        place = self._engine.place  # type: ignore[union-attr]
        refused: set[str] = set()  # models with no free place in this pass: asked once
        for job in list(self._queue):
            if job.request is None:  # custom work waits for the jobs before it to end
                if self._running:
                    return None
                self._queue.remove(job)
                return job
            if job.cancel.cancelled or job.request.model in refused:
                continue
            try:
                placed = place(job.request)
            except Exception:  # the backend is closing: let the job say so when it runs
                log.exception("placing job %s failed", job.job_id)
                placed = not self._running
            if placed or not self._running:
                # With nothing running the job starts anyway: its engine waits for a place
                # or says why there is none (no server has the model, none answers).
                if placed:
                    self._placed.add(job.job_id)
                self._queue.remove(job)
                return job
            refused.add(job.request.model)
        return None

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
                    self._running.pop(job.job_id, None)
                    placed = job.job_id in self._placed
                    self._placed.discard(job.job_id)
                    self._cond.notify_all()
                if placed and job.request is not None:
                    try:
                        self._engine.unplace(job.request)  # type: ignore[union-attr]
                    except Exception:
                        log.exception("giving back the place of job %s failed", job.job_id)

    def _run(self, job: Job) -> None:
        set_active_token(job.cancel)  # a model load checks it between its parts
        self._emit(JobStarted(job.job_id, job.channel, job.request))

        def on_step(progress: StepProgress) -> None:
            job.cancel.raise_if_cancelled()
            self._emit(JobProgress(job.job_id, job.channel, progress.step, progress.total,
                                   progress.preview, progress.phase,
                                   getattr(progress, "where", "")))

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
