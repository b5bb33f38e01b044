"""The styles box, upscaling, the X/Y/Z grid and the model manager, with pytest-qt."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.jobs.request import GenerationRequest
from studio.core.styles import StyleLibrary
from studio.session.jobs import JobQueue
from studio.ui.grid_dialog import GridDialog
from studio.ui.styles_box import NO_STYLE, StylesBox


def queue_on(runner) -> JobQueue:
    """A job queue on ``runner`` (the grid dialog's jobs go through one)."""
    jobs = JobQueue()
    jobs.attach(runner)
    return jobs


@pytest.fixture
def styles_box(qtbot, tmp_path):
    box = StylesBox(StyleLibrary(user_path=tmp_path / "styles.json"))
    qtbot.addWidget(box)
    return box


def test_styles_box_lists_starters_and_applies_the_choice(qtbot, styles_box):
    combo = styles_box.combo
    assert combo.itemText(0) == NO_STYLE and combo.count() >= 11
    assert styles_box.apply_to("a cat", "blurry") == ("a cat", "blurry")
    with qtbot.waitSignal(styles_box.style_changed) as blocker:
        combo.setCurrentIndex(combo.findText("Anime"))
    assert blocker.args == ["Anime"]
    prompt, negative = styles_box.apply_to("a cat", "blurry")
    assert prompt.startswith("anime illustration of a cat") and negative.startswith("blurry, ")
    assert not styles_box.delete_button.isEnabled()  # starter styles stay


def test_styles_box_saves_and_deletes_user_styles(qtbot, styles_box, tmp_path):
    with qtbot.waitSignal(styles_box.style_saved):
        assert styles_box.save_style("Moody", "{prompt}, moody light", "sunny")
    assert styles_box.current_name() == "Moody" and styles_box.delete_button.isEnabled()
    assert "Moody" in StyleLibrary(user_path=tmp_path / "styles.json").names()
    assert not styles_box.save_style("  ", "x", "")
    assert "needs a name" in styles_box.message.text()
    styles_box.set_current("Moody")
    assert styles_box.delete_current() and styles_box.current_name() == ""
    assert "Moody" not in StyleLibrary(user_path=tmp_path / "styles.json").names()


def test_grid_dialog_queues_one_job_per_cell_and_shows_the_grid(qtbot, runner, engine):
    base = GenerationRequest("a cat", width=64, height=64, steps=4, seed=9)
    dialog = GridDialog(queue_on(runner), lambda: base)
    qtbot.addWidget(dialog)
    dialog.rows[0].set("seed", "1,2,3")
    dialog.rows[1].set("guidance", "3,7")
    assert "6 images (3 × 2)" in dialog.summary.text()
    cells = []
    dialog.cell_finished.connect(cells.append)
    with qtbot.waitSignal(dialog.grid_finished, timeout=10000) as blocker:
        assert dialog.start()
    grid = blocker.args[0]
    assert len(cells) == 6 and sorted(c.request.seed for c in cells) == [1, 1, 2, 2, 3, 3]
    assert [(r.seed, r.guidance) for r in engine.requests] == [
        (1, 3.0), (2, 3.0), (3, 3.0), (1, 7.0), (2, 7.0), (3, 7.0)]
    assert grid.shape[0] > 2 * 64 and grid.shape[1] > 3 * 64
    assert dialog.preview.pixmap().width() == grid.shape[1]
    assert dialog.save_button.isEnabled() and "Done: 6 of 6" in dialog.summary.text()


def test_grid_dialog_bad_axis_and_cancel(qtbot, runner, engine):
    dialog = GridDialog(queue_on(runner),
                        lambda: GenerationRequest("a cat", width=64, height=64))
    qtbot.addWidget(dialog)
    dialog.rows[0].set("S/R", "dog,fox")
    assert "'dog' is not in the prompt" in dialog.summary.text()
    assert not dialog.run_button.isEnabled() and not dialog.start()
    engine.step_delay = 0.05
    dialog.rows[0].set("seed", "1-4")
    with qtbot.waitSignal(dialog.grid_finished, timeout=10000):
        dialog.start()
        dialog.cancel()
    assert len(dialog.run.results) < 4 and "cancelled or failed" in dialog.summary.text()
    assert isinstance(dialog.image, np.ndarray)


def test_window_has_the_menu_entries_and_the_styles_box(qtbot, window):
    for name in ("model_manager", "upscale", "xyz_grid"):
        assert window.actions[name].text()
    panel = window.prompt_panel
    panel.prompt_edit.setPlainText("a lighthouse")
    box = window.styles_box
    box.set_current("Oil painting")
    buttons = [b for b in box.findChildren(type(window.prompt_panel.generate_button))
               if b.text() == "Apply"]
    buttons[0].click()
    assert panel.prompt_edit.toPlainText().startswith("oil painting of a lighthouse")
    assert "photo" in panel.negative_edit.toPlainText() and box.current_name() == ""


def test_upscale_scales_every_layer_the_upscaler_on_generated_ones(qtbot, window, services):
    """Issue 29: Upscale acts on the whole document, as Krita's Scale Image does."""
    from studio.core.document.edits import ApplyGeneration

    window.controller.add_image_layer(np.full((32, 48, 3), 90, np.uint8), "photo")
    made = np.zeros((16, 16, 3), np.uint8)
    made[::2, ::2] = 255  # a pattern a resampler would blur and the fake upscaler keeps
    window.undo.push(ApplyGeneration(made, (8, 4, 16, 16), "rec"))
    h, w = window.doc.height, window.doc.width
    with qtbot.waitSignal(window.bridge.job_finished, timeout=5000):
        window.tools.submit_upscale(services.upscaling, {"scale": 2.0, "model": "tiny"})
    qtbot.waitUntil(lambda: window.doc.width == 2 * w, timeout=5000)
    photo, generated = window.doc.layers
    assert window.doc.height == 2 * h and len(window.doc.layers) == 2
    assert photo.pixels.shape[:2] == (64, 96) and generated.pixels.shape[:2] == (32, 32)
    assert (generated.x, generated.y) == (16, 8)
    assert services.upscaling.calls == [{"scale": 2.0, "model": "tiny"}]  # generated only
    np.testing.assert_array_equal(generated.pixels[:4, :4, 0],
                                  [[255, 255, 0, 0], [255, 255, 0, 0], [0, 0, 0, 0],
                                   [0, 0, 0, 0]])
    window.undo.undo()  # one undo step takes it all back
    assert (window.doc.width, window.doc.height) == (w, h)
    assert window.doc.layers[1].pixels.shape[:2] == (16, 16)


def test_grid_from_the_window_puts_every_cell_in_the_gallery(qtbot, window):
    before = len(window.doc.log)
    dialog = window.tools.open_grid()
    dialog.rows[0].set("seed", "1,2")
    dialog.rows[1].set("steps", "2,3")
    with qtbot.waitSignal(dialog.grid_finished, timeout=10000):
        dialog.start()
    assert len(window.doc.log) == before + 4
    dialog.close()


def test_model_manager_from_the_window_sets_the_default_model(qtbot, window):
    dialog = window.tools.open_model_manager()
    dialog.select("fake-large")
    with qtbot.waitSignal(dialog.default_changed):
        dialog.default_button.click()
    assert window.prompt_panel.model_id == "fake-large"
    assert window.settings.value("prompt/model") == "fake-large"
    dialog.close()


def test_what_the_backend_lacks_is_greyed_out_and_says_why(qtbot, settings, runner):
    from studio.core.engines import EngineFeatures, EngineServices
    from studio.ui.main_window import MainWindow
    from tests.fakes import FakeEngine
    from tests.ui.conftest import dispose

    features = EngineFeatures(backend="fake", prompt_sliders=True, why_not=(
        ("upscaling", "This server has no upscaler models."),
        ("latent_sliders", "VAE and GAN sliders run on the local engine only.")))
    window = MainWindow(EngineServices(FakeEngine(features=features)), runner, settings)
    try:
        upscale = window.actions["upscale"]
        assert not upscale.isEnabled()
        assert upscale.toolTip() == "This server has no upscaler models."
        manager = window.actions["model_manager"]
        assert not manager.isEnabled()
        assert manager.toolTip() == "fake backend does not offer this"
        assert window.actions["xyz_grid"].isEnabled()
        panel = window.sliders_panel
        assert not panel.latent_button.isEnabled()
        assert panel.latent_button.toolTip() == ("VAE and GAN sliders run on the local "
                                                 "engine only.")
        assert panel.pair_button.isEnabled()  # prompt sliders are on
        assert not panel.lora_button.isEnabled()
    finally:
        dispose(window)


def test_before_the_engine_loads_its_tools_are_off_and_say_so(qtbot, settings):
    from studio.ui.main_window import MainWindow
    from tests.ui.conftest import dispose

    window = MainWindow(None, None, settings)
    try:
        for name in ("upscale", "model_manager", "xyz_grid"):
            assert not window.actions[name].isEnabled()
            assert "still loading" in window.actions[name].toolTip()
    finally:
        dispose(window)
