"""Each server's state in the state layer (``ServersState``) and the status bar, the server
settings in Preferences, and the thin install (no torch). A gigantic or malformed image from
the real server: test_remote_faults.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from studio.remote.engine import RemoteEngine
from studio.session.servers import ServersState

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.server
def test_servers_state_shows_each_server(comfy_server, qtbot) -> None:
    from conftest import free_port

    from studio.ui.status_bar import StudioStatusBar

    engine = RemoteEngine([comfy_server.url, f"http://127.0.0.1:{free_port()}"])
    try:
        state = ServersState(engine.server_status, interval=0.2)
        seen = []
        state.changed.connect(seen.append)
        state.refresh()
        assert [s.state for s in state.servers] == ["idle", "failed"]
        assert state.summary == "2 servers: 1 idle, 1 failed" and seen
        bar = StudioStatusBar()
        qtbot.addWidget(bar)
        bar.show_servers(state)  # polls on its own thread; the label follows
        qtbot.waitUntil(lambda: "1 failed" in bar.servers_label.text(), timeout=10000)
        tip = bar.servers_label.toolTip()
        assert "idle" in tip and "queue 0" in tip and "Cannot reach" in tip
        bar.stop()
    finally:
        engine.close()


def test_a_poll_that_fails_is_shown_and_backs_off() -> None:
    calls = []

    def poll():
        calls.append(1)
        raise TimeoutError("the backend did not answer")

    state = ServersState(poll, interval=1.0)
    state.refresh()
    state.refresh()
    assert state.error == "the backend did not answer" and "did not answer" in state.summary
    assert state.delay == 4.0 and len(calls) == 2


def test_preferences_save_the_servers(tmp_path, qtbot) -> None:
    from studio.settings import saved_settings
    from studio.ui.preferences_dialog import PreferencesDialog

    path = tmp_path / "studio.json"
    dialog = PreferencesDialog(config_file=path)
    qtbot.addWidget(dialog)
    dialog.servers_edit.setPlainText("127.0.0.1:8188\nhttps://gpu.example:443/")
    dialog.token_edit.setText("secret")
    dialog.trust_check.setChecked(True)
    dialog.accept()
    saved = saved_settings(path)
    assert saved.servers == ("http://127.0.0.1:8188", "https://gpu.example:443")
    assert saved.server_token == "secret" and saved.trust_servers


# -- the thin install ----------------------------------------------------------------------
def test_remote_txt_is_pyproject_less_the_local_engine() -> None:
    import re

    import tomllib

    heavy = {"torch", "diffusers", "transformers", "safetensors", "tokenizers", "accelerate",
             "huggingface-hub", "scipy"}
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    thin = [line.strip() for line in (REPO / "packaging" / "remote.txt").read_text()
            .splitlines() if line.strip() and not line.startswith("#")]

    def name(req: str) -> str:
        return re.split(r"[<>=!~ \[;]", req, maxsplit=1)[0].lower()

    assert sorted(thin, key=name) == sorted((d for d in declared if name(d) not in heavy),
                                            key=name)


@pytest.mark.slow
@pytest.mark.server
def test_thin_install_generates_on_the_server_without_torch(comfy_server, tmp_path) -> None:
    """`studio generate --server`, `studio models --server` and the window in a venv with
    no torch."""
    import os

    built = subprocess.run(["bash", str(REPO / "scripts" / "thin-venv.sh")],
                           capture_output=True, text=True, timeout=900)
    if built.returncode != 0:
        reason = f"the thin venv could not be built: {built.stderr.strip()[-300:]}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    python = Path(built.stdout.strip().splitlines()[-1]) / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
    env.update(PYTHONPATH=str(REPO), STUDIO_CONFIG_DIR=str(tmp_path / "config"),
               QT_QPA_PLATFORM="offscreen")

    def studio(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), "-m", "studio", *args], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=300)

    assert subprocess.run([str(python), "-c", "import torch"], capture_output=True,
                          env=env).returncode != 0
    models = studio("models", "--server", comfy_server.url)
    assert models.returncode == 0, models.stderr
    assert "tiny-sd1" in models.stdout and comfy_server.url in models.stdout
    out = tmp_path / "thin.png"
    made = studio("generate", "a lighthouse", "--server", comfy_server.url, "--model",
                  "tiny-sd1", "--size", "64", "--steps", "1", "-o", str(out), "--quiet")
    assert made.returncode == 0, made.stderr
    assert out.is_file() and out.stat().st_size > 0
    probe = subprocess.run([str(python), "-c", "import sys, studio.remote.services, "
                            "studio.cli.main; print('torch' in sys.modules)"],
                           capture_output=True, text=True, env=env)
    assert probe.stdout.strip() == "False", probe.stderr
    window = subprocess.run([str(python), "-c", THIN_WINDOW, comfy_server.url,
                             str(tmp_path / "window.ini")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert window.returncode == 0, window.stderr[-2000:]
    assert window.stdout.strip().splitlines()[-1] == "1 server: 1 idle | tiny-sd1 | False"


# The real main window on the remote backend, as the app builds it, until the server shows
# idle and its model is in the picker; then whether torch was imported.
THIN_WINDOW = """
import sys
from types import SimpleNamespace

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

app = QApplication([])
from studio.core.jobs.runner import JobRunner
from studio.remote.services import remote_services
from studio.ui.main_window import MainWindow

services = remote_services(SimpleNamespace(servers=[sys.argv[1]]))
runner = JobRunner(services.engine)
window = MainWindow(services, runner, QSettings(sys.argv[2], QSettings.Format.IniFormat))
window.show()
seen = []

def check():
    label = window.status.servers_label.text()
    combo = window.prompt_panel.model_combo
    if label.endswith("idle") and combo.count():
        seen.append(f"{label} | {combo.currentText().split()[0]} | {'torch' in sys.modules}")
        app.quit()

timer = QTimer()
timer.timeout.connect(check)
timer.start(200)
QTimer.singleShot(240000, app.quit)
app.exec()
window.status.stop()
window.detach_engine()
runner.shutdown(10.0)
services.engine.close()
print(seen[-1] if seen else "the window never showed the server idle with its model")
sys.exit(0 if seen else 1)
"""
