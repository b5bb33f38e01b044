"""File > Import Settings from Image…: fills exactly the fields the file holds, names the ones
it could not read, never overwrites what the user typed with nothing."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo
from PySide6.QtWidgets import QFileDialog

DATA = Path(__file__).parents[1] / "data" / "metadata"


def _typed(window) -> dict:
    panel = window.prompt_panel
    panel.set_values({"prompt": "my careful prompt", "negative_prompt": "my negative",
                      "seed": 1234, "steps": 17, "width": 640, "height": 448})
    return panel.values()


def _png(tmp_path: Path, **texts: str) -> Path:
    info = PngInfo()
    for key, text in texts.items():
        info.add_text(key, text)
    path = tmp_path / "in.png"
    Image.new("RGB", (64, 64)).save(path, pnginfo=info)
    return path


def test_a_graph_with_no_readable_sampler_keeps_the_prompt_and_says_so(qtbot, window,
                                                                        tmp_path, monkeypatch):
    before = _typed(window)
    graph = {"1": {"class_type": "SomeCustomSampler", "inputs": {"x": 1}}}
    path = _png(tmp_path, prompt=json.dumps(graph))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    window.actions["import_settings"].trigger()
    assert window.prompt_panel.values() == before  # nothing erased, nothing changed
    assert "no generation settings" in window.banner.text and "ComfyUI" in window.banner.text


def test_a_split_sampler_flux_graph_fills_what_it_read(qtbot, window):
    before = _typed(window)
    assert window.file_actions.import_settings(str(DATA / "comfyui/flux_sampler_custom_advanced.png"))
    values = window.prompt_panel.values()
    assert values["prompt"] == "a lighthouse on a cliff at dawn, volumetric light"
    assert values["negative_prompt"] == before["negative_prompt"]  # the graph has none
    assert values["seed"] == 18446744073709551000 % 2**32
    assert values["steps"] == 28
    assert (values["width"], values["height"]) == (1024, 768)
    assert "(ComfyUI)" in window.status.message_label.text()


def test_only_the_fields_read_change_and_the_rest_are_named(qtbot, window, tmp_path):
    before = _typed(window)
    path = _png(tmp_path, parameters="a new prompt\nSteps: 30, Sampler: Euler a, CFG Scale: 6")
    assert window.file_actions.import_settings(str(path))
    values = window.prompt_panel.values()
    assert (values["prompt"], values["steps"]) == ("a new prompt", 30)
    assert values["guidance"] == 6.0
    for kept in ("negative_prompt", "seed", "width", "height"):
        assert values[kept] == before[kept], kept
    status = window.status.message_label.text()
    assert "AUTOMATIC1111" in status and "could not read: seed, size, model" in status


def test_raw_json_never_lands_in_the_prompt(qtbot, window, tmp_path):
    before = _typed(window)
    path = _png(tmp_path, parameters=json.dumps({"weird": {"nested": [1, 2]}, "x": 1}))
    window.file_actions.import_settings(str(path))
    assert window.prompt_panel.values()["prompt"] == before["prompt"]


def test_a_nesting_bomb_is_one_message_and_changes_nothing(qtbot, window, tmp_path):
    before = _typed(window)
    path = _png(tmp_path, prompt="[" * 100_000)
    assert not window.file_actions.import_settings(str(path))
    assert "nested too deeply" in window.banner.text
    assert window.prompt_panel.values() == before


def test_other_tools_are_labelled_by_name(qtbot, window):
    for name, tool in [("novelai/novelai_v4.webp", "NovelAI"), ("swarmui/swarmui.jpg", "SwarmUI"),
                       ("civitai/civitai_generator.jpg", "Civitai"),
                       ("drawthings/drawthings.png", "Draw Things")]:
        assert window.file_actions.import_settings(str(DATA / name)), window.banner.text
        assert f"({tool}" in window.status.message_label.text()


def test_the_file_is_read_off_the_gui_thread(qtbot, window, monkeypatch):
    import threading

    from studio.core.formats import metadata

    readers: list[threading.Thread] = []
    real_open = metadata.open_image

    def open_image(source, **kwargs):
        readers.append(threading.current_thread())
        return real_open(source, **kwargs)

    monkeypatch.setattr(metadata, "open_image", open_image)
    _typed(window)
    assert window.file_actions.import_settings(str(DATA / "comfyui/flux_sampler_custom_advanced.png"))
    assert window.prompt_panel.values()["prompt"] == "a lighthouse on a cliff at dawn, volumetric light"
    assert readers and threading.main_thread() not in readers


def test_a_slow_read_keeps_the_window_going_and_cancel_changes_nothing(qtbot, window, tmp_path,
                                                                       monkeypatch):
    import threading

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QProgressDialog, QPushButton

    from studio.core.formats import metadata

    release = threading.Event()
    monkeypatch.setattr(metadata, "read_settings", lambda path, **k: release.wait(30))
    before = _typed(window)
    path = _png(tmp_path, parameters="a new prompt\nSteps: 30, Seed: 5")
    ticks: list[int] = []
    ticker = QTimer(interval=20)
    ticker.timeout.connect(lambda: ticks.append(1))  # the GUI thread's timers keep running
    ticker.start()
    seen: list[str] = []

    def press_cancel() -> None:
        dialog = window.findChild(QProgressDialog, "task_progress_dialog")
        if dialog is None or not dialog.isVisible():
            QTimer.singleShot(50, press_cancel)
            return
        seen.append(dialog.labelText())
        dialog.findChild(QPushButton).click()

    QTimer.singleShot(100, press_cancel)
    try:
        assert not window.file_actions.import_settings(str(path))
    finally:
        ticker.stop()
        release.set()
    assert seen == ["Reading the settings of in.png…"]
    assert len(ticks) >= 5
    assert window.prompt_panel.values() == before
    assert "Import cancelled" in window.status.message_label.text()
