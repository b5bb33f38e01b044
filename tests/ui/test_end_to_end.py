"""The window on the REAL engine thread with a tiny real diffusers model (no fakes)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from studio.core.jobs.runner import JobRunner
from studio.ui.main_window import MainWindow
from tests.ui.test_canvas import drag, open_grey


@pytest.fixture
def real_window(qtbot, engine_real, settings):
    runner = JobRunner(engine_real)
    from studio.engine.services import engine_services

    w = MainWindow(engine_services(engine_real), runner, settings)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    panel = w.prompt_panel
    panel.set_values({"width": 64, "height": 64, "steps": 3, "guidance": 5.0,
                      "scheduler": "Euler", "seed": 5, "seed_locked": True})
    yield w
    w.detach_engine()
    assert runner.shutdown(10)


@pytest.fixture(scope="module")
def engine_real(tiny_sd1_dir, tmp_path_factory):
    from studio.engine.engine import Engine

    return Engine(device="cpu", dtype="float32", model_dirs=[tiny_sd1_dir],
                  embedded_dir=tmp_path_factory.mktemp("no-embedded"), hf_cache=False)


def test_prompt_ctrl_enter_puts_the_real_image_on_a_new_layer(qtbot, real_window, engine_real):
    w = real_window
    qtbot.keyClicks(w.prompt_panel.prompt_edit, "a cat on a blue background")
    with qtbot.waitSignal(w.controller.generation_applied, timeout=120_000):
        QTest.keyClick(w, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert len(w.doc.layers) == 1
    layer = w.doc.layers[0]
    # The layer holds exactly what the engine makes for the recorded request.
    request = w.doc.log.gallery()[-1].request
    assert request.prompt == "a cat on a blue background" and request.seed == 5
    again = engine_real.generate(request).images[0]
    np.testing.assert_array_equal(layer.pixels[..., :3], again)


def test_escape_cancels_a_real_run_and_adds_no_layer(qtbot, real_window):
    w = real_window
    w.prompt_panel.set_values({"steps": 200})
    w.prompt_panel.prompt_edit.setPlainText("a long one")
    with qtbot.waitSignal(w.bridge.job_progressed, timeout=120_000):
        w.actions["generate"].trigger()
    with qtbot.waitSignal(w.bridge.job_cancelled, timeout=30_000):
        QTest.keyClick(w, Qt.Key.Key_Escape)
    assert len(w.doc.layers) == 0


def test_inpainting_on_the_real_model_changes_only_the_masked_area(qtbot, real_window):
    w = real_window
    base = open_grey(w, (64, 64), 120)
    before = w.doc.composite()[..., :3].astype(int)
    w.canvas.setFocus()  # bare-key shortcuts act on the canvas
    QTest.keyClick(w.canvas, Qt.Key.Key_M)
    drag(qtbot, w.canvas, [(20, 30), (44, 30)])
    assert base.mask is not None
    w.prompt_panel.prompt_edit.setPlainText("a red hat")
    with qtbot.waitSignal(w.controller.generation_applied, timeout=120_000):
        w.actions["generate"].trigger()
    after = w.doc.composite()[..., :3].astype(int)
    changed = np.abs(after - before).sum(axis=2) > 0
    mask = base.mask > 0
    assert changed[mask].mean() > 0.5
    assert not changed[~mask].any()
