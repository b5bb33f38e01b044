"""Painting, masks, selection and the modes they give: the pixels and the requests."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest

from studio.ui import canvas_tools as tools
from studio.ui.generation import INPAINT, OUTPAINT, plan_generation


def open_grey(window, size=(64, 64), value=100):
    pixels = np.full(size + (3,), value, np.uint8)
    window.controller.add_image_layer(pixels, "grey")
    window.canvas.fit()
    return window.doc.layers[-1]


def widget_point(canvas, x, y) -> QPoint:
    return canvas.to_widget(QPointF(x, y)).toPoint()


def drag(qtbot, canvas, points):
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=widget_point(canvas, *points[0]))
    for p in points[1:]:
        QTest.mouseMove(canvas, widget_point(canvas, *p))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=widget_point(canvas, *points[-1]))


def test_brush_stroke_is_one_undo_entry_and_undo_restores_pixels(qtbot, window):
    layer = open_grey(window)
    before = layer.pixels.copy()
    count = window.undo.count
    window.canvas.setFocus()
    QTest.keyClick(window.canvas, Qt.Key.Key_B)
    assert window.canvas.tool == tools.BRUSH
    window.tool_bars.set_color((255, 0, 0))
    drag(qtbot, window.canvas, [(10, 10), (20, 12), (30, 14), (40, 30)])
    painted = layer.pixels.copy()
    assert not np.array_equal(painted, before)
    assert painted[12, 20, 0] == 255 and painted[12, 20, 1] < 50
    assert window.undo.count == count + 1
    cmd = window.undo.commands[-1]
    # A bbox diff, not a snapshot of the layer.
    assert cmd.nbytes() < 2 * layer.pixels.nbytes
    QTest.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    np.testing.assert_array_equal(layer.pixels, before)
    QTest.keyClick(window, Qt.Key.Key_Z,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    np.testing.assert_array_equal(layer.pixels, painted)


def test_eraser_and_brush_size_shortcuts(qtbot, window):
    layer = open_grey(window)
    size = window.canvas.brush.size
    window.canvas.setFocus()  # bare-key shortcuts act on the canvas
    QTest.keyClick(window.canvas, Qt.Key.Key_BracketRight)
    assert window.canvas.brush.size > size
    QTest.keyClick(window.canvas, Qt.Key.Key_BracketLeft)
    QTest.keyClick(window.canvas, Qt.Key.Key_BracketLeft)
    assert window.canvas.brush.size < size
    QTest.keyClick(window.canvas, Qt.Key.Key_E)
    assert window.canvas.tool == tools.ERASER
    drag(qtbot, window.canvas, [(32, 32), (33, 33)])
    assert layer.pixels[32, 32, 3] < 255


def test_inpaint_uses_the_painted_mask(qtbot, window, engine):
    open_grey(window)
    window.canvas.setFocus()
    QTest.keyClick(window.canvas, Qt.Key.Key_M)
    assert window.canvas.tool == tools.MASK_BRUSH
    drag(qtbot, window.canvas, [(20, 20), (30, 22)])
    assert window.doc.layers[0].mask is not None
    window.prompt_panel.prompt_edit.setPlainText("a hat")
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    request = engine.requests[-1]
    assert request.task == "inpaint"
    mask = request.mask.to_array()
    assert mask.shape == (64, 64)
    assert mask[21, 25] == 255 and mask[50, 50] == 0
    assert request.init_image.to_array()[50, 50, 0] == 100
    # The result lands as a layer that only shows where the mask was painted.
    result = window.doc.layers[-1]
    assert result.kind == "generated"
    assert result.pixels[21, 25, 3] > 0 and result.pixels[50, 50, 3] == 0


def test_selection_sets_the_region_and_img2img_uses_it(qtbot, window, engine):
    open_grey(window, (64, 64), 180)
    window.prompt_panel.set_values({"strength": 0.6})  # below 1: refine what is there
    window.canvas.setFocus()
    QTest.keyClick(window.canvas, Qt.Key.Key_R)
    drag(qtbot, window.canvas, [(16, 16), (48, 48)])
    assert window.doc.selection == (16, 16, 32, 32)
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    request = engine.requests[-1]
    assert request.task == "img2img"
    assert request.init_image.to_array()[0, 0, 0] == 180
    assert window.doc.layers[-1].rect == (16, 16, 32, 32)
    # Undo removes the generated layer; the log keeps the image.
    window.undo.undo()
    assert len(window.doc.layers) == 1
    assert len(window.doc.log) == 1


def test_region_past_the_image_is_outpainted(window):
    open_grey(window)
    window.canvas.set_selection((32, 0, 64, 64))
    plan = plan_generation(window.doc, 64, 64)
    assert plan.mode == OUTPAINT and plan.task == "inpaint"
    mask = plan.mask.to_array()
    assert mask[10, 5] == 0 and mask[10, 60] == 255


def test_outpainting_grows_the_canvas(qtbot, window, engine):
    open_grey(window)
    window.canvas.set_selection((32, 0, 64, 64))
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    assert engine.requests[-1].task == "inpaint"
    assert (window.doc.width, window.doc.height) == (96, 64)
    window.undo.undo()
    assert (window.doc.width, window.doc.height) == (64, 64)


def test_painted_mask_gives_inpaint_mode(window):
    layer = open_grey(window)
    layer.mask = np.zeros((64, 64), np.uint8)
    layer.mask[5:10, 5:10] = 255
    assert plan_generation(window.doc, 64, 64).mode == INPAINT


def test_crop_and_resize_canvas_are_undoable(window):
    open_grey(window)
    window.canvas.set_selection((8, 8, 32, 16))
    window.commands.crop()
    assert (window.doc.width, window.doc.height) == (32, 16)
    window.undo.undo()
    assert (window.doc.width, window.doc.height) == (64, 64)


def test_colour_picker_sets_the_brush_colour(qtbot, window):
    open_grey(window, value=77)
    window.canvas.setFocus()
    QTest.keyClick(window.canvas, Qt.Key.Key_I)
    qtbot.mouseClick(window.canvas, Qt.MouseButton.LeftButton,
                     pos=widget_point(window.canvas, 10, 10))
    assert window.canvas.brush.color == (77, 77, 77)


def test_zoom_fit_and_actual_pixels(qtbot, window):
    open_grey(window, (512, 512))
    QTest.keyClick(window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert window.canvas.zoom == 1.0
    QTest.keyClick(window, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    assert window.canvas.zoom != 1.0


def test_layers_panel_visibility_opacity_order_rename_delete(qtbot, window):
    first = open_grey(window, value=10)
    second = open_grey(window, value=200)
    panel = window.layers_panel
    assert panel.count() == 2
    assert panel.row_text(0) == second.name  # top first
    panel.model.setData(panel.model.index(0), Qt.CheckState.Unchecked.value,
                        Qt.ItemDataRole.CheckStateRole)  # the row's check box, as a click sets it
    assert not second.visible
    assert window.canvas.composite_image().pixelColor(5, 5).red() == 10
    window.undo.undo()
    assert second.visible
    panel.opacity_slider.setValue(0.5)
    assert second.opacity == 0.5
    panel.move_layer(-1)
    assert window.doc.layers[0] is second
    panel.rename_layer(first.id, "background")
    assert first.name == "background"
    assert panel.row_text(0) == "background"
    panel.delete_layer()
    assert len(window.doc.layers) == 1
    window.undo.undo()
    assert len(window.doc.layers) == 2


def test_cached_composite_matches_a_full_recomposite(qtbot, window):
    from studio.ui.canvas_image import MipImage, premultiply

    window.controller.add_image_layer(np.full((600, 520, 3), 90, np.uint8), "base")
    top = np.zeros((600, 520, 4), np.uint8)
    top[100:300, 50:400] = (200, 30, 30, 128)
    window.controller.add_image_layer(top, "top")
    canvas = window.canvas
    canvas.set_tool(tools.BRUSH)
    drag(qtbot, canvas, [(60, 60), (300, 200), (500, 580)])
    window.layers_panel.opacity_slider.setValue(0.4)
    window.undo.undo()
    expected = premultiply(window.doc.composite())
    np.testing.assert_array_equal(canvas.composite_cache.array, expected)
    # The reduced copies are block averages of the full image.
    mip = canvas.composite_cache
    assert len(mip.levels) >= 2
    level1 = mip.levels[1][0].astype(int)
    block = expected[:600, :520].astype(int)
    mean = (block[0::2, 0::2] + block[1::2, 0::2] + block[0::2, 1::2] + block[1::2, 1::2] + 2) >> 2
    np.testing.assert_array_equal(level1, mean)
    assert isinstance(mip, MipImage)


def test_a_result_arriving_during_a_stroke_is_its_own_undo_entry(qtbot, window, engine):
    open_grey(window)
    canvas = window.canvas
    canvas.set_tool(tools.BRUSH)
    canvas.begin_stroke(QPointF(5, 5))
    with qtbot.waitSignal(window.bridge.job_finished, timeout=5000):
        window.controller.generate()
    assert len(window.doc.layers) == 1  # waits for the stroke
    with qtbot.waitSignal(window.controller.generation_applied, timeout=2000):
        canvas.continue_stroke(QPointF(30, 30))
        canvas.end_stroke()
    assert len(window.doc.layers) == 2
    window.undo.undo()  # the generation
    assert len(window.doc.layers) == 1
    assert window.undo.undo_text == "Brush stroke"


def test_strength_1_generates_a_new_image_over_the_canvas_and_lower_refines_it(
        qtbot, window, engine):
    open_grey(window, (64, 64), 180)
    panel = window.prompt_panel
    panel.set_values({"strength": 1.0})
    qtbot.waitUntil(lambda: "new layer" in panel.mode_label.text(), timeout=2000)
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    request = engine.requests[-1]
    assert request.task == "txt2img" and request.init_image is None
    assert len(window.doc.layers) == 2 and window.doc.layers[0].name == "grey"  # kept below
    panel.set_values({"strength": 0.5})
    qtbot.waitUntil(lambda: panel.mode_label.text().startswith("Image to image"), timeout=2000)
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    assert engine.requests[-1].task == "img2img" and engine.requests[-1].strength == 0.5
