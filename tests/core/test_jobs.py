"""JobRunner behaviour with a fake engine (no torch): order, cancel, failure, shutdown."""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest

from studio.core.errors import ModelNotFoundError
from studio.core.jobs.events import (
    GenerationResult,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobProgress,
    JobStarted,
    StepProgress,
)
from studio.core.jobs.request import GenerationRequest
from studio.core.jobs.runner import PREVIEW, RENDER, JobRunner


class FakeEngine:
    """Steps until released; records the order in which prompts ran."""

    def __init__(self, steps_gate: threading.Event | None = None) -> None:
        self.ran: list[str] = []
        self.gate = steps_gate
        self.started = threading.Event()

    def generate(self, request, on_step, cancel):
        self.ran.append(request.prompt)
        self.started.set()
        if request.prompt == "boom":
            raise ModelNotFoundError("No model named 'boom'.")
        for i in range(request.steps):
            if self.gate is not None:
                self.gate.wait(5)
            on_step(StepProgress(i + 1, request.steps, np.zeros((2, 2, 3), np.uint8)))
        image = np.full((8, 8, 3), request.seed % 256, np.uint8)
        return GenerationResult(request, (image,), 0.0)


class Recorder:
    def __init__(self) -> None:
        self.events = []
        self.lock = threading.Lock()

    def __call__(self, event) -> None:
        with self.lock:
            self.events.append(event)

    def of(self, cls):
        with self.lock:
            return [e for e in self.events if isinstance(e, cls)]


@pytest.fixture
def runner_factory():
    runners = []

    def make(engine):
        r = JobRunner(engine)
        runners.append(r)
        return r

    yield make
    for r in runners:
        assert r.shutdown(5), "the engine thread did not end"
        assert not r.alive


def req(prompt, steps=2, seed=0):
    return GenerationRequest(prompt, steps=steps, seed=seed, width=64, height=64)


def test_render_queue_runs_in_fifo_order_and_reports_results(runner_factory):
    engine = FakeEngine()
    runner = runner_factory(engine)
    rec = Recorder()
    runner.add_listener(rec)
    ids = [runner.submit(req(p, seed=i)) for i, p in enumerate("abc")]
    assert runner.wait_idle(10)
    assert engine.ran == ["a", "b", "c"]
    finished = rec.of(JobFinished)
    assert [e.job_id for e in finished] == ids
    assert [int(e.result.images[0][0, 0, 0]) for e in finished] == [0, 1, 2]
    progress = [e for e in rec.of(JobProgress) if e.job_id == ids[0]]
    assert [(p.step, p.total) for p in progress] == [(1, 2), (2, 2)]


def test_queued_jobs_can_be_reordered_and_cancelled(runner_factory):
    gate = threading.Event()
    engine = FakeEngine(gate)
    runner = runner_factory(engine)
    rec = Recorder()
    runner.add_listener(rec)
    first = runner.submit(req("first"))
    assert engine.started.wait(5)
    b = runner.submit(req("b"))
    c = runner.submit(req("c"))
    d = runner.submit(req("d"))
    assert runner.move(d, 0)
    assert [j.job_id for j in runner.queued()] == [d, b, c]
    assert runner.cancel(b)
    gate.set()
    assert runner.wait_idle(10)
    assert engine.ran == ["first", "d", "c"]
    assert [e.job_id for e in rec.of(JobCancelled)] == [b]
    assert first in [e.job_id for e in rec.of(JobFinished)]


def test_cancel_running_job_stops_within_a_step(runner_factory):
    gate = threading.Event()
    engine = FakeEngine(gate)
    runner = runner_factory(engine)
    rec = Recorder()
    runner.add_listener(rec)
    job = runner.submit(req("long", steps=50))
    assert engine.started.wait(5)
    runner.cancel(job)
    gate.set()
    assert runner.wait_idle(10)
    assert [e.job_id for e in rec.of(JobCancelled)] == [job]
    assert not rec.of(JobFinished)
    assert len([e for e in rec.of(JobProgress) if e.job_id == job]) <= 1


