"""The state layer (``studio.session.JobQueue`` over the engine thread's ``JobRunner``) on the
remote backend against the real server, with no widget: progress and previews arrive as job
events, a waiting job is cancelled without reaching the server, a running one is interrupted,
and a server's failure is one line in ``JobFailed``."""

from __future__ import annotations

import threading
import time

import pytest

from studio.core.jobs.events import JobCancelled, JobFailed, JobFinished, JobProgress
from studio.core.jobs.request import GenerationRequest
from studio.core.jobs.runner import JobRunner
from studio.remote.engine import RemoteEngine
from studio.session.jobs import JobQueue

pytestmark = [pytest.mark.slow, pytest.mark.server]


def request(**kw) -> GenerationRequest:
    base = dict(prompt="a lighthouse at dusk", model="tiny-sd1", steps=2, width=64, height=64,
                seed=3, guidance=5.0)
    return GenerationRequest(**{**base, **kw})


def test_jobs_through_the_state_layer_on_a_server(comfy_server) -> None:
    engine = RemoteEngine([comfy_server.url])
    runner = JobRunner(engine)
    queue = JobQueue()
    queue.attach(runner)
    events: list = []
    ended: dict[int, threading.Event] = {}
    lock = threading.Lock()

    def on_event(event) -> None:
        with lock:
            events.append(event)
        if isinstance(event, (JobFinished, JobFailed, JobCancelled)):
            ended.setdefault(event.job_id, threading.Event()).set()

    queue.add_listener(on_event)

    def wait(job_id: int) -> object:
        ended.setdefault(job_id, threading.Event()).wait(300)
        return next(e for e in events if e.job_id == job_id
                    and isinstance(e, (JobFinished, JobFailed, JobCancelled)))

    try:
        long_job = queue.submit(request(steps=400, seed=11))
        waiting = queue.submit(request(seed=12))
        assert waiting in queue.waiting
        assert queue.cancel(waiting)  # never sent: nothing reaches the server for it

        def sampling() -> bool:
            with lock:
                return any(e.job_id == long_job and isinstance(e, JobProgress)
                           and e.phase == "sampling" and e.step >= 2 for e in events)

        deadline = time.monotonic() + 300  # a cold server loads its model first
        while not sampling():
            assert time.monotonic() < deadline and not ended.get(long_job, threading.Event()
                                                                 ).is_set()
            time.sleep(0.05)
        assert queue.running == long_job and queue.cancel(long_job)
        assert isinstance(wait(long_job), JobCancelled)
        assert isinstance(wait(waiting), JobCancelled)
        running, pending = engine.loop.run(engine.servers[0].client.queue_state(), 30)
        assert running == [] and pending == []  # neither is left on the server

        done = queue.submit(request(seed=13))
        missing = queue.submit(request(model="no-such-model"))
        finished, failed = wait(done), wait(missing)
        assert isinstance(finished, JobFinished) and finished.result.images[0].shape == (64, 64, 3)
        assert comfy_server.url in finished.result.request.device
        steps = [e for e in events if e.job_id == done and isinstance(e, JobProgress)]
        assert any(e.phase == "sampling" and e.step == 2 for e in steps)
        assert any(e.preview is not None for e in steps)
        assert isinstance(failed, JobFailed) and "no-such-model" in failed.message
        assert "\n" not in failed.message
    finally:
        queue.detach()
        runner.shutdown(30)
        engine.close()
