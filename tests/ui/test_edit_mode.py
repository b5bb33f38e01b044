"""Edit with words in the window: choosing an edit model (Flux Kontext) offers the mode in
the prompt panel; the canvas (or the selection's area) and the instruction give a new layer,
with the request (its init image) in the history."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.models import ModelInfo
from studio.ui.prompt_panel import EDIT_STRENGTH
from tests.fakes import TINY, FakeEngine

KONTEXT = ModelInfo(id="kontext", name="Kontext tiny", kind="diffusion", family="flux-kontext",
                    source="diffusers", path="/models/kontext", size_bytes=1234,
                    recommended=(("edit", True), ("guidance", 2.5), ("height", 64),
                                 ("scheduler", "Flow Euler"), ("steps", 4), ("width", 64)))


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(models=[TINY, KONTEXT, QWEN_EDIT])


def _choose(window, qtbot, model_id: str) -> None:
    panel = window.prompt_panel
    index = panel.model_combo.findData(model_id)
    panel.model_combo.setCurrentIndex(index)
    panel.model_combo.activated.emit(index)
    qtbot.waitUntil(lambda: window.controller._mode_timer.isActive() is False, timeout=2000)


def _mode(window, qtbot, start: str, part: str = "") -> str:
    label = window.prompt_panel.mode_label
    qtbot.waitUntil(lambda: label.text().startswith(start) and part in label.text(),
                    timeout=3000)
    return label.text()


def test_an_edit_model_edits_the_canvas_into_a_new_layer_with_its_request(
        qtbot, window, engine):
    panel = window.prompt_panel
    photo = np.zeros((64, 64, 3), np.uint8)
    photo[:, :, 0] = np.arange(64, dtype=np.uint8)[None, :] * 4
    window.controller.add_image_layer(photo, "photo")
    assert not panel.edit_check.isVisible()  # an SD model: no such mode
    panel.strength_slider.setValue(1.0)

    _choose(window, qtbot, "kontext")
    assert panel.edit_check.isVisible() and panel.edit_check.isChecked()
    assert not panel.strength_slider.isEnabled()  # an edit has no strength
    assert not panel.strength_slider.isVisible()  # nor a Strength row showing 0.75
    assert panel.values()["strength"] == EDIT_STRENGTH
    assert "make the hair red" in panel.prompt_edit.placeholderText()
    assert "(canvas): the change as a new layer" in _mode(window, qtbot, "Edit with words")

    panel.prompt_edit.setPlainText("make the hair red")
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.controller.generate()
    request = engine.requests[-1]
    assert (request.model, request.task, request.prompt) == ("kontext", "img2img",
                                                             "make the hair red")
    np.testing.assert_array_equal(request.init_image.to_array()[..., :3], photo)
    assert len(window.doc.layers) == 2  # the photo kept, the edit a new layer over it
    assert window.doc.layers[-1].name.startswith("edit · make hair red")  # short prompt
    (record,) = window.doc.log.records
    assert record.request.prompt == "make the hair red" and record.request.init_image
    assert record.task == "edit" and record.request.is_edit

    # Off: the words alone draw a new image over the canvas (text to image).
    panel.edit_check.setChecked(False)
    assert panel.strength_slider.value() == 1.0
    assert "(Edit with words edits it)" in _mode(window, qtbot, "Text to image")
    panel.edit_check.setChecked(True)

    # Back to an SD model: the box goes, the Strength it had comes back.
    _choose(window, qtbot, TINY.id)
    assert not panel.edit_check.isVisible() and panel.strength_slider.isEnabled()
    assert panel.strength_slider.isVisible()
    assert panel.strength_slider.value() == 1.0
    assert panel.prompt_edit.placeholderText() == "Describe the image…"


def test_history_names_an_edit_an_edit_with_its_instruction_and_no_strength(
        qtbot, window, engine):
    """The History card, its caption, the copied A1111 text and "Restore settings" of an
    edit: the task is "edit", the prompt the instruction, and no strength (none was used)."""
    gallery, panel = window.gallery_panel, window.prompt_panel
    window.controller.add_image_layer(np.full((64, 64, 3), 120, np.uint8), "photo")
    _choose(window, qtbot, "kontext")
    panel.prompt_edit.setPlainText("make the hair red")
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.controller.generate()
    entry = gallery.list.item(0)
    assert entry.text().splitlines()[0] == "edit"  # the thumbnail's caption
    gallery.list.setCurrentRow(0)
    card = gallery.info_label.text()
    assert card == entry.toolTip()
    assert card.startswith("Edit: make the hair red\nedit · kontext · ")
    assert "strength" not in card and "img2img" not in card
    text = gallery.copy_settings()
    assert text.startswith("make the hair red\n") and "Task: edit" in text
    assert "Denoising strength" not in text

    # Restore settings from the card: another model, Strength 1, then the card's settings.
    _choose(window, qtbot, TINY.id)
    panel.strength_slider.setValue(1.0)
    panel.prompt_edit.setPlainText("something else")
    gallery.item_clicked.emit(gallery.current())  # what a click on the card does
    assert panel.model_id == "kontext" and panel.editing and panel.edit_check.isVisible()
    assert panel.prompt_edit.toPlainText() == "make the hair red"
    assert "Edit with words" in _mode(window, qtbot, "Edit with words")

    # An image to image of an SD model still shows its strength.
    panel.prompt_edit.setPlainText("a painting")
    _choose(window, qtbot, TINY.id)
    panel.strength_slider.setValue(0.5)
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.controller.generate()
    gallery.list.setCurrentRow(0)
    assert engine.requests[-1].task == "img2img"
    assert "img2img · fake-tiny" in gallery.info_label.text()
    assert "strength 0.5" in gallery.info_label.text()


def test_use_settings_of_an_edit_restores_the_edit_mode(qtbot, window, engine):
    panel = window.prompt_panel
    window.controller.add_image_layer(np.full((64, 64, 3), 120, np.uint8), "photo")
    _choose(window, qtbot, "kontext")
    panel.prompt_edit.setPlainText("remove the glasses")
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.controller.generate()
    (record,) = window.doc.log.records
    _choose(window, qtbot, TINY.id)
    panel.apply_request(record.request)
    assert panel.model_id == "kontext" and panel.editing
    assert panel.prompt_edit.toPlainText() == "remove the glasses"


def test_a_selection_edits_only_its_area(qtbot, window, engine):
    from studio.core.document.edits import SetSelection

    panel = window.prompt_panel
    photo = np.zeros((128, 128, 3), np.uint8)
    photo[:64, :, 1] = 200  # green on top, black below
    window.controller.add_image_layer(photo, "photo")
    _choose(window, qtbot, "kontext")
    window.undo.push(SetSelection((0, 0, 64, 64)))
    _mode(window, qtbot, "Edit with words", "(selection)")
    panel.prompt_edit.setPlainText("make it blue")
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.controller.generate()
    request = engine.requests[-1]
    assert request.task == "img2img"
    np.testing.assert_array_equal(request.init_image.to_array()[..., :3], photo[:64, :64])
    new = window.doc.layers[-1]
    assert (new.x, new.y, new.width, new.height) == (0, 0, 64, 64)  # over the selection


QWEN_EDIT = ModelInfo(id="qwen-edit", name="Qwen-Image-Edit tiny", kind="diffusion",
                      family="qwen-image-edit", source="diffusers", path="/models/qwen-edit",
                      size_bytes=1234,
                      recommended=(("edit", True), ("edit_only", True), ("guidance", 4.0),
                                   ("height", 64), ("scheduler", "Flow Euler"), ("steps", 4),
                                   ("width", 64)))


def test_a_model_that_only_edits_keeps_its_edit_box_on_with_the_reason(qtbot, window):
    """Qwen-Image-Edit cannot draw from words alone: its box stays on and greyed, its
    tooltip says why, even when the Strength was 1 before; another edit model's box
    (Kontext) can be turned off."""
    panel = window.prompt_panel
    panel.strength_slider.setValue(1.0)
    _choose(window, qtbot, "qwen-edit")
    # An empty canvas: nothing to edit, and it cannot draw from words: said so.
    assert "needs a picture" in _mode(window, qtbot, "Edit with words needs a picture")
    window.controller.add_image_layer(np.zeros((64, 64, 3), np.uint8), "photo")
    _mode(window, qtbot, "Edit with words", "(canvas): the change as a new layer")
    assert panel.edit_check.isVisible() and panel.edit_check.isChecked()
    assert not panel.edit_check.isEnabled()
    assert "cannot draw from the words alone" in panel.edit_check.toolTip()
    assert panel.editing and panel.values()["strength"] == EDIT_STRENGTH
    _choose(window, qtbot, "kontext")
    assert panel.edit_check.isEnabled() and "Off:" in panel.edit_check.toolTip()