def test_newer_preview_cancels_the_stale_one(runner_factory):
    gate = threading.Event()
    engine = FakeEngine(gate)
    runner = runner_factory(engine)
    rec = Recorder()
    runner.add_listener(rec)
    running = runner.submit(req("p1", steps=20), PREVIEW)
    assert engine.started.wait(5)
    waiting = runner.submit(req("p2"), PREVIEW)
    latest = runner.submit(req("p3"), PREVIEW)
    gate.set()
    assert runner.wait_idle(10)
    cancelled = {e.job_id for e in rec.of(JobCancelled)}
    assert cancelled == {running, waiting}
    assert [e.job_id for e in rec.of(JobFinished)] == [latest]
    assert engine.ran == ["p1", "p3"]


def test_previews_run_before_queued_renders(runner_factory):
    gate = threading.Event()
    engine = FakeEngine(gate)
    runner = runner_factory(engine)
    runner.submit(req("render1"), RENDER)
    assert engine.started.wait(5)
    runner.submit(req("render2"), RENDER)
    runner.submit(req("preview"), PREVIEW)
    gate.set()
    assert runner.wait_idle(10)
    assert engine.ran == ["render1", "preview", "render2"]


def test_failure_is_reported_and_the_runner_goes_on(runner_factory):
    engine = FakeEngine()
    runner = runner_factory(engine)
    rec = Recorder()
    runner.add_listener(rec)
    bad = runner.submit(req("boom"))
    good = runner.submit(req("fine"))
    assert runner.wait_idle(10)
    failed = rec.of(JobFailed)
    assert [e.job_id for e in failed] == [bad]
    assert "No model named 'boom'" in failed[0].message
    assert failed[0].kind == "model-not-found"
    assert [e.job_id for e in rec.of(JobFinished)] == [good]


def test_unexpected_engine_errors_do_not_kill_the_thread(runner_factory):
    class Broken(FakeEngine):
        def generate(self, request, on_step, cancel):
            raise ZeroDivisionError("oops")

    runner = runner_factory(Broken())
    rec = Recorder()
    runner.add_listener(rec)
    runner.submit(req("x"))
    runner.submit(req("y"))
    assert runner.wait_idle(10)
    assert len(rec.of(JobFailed)) == 2 and runner.alive


def test_custom_work_runs_on_the_engine_thread(runner_factory):
    runner = runner_factory(FakeEngine())
    rec = Recorder()
    runner.add_listener(rec)
    seen = {}

    def work(on_step, cancel):
        seen["thread"] = threading.current_thread().name
        on_step(StepProgress(1, 1))
        return 42

    runner.submit(work=work, label="encode")
    assert runner.wait_idle(10)
    assert seen["thread"] == "studio-engine"
    assert rec.of(JobFinished)[0].result == 42
    assert rec.of(JobStarted)[0].request is None


def test_shutdown_cancels_everything_and_joins_the_thread():
    gate = threading.Event()
    engine = FakeEngine(gate)
    runner = JobRunner(engine)
    rec = Recorder()
    runner.add_listener(rec)
    running = runner.submit(req("long", steps=100))
    assert engine.started.wait(5)
    queued = runner.submit(req("never"))
    gate.set()
    assert runner.shutdown(5)
    assert not runner.alive
    assert {e.job_id for e in rec.of(JobCancelled)} == {running, queued}
    assert engine.ran == ["long"]
    with pytest.raises(RuntimeError):
        runner.submit(req("late"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread nice values are "
                    "per thread on Linux only; elsewhere the runner leaves them alone")
def test_a_niced_runner_lowers_its_own_thread_priority_only():
    seen = []

    class Probe:
        def generate(self, request, on_step=None, cancel=None):
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return GenerationResult(request, (), 0.0)

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    runner = JobRunner(Probe(), nice=5)
    done = threading.Event()
    runner.add_listener(lambda e: done.set() if isinstance(e, (JobFinished, JobFailed)) else None)
    runner.submit(GenerationRequest("x"), "render")
    assert done.wait(10)
    runner.shutdown(5)
    assert seen == [min(19, before + 5)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before  # ours kept
