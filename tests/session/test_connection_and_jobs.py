"""The connection to a backend and the job queue, driven without any widget."""

from __future__ import annotations

import subprocess
import sys

import pytest

from studio.core.engines import EngineFeatures, EngineServices
from studio.core.jobs.request import GenerationRequest
from studio.session.connection import FAILED, LOADING, READY, Connection
from studio.session.jobs import EngineNotReadyError
from tests.fakes import FakeEngine


def request(seed: int = 1) -> GenerationRequest:
    return GenerationRequest("a cat", model="fake-tiny", seed=seed, steps=2, width=16,
                             height=16)


def test_the_session_imports_no_qt_and_no_torch():
    code = ("import sys, studio.session; print(sorted(m for m in ('PySide6', 'shiboken6', "
            "'torch', 'diffusers', 'studio.ui', 'studio.engine') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_before_a_backend_nothing_can_run_and_the_reason_says_it_is_loading():
    connection = Connection()
    states = []
    connection.state_changed.connect(states.append)
    assert connection.state == LOADING and not connection.ready
    assert not connection.can("upscaling")
    assert "still loading" in connection.reason("upscaling")
    with pytest.raises(EngineNotReadyError):
        connection.jobs.submit(request())
    connection.fail("CUDA is not available.")
    assert states == [FAILED]
    assert connection.reason("inpainting") == "The engine is unavailable: CUDA is not available."


def test_features_and_services_decide_what_is_on(runner):
    features = EngineFeatures(backend="remote", upscaling=True, model_management=True,
                              why_not=(("latent_sliders", "VAE and GAN run locally only."),))
    connection = Connection()
    seen = []
    connection.connected.connect(seen.append)
    services = EngineServices(FakeEngine(features=features))  # says upscaling, hands none
    connection.connect(services, runner)
    try:
        assert connection.state == READY and seen == [services]
        assert connection.features is features
        assert not connection.can("upscaling")
        assert connection.reason("latent_sliders") == "VAE and GAN run locally only."
        assert connection.reason("lora") == "remote backend does not offer this"
        assert connection.can("inpainting") and connection.reason("inpainting") == ""
    finally:
        connection.disconnect()


def test_jobs_run_and_their_events_are_kept(connection, engine, runner):
    jobs = connection.jobs
    events = []
    for signal in (jobs.queued, jobs.started, jobs.finished):
        signal.connect(lambda e, s=signal: events.append((s.name, e.job_id)))
    job = jobs.submit(request(5))
    assert runner.wait_idle(5)
    assert [name for name, j in events if j == job] == ["queued", "started", "finished"]
    assert jobs.running is None and job not in jobs.waiting
    assert engine.requests[-1].seed == 5


def test_work_runs_on_the_engine_thread_and_its_result_comes_back(connection, runner):
    results = []
    connection.jobs.finished.connect(lambda e: results.append(e.result))
    connection.jobs.submit_work(lambda on_step, cancel: 42, "answer")
    assert runner.wait_idle(5)
    assert results == [42]


def test_a_disconnected_queue_hears_nothing_more(services, runner):
    connection = Connection()
    connection.connect(services, runner)
    heard = []
    connection.jobs.finished.connect(heard.append)
    connection.disconnect()
    runner.submit(request())
    assert runner.wait_idle(5)
    assert heard == []
