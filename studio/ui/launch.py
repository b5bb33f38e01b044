"""``run_gui``: show the window first, load the engine after, run, shut down cleanly."""

from __future__ import annotations

import signal
import socket
import sys
import time
import traceback
import weakref
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QSettings, QSocketNotifier, QThread, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

from studio.core.engines import EngineServices
from studio.core.errors import StudioError
from studio.core.jobs.events import JobCancelled, JobEvent, JobFailed, JobFinished, JobStarted
from studio.core.jobs.runner import JobRunner, Work
from studio.settings import Settings
from studio.ui.main_window import MainWindow
from studio.ui.status_bar import duration_text

# The engine thread yields the CPU to the window: see ``JobRunner`` and `studio bench`'s ui
# section, which measures the GUI's stalls with and without it.
ENGINE_NICE = 5
#: ``preload(services, model_id)``: the work that loads ``model_id`` on the engine thread
#: ahead of the first generation (``None``: nothing to load for this backend); the work
#: returns ``False`` when the model could not be loaded.
Preload = Callable[[EngineServices, str], Work | None]
#: Where the window's settings keep how long the last load of each model took.
LOAD_SECONDS_KEY = "engine/load_seconds/"
#: How long closing waits for the engine's import to end before ending without it.
LOADER_GRACE_MS = 500
#: After SIGTERM, once the work is saved: how long the app may take to end before it is
#: ended without its clean shutdown (a logout must never wait on a stuck thread).
SHUTDOWN_WATCHDOG_S = 15.0

class EngineLoader(QThread):
    """Calls ``factory`` (the heavy torch/diffusers imports) off the GUI thread; it returns
    the backend's ``EngineServices``."""

    loaded = Signal(object)
    failed = Signal(str)
    instances: weakref.WeakSet[EngineLoader] = weakref.WeakSet()  # tests check none runs

    def __init__(self, factory: Callable[[], EngineServices], parent: QObject | None = None):
        super().__init__(parent)
        self.setObjectName("engine_loader")
        self.factory = factory
        EngineLoader.instances.add(self)

    def run(self) -> None:
        try:
            services = self.factory()
            services.engine.list_models("diffusion")  # the first scan, off the GUI thread
        except StudioError as err:
            self.failed.emit(str(err))
        except Exception as err:  # a broken install: say so, keep the window usable
            traceback.print_exc()
            self.failed.emit(f"The engine could not start: {type(err).__name__}: {err}")
        else:
            self.loaded.emit(services)


