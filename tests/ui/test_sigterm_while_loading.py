"""SIGTERM (a logout, a shutdown) in the first seconds, while the engine is still being
imported: the app saves the work as on any SIGTERM and ends at once, instead of waiting for
the import (tens of seconds on a slow machine)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]

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
    image = tmp_path / "photo.png"
    Image.new("RGB", (32, 24), (20, 130, 30)).save(image)
    data = tmp_path / "data"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "STUDIO_DATA_DIR": str(data),
           "STUDIO_CONFIG_DIR": str(tmp_path / "config"),
           "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "STUDIO_AUTOSAVE_MINUTES": "0.005",
           "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", APP, str(image)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    autosaves = data / "autosave"
    try:
        deadline = time.monotonic() + 60
        while not list(autosaves.glob("*.studio.autosave")):  # the window is up, unsaved
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no autosave was written"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        # Well before the import would end (120 s): it is not waited for.
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err and "QThread" not in err, err[-2000:]
    assert not list(autosaves.glob("*.studio.autosave*"))  # no restore offer next time
    assert len(list((data / "saved at shutdown").glob("*.studio"))) == 1, err[-2000:]
