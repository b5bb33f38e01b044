"""Issue 29 in the real window: blend modes, lock alpha, duplicate, merge down, flatten,
cut/copy/paste through the system clipboard, Scale Image, generated layer names, and undo
of each after the project is saved and opened again."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtTest import QTest

from tests.ui.test_canvas import drag, open_grey
from tests.ui.test_gallery_and_settings import generate
from tests.ui.test_projects_ui import answer_file_dialogs, dispose, new_window, save_as


def _pixel(window, x, y):
    color = window.canvas.composite_image().pixelColor(x, y)
    return color.red(), color.green(), color.blue()


def test_blend_mode_from_the_panel_draws_multiply_and_undoes(qtbot, window):
    open_grey(window, value=200)
    top = open_grey(window, value=100)
    panel = window.layers_panel
    assert _pixel(window, 5, 5) == (100, 100, 100)
    panel.blend_combo.setCurrentIndex(panel.blend_combo.findText("Multiply"))
    assert top.blend == "multiply"
    assert abs(_pixel(window, 5, 5)[0] - 200 * 100 // 255) <= 1  # 78
    assert "Multiply" in panel.row_text(0)
    panel.blend_combo.setCurrentIndex(panel.blend_combo.findText("Screen"))
    assert abs(_pixel(window, 5, 5)[0] - (200 + 100 - 200 * 100 // 255)) <= 1
    window.actions["undo"].trigger()
    assert top.blend == "multiply" and panel.blend_combo.currentText() == "Multiply"


def test_lock_alpha_keeps_the_brush_inside_the_layer(qtbot, window):
    layer = open_grey(window)
    layer.pixels[:, 32:, 3] = 0  # the right half transparent
    window.layers_panel.lock_alpha_button.click()
    assert layer.lock_alpha and window.actions["lock_alpha"].isChecked()
    window.tool_bars.set_color((255, 0, 0))
    window.canvas.set_tool("brush")
    drag(qtbot, window.canvas, [(20, 20), (44, 20)])
    assert layer.pixels[20, 24, 0] > 200  # painted where there were pixels
    assert layer.pixels[20, 40, 3] == 0  # nothing appears where there were none
    window.actions["lock_alpha"].trigger()  # the menu entry unlocks
    assert not layer.lock_alpha and not window.layers_panel.lock_alpha_button.isChecked()


def test_duplicate_merge_down_and_flatten_from_the_menu(qtbot, window):
    open_grey(window, value=200)
    top = open_grey(window, value=100)
    window.layers_panel.blend_combo.setCurrentIndex(
        window.layers_panel.blend_combo.findText("Multiply"))
    look = _pixel(window, 5, 5)
    window.actions["duplicate_layer"].trigger()
    assert [lay.name for lay in window.doc.layers] == ["grey", "grey", "grey copy"]
    assert window.doc.layers[-1].blend == "multiply"
    window.actions["undo"].trigger()
    window.doc.set_active_layer(top.id)
    window.actions["merge_down"].trigger()
    assert len(window.doc.layers) == 1 and _pixel(window, 5, 5) == look
    window.actions["undo"].trigger()
    assert len(window.doc.layers) == 2 and window.doc.layers[1].blend == "multiply"
    window.actions["flatten_image"].trigger()
    assert [lay.name for lay in window.doc.layers] == ["Flattened"]
    assert _pixel(window, 5, 5) == look
    window.doc.set_active_layer(window.doc.layers[0].id)
    window.actions["merge_down"].trigger()  # nothing below: said, nothing lost
    assert "bottom layer" in window.banner.text
    assert len(window.doc.layers) == 1


def test_copy_and_paste_through_the_system_clipboard(qtbot, window):
    layer = open_grey(window, value=90)
    layer.pixels[10:20, 10:20, :3] = (255, 0, 0)
    window.canvas.set_selection((10, 10, 10, 10))
    window.actions["copy"].trigger()
    copied = QGuiApplication.clipboard().image()
    assert (copied.width(), copied.height()) == (10, 10)
    assert copied.pixelColor(0, 0).red() == 255 and copied.pixelColor(0, 0).green() == 0
    window.actions["cut"].trigger()
    assert layer.pixels[10:20, 10:20, 3].max() == 0
    window.canvas.set_selection(None)
    window.actions["paste"].trigger()  # where it was cut from, as Krita pastes
    pasted = window.doc.layers[-1]
    assert (pasted.x, pasted.y, pasted.width) == (10, 10, 10)
    assert tuple(pasted.pixels[0, 0]) == (255, 0, 0, 255)
    # an image another program put on the clipboard
    outside = QImage(6, 4, QImage.Format.Format_RGBA8888)
    outside.fill(Qt.GlobalColor.blue)
    QGuiApplication.clipboard().setImage(outside)
    window.actions["paste"].trigger()  # centred on the canvas
    assert window.doc.layers[-1].pixels.shape == (4, 6, 4)
    assert (window.doc.layers[-1].x, window.doc.layers[-1].y) == (29, 30)
    assert tuple(window.doc.layers[-1].pixels[0, 0]) == (0, 0, 255, 255)
    count = len(window.doc.layers)
    window.actions["undo"].trigger()
    assert len(window.doc.layers) == count - 1


def test_copy_a_whole_layer_pastes_it_back_with_its_mode_and_place(qtbot, window):
    open_grey(window, value=200)
    small = np.zeros((8, 8, 4), np.uint8) + np.array([10, 200, 30, 255], np.uint8)
    window.controller.add_image_layer(small, "green")
    green = window.doc.layers[-1]
    window.undo.push(__import__("studio.core.document.edits", fromlist=["x"]).SetLayerProps(
        green.id, x=40, y=5, blend="screen", opacity=0.5))
    window.canvas.set_selection(None)
    QTest.keyClick(window, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClick(window, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    pasted = window.doc.layers[-1]
    assert pasted is not green and pasted.name == "green"
    assert (pasted.x, pasted.y, pasted.blend, pasted.opacity) == (40, 5, "screen", 0.5)


def test_ctrl_c_in_the_prompt_copies_text_not_pixels(qtbot, window):
    open_grey(window)
    edit = window.prompt_panel.prompt_edit
    edit.setFocus()
    edit.selectAll()
    QTest.keyClick(edit, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert QGuiApplication.clipboard().text() == "a portrait"


def test_scale_image_scales_every_layer(qtbot, window):
    open_grey(window)
    small = np.zeros((16, 16, 3), np.uint8) + 250
    window.controller.add_image_layer(small, "small")
    assert window.layer_actions.scale_image((128, 128))
    assert (window.doc.width, window.doc.height) == (128, 128)
    assert [lay.pixels.shape[:2] for lay in window.doc.layers] == [(128, 128), (32, 32)]
    window.actions["undo"].trigger()
    assert [lay.pixels.shape[:2] for lay in window.doc.layers] == [(64, 64), (16, 16)]


def test_generated_layer_names_say_task_prompt_and_seed(qtbot, window):
    generate(qtbot, window, "a photo of a smiling person with freckles", 7)
    assert window.doc.layers[-1].name == "txt2img · smiling person freckles · seed 7"


def test_operations_undo_after_save_and_reopen(qtbot, window, engine, runner, settings,
                                               tmp_path, monkeypatch):
    open_grey(window, value=200)
    top = open_grey(window, value=100)
    window.layers_panel.blend_combo.setCurrentIndex(
        window.layers_panel.blend_combo.findText("Difference"))
    window.doc.set_active_layer(top.id)
    window.actions["duplicate_layer"].trigger()
    window.actions["merge_down"].trigger()
    merged = window.doc.composite()
    path = tmp_path / "ops.studio"
    save_as(qtbot, window, monkeypatch, path)
    window.close()

    second = new_window(qtbot, engine, runner, settings)
    answer_file_dialogs(monkeypatch, path)
    with qtbot.waitSignal(second.projects.project_opened, timeout=5000):
        second.actions["open_image"].trigger()
    np.testing.assert_array_equal(second.doc.composite(), merged)
    assert len(second.doc.layers) == 2
    second.activateWindow()
    second.actions["undo"].trigger()  # the merge
    assert [lay.name for lay in second.doc.layers] == ["grey", "grey", "grey copy"]
    assert [lay.blend for lay in second.doc.layers] == ["normal", "difference", "difference"]
    second.actions["undo"].trigger()  # the duplicate
    second.actions["undo"].trigger()  # the blend mode
    assert second.doc.layers[1].blend == "normal"
    dispose(second)


def test_groups_from_the_panel_opacity_visibility_tree_and_undo_after_reopen(
        qtbot, window, engine, runner, settings, tmp_path, monkeypatch):
    open_grey(window, value=200)
    a = open_grey(window, value=100)
    b = open_grey(window, value=50)
    panel = window.layers_panel
    window.doc.set_active_layer(b.id)
    panel.group_button.click()  # b into a new group
    group = window.doc.active_layer
    assert group.is_group and window.doc.layer(b.id).parent == group.id
    window.doc.set_active_layer(a.id)
    panel.up_button.click()  # raised into the group, at its bottom
    assert window.doc.layer(a.id).parent == group.id
    assert [panel.row_text(r).split("\n")[0] for r in range(panel.count())] == [
        "\u25be Group 1", "\u2003grey", "\u2003grey", "grey"]
    assert _pixel(window, 5, 5) == (50, 50, 50)
    window.doc.set_active_layer(group.id)
    panel.opacity_slider.setValue(0.5)  # the group fades as one
    assert abs(_pixel(window, 5, 5)[0] - 125) <= 1
    panel.model.setData(panel.model.index(0), Qt.CheckState.Unchecked.value,
                        Qt.ItemDataRole.CheckStateRole)
    assert _pixel(window, 5, 5) == (200, 200, 200)  # hidden with all it holds
    look = window.doc.composite()
    path = tmp_path / "groups.studio"
    save_as(qtbot, window, monkeypatch, path)
    window.close()

    second = new_window(qtbot, engine, runner, settings)
    answer_file_dialogs(monkeypatch, path)
    with qtbot.waitSignal(second.projects.project_opened, timeout=5000):
        second.actions["open_image"].trigger()
    np.testing.assert_array_equal(second.doc.composite(), look)
    assert second.layers_panel.row_text(0).startswith("\u25be Group 1")
    second.activateWindow()
    second.actions["undo"].trigger()  # shown again
    assert abs(_pixel(second, 5, 5)[0] - 125) <= 1
    for _ in range(3):  # the opacity, the move into the group, the group
        second.actions["undo"].trigger()
    assert not second.doc.has_groups() and second.layers_panel.count() == 3
    dispose(second)


def test_painting_on_a_group_says_so_and_changes_nothing(qtbot, window):
    layer = open_grey(window)
    window.actions["new_group"].trigger()
    before = layer.pixels.copy()
    count = window.undo.count
    window.canvas.set_tool("brush")
    drag(qtbot, window.canvas, [(20, 20), (30, 30)])
    np.testing.assert_array_equal(window.doc.layer(layer.id).pixels, before)
    assert window.undo.count == count and "is a group" in window.banner.text
    window.actions["ungroup"].trigger()
    assert not window.doc.has_groups()


def _big_png(tmp_path, size=(300, 200)):
    from PIL import Image

    path = tmp_path / "big.png"
    Image.new("RGB", size, (10, 120, 200)).save(path)
    return path


def test_opening_a_large_image_offers_a_new_document(qtbot, window, tmp_path, monkeypatch):
    open_grey(window)  # a 64 x 64 canvas with a layer
    asked = []
    monkeypatch.setattr(window.layer_actions, "choose_for_large_image",
                        lambda name, size: asked.append((name, size)) or "new")
    monkeypatch.setattr(window.projects, "maybe_save", lambda: True)  # discard the grey one
    assert window.commands.open_image(str(_big_png(tmp_path)))
    assert asked == [("big", (300, 200))]
    assert (window.doc.width, window.doc.height) == (300, 200)
    assert [lay.name for lay in window.doc.layers] == ["big"]


def test_opening_a_large_image_as_a_layer_or_cancelled(qtbot, window, tmp_path, monkeypatch):
    open_grey(window)
    answers = iter(["", "layer"])
    monkeypatch.setattr(window.layer_actions, "choose_for_large_image",
                        lambda name, size: next(answers))
    path = str(_big_png(tmp_path))
    assert not window.commands.open_image(path)  # cancelled: nothing changes
    assert len(window.doc.layers) == 1
    assert window.commands.open_image(path)
    assert (window.doc.width, window.doc.height) == (64, 64) and len(window.doc.layers) == 2
    assert window.doc.layers[-1].pixels.shape[:2] == (200, 300)  # kept whole, past the edge