class StudioSession(QObject):
    """Owns the window, the engine loader and the runner for one run of the app."""

    def __init__(self, services_factory: Callable[[], EngineServices],
                 open_paths: list[str] | None = None, settings: QSettings | None = None,
                 config: Settings | None = None, preload: Preload | None = None):
        super().__init__()
        self.preload = preload
        self.preload_job: int | None = None
        # Someone at a screen answers questions; an offscreen run (CI, scripts) has no one.
        self.interactive = QGuiApplication.platformName() != "offscreen"
        self.window = MainWindow(None, None, settings, config,
                                 confirm_close=self.interactive)
        self.runner: JobRunner | None = None
        self.loader = EngineLoader(services_factory, self)
        self.loader.loaded.connect(self._on_loader_loaded)
        self.loader.failed.connect(self._on_loader_failed)
        self._open_paths = list(open_paths or [])

    def start(self) -> None:
        self.window.show()
        self.window.open_paths(self._open_paths)
        if self.interactive and not self._open_paths:
            QTimer.singleShot(0, self.window.projects.offer_recovery)  # after a crash
        # Start loading once the window has been painted.
        QTimer.singleShot(0, self.loader.start)

    def _on_loader_loaded(self, services: EngineServices) -> None:
        self.runner = JobRunner(services.engine, nice=ENGINE_NICE)
        self.window.connection.connect(services, self.runner)
        self._start_preload(services)

    # -- loading the model ahead of the first generation ---------------------------------
    def _start_preload(self, services: EngineServices) -> None:
        """Load the model the prompt panel shows while the user writes the prompt: the
        first Generate then starts at once. It is a job on the engine thread (a Generate
        pressed meanwhile waits behind it, and finds the model loaded); the status bar
        says how long it has taken and, from the last start, about how long it takes, and
        its Cancel button drops it."""
        model_id = self.window.prompt_panel.model_id
        work = self.preload(services, model_id) if self.preload is not None and model_id \
            else None
        if work is None:
            return
        settings = self.window.settings
        key = LOAD_SECONDS_KEY + model_id.replace("/", "|")
        try:
            expected = float(settings.value(key, 0.0) or 0.0)
        except (TypeError, ValueError):
            expected = 0.0
        took: list[float] = []

        def timed(on_step: Any, cancel: Any) -> Any:
            start = time.monotonic()
            if work(on_step, cancel) is not False:  # False: it could not be loaded
                took.append(time.monotonic() - start)

        try:
            name = services.engine.resolve_model(model_id).name
        except StudioError:
            name = model_id
        started = [time.monotonic()]
        timer = QTimer(self, interval=250)

        def tick() -> None:
            elapsed = time.monotonic() - started[0]
            text = f"Loading {name}: {duration_text(elapsed)}"
            fraction: float | None = None
            if expected > 1:
                text += f" of about {duration_text(expected)}"
                fraction = min(0.95, elapsed / expected)
            self.window.status.show_task(text, fraction)

        def ended(event: JobEvent) -> None:
            if event.job_id != self.preload_job:
                return
            timer.stop()
            self.window.connection.jobs.remove_listener(on_event)
            self.preload_job = None
            if took:  # loaded (even when cancelled meanwhile): next time's estimate
                settings.setValue(key, round(took[0], 1))
                if isinstance(event, JobFinished):
                    self.window.show_status(f"{name} loaded in {duration_text(took[0])}")

        def on_event(event: JobEvent) -> None:
            if isinstance(event, JobStarted) and event.job_id == self.preload_job:
                started[0] = time.monotonic()
                timer.start()
                tick()
            elif isinstance(event, JobFinished | JobFailed | JobCancelled):
                ended(event)

        timer.timeout.connect(tick)
        jobs = self.window.connection.jobs
        jobs.add_listener(on_event)
        self.preload_job = jobs.submit_work(timed, f"Loading {name}")

    def _on_loader_failed(self, message: str) -> None:
        self.window.connection.fail(message)

    def shutdown(self) -> bool:
        """Stop the runner and wait for every thread this session started.

        Returns False when the engine is still being imported (torch and diffusers take
        up to tens of seconds, and an import cannot be stopped halfway): the thread is left
        as it is, and ``run_gui`` ends the process without waiting for it."""
        self.window.detach_engine()
        if self.loader.isRunning() and not self.loader.wait(LOADER_GRACE_MS):
            return False
        if self.runner is not None:
            self.runner.shutdown()
            self.runner = None
        return True


class TerminationWatcher(QObject):
    """Turns SIGTERM (a logout, a system shutdown, ``kill``) into a clean close of the
    window on the GUI thread: the work is saved without asking, as the close would, and
    nothing is left for a restore offer at the next start.

    Python runs a signal handler only between bytecodes, never while Qt's event loop waits,
    so the handler writes to a socket (``signal.set_wakeup_fd``) that a ``QSocketNotifier``
    watches.
    """

    def __init__(self, on_terminate: Callable[[], None],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.on_terminate = on_terminate
        self._reader, self._writer = socket.socketpair()
        for end in (self._reader, self._writer):
            end.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno())
        self._previous_handler = signal.signal(signal.SIGTERM, lambda *_args: None)
        self.notifier = QSocketNotifier(self._reader.fileno(), QSocketNotifier.Type.Read, self)
        self.notifier.activated.connect(self._on_notifier_activated)

    def _on_notifier_activated(self) -> None:
        try:
            data = self._reader.recv(64)
        except OSError:
            return
        if signal.SIGTERM in data:
            self.on_terminate()

    def uninstall(self) -> None:
        self.notifier.setEnabled(False)
        signal.signal(signal.SIGTERM, self._previous_handler)
        signal.set_wakeup_fd(self._previous_fd)
        self._reader.close()
        self._writer.close()


