"""Issue 29, point 4: level of detail on a large canvas, as Krita does. Zoomed out, a large
change is drawn from the layers at the reduced copy the view shows (the full-size composite
is not made); zoomed in to 1:1 the tiles on screen are drawn at full size, exactly; what is
drawn at the reduced level matches the full-size result within a stated tolerance; and
painting stays right on tiles drawn at a reduced level."""

from __future__ import annotations

import threading

import numpy as np
from PySide6.QtCore import QPointF

from studio.core.document.edits import AddLayer
from studio.core.document.layers import Layer
from studio.ui import canvas_tools as tools
from studio.ui.canvas import PROGRESSIVE_PIXELS
from studio.ui.canvas_image import premultiply, reduce_box
from studio.ui.canvas_tools import BrushSettings

SIDE = 2048  # over PROGRESSIVE_PIXELS, and fitted to the test window it is drawn reduced
#: The reduced copy drawn from the layers against the block averages of the full-size
#: composite, on smooth content: at most this many levels (of 255) apart.
TOLERANCE = 3


def smooth_image(side: int = SIDE) -> np.ndarray:
    """A photo-like RGB gradient with soft bands (no detail finer than a few pixels)."""
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32) / side
    out = np.empty((side, side, 3), np.uint8)
    out[..., 0] = (40 + 200 * xs).astype(np.uint8)
    out[..., 1] = (30 + 180 * ys).astype(np.uint8)
    out[..., 2] = (128 + 100 * np.sin(6.0 * xs + 4.0 * ys)).astype(np.uint8)
    return out


