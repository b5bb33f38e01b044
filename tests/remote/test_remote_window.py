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
        assert live.isEnabled()  # live painting runs on the server (test_live_remote.py)
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


def test_server_models_show_where_they_live_and_exports_carry_the_workflow(
        comfy_server, spare, qtbot, tmp_path) -> None:
    """Two servers, a model on one of them only: the picker says where each model lives,
    choosing the one-server model runs the job there, and the window's PNG exports (canvas
    and gallery) carry the workflow that ran in ComfyUI's own 'prompt' chunk."""
    import json
    import os

    from PIL import Image
    from PySide6.QtCore import QSettings  # noqa: TID251 - the window's settings in tmp_path

    from studio.core.formats.metadata import read_settings
    from studio.core.jobs.runner import JobRunner
    from studio.remote.services import remote_services
    from studio.ui.main_window import MainWindow

    only_spare = spare.base / "models" / "checkpoints" / "tiny-sd1-spare.safetensors"
    os.link(spare.base / "models" / "checkpoints" / "tiny-sd1.safetensors", only_spare)
    services = remote_services(SimpleNamespace(servers=[comfy_server.url, spare.url]))
    runner = JobRunner(services.engine)
    window = MainWindow(services, runner,
                        QSettings(str(tmp_path / "studio.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    host, spare_host = (u.split("://")[1] for u in (comfy_server.url, spare.url))
    try:
        window.show()
        qtbot.waitExposed(window)
        combo = window.prompt_panel.model_combo
        qtbot.waitUntil(lambda: combo.count() > 0, timeout=30000)
        labels = [combo.itemText(i) for i in range(combo.count())]
        assert f"tiny-sd1-spare  ·  sd1  ·  on {spare_host}" in labels
        assert f"tiny-sd1  ·  sd1  ·  on {host}, {spare_host}" in labels
        combo.setCurrentIndex(labels.index(f"tiny-sd1-spare  ·  sd1  ·  on {spare_host}"))
        panel = window.prompt_panel
        panel.steps_slider.setValue(1)
        panel.width_spin.setValue(64)
        panel.height_spin.setValue(64)
        panel.seed_spin.setValue(5)
        panel.prompt_edit.setPlainText("a lighthouse")
        with qtbot.waitSignal(window.controller.generation_applied, timeout=180000) as got:
            panel.generate_button.click()
        record = window.doc.log.get(got.args[0])
        assert record.request.model == "tiny-sd1-spare.safetensors"
        assert record.request.device == f"comfyui:{spare.url}"  # routed to that server
        canvas_png, folder = tmp_path / "canvas.png", tmp_path / "gallery"
        assert window.file_actions.export_canvas(str(canvas_png)), window.banner.text
        folder.mkdir()
        qtbot.waitUntil(lambda: len(window.gallery_panel.items) == 1, timeout=10000)
        files = window.file_actions.export_gallery(str(folder), "{seed}")
        assert len(files) == 1
        for path in (canvas_png, files[0]):
            with Image.open(path) as img:
                ran = json.loads(img.info["prompt"])  # ComfyUI loads a dropped file by it
            assert any(n["class_type"] == "CheckpointLoaderSimple"
                       and n["inputs"]["ckpt_name"] == "tiny-sd1-spare.safetensors"
                       for n in ran.values())
            assert any(n["class_type"] == "KSampler"
                       and n["inputs"]["seed"] == record.request.seed for n in ran.values())
            settings = read_settings(path)  # our reader still takes our request first
            assert settings.request.model == "tiny-sd1-spare.safetensors"
            assert settings.request.seed == record.request.seed
    finally:
        window.status.stop()
        window.detach_engine()
        assert runner.shutdown(10.0)
        window.close()
        services.engine.close()
        only_spare.unlink()
