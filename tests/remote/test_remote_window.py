"""The real main window on the remote backend against the real server: the status bar's
server label, the server's models in the picker, and a generation through the window."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.server]


def test_the_window_shows_each_server_and_generates_on_it(comfy_server, qtbot,
                                                          tmp_path) -> None:
    from conftest import free_port
    from PySide6.QtCore import QSettings  # noqa: TID251 - the window's settings in tmp_path

    from studio.core.jobs.runner import JobRunner
    from studio.remote.services import remote_services
    from studio.ui.main_window import MainWindow

    dead = f"http://127.0.0.1:{free_port()}"
    services = remote_services(SimpleNamespace(servers=[comfy_server.url, dead]))
    runner = JobRunner(services.engine)
    settings = QSettings(str(tmp_path / "studio.ini"), QSettings.Format.IniFormat)
    window = MainWindow(services, runner, settings)
    qtbot.addWidget(window)
    try:
        window.show()
        qtbot.waitExposed(window)
        label = window.status.servers_label
        qtbot.waitUntil(lambda: label.text() == "2 servers: 1 idle, 1 failed", timeout=30000)
        host = comfy_server.url.split("://")[1]
        tip = label.toolTip().splitlines()
        assert tip[0].startswith(f"{host} idle") and "queue 0" in tip[0]
        assert "Cannot reach" in tip[1] and "retry in" in tip[1]
        assert "e06c6c" in label.styleSheet()  # red while one is failed
        panel = window.prompt_panel
        qtbot.waitUntil(lambda: panel.model_combo.count() > 0, timeout=30000)
        assert "tiny-sd1" in panel.model_combo.currentText()
        # What a server cannot do is off, with the reason; what it can is on.
        manager, upscale = (window.tools.actions[n] for n in ("model_manager", "upscale"))
        assert not manager.isEnabled() and "managed on the server" in manager.toolTip()
        assert upscale.isEnabled()
        live = window.live_controller.button
        assert not live.isEnabled() and "not sent to servers" in live.toolTip()
        panel.steps_slider.setValue(1)
        panel.width_spin.setValue(64)
        panel.height_spin.setValue(64)
        panel.prompt_edit.setPlainText("a lighthouse")
        with qtbot.waitSignal(window.controller.generation_applied, timeout=180000):
            panel.generate_button.click()
        assert len(window.doc.layers) == 1
        qtbot.waitUntil(lambda: label.text() == "2 servers: 1 idle, 1 failed", timeout=30000)
    finally:
        window.status.stop()
        window.detach_engine()
        assert runner.shutdown(10.0)
        window.close()
        services.engine.close()
