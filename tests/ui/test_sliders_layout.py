"""The window on a 1366 x 768 laptop screen: every panel open, nothing clipped, on the first
run, with the Sliders panel's seed grid filled, and after Reset Panel Layout.

Qt's offscreen platform takes its screen size from a file (``offscreen:configfile=``), fixed
when the application starts; the test suite's application has another screen, so the window
is measured in a fresh process (``python -m tests.ui.test_sliders_layout SCREEN.json``), with
the fake backend, and its figures are judged here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCREEN = (1366, 768)
ROOT = Path(__file__).resolve().parents[2]


def test_the_window_fits_a_1366x768_screen_with_every_panel_open(tmp_path):
    config = tmp_path / "screen.json"
    config.write_text(json.dumps({"screens": [{"name": "laptop", "x": 0, "y": 0,
                                               "width": SCREEN[0], "height": SCREEN[1],
                                               "logicalDpi": 96, "dpr": 1}]}))
    env = {**os.environ, "QT_QPA_PLATFORM": f"offscreen:configfile={config}",
           "STUDIO_TEST_SETTINGS": str(tmp_path / "studio.ini")}
    done = subprocess.run([sys.executable, "-m", "tests.ui.test_sliders_layout"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["screen"] == [0, 0, *SCREEN]
    for moment in ("first run", "seed grid shown", "after Reset Panel Layout"):
        state = report[moment]
        x, y, w, h = state["frame"]
        assert x >= 0 and y >= 0 and x + w <= SCREEN[0] and y + h <= SCREEN[1], moment
        min_w, min_h = state["minimum"]
        assert min_w <= SCREEN[0] and min_h <= SCREEN[1], moment
        assert sorted(state["docks"]) == ["gallery", "layers", "prompt", "queue", "sliders"]
        for key, dock in state["docks"].items():
            assert dock["open"] and not dock["floating"], (moment, key)
            assert dock["inside"], (moment, key, dock)  # within the window, not cut off
            assert dock["width"] >= dock["min_width"], (moment, key, dock)
            assert dock["height"] >= dock["min_height"], (moment, key, dock)
        assert state["generate_button_inside"] and state["status_bar_inside"], moment
        # Layers (it scrolls in its dock) has the larger share of the right column.
        assert state["docks"]["layers"]["height"] > state["docks"]["gallery"]["height"]
    # Reset brings back what the artist moved: the panels docked and open, the window on
    # the screen again.
    assert report["messed up"]["frame"][2] > SCREEN[0]
    assert report["messed up"]["docks"]["layers"]["floating"]
    assert not report["messed up"]["docks"]["queue"]["open"]


# -- the measuring process ------------------------------------------------------------------
def _state(window) -> dict:
    from PySide6.QtCore import QRect
    from PySide6.QtWidgets import QApplication

    area = window.rect()
    docks = {}
    for key, dock in window.docks.items():
        dock.raise_()  # tabbed docks: each one shown in turn
        QApplication.processEvents()
        inside = QRect(dock.mapTo(window, dock.rect().topLeft()), dock.size())
        docks[key] = {"open": not dock.isHidden(), "floating": dock.isFloating(),
                      "inside": dock.isFloating() or area.contains(inside),
                      "width": dock.width(), "height": dock.height(),
                      "min_width": dock.minimumSizeHint().width(),
                      "min_height": dock.minimumSizeHint().height()}
    window.docks["prompt"].raise_()
    QApplication.processEvents()
    button = window.prompt_panel.generate_button
    frame = window.frameGeometry()
    return {"frame": [frame.x(), frame.y(), frame.width(), frame.height()],
            "minimum": [window.minimumSizeHint().width(), window.minimumSizeHint().height()],
            "docks": docks,
            "generate_button_inside": button.isVisible() and area.contains(
                QRect(button.mapTo(window, button.rect().topLeft()), button.size())),
            "status_bar_inside": area.contains(window.statusBar().geometry())}


def _measure() -> dict:
    import numpy as np
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from studio.core.jobs.runner import JobRunner
    from studio.ui.main_window import MainWindow
    from tests.fakes import FakeEngine, fake_services

    app = QApplication([])
    engine = FakeEngine()
    runner = JobRunner(engine)
    settings = QSettings(os.environ["STUDIO_TEST_SETTINGS"], QSettings.Format.IniFormat)
    window = MainWindow(fake_services(engine), runner, settings)
    window.show()
    app.processEvents()
    screen = window.screen().availableGeometry()
    report = {"screen": [screen.x(), screen.y(), screen.width(), screen.height()],
              "first run": _state(window)}
    # The seed grid fills the Sliders panel (nine 64 px cells) without growing the window.
    window.docks["sliders"].raise_()
    for index in range(9):
        window.sliders.frame_shown.emit(index, np.full((64, 64, 3), 25 * index, np.uint8))
    app.processEvents()
    report["seed grid shown"] = _state(window)
    # The artist moves things about: a wide window, a floating panel, one closed.
    window.resize(1900, 1100)
    window.docks["layers"].setFloating(True)
    window.docks["queue"].close()
    app.processEvents()
    report["messed up"] = _state(window)
    window.actions["reset_layout"].trigger()
    app.processEvents()
    report["after Reset Panel Layout"] = _state(window)
    window.detach_engine()
    runner.shutdown(10)
    window.close()
    return report


if __name__ == "__main__":
    print(json.dumps(_measure()))
