"""The start-up path's own value widgets: labelled sliders, the seed box, the throttle."""

from __future__ import annotations

import subprocess
import sys

from PySide6.QtCore import Qt

from studio.ui.value_widgets import LabeledDoubleSlider, LabeledSlider, SeedSpinBox, Throttle


def test_seed_box_holds_seeds_past_32_bits_and_clamps(qtbot):
    box = SeedSpinBox()
    qtbot.addWidget(box)
    box.setRange(0, 2**64 - 1)
    seen = []
    box.valueChanged.connect(seen.append)
    box.setValue(2**63 + 5)
    assert box.value() == 2**63 + 5
    assert box.text() == str(2**63 + 5)
    box.setValue(2**70)
    assert box.value() == 2**64 - 1
    box.setValue(-3)
    assert box.value() == 0
    assert seen == [2**63 + 5, 2**64 - 1, 0]


def test_seed_box_takes_typed_digits_and_steps(qtbot):
    box = SeedSpinBox()
    qtbot.addWidget(box)
    box.setRange(0, 2**64 - 1)
    box.show()
    box.lineEdit().selectAll()
    qtbot.keyClicks(box, "12345678901")
    qtbot.keyClicks(box, "x")  # not a digit: refused
    assert box.value() == 12345678901
    qtbot.keyClick(box, Qt.Key.Key_Up)
    assert box.value() == 12345678902
    box.lineEdit().setText("")
    box.editingFinished.emit()  # an emptied box falls back to the last value
    assert box.value() == 12345678902
    assert box.text() == "12345678902"


def test_double_slider_keeps_slider_and_box_in_step(qtbot):
    s = LabeledDoubleSlider()
    qtbot.addWidget(s)
    s.setRange(-3.0, 3.0)
    s.setDecimals(2)
    seen = []
    s.valueChanged.connect(seen.append)
    s.setValue(1.25)
    assert s.value() == 1.25 and s.slider.value() == 125
    s.slider.setValue(-200)  # a drag of the handle
    assert s.value() == -2.0 and s.box.value() == -2.0
    s.box.setValue(0.5)  # typed into the box
    assert s.slider.value() == 50
    assert seen == [1.25, -2.0, 0.5]
    s.setValue(0.5)  # unchanged: no signal
    assert len(seen) == 3
    s.blockSignals(True)
    s.setValue(0.75)
    s.blockSignals(False)
    assert seen == [1.25, -2.0, 0.5] and s.value() == 0.75


def test_int_slider_emits_ints_and_clamps(qtbot):
    s = LabeledSlider()
    qtbot.addWidget(s)
    s.setRange(1, 150)
    seen = []
    s.valueChanged.connect(seen.append)
    s.setValue(30)
    s.setValue(500)
    assert seen == [30, 150] and all(isinstance(v, int) for v in seen)
    assert s.slider.value() == 150


def test_throttle_calls_first_at_once_and_last_after_the_window(qtbot):
    calls = []
    t = Throttle(lambda: calls.append(len(calls)), 30)
    t()
    t()
    t()
    assert calls == [0]  # leading call only, the rest wait
    qtbot.waitUntil(lambda: len(calls) == 2, timeout=2000)
    qtbot.wait(80)
    assert calls == [0, 1]  # one trailing call for the burst, not three
    t()
    t.cancel()
    qtbot.wait(80)
    assert len(calls) == 3  # a fresh call after the window runs at once; cancel drops none


def test_the_window_modules_do_not_import_superqt():
    """superqt (with qtpy and QtOpenGL) costs a third of start-up: it loads only when a worker
    thread is first needed."""
    code = ("import sys, studio.ui.launch, studio.ui.main_window\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('superqt', 'qtpy')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_save_workers_library_is_imported_off_the_gui_thread_soon_after_start():
    """The first autosave must not import superqt on the GUI thread (it froze the window
    for 1.8 s under load, mid-stroke): a window's project controller imports it on a thread
    of its own a moment after start."""
    code = (
        "import sys, threading\n"
        "from PySide6.QtCore import QCoreApplication, QTimer\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "who = []\n"
        "sys.addaudithook(lambda event, args: who.append(threading.current_thread().name)"
        " if event == 'import' and args[0] == 'superqt' else None)\n"
        "from studio.ui.project_controller import warm_up_worker_library\n"
        "warm_up_worker_library(100)\n"
        "QTimer.singleShot(4000, app.quit)\n"
        "app.exec()\n"
        "print('superqt.utils' in sys.modules, sorted(set(who)))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={"QT_QPA_PLATFORM": "offscreen",
                                            "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True ['import-superqt']", proc.stdout