def run_gui(services_factory: Callable[[], EngineServices], argv: list[str] | None = None,
            open_paths: list[str] | None = None, config: Settings | None = None,
            preload: Preload | None = None) -> int:
    """Run the studio until its window closes; returns the exit code.

    The window appears first, with "Loading engine…"; ``services_factory`` is then called
    on a worker thread (it may import torch and diffusers), a ``JobRunner`` is made for the
    engine of the services it returns, and the window's connection is made with them.
    Images in ``open_paths`` are opened. ``config`` is the run's ``studio.settings`` (the
    window reads the settings file when it is not given).
    On exit the runner is shut down and no thread is left running.
    """
    app = QApplication.instance() or QApplication(list(argv if argv is not None
                                                       else sys.argv))
    app.setApplicationName("Latent Studio")
    app.setOrganizationName("LatentStudio")
    session = StudioSession(services_factory, open_paths, config=config, preload=preload)
    app.aboutToQuit.connect(session.shutdown)
    watcher = TerminationWatcher(lambda: terminate(session.window))
    session.start()
    code = app.exec()
    watcher.uninstall()
    session.window.settings.sync()  # written now: the caller may end the process at once
    QSettings().sync()
    if not session.shutdown():
        # Closed (by the user or SIGTERM) while the engine was still importing: the window
        # has saved or discarded the work as on any close, and nothing else runs, so the
        # process ends now rather than when the import would have (Python waits for it,
        # and a QThread destroyed while it runs aborts).
        end_now(session, int(code))
    return int(code)


def terminate(window: MainWindow) -> None:
    """SIGTERM: the window saves the work and closes without asking; the app then quits
    even if another top-level window (a dialog) is open, and a watchdog ends the process
    if its shutdown does not finish in ``SHUTDOWN_WATCHDOG_S`` (the work is saved by then)."""
    window.close_for_shutdown()
    if window.isVisible():  # the close was refused: nothing is saved, so nothing ends
        return
    import os

    start_exit_watchdog(float(os.environ.get("STUDIO_SHUTDOWN_WATCHDOG_S",
                                             SHUTDOWN_WATCHDOG_S)))
    QApplication.quit()


def start_exit_watchdog(seconds: float) -> None:
    """End the process after ``seconds`` unless it has ended by then; every thread's stack
    goes to stderr first, so what held it up can be found."""
    import faulthandler
    import threading

    def fire() -> None:
        sys.stderr.write(f"Latent Studio: still running {seconds:.0f} s after the work was "
                         "saved at SIGTERM; ending now. Where each thread was:\n")
        try:
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        except (OSError, ValueError, RuntimeError):
            pass
        end_process(0, exit_handlers=False)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()


def end_now(session: StudioSession, code: int) -> None:
    """End the process at once, with the settings written and the output flushed."""
    session.window.settings.sync()
    QSettings().sync()
    # Not the exit handlers: PySide's would destroy the loader's QThread while it runs
    # (an abort); the engine never started, so there is nothing of ours for them to do.
    end_process(code, exit_handlers=False)


def end_process(code: int, *, exit_handlers: bool = True) -> None:
    """End the process now that the work is saved and the session's threads have ended:
    the exit handlers run (temporary folders go) and the output is flushed, but Python's
    teardown of torch, diffusers and transformers (15 s measured on a busy 2-core CPU) is
    skipped, so a logout or shutdown never waits for it."""
    import atexit
    import logging
    import os

    try:
        if exit_handlers:
            atexit._run_exitfuncs()
    except Exception:  # an exit handler's failure must not keep the process alive
        traceback.print_exc()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
