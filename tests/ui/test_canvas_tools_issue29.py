"""Issue 29, masks, tools and fields: the mask overlay in the View menu, clear and invert
next to the mask tools, brush sizes in proportion to the canvas, fields that clamp and say
so, the Models menu, outpainting named as such."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from studio.core.formats.imported import ImportedSettings
from studio.core.jobs.request import GenerationRequest
from tests.ui.test_canvas import open_grey


def _masked(window):
    layer = open_grey(window)
    mask = np.zeros((64, 64), np.uint8)
    mask[10:30, 10:30] = 255
    from studio.core.document.edits import PaintPixels

    window.undo.push(PaintPixels(layer.id, 0, 0, np.zeros_like(mask), mask, "mask"))
    return layer


def test_mask_overlay_can_be_hidden_and_recoloured_from_the_view_menu(qtbot, window,
                                                                      monkeypatch):
    _masked(window)
    canvas = window.canvas
    assert window.actions["show_mask"].isChecked() and canvas.mask_shown
    tinted = canvas._mask.array[20, 20].copy()
    assert tinted[3] > 0
    window.actions["show_mask"].trigger()
    assert not canvas.mask_shown
    window.actions["show_mask"].trigger()
    from PySide6.QtGui import QColor
    from PySide6.QtWidgets import QColorDialog

    monkeypatch.setattr(QColorDialog, "getColor", lambda *a, **k: QColor(0, 255, 0))
    window.actions["mask_color"].trigger()
    green = canvas._mask.array[20, 20]
    assert green[1] > green[0] and green[1] > 0 and tinted[0] > tinted[1]
    view_menu = [a.objectName() for a in window.menuBar().actions()[2].menu().actions()]
    assert "action_show_mask" in view_menu and "action_mask_color" in view_menu


def test_clear_and_invert_mask_sit_by_the_mask_tools_and_undo(qtbot, window):
    layer = _masked(window)
    bar = [a.objectName() for a in window.tool_bars.tools_bar.actions()]
    at = bar.index("action_tool_mask_eraser")
    assert bar[at + 1:at + 3] == ["action_clear_mask", "action_invert_mask"]
    window.actions["invert_mask"].trigger()
    assert layer.mask[20, 20] == 0 and layer.mask[50, 50] == 255
    window.actions["clear_mask"].trigger()
    assert not layer.mask.any()
    window.actions["undo"].trigger()
    window.actions["undo"].trigger()
    assert layer.mask[20, 20] == 255 and layer.mask[50, 50] == 0


def test_brush_size_starts_in_proportion_to_the_canvas(qtbot, window):
    open_grey(window)  # 64 x 64
    assert window.canvas.brush.size == 4
    window.layer_actions.scale_image((1024, 1024))
    assert window.canvas.brush.size == 64
    window.tool_bars.size_slider.setValue(30)  # a size the user picks is kept
    window.layer_actions.scale_image((512, 512))
    assert window.canvas.brush.size == 30


def test_a_number_past_the_range_is_clamped_and_said(qtbot, window):
    box = window.prompt_panel.steps_slider.box
    said = []
    box.clamped.connect(said.append)
    box.setFocus()
    box.lineEdit().selectAll()
    QTest.keyClicks(box, "300")
    QTest.keyClick(box, Qt.Key.Key_Return)
    assert box.value() == 150 and "at most 150" in said[-1] and "300" in said[-1]
    height = window.prompt_panel.height_spin
    height.setFocus()
    height.lineEdit().selectAll()
    QTest.keyClicks(height, "99999")
    QTest.keyClick(height, Qt.Key.Key_Return)
    assert height.value() == 4096


def test_model_manager_sits_in_a_models_menu(window):
    menus = {a.text().replace("&", ""): a.menu() for a in window.menuBar().actions()}
    names = [a.objectName() for a in menus["Models"].actions()]
    assert "model_manager_action" in names and "action_reload_models" in names
    assert "model_manager_action" not in [a.objectName() for a in menus["File"].actions()]


def test_importing_a_text_to_image_file_sets_strength_1():
    base = GenerationRequest(prompt="old", strength=0.6)
    read = ImportedSettings(source="AUTOMATIC1111", prompt="a castle", steps=20)
    assert read.changes(base)["strength"] == 1.0
    ours = GenerationRequest(prompt="castle", task="txt2img", strength=0.75)
    assert ImportedSettings(source="Latent Studio", request=ours).changes(base)[
        "strength"] == 1.0


def test_outpainting_is_named_outpaint(qtbot, window, engine):
    open_grey(window)
    window.canvas.set_selection((32, 0, 64, 64))
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    assert window.doc.layers[-1].name.startswith("outpaint · ")
