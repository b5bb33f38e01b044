"""Issue 29, point 4: a large change to the canvas is drawn tile by tile between events, so
the window keeps answering while it is drawn, and what is finally shown is the composite."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QTimer

from studio.ui.canvas import PROGRESSIVE_PIXELS


def test_a_large_layer_is_drawn_in_tiles_while_the_window_answers(qtbot, window, monkeypatch):
    import time

    side = 1536
    assert side * side > PROGRESSIVE_PIXELS
    pixels = np.zeros((side, side, 3), np.uint8)
    pixels[..., 0] = 200
    pixels[side // 2:, :, 2] = 90
    canvas = window.canvas
    render = canvas._render

    def slow_render(*args):  # each run of tiles takes 30 ms on the worker, as on a slow
        time.sleep(0.03)  # machine: how many events the window handled meanwhile then
        return render(*args)  # does not depend on how fast this machine draws

    monkeypatch.setattr(canvas, "_render", slow_render)
    window.controller.add_image_layer(pixels, "big")
    assert canvas.drawing  # not drawn in one go on the GUI thread
    ticks: list[int] = []
    timer = QTimer(interval=1)
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start()
    qtbot.waitUntil(lambda: not canvas.drawing, timeout=60000)
    timer.stop()
    assert len(ticks) > 3  # the event loop ran while the tiles were drawn
    image = canvas.composite_image()
    for x, y in ((5, 5), (side - 3, side // 2 + 7), (side // 2, side - 1)):
        c = image.pixelColor(x, y)
        assert (c.red(), c.green(), c.blue()) == tuple(int(v) for v in pixels[y, x])
    window.actions["undo"].trigger()  # undoing it redraws only where it was
    qtbot.waitUntil(lambda: not canvas.drawing, timeout=60000)
    assert canvas.composite_image().pixelColor(5, 5).alpha() == 0


def test_a_small_change_is_drawn_at_once(qtbot, window):
    window.controller.add_image_layer(np.full((64, 64, 3), 30, np.uint8), "small")
    assert not window.canvas.drawing
    assert window.canvas.composite_cache.array[10, 10, 0] == 30
