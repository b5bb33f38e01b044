"""Several servers, one queue: separate jobs submitted through the state layer
(``studio.session.JobQueue`` over ``JobRunner``) run at once on two real ComfyUI servers, one
job per server; a server killed (``kill -9``) mid-job has its job finished by the other, and
every job lands once. The runner's placing rules themselves are checked on a plain engine
first (the local engine keeps one job at a time)."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request

import numpy as np
import pytest

from studio.core.jobs.events import (
    JobCancelled,
    JobFailed,
    JobFinished,
    JobProgress,
    JobStarted,
    StepProgress,
)
from studio.core.jobs.request import GenerationRequest
from studio.core.jobs.runner import JobRunner
from studio.session.jobs import JobQueue


def request(**kw) -> GenerationRequest:
    base = dict(prompt="a lighthouse at dusk", model="tiny-sd1", steps=2, width=64, height=64,
                seed=3, guidance=5.0)
    return GenerationRequest(**{**base, **kw})


class Recorder:
    """The queue's events, and a way to wait for a condition on them."""

    def __init__(self, queue: JobQueue) -> None:
        self.events: list = []
        self.lock = threading.Lock()
        queue.add_listener(self.on_event)

    def on_event(self, event) -> None:
        with self.lock:
            self.events.append(event)

    def of(self, kind, job_id: int | None = None) -> list:
        with self.lock:
            return [e for e in self.events if isinstance(e, kind)
                    and (job_id is None or e.job_id == job_id)]

    def ended(self, job_id: int) -> bool:
        return bool(self.of((JobFinished, JobFailed, JobCancelled), job_id))


def when(condition, timeout: float = 300.0, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(step)


# -- the runner's rules, on an engine with two places (no server) ----------------------------
class TwoPlaces:
    """An engine with two places; each job holds its place until the test lets it end."""

    places = 2

    def __init__(self, models: dict[str, int]) -> None:
        self.free = dict(models)  # model -> free places that have it
        self.release: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def place(self, req: GenerationRequest) -> bool:
        with self.lock:
            if self.free.get(req.model, 0) > 0:
                self.free[req.model] -= 1
                return True
            return False

    def unplace(self, req: GenerationRequest) -> None:
        with self.lock:
            self.free[req.model] += 1

    def generate(self, req, on_step, cancel):
        from studio.core.jobs.events import GenerationResult

        on_step(StepProgress(0, 1, phase="loading", where=f"on {req.model}"))
        event = self.release.setdefault(req.prompt, threading.Event())
        while not event.wait(0.01):
            cancel.raise_if_cancelled()
        return GenerationResult(req, (np.zeros((8, 8, 3), np.uint8),))


def test_jobs_start_as_places_free_up_in_queue_order() -> None:
    engine = TwoPlaces({"a": 1, "b": 1})
    runner = JobRunner(engine)
    queue = JobQueue()
    queue.attach(runner)
    rec = Recorder(queue)
    try:
        assert runner.places == 2
        one = queue.submit(request(prompt="1", model="a"))
        two = queue.submit(request(prompt="2", model="a"))  # waits: "a"'s place is taken
        three = queue.submit(request(prompt="3", model="b"))  # runs now, on "b"
        when(lambda: queue.running_jobs == {one: "on a", three: "on b"}, 10)
        assert two in queue.waiting and queue.move(two, 0)  # a waiting job can still move
        assert queue.cancel(two) and rec.of(JobCancelled, two)  # ... or be cancelled
        four = queue.submit(request(prompt="4", model="a"))
        engine.release["1"].set()
        when(lambda: four in queue.running_jobs, 10)  # "a" free again: the next "a" job
        assert not rec.of(JobStarted, two)
        engine.release["3"].set()
        engine.release["4"].set()
        assert runner.wait_idle(10)
        assert sorted(e.job_id for e in rec.of(JobFinished)) == [one, three, four]
        assert engine.free == {"a": 1, "b": 1}  # every place given back
    finally:
        queue.detach()
        runner.shutdown(5)


def test_an_engine_without_places_runs_one_job_at_a_time() -> None:
    class One:
        def __init__(self) -> None:
            self.running = 0
            self.most = 0

        def generate(self, req, on_step, cancel):
            from studio.core.jobs.events import GenerationResult

            self.running += 1
            self.most = max(self.most, self.running)
            time.sleep(0.05)
            self.running -= 1
            return GenerationResult(req, (np.zeros((8, 8, 3), np.uint8),))

    engine = One()
    runner = JobRunner(engine)
    try:
        assert runner.places == 1
        for i in range(4):
            runner.submit(request(seed=i))
        assert runner.wait_idle(10)
    finally:
        runner.shutdown(5)
    assert engine.most == 1


# -- two real servers ---------------------------------------------------------------------------
STEPS = 8  # long enough for the jobs to overlap, and to kill a server mid-job


def server_running(url: str) -> bool:
    with urllib.request.urlopen(url + "/queue", timeout=10) as resp:
        return bool(json.loads(resp.read())["queue_running"])


@pytest.mark.slow
@pytest.mark.server
def test_three_jobs_run_two_at_once_and_a_killed_server_loses_none(comfy_server, spare,
                                                                   remote_engine) -> None:
    from studio.remote.engine import RemoteEngine

    engine = RemoteEngine([comfy_server.url, spare.url], reconnect_s=1.0)
    runner = JobRunner(engine)
    queue = JobQueue()
    queue.attach(runner)
    rec = Recorder(queue)
    hosts = {u: u.split("://", 1)[1] for u in (comfy_server.url, spare.url)}
    try:
        seeds = (21, 22, 23)
        jobs = [queue.submit(request(seed=s, steps=STEPS)) for s in seeds]
        both = {"seen": False}

        def both_busy() -> bool:  # each server's own /queue says it runs a prompt
            both["seen"] = both["seen"] or all(server_running(u) for u in hosts)
            return both["seen"]

        when(both_busy, 300, step=0.05)
        when(lambda: "" not in queue.running_jobs.values(), 30)  # where each runs is said
        assert len(queue.running_jobs) == 2 and jobs[2] in queue.waiting  # one per server
        assert sorted(queue.running_jobs.values()) == sorted(f"on {h}" for h in hosts.values())
        on_spare = next(j for j, w in queue.running_jobs.items() if w == f"on {hosts[spare.url]}")
        spare.stop(signal.SIGKILL)  # mid-job
        when(lambda: all(rec.ended(j) for j in jobs), 900, step=0.1)  # a loaded machine
    finally:
        queue.detach()
        runner.shutdown(30)
        engine.close()
    finished = rec.of(JobFinished)
    assert sorted(e.job_id for e in finished) == sorted(jobs)  # each once, none lost
    assert not rec.of(JobFailed) and not rec.of(JobCancelled)
    moved = next(e for e in finished if e.job_id == on_spare)
    assert moved.result.server == comfy_server.url  # finished by the other server
    assert any(e.where == f"back in the queue ({hosts[spare.url]} lost it)"
               for e in rec.of(JobProgress, on_spare))  # shown as back in the queue
    by_seed = {e.result.request.seed: e.result.images[0] for e in finished}
    assert len({img.tobytes() for img in by_seed.values()}) == 3
    assert np.array_equal(by_seed[moved.result.request.seed],  # the same image, made once
                          remote_engine.generate(request(seed=moved.result.request.seed,
                                                         steps=STEPS)).images[0])
