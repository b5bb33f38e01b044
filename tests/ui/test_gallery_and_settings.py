"""The gallery restores settings; settings and layout survive a restart; run_gui starts."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from studio.core.formats.a1111 import parse_a1111_parameters
from studio.ui.launch import StudioSession
from studio.ui.main_window import MainWindow
from tests.fakes import FakeEngine, fake_services


def generate(qtbot, window, prompt: str, seed: int) -> None:
    panel = window.prompt_panel
    panel.prompt_edit.setPlainText(prompt)
    panel.seed_spin.setValue(seed)
    panel.seed_lock_button.setChecked(True)
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()


def test_clicking_a_gallery_item_restores_its_settings(qtbot, window):
    panel = window.prompt_panel
    panel.steps_slider.setValue(7)
    generate(qtbot, window, "first prompt", 7)
    panel.steps_slider.setValue(12)
    generate(qtbot, window, "second prompt", 99)
    gallery = window.gallery_panel
    assert len(gallery.items) == 2
    assert gallery.items[0].request.prompt == "second prompt"  # newest first
    panel.seed_lock_button.setChecked(False)
    entry = gallery.list.item(1)
    qtbot.mouseClick(gallery.list.viewport(), qtbot_left(),
                     pos=gallery.list.visualItemRect(entry).center())
    values = panel.values()
    assert values["prompt"] == "first prompt"
    assert values["seed"] == 7 and values["steps"] == 7
    assert panel.seed_locked


def qtbot_left():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


def test_gallery_actions(qtbot, window, engine):
    generate(qtbot, window, "a lighthouse", 3)
    gallery = window.gallery_panel
    gallery.list.setCurrentRow(0)
    text = gallery.copy_settings()
    assert parse_a1111_parameters(text).prompt == "a lighthouse"
    assert QApplication.clipboard().text() == text
    layers = len(window.doc.layers)
    gallery.place_button.click()
    assert len(window.doc.layers) == layers + 1
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        gallery.vary_button.click()
    assert engine.requests[-1].variation_strength > 0
    assert len(gallery.items) == 2
    record = gallery.current()
    gallery.delete_button.click()
    assert record not in gallery.items and len(gallery.items) == 1
    window.undo.undo()
    assert any(r.id == record.id for r in gallery.items)


def test_use_as_init_image_makes_the_next_run_img2img(qtbot, window, engine):
    generate(qtbot, window, "a tree", 5)
    window.undo.undo()  # the canvas is empty again, the gallery keeps the image
    assert window.doc.layers == []
    window.gallery_panel.list.setCurrentRow(0)
    window.gallery_panel.init_button.click()
    assert len(window.doc.layers) == 1
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    assert engine.requests[-1].task == "img2img"


def test_settings_survive_a_restart(qtbot, engine, runner, settings):
    first = MainWindow(fake_services(engine), runner, settings)
    qtbot.addWidget(first)
    first.show()
    panel = first.prompt_panel
    panel.model_combo.setCurrentIndex(panel.model_combo.findData("fake-large"))
    panel.prompt_edit.setPlainText("misty mountains at dawn")
    panel.negative_edit.setPlainText("blurry")
    panel.steps_slider.setValue(33)
    panel.scheduler_combo.setCurrentText("DDIM")
    first.docks["queue"].hide()
    first.set_theme("light")
    first.resize(760, 720)  # the offscreen screen is 800x800
    qtbot.wait(10)
    size = (first.width(), first.height())
    first.close()

    second = MainWindow(fake_services(engine), runner, settings)
    qtbot.addWidget(second)
    second.show()
    values = second.prompt_panel.values()
    assert values["model"] == "fake-large"
    assert values["prompt"] == "misty mountains at dawn"
    assert values["negative_prompt"] == "blurry"
    assert values["steps"] == 33 and values["scheduler"] == "DDIM"
    assert second.docks["queue"].isHidden()
    assert second.actions["theme_light"].isChecked()
    assert (second.width(), second.height()) == size
    second.set_theme("dark")
    second.close()


def test_window_without_models_says_how_to_add_one(qtbot, settings):
    from studio.core.jobs.runner import JobRunner

    empty = FakeEngine(models=[])
    runner = JobRunner(empty)
    try:
        window = MainWindow(fake_services(empty), runner, settings)
        qtbot.addWidget(window)
        assert "No diffusion model found" in window.banner.label.text()
        assert "safetensors" in window.banner.label.text()
        window.actions["generate"].trigger()
        assert "No diffusion model" in window.banner.label.text()
        window.close()
    finally:
        assert runner.shutdown(5)


def test_session_shows_the_window_before_loading_the_engine(qtbot, settings):
    calls = []

    def factory():
        calls.append(session.window.isVisible())
        return fake_services()

    session = StudioSession(factory, [], settings)
    qtbot.addWidget(session.window)
    with qtbot.waitSignal(session.loader.loaded, timeout=5000):
        session.start()
    assert calls == [True]
    qtbot.waitUntil(lambda: session.runner is not None, timeout=2000)
    assert session.window.prompt_panel.model_id == "fake-tiny"
    session.window.close()
    session.shutdown()
    assert session.runner is None


def test_run_gui_returns_when_the_window_closes(qtbot, tmp_path, monkeypatch):
    import studio.ui.launch as launch

    windows = []
    original = launch.StudioSession.start

    def start(self):
        windows.append(self.window)
        original(self)
        self.loader.loaded.connect(lambda _e: QTimer.singleShot(50, self.window.close))

    monkeypatch.setattr(launch.StudioSession, "start", start)
    image = tmp_path / "in.png"
    from PIL import Image

    Image.new("RGB", (48, 32), (10, 200, 30)).save(image)
    code = launch.run_gui(fake_services, [], [str(image)])
    assert code == 0
    assert (windows[0].doc.width, windows[0].doc.height) == (48, 32)


def test_an_engine_that_fails_to_start_leaves_a_usable_window(qtbot, settings):
    from studio.core.errors import StudioError

    def factory():
        raise StudioError("CUDA is not available on this machine.")

    session = StudioSession(factory, [], settings)
    qtbot.addWidget(session.window)
    with qtbot.waitSignal(session.loader.failed, timeout=5000):
        session.start()
    assert "CUDA is not available" in session.window.banner.text
    assert session.runner is None
    session.window.actions["generate"].trigger()
    assert "Generation is unavailable: CUDA" in session.window.banner.text
    session.window.close()
    session.shutdown()


def test_restoring_a_cli_txt2img_image_makes_it_again_not_a_refinement(qtbot, window, engine):
    # The CLI (and other tools) record a text-to-image request with the unused default
    # strength 0.75; restored over a painted canvas it must still make the image again.
    from studio.core.jobs.request import GenerationRequest

    generate(qtbot, window, "a lighthouse", 3)  # the canvas is painted now
    made = GenerationRequest("a red fox", model=engine.requests[-1].model, seed=5, steps=4,
                             width=64, height=64, strength=0.75)
    assert made.task == "txt2img"
    window.prompt_panel.apply_request(made)
    assert window.prompt_panel.values()["strength"] == 1.0
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    again = engine.requests[-1]
    assert (again.task, again.prompt, again.seed) == ("txt2img", "a red fox", 5)
