"""The real launcher in a child process: open a photo, wait until the unsaved work has an
autosave (as before a crash), then end the app with SIGTERM as a logout or shutdown would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def sigterm_after_autosave(tmp_path: Path, app: str, colour: tuple[int, int, int],
                           timeout: float) -> tuple[subprocess.Popen, str, Path]:
    """Run ``app`` (Python code starting the window; the photo's path is its argument) with
    a photo of ``colour``, SIGTERM it once an autosave exists, and wait up to ``timeout`` s
    for it to end: (process, its stderr, the data folder)."""
    image = tmp_path / "photo.png"
    Image.new("RGB", (32, 24), colour).save(image)
    data = tmp_path / "data"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "STUDIO_DATA_DIR": str(data),
           "STUDIO_CONFIG_DIR": str(tmp_path / "config"),
           "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "STUDIO_AUTOSAVE_MINUTES": "0.005",
           "PYTHONPATH": str(REPO)}
    # Every thread's stack is printed on SIGUSR1 (sent when it does not end in time).
    app = "import faulthandler, signal\nfaulthandler.register(signal.SIGUSR1)\n" + app
    proc = subprocess.Popen([sys.executable, "-c", app, str(image)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        # The photo is open and unsaved: an autosave exists, as it would before a crash.
        while not list((data / "autosave").glob("*.studio.autosave")):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no autosave was written"
            time.sleep(0.1)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            _out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            proc.kill()
            _out, err = proc.communicate()
            raise AssertionError(f"still running {time.monotonic() - sent:.0f} s after "
                                 f"SIGTERM; its threads:\n{err[-6000:]}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc, err, data
