"""Session fixtures: the fake backend on a real JobRunner; no widget, no QApplication."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from studio.core.engines import EngineServices
from studio.core.jobs.runner import JobRunner
from studio.session.connection import Connection
from tests.fakes import FakeEngine, fake_services


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def services(engine: FakeEngine) -> EngineServices:
    return fake_services(engine)


@pytest.fixture
def runner(engine: FakeEngine) -> Iterator[JobRunner]:
    r = JobRunner(engine)
    yield r
    assert r.shutdown(5.0), "the runner thread did not stop"


@pytest.fixture
def connection(services: EngineServices, runner: JobRunner) -> Iterator[Connection]:
    """Connected; events reach subscribers on the runner's thread (no GUI thread here)."""
    c = Connection()
    c.connect(services, runner)
    yield c
    c.disconnect()
