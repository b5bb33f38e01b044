""""Use settings" on an image made with another model switches the window to that model
whole: the status bar names it and the backend follows, not only the combo box."""

from __future__ import annotations

from studio.core.jobs.runner import JobRunner
from studio.ui.main_window import MainWindow
from tests.fakes import FakeEngine, fake_services


def test_use_settings_of_another_models_image_shows_that_model(qtbot, settings):
    engine = FakeEngine()
    runner = JobRunner(engine)
    window = MainWindow(fake_services(engine), runner, settings)
    qtbot.addWidget(window)
    window.show()
    try:
        panel = window.prompt_panel
        first, second = (m.id for m in engine.models[:2])
        panel.model_combo.setCurrentIndex(panel.model_combo.findData(second))
        assert window.status.model_label.text() == second

        panel.set_values({"model": first, "seed": 7})  # what Use settings does
        assert panel.model_id == first
        assert window.status.model_label.text() == first
        assert window.connection.model == first
    finally:
        window.detach_engine()
        assert runner.shutdown(10)