def open_large(qtbot, window) -> np.ndarray:
    """A large image, and a half-transparent multiply layer over part of it."""
    pixels = smooth_image()
    window.controller.add_image_layer(pixels, "big photo")
    top = np.zeros((SIDE // 2, SIDE // 2, 4), np.uint8)
    top[...] = (250, 120, 30, 150)
    window.undo.push(AddLayer(Layer(name="tint", pixels=top, x=SIDE // 4, y=SIDE // 4,
                                    blend="multiply")))
    canvas = window.canvas
    canvas.fit()
    canvas.set_zoom(min(canvas.zoom, 0.2))  # zoomed out: the whole canvas in the view
    canvas.repaint()
    qtbot.waitUntil(lambda: not canvas.drawing, timeout=60000)
    assert canvas._visible() == window.doc.rect
    return pixels


def shown_level(canvas) -> int:
    return canvas._image.level_for(canvas.zoom)


def test_zoomed_out_a_large_change_is_drawn_reduced_without_the_full_size_composite(
        qtbot, window, monkeypatch):
    assert SIDE * SIDE > PROGRESSIVE_PIXELS
    canvas = window.canvas
    drawn: list[tuple[int, threading.Thread, int]] = []
    composite = canvas._composite
    monkeypatch.setattr(canvas, "_composite", lambda part, level=0: (
        drawn.append((level, threading.current_thread(), part[2] * part[3])),
        composite(part, level))[1])
    open_large(qtbot, window)
    level = shown_level(canvas)
    assert level >= 2  # the view shows a reduced copy of this canvas
    assert drawn and 0 not in {lvl for lvl, _t, _n in drawn}  # no full-size tile was made
    valid = canvas._image.valid  # each tile's finest level drawn: reduced ones, all of it
    assert ((valid > 0) & (valid <= level)).all()
    # The large change was drawn by the worker (the window only draws small ones).
    assert any(t is not threading.main_thread() for _l, t, _n in drawn)
    assert all(n <= PROGRESSIVE_PIXELS for _l, t, n in drawn if t is threading.main_thread())
    # What the window shows is the new image (and the tint over its middle).
    screen = canvas.grab().toImage()
    for cx, cy in ((SIDE // 8, SIDE // 8), (SIDE // 2, SIDE // 2), (SIDE * 7 // 8, SIDE // 3)):
        expected = window.doc.composite((cx - 2, cy - 2, 5, 5))[2, 2, :3].astype(int)
        c = screen.pixelColor(canvas.to_widget(QPointF(cx, cy)).toPoint())
        assert np.abs(np.array([c.red(), c.green(), c.blue()]) - expected).max() <= 6, (cx, cy)


def test_the_reduced_copy_matches_the_full_size_result_and_1_to_1_is_exact(qtbot, window):
    canvas = window.canvas
    open_large(qtbot, window)
    level = shown_level(canvas)
    exact = premultiply(window.doc.composite())
    reduced = canvas._image.levels[level][0]
    expected = reduce_box(exact, 2 ** level)[:reduced.shape[0], :reduced.shape[1]]
    diff = np.abs(reduced.astype(int) - expected.astype(int))
    assert diff.max() <= TOLERANCE, f"the reduced copy is {diff.max()} levels off"
    # At 1:1 the tiles on screen are drawn at full size: exactly the composite there.
    canvas.actual_size()
    canvas.repaint()
    qtbot.waitUntil(lambda: not canvas.drawing, timeout=60000)
    view = canvas._visible()
    assert view is not None and view[2] * view[3] < SIDE * SIDE // 4
    x, y, w, h = view
    np.testing.assert_array_equal(canvas._image.array[y:y + h, x:x + w], exact[y:y + h, x:x + w])
    # Only what was shown at full size was drawn at full size.
    assert (canvas._image.valid > 0).any()
    # A reduced copy asked for (live mode's source) is drawn at that level only.
    coarse = canvas.composite_at(level)
    assert np.abs(coarse.astype(int) - expected.astype(int)).max() <= TOLERANCE
    assert (canvas._image.valid > 0).any()
    # An export of what is shown draws the rest: the whole composite, exactly.
    np.testing.assert_array_equal(canvas.composite_cache.array, exact)


def test_painting_on_a_reduced_tile_shows_at_once_and_stays_right(qtbot, window):
    canvas = window.canvas
    open_large(qtbot, window)
    level = shown_level(canvas)
    f = 2 ** level
    window.doc.set_active_layer(window.doc.layers[0].id)  # the photo, outside the tint
    canvas.set_tool(tools.BRUSH)
    canvas.set_brush(BrushSettings(size=120, hardness=1.0, color=(10, 250, 10)))
    canvas.begin_stroke(QPointF(300, 300))
    canvas.continue_stroke(QPointF(600, 300))
    canvas.end_stroke()
    assert not canvas.drawing  # a dab is drawn at once, at the level shown
    reduced = canvas._image.levels[level][0]
    assert tuple(reduced[300 // f, 450 // f, :3]) == (10, 250, 10)
    screen = canvas.grab().toImage()
    c = screen.pixelColor(canvas.to_widget(QPointF(450, 300)).toPoint())
    assert (c.red(), c.green(), c.blue()) == (10, 250, 10)
    # Zoomed in on it, the stroke is there at full size, and all of it is exact.
    canvas.set_zoom(1.0, canvas.to_widget(QPointF(450, 300)))
    canvas.repaint()
    qtbot.waitUntil(lambda: not canvas.drawing, timeout=60000)
    assert tuple(canvas._image.array[300, 450, :3]) == (10, 250, 10)
    np.testing.assert_array_equal(canvas.composite_cache.array,
                                  premultiply(window.doc.composite()))
    window.actions["undo"].trigger()  # the stroke undone: the photo shows again
    qtbot.waitUntil(lambda: not canvas.drawing, timeout=60000)
    np.testing.assert_array_equal(canvas.composite_cache.array,
                                  premultiply(window.doc.composite()))


def screen_array(canvas) -> np.ndarray:
    from PySide6.QtGui import QImage

    image = canvas.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    h, w = image.height(), image.width()
    return np.frombuffer(image.constBits(), np.uint8).reshape(h, image.bytesPerLine())[
        :, :w * 3].reshape(h, w, 3).astype(int)


def test_the_zoomed_out_view_kept_scaled_shows_what_scaling_each_time_shows(
        qtbot, window, monkeypatch):
    """Zoomed out, repaints copy from the canvas kept scaled to the zoom (rescaled where it
    changed): the window shows the same as when every repaint scaled the reduced copy."""
    import studio.ui.canvas as canvas_module

    canvas = window.canvas
    open_large(qtbot, window)
    window.doc.set_active_layer(window.doc.layers[0].id)
    canvas.set_tool(tools.BRUSH)
    canvas.set_brush(BrushSettings(size=200, hardness=1.0, color=(250, 250, 20)))
    canvas.begin_stroke(QPointF(1100, 1500))
    canvas.continue_stroke(QPointF(1800, 1600))
    canvas.end_stroke()
    kept = screen_array(canvas)
    monkeypatch.setattr(canvas_module, "SCALED_MAX_PIXELS", 0)
    direct = screen_array(canvas)
    diff = np.abs(kept - direct)
    # The same pixels (on a HiDPI screen a few edge pixels may round the other way).
    assert diff.mean() < 0.1 and np.percentile(diff, 99.9) <= 4, (diff.mean(), diff.max())
    c = kept[canvas.to_widget(QPointF(1450, 1550)).toPoint().y(),
             canvas.to_widget(QPointF(1450, 1550)).toPoint().x()]
    assert tuple(c) == (250, 250, 20)  # the stroke is in the kept copy
