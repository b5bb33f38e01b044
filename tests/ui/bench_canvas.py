"""Canvas timings on a 4096x4096 document (run: python -m tests.ui.bench_canvas).

Prints how long the operations an artist feels take: a full repaint at fit zoom and at
100%, one brush dab with its dirty-rect recomposite, and finishing a stroke.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from PySide6.QtCore import QPointF
from PySide6.QtWidgets import QApplication

from studio.core.document.layers import Document
from studio.core.document.undo import UndoStack
from studio.ui.canvas import CanvasView
from studio.ui.controller import GenerationController  # noqa: F401  (import cost)


def timed(label: str, fn, repeat: int = 5) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    ms = (time.perf_counter() - start) / repeat * 1000
    print(f"{label:<44} {ms:8.2f} ms")
    return ms


def main() -> None:
    app = QApplication([])
    doc = Document(width=4096, height=4096)
    undo = UndoStack(doc)
    from studio.core.document.edits import AddLayer
    from studio.core.document.layers import Layer

    rng = np.random.default_rng(0)
    for i in range(3):
        px = rng.integers(0, 255, (4096, 4096, 4), dtype=np.uint8)
        px[..., 3] = 255 if i == 0 else 128
        undo.push(AddLayer(Layer(name=f"layer {i}", pixels=px)))
    canvas = CanvasView(doc, undo)
    canvas.resize(1200, 800)
    canvas.show()
    app.processEvents()
    canvas.fit()
    timed("repaint whole view, fit zoom", lambda: canvas.repaint())
    canvas.actual_size()
    timed("repaint whole view, 100%", lambda: canvas.repaint())
    canvas.begin_stroke(QPointF(2000, 2000))
    pos = [2000.0]

    def dab() -> None:
        pos[0] += 3
        canvas.continue_stroke(QPointF(pos[0], 2000))
        canvas.repaint()

    timed("one brush move (dab + recomposite + repaint)", dab, 20)
    start = time.perf_counter()
    canvas.end_stroke()
    print(f"{'finish stroke (bbox diff command)':<44} {(time.perf_counter() - start) * 1000:8.2f} ms")
    print(f"stroke command holds {undo.commands[-1].nbytes() / 1e6:.2f} MB "
          f"(a snapshot would be {4096 * 4096 * 4 / 1e6:.0f} MB)")
    canvas.close()


if __name__ == "__main__":
    main()
