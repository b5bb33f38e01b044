"""Issue 29, point 4: on a large canvas the composite and the group thumbnails are made on
worker threads, never on the GUI thread, and what the window finally shows is exactly what
it showed when they were made on the GUI thread (the newest edit always wins)."""

from __future__ import annotations

import sys
import threading

import numpy as np
from PySide6.QtCore import QPointF, Qt

from studio.core.document import operations as ops
from studio.core.document.edits import AddLayer
from studio.core.document.layers import Layer
from studio.ui import canvas_tools as tools
from studio.ui.canvas import PROGRESSIVE_PIXELS
from studio.ui.canvas_tools import BrushSettings
from studio.ui.layers_panel import group_thumbnail_image, layer_thumbnail_image

SIDE = 1536  # large enough for the worker: side * side > PROGRESSIVE_PIXELS


def big_layer(window, red: int = 200) -> np.ndarray:
    pixels = np.zeros((SIDE, SIDE, 3), np.uint8)
    pixels[..., 0] = red
    pixels[SIDE // 2:, :, 2] = 90
    window.controller.add_image_layer(pixels, "big")
    return pixels


def test_a_large_change_is_composited_off_the_gui_thread(qtbot, window, monkeypatch):
    assert SIDE * SIDE > PROGRESSIVE_PIXELS
    canvas = window.canvas
    threads: list[threading.Thread] = []
    composite = canvas._composite
    monkeypatch.setattr(canvas, "_composite",
                        lambda part, level=0: (threads.append(threading.current_thread()),
                                               composite(part, level))[1])
    pixels = big_layer(window)
    qtbot.waitUntil(lambda: not canvas.drawing, timeout=60000)
    assert threads and threading.main_thread() not in threads
    shown = canvas.composite_cache.array  # premultiplied; opaque here, so straight
    np.testing.assert_array_equal(shown[..., :3], pixels)
    np.testing.assert_array_equal(shown, np.asarray(canvas.prepare(window.doc).image.array))


def test_a_stroke_over_tiles_still_drawing_ends_on_screen(qtbot, window, monkeypatch):
    """The worker has read its first tile of a new large layer and is held before writing
    it while the user paints there: the stroke's small redraw waits behind it, so the
    stroke is what stays on screen (drawn at once, the stale tile would cover it)."""
    canvas = window.canvas
    big_layer(window)
    qtbot.waitUntil(lambda: not canvas.drawing, timeout=60000)
    read, go = threading.Event(), threading.Event()
    composite = canvas._composite

    def held(part, level=0):  # read before the stroke, written after it
        pixels = composite(part, level)
        if threading.current_thread() is not threading.main_thread() and not read.is_set():
            read.set()
            go.wait(30)
        return pixels

    monkeypatch.setattr(canvas, "_composite", held)
    big_layer(window, red=120)  # a second large layer over the first, drawn by the worker
    assert canvas.drawing and read.wait(30)
    canvas.set_tool(tools.BRUSH)
    canvas.set_brush(BrushSettings(size=24, hardness=1.0, color=(10, 250, 10)))
    canvas.begin_stroke(QPointF(40, 40))
    canvas.continue_stroke(QPointF(80, 40))
    canvas.end_stroke()
    go.set()
    qtbot.waitUntil(lambda: not canvas.drawing, timeout=60000)
    shown = canvas.composite_cache.array
    assert tuple(shown[40, 60, :3]) == (10, 250, 10)  # the stroke, not the tile under it
    np.testing.assert_array_equal(shown, np.asarray(canvas.prepare(window.doc).image.array))
    window.actions["undo"].trigger()  # the stroke undone: the layer shows again
    qtbot.waitUntil(lambda: not canvas.drawing, timeout=60000)
    assert tuple(canvas.composite_cache.array[40, 60, :3]) == (120, 0, 0)


def test_group_thumbnails_are_made_off_the_gui_thread_and_match_the_canvas(
        qtbot, window, monkeypatch):
    import studio.ui.layers_panel as layers_panel

    threads: list[threading.Thread] = []
    made = layers_panel.group_thumbnail_image
    monkeypatch.setattr(layers_panel, "group_thumbnail_image",
                        lambda *a: (threads.append(threading.current_thread()), made(*a))[1])
    bottom = np.zeros((300, 400, 3), np.uint8)
    bottom[:, :200] = (250, 40, 40)
    window.controller.add_image_layer(bottom, "bottom")
    top = np.zeros((120, 90, 4), np.uint8)
    top[...] = (30, 60, 240, 160)
    window.undo.push(AddLayer(Layer(name="top", pixels=top, x=155, y=37, blend="multiply")))
    top_id = window.doc.active_layer.id
    group = ops.new_group(window.undo, top_id)
    model = window.layers_panel.model
    row = model.row_of(group.id)
    model.data(model.index(row), Qt.ItemDataRole.DecorationRole)  # asks for it

    def thumb():
        return model._thumbs.get(group.id, (None,))[0]

    qtbot.waitUntil(lambda: thumb() is not None, timeout=10000)
    assert threads and threading.main_thread() not in threads
    step = max(window.doc.width, window.doc.height) // 80
    full = window.doc.render_group(group.id)[::step, ::step]  # the old, full render
    expected = layer_thumbnail_image(Layer(pixels=np.ascontiguousarray(full)))
    assert thumb() == expected
    assert model.data(model.index(row), Qt.ItemDataRole.DecorationRole) == expected
    # Painting in the group makes a new one; the old one is shown until it lands.
    layer = window.doc.layer(top_id)
    layer.pixels[:20, :20] = (255, 255, 0, 255)
    window.doc.emit("layer_changed", layer_id=top_id, rect=layer.rect, what="pixels")
    assert model.data(model.index(row), Qt.ItemDataRole.DecorationRole) == expected
    qtbot.waitUntil(lambda: thumb() is not None and thumb() != expected, timeout=10000)
    assert thumb() == group_thumbnail_image(window.doc, window.doc.layer(group.id))


def test_a_large_redraw_does_not_wear_down_the_process(qtbot, window, monkeypatch):
    """The worker's tiles are repainted by polling, not by a signal emitted per tile:
    PySide6 6.12's emit drops a reference to True each time, and a few thousand of them
    end the process ("bool_dealloc"). 576 tiles here would drop 576."""
    import studio.ui.canvas as canvas_module

    monkeypatch.setattr(canvas_module, "TILE", 64)
    before = sys.getrefcount(True)
    big_layer(window)
    qtbot.waitUntil(lambda: not window.canvas.drawing, timeout=60000)
    assert sys.getrefcount(True) - before > -100


def test_opening_a_large_image_builds_its_layer_off_the_gui_thread(qtbot, window, monkeypatch):
    """File > Open of a large image: the layer and its undo copy (0.2 s at 8000 x 8000) are
    made on a worker while the window keeps painting; the image lands whole, one undo."""
    from studio.ui import controller as controller_module

    side = 2100  # just over the controller's large-region threshold
    assert side * side > controller_module.LARGE_REGION
    threads: list[threading.Thread] = []
    copy = Layer.copy
    monkeypatch.setattr(Layer, "copy", lambda self: (threads.append(
        threading.current_thread()), copy(self))[1])
    pixels = np.zeros((side, side, 3), np.uint8)
    pixels[..., 1] = 140
    window.controller.add_image_layer(pixels, "large photo")
    assert threads and threading.main_thread() not in threads
    layer = window.doc.layers[-1]
    assert (window.doc.width, window.doc.height) == (side, side)
    np.testing.assert_array_equal(layer.pixels[..., :3], pixels)
    window.undo.undo()
    assert not window.doc.layers
