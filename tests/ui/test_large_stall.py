"""Issue 29, point 4: a result landing on a large canvas starts no thread on the GUI thread
(starting one blocks it until the new thread runs: 2-3 ms each under load, measured by
``python -m studio.bench.ui_stall MODEL --large 8000``). The canvas's tile worker and the
workers of ``run_while_painting`` wait for the next work instead, as daemon threads that
end when idle and keep no closed window alive."""

from __future__ import annotations

import gc
import threading
import weakref

import numpy as np

from studio.core.document.edits import AddLayer, ResizeCanvas
from studio.core.document.layers import Layer
from studio.ui import busy
from studio.ui import canvas as canvas_module
from studio.ui.busy import run_while_painting
from studio.ui.canvas import PROGRESSIVE_PIXELS

SIDE = 1100  # large enough for the canvas's worker: side * side > PROGRESSIVE_PIXELS


def started_threads(monkeypatch) -> list[str]:
    """The names of the threads started from now on (by any thread)."""
    names: list[str] = []
    start = threading.Thread.start

    def counted(self: threading.Thread) -> None:
        names.append(self.name)
        start(self)

    monkeypatch.setattr(threading.Thread, "start", counted)
    return names


def add_big(window, red: int) -> np.ndarray:
    if (window.doc.width, window.doc.height) != (SIDE, SIDE):
        window.undo.push(ResizeCanvas(SIDE, SIDE))
    pixels = np.zeros((SIDE, SIDE, 4), np.uint8)
    pixels[..., 0] = red
    pixels[..., 3] = 255
    window.undo.push(AddLayer(Layer(name=f"big {red}", pixels=pixels, kind="generated")))
    return pixels


def test_large_changes_in_a_row_are_drawn_by_one_waiting_worker(qtbot, window, monkeypatch):
    assert SIDE * SIDE > PROGRESSIVE_PIXELS
    canvas = window.canvas
    drawers: list[int] = []
    composite = canvas._composite
    monkeypatch.setattr(canvas, "_composite",
                        lambda part, level=0: (drawers.append(threading.get_ident()),
                                               composite(part, level))[1])
    names = started_threads(monkeypatch)
    for red in (200, 90):
        pixels = add_big(window, red)
        qtbot.waitUntil(lambda: not canvas.drawing, timeout=60000)
        canvas.finish_drawing()  # every tile at full size: what the last result shows
        np.testing.assert_array_equal(canvas.composite_cache.array[..., :3], pixels[..., :3])
    assert names.count("studio-canvas") == 1, names  # one thread, started once
    assert len(set(drawers) - {threading.main_thread().ident}) == 1
    worker = [t for t in threading.enumerate() if t.name == "studio-canvas"
              and t.ident in drawers]
    assert worker and worker[0].daemon  # waiting for the next change, never blocking exit


def test_an_idle_canvas_worker_ends_and_the_next_change_starts_another(qtbot, window,
                                                                       monkeypatch):
    monkeypatch.setattr(canvas_module, "WORKER_IDLE_S", 0.2)
    canvas = window.canvas
    names = started_threads(monkeypatch)
    add_big(window, 200)
    qtbot.waitUntil(lambda: not canvas.drawing, timeout=60000)
    qtbot.waitUntil(lambda: not canvas._worker.alive, timeout=10000)  # it ended, idle
    pixels = add_big(window, 60)
    qtbot.waitUntil(lambda: not canvas.drawing, timeout=60000)
    canvas.finish_drawing()
    np.testing.assert_array_equal(canvas.composite_cache.array[..., :3], pixels[..., :3])
    assert names.count("studio-canvas") == 2


def test_a_waiting_canvas_worker_keeps_no_closed_canvas_alive(qtbot, window):
    from studio.ui.canvas import CanvasView

    view = CanvasView(window.doc, window.undo)
    qtbot.addWidget(view)
    view.resize(300, 300)
    add_big(window, 120)
    qtbot.waitUntil(lambda v=view: not v.drawing, timeout=60000)
    assert any(t.name == "studio-canvas" for t in threading.enumerate())  # idle, waiting
    window.doc.remove_listener(view._on_document_event)
    ref = weakref.ref(view)
    view.setParent(None)
    view.deleteLater()
    del view
    qtbot.wait(50)
    gc.collect()
    assert ref() is None  # its 8000x8000 caches are not kept by the idle thread


def test_work_off_the_gui_thread_reuses_one_waiting_daemon_thread(qtbot, monkeypatch):
    names = started_threads(monkeypatch)
    ran: list[threading.Thread] = []
    for i in range(3):
        assert run_while_painting(lambda n=i: (ran.append(threading.current_thread()), n)[1]) \
            == i
    assert len(set(ran)) == 1 and ran[0] is not threading.main_thread() and ran[0].daemon
    assert len([n for n in names if n.startswith("studio-io")]) <= 1  # none if one waited


def test_an_error_off_the_gui_thread_still_reaches_the_caller_and_the_thread_serves_on(qtbot):
    def fails() -> None:
        raise ValueError("bad file")

    try:
        run_while_painting(fails)
    except ValueError as err:
        assert str(err) == "bad file"
    else:
        raise AssertionError("the worker's error was lost")
    assert run_while_painting(lambda: 7) == 7


def test_idle_worker_threads_end(qtbot):
    pool = busy.IdleThreads("studio-test", idle_s=0.1)
    assert pool.submit(lambda: 5).result(10) == 5
    assert pool.threads  # waiting for more
    qtbot.waitUntil(lambda: not pool.threads, timeout=5000)
    futures = [pool.submit(lambda n=n: n * n) for n in range(4)]  # more than one idle
    assert [f.result(10) for f in futures] == [0, 1, 4, 9]


def test_an_undone_result_dropped_by_the_next_edit_is_freed_after_that_edit(qtbot, window):
    """Freeing an undone 8000x8000 result (1-2 ms) is not part of the edit that drops it:
    the window frees it once that edit is drawn."""
    from studio.ui.busy import AFTER_DRAWN_MS

    first = AddLayer(Layer(name="undone", pixels=np.zeros((64, 64, 4), np.uint8)))
    ref = weakref.ref(first)
    window.undo.push(first)
    window.undo.undo()
    del first
    window.undo.push(AddLayer(Layer(name="next", pixels=np.zeros((64, 64, 4), np.uint8))))
    gc.collect()
    assert ref() is not None  # still held: freed later, not inside this push
    assert [layer.name for layer in window.doc.layers] == ["next"]
    qtbot.wait(AFTER_DRAWN_MS + 100)
    gc.collect()
    assert ref() is None


def test_a_waiting_worker_keeps_nothing_of_the_work_it_ran(qtbot):
    """An idle worker holds no result (a prepared 8000x8000 layer is 256 MB)."""
    class Result:
        pass

    ref = weakref.ref(run_while_painting(Result))
    gc.collect()
    assert ref() is None
