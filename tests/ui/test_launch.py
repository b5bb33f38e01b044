"""Starting and ending the app as a desktop does: ``studio --model-dir DIR`` opens the
window, and SIGTERM (a logout, a shutdown) saves the work instead of leaving a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.cli.main import main
from studio.core.project.store import ProjectStore

REPO = Path(__file__).resolve().parents[2]

# The real launcher and window over the fake engine (a real one takes seconds to import).
APP = """
import sys
from studio.ui.launch import run_gui
from tests.fakes import FakeEngine, fake_services
sys.exit(run_gui(lambda: fake_services(FakeEngine()), ["studio"], sys.argv[1:]))
"""


def test_the_bare_studio_command_takes_the_windows_options(tmp_path, monkeypatch):
    import studio.app
    import studio.cli.qtcheck

    seen: dict[str, object] = {}

    def run_app(settings, paths):
        seen.update(settings=settings, paths=paths)
        return 0

    monkeypatch.setattr(studio.app, "run_app", run_app)
    monkeypatch.setattr(studio.cli.qtcheck, "gui_problem", lambda: None)
    monkeypatch.setenv("STUDIO_CONFIG_DIR", str(tmp_path / "config"))
    models = tmp_path / "models"
    models.mkdir()
    assert main(["--model-dir", str(models), "--device", "cpu"]) == 0
    assert str(models) in seen["settings"].model_dirs  # type: ignore[attr-defined]
    assert seen["settings"].device == "cpu"  # type: ignore[attr-defined]
    assert seen["paths"] == []


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or sys.platform == "win32",
                    reason="POSIX signals")
def test_sigterm_saves_the_work_and_leaves_nothing_to_restore(tmp_path):
    image = tmp_path / "photo.png"
    Image.new("RGB", (32, 24), (200, 30, 30)).save(image)
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
        # The photo is open and unsaved: an autosave exists, as it would before a crash.
        while not list(autosaves.glob("*.studio.autosave")):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no autosave was written"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-2000:]
    assert not list(autosaves.glob("*.studio.autosave*"))  # no restore offer next time
    saved = list((data / "saved at shutdown").glob("*.studio"))
    assert len(saved) == 1, err[-2000:]
    project = ProjectStore.load(saved[0])
    photo = project.document.layers[0].pixels
    assert photo.shape[:2] == (24, 32)
    assert np.array_equal(photo[5, 5, :3], [200, 30, 30])
