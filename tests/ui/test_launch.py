"""Starting and ending the app as a desktop does: ``studio --model-dir DIR`` opens the
window, and SIGTERM (a logout, a shutdown) saves the work instead of leaving a crash."""

from __future__ import annotations

import signal
import sys

import numpy as np
import pytest

from studio.cli.main import main
from studio.core.project.store import ProjectStore
from tests.ui.app_process import sigterm_after_autosave

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
    proc, err, data = sigterm_after_autosave(tmp_path, APP, (200, 30, 30), timeout=60)
    autosaves = data / "autosave"
    assert proc.returncode == 0, err[-2000:]
    assert not list(autosaves.glob("*.studio.autosave*"))  # no restore offer next time
    saved = list((data / "saved at shutdown").glob("*.studio"))
    assert len(saved) == 1, err[-2000:]
    project = ProjectStore.load(saved[0])
    photo = project.document.layers[0].pixels
    assert photo.shape[:2] == (24, 32)
    assert np.array_equal(photo[5, 5, :3], [200, 30, 30])
