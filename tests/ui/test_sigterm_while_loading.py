"""SIGTERM (a logout, a shutdown) in the first seconds, while the engine is still being
imported: the app saves the work as on any SIGTERM and ends at once, instead of waiting for
the import (tens of seconds on a slow machine)."""

from __future__ import annotations

import signal
import sys

import pytest

from tests.ui.app_process import sigterm_after_autosave

# The real launcher and window; the engine's import never ends (it sleeps for 120 s).
APP = """
import sys, time
from studio.ui.launch import run_gui
from tests.fakes import FakeEngine, fake_services

def slow_engine():
    time.sleep(120)  # torch and diffusers importing on a slow machine
    return fake_services(FakeEngine())

sys.exit(run_gui(slow_engine, ["studio"], sys.argv[1:]))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or sys.platform == "win32",
                    reason="POSIX signals")
def test_sigterm_while_the_engine_imports_saves_and_ends_at_once(tmp_path):
    # Well before the import would end (120 s): it is not waited for.
    proc, err, data = sigterm_after_autosave(tmp_path, APP, (20, 130, 30), timeout=60)
    autosaves = data / "autosave"
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err and "QThread" not in err, err[-2000:]
    assert not list(autosaves.glob("*.studio.autosave*"))  # no restore offer next time
    assert len(list((data / "saved at shutdown").glob("*.studio"))) == 1, err[-2000:]


# The window's shutdown never ends (something it waits on is stuck): once the work is saved,
# the app still ends, and says where it was held up.
STUCK = """
import sys, time
from PySide6.QtWidgets import QApplication
from studio.ui.launch import run_gui
from tests.fakes import FakeEngine, fake_services

app = QApplication(["studio"])
app.aboutToQuit.connect(lambda: time.sleep(600))
sys.exit(run_gui(lambda: fake_services(FakeEngine()), ["studio"], sys.argv[1:]))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or sys.platform == "win32",
                    reason="POSIX signals")
def test_a_stuck_shutdown_after_sigterm_still_ends_with_the_work_saved(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_SHUTDOWN_WATCHDOG_S", "2")
    proc, err, data = sigterm_after_autosave(tmp_path, STUCK, (90, 40, 160), timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "still running 2 s after the work was saved" in err
    assert "time.sleep" in err or "<lambda>" in err  # where it was held up
    assert len(list((data / "saved at shutdown").glob("*.studio"))) == 1, err[-2000:]
    assert not list((data / "autosave").glob("*.studio.autosave*"))
