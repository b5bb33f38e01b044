"""The Qt binding the studio runs on must not lose references to Python's singletons.

PySide6 6.12.0 dropped one reference to ``None`` on every Qt call that returns nothing and one
to ``True`` on every signal emit; on Python 3.10/3.11 (where they are not immortal) the window
aborted with "bool_dealloc" / "none_dealloc" after a few thousand mouse moves or paints.
pyproject.toml excludes that release; this checks the installed one."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage, QPainter

CALLS = 5000


class _Emitter(QObject):
    fired = Signal(int)


def test_qt_calls_and_signals_keep_their_references_to_none_and_true(qapp):
    emitter = _Emitter()
    emitter.fired.connect(lambda value: None)
    image = QImage(8, 8, QImage.Format.Format_ARGB32_Premultiplied)
    painter = QPainter(image)
    try:
        none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
        for i in range(CALLS):
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            emitter.fired.emit(i)
        none_lost = none_before - sys.getrefcount(None)
        true_lost = true_before - sys.getrefcount(True)
    finally:
        painter.end()
    # Other threads and the collector move these counts a little; a leak loses one a call.
    assert none_lost < CALLS // 10 and true_lost < CALLS // 10, (none_lost, true_lost)
