"""UI test fixtures: offscreen Qt, a fake engine, a runner, and a window on a temp settings file."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any Qt import

import gc
import threading
from collections.abc import Iterator

import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QSettings, QThreadPool

from studio.core.engines import EngineServices
from studio.core.jobs.runner import JobRunner
from studio.ui.launch import EngineLoader
from studio.ui.main_window import MainWindow
from tests.fakes import FakeEngine, fake_services


@pytest.fixture(autouse=True)
def no_threads_left(qapp: object) -> Iterator[None]:
    """Fail a test that leaves the engine thread or a QThread running."""
    before = {t.ident for t in threading.enumerate()}
    yield
    QThreadPool.globalInstance().waitForDone(2000)
    left = [t.name for t in threading.enumerate()
            if t.ident not in before and t.is_alive() and not t.daemon
            or t.name.startswith("studio-engine") and t.is_alive()]
    assert not left, f"threads left running: {left}"
    assert QThreadPool.globalInstance().activeThreadCount() == 0
    running = [t for t in list(EngineLoader.instances) if t.isRunning()]
    assert not running, "an engine loader QThread is still running"


@pytest.fixture(autouse=True)
def user_settings_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Windows made without a settings object must not touch the real user settings."""
    path = str(tmp_path_factory.getbasetemp() / "user-settings")
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, path)


@pytest.fixture
def settings(tmp_path: object) -> QSettings:
    return QSettings(str(tmp_path / "studio.ini"), QSettings.Format.IniFormat)  # type: ignore


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def services(engine: FakeEngine) -> EngineServices:
    """The fake backend with every service (model folders, upscaling, directions)."""
    return fake_services(engine)


@pytest.fixture
def runner(engine: FakeEngine) -> Iterator[JobRunner]:
    r = JobRunner(engine)
    yield r
    assert r.shutdown(5.0), "the runner thread did not stop"


@pytest.fixture
def window(qtbot, services: EngineServices, runner: JobRunner,
           settings: QSettings) -> Iterator[MainWindow]:
    w = MainWindow(services, runner, settings)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    # A prompt typed, as before any generation (an empty one asks first: test_window.py).
    w.prompt_panel.prompt_edit.setPlainText("a portrait")
    w.prompt_panel.prompt_edit.setFocus()
    yield w
    dispose(w)


def dispose(widget) -> None:
    """Close and delete a window now, not whenever the garbage collector gets to it."""
    widget.close()
    widget.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()
