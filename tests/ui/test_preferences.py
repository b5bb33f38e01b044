"""Edit ▸ Preferences…: engine settings saved to the shared config, window settings applied."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QFileDialog

from studio.settings import Settings, save_settings, saved_settings
from studio.ui import theme
from studio.ui.main_window import MainWindow
from studio.ui.preferences_dialog import RESTART_NOTE, PreferencesDialog
from tests.fakes import fake_services
from tests.ui.conftest import dispose


def test_preferences_are_saved_to_the_config_and_applied(qtbot, runner, settings, tmp_path,
                                                         monkeypatch):
    save_settings(Settings(model_dirs=("/old/models",), default_model="fake-tiny"))
    services = fake_services()
    window = MainWindow(services, None, settings)
    window.show()
    try:
        window.actions["preferences"].trigger()
        dialog = window.findChild(QDialog, "preferences_dialog")
        assert isinstance(dialog, PreferencesDialog)
        assert dialog.findChild(object, "restart_note_label").text() == RESTART_NOTE
        assert dialog.model_dirs() == ("/old/models",)
        dialog.device_combo.setCurrentText("cpu")
        dialog.dtype_combo.setCurrentText("float32")
        new_folder = tmp_path / "more-models"
        new_folder.mkdir()
        monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                            lambda *a, **k: str(new_folder))
        dialog.add_dir_button.click()
        dialog.dirs_list.setCurrentRow(0)
        dialog.remove_dir_button.click()
        dialog.autosave_spin.setValue(5)
        dialog.theme_combo.setCurrentText("light")
        with qtbot.waitSignal(dialog.applied, timeout=2000):
            dialog.accept()
        config = saved_settings()
        assert (config.device, config.dtype) == ("cpu", "float32")
        assert config.model_dirs == (str(new_folder),)
        assert config.default_model == "fake-tiny"  # kept
        assert config.autosave_minutes == 5
        assert window.projects.autosave_timer.interval() == 300_000
        assert theme.current_theme() == "light"
        assert services.folders.added == [str(new_folder)]
        assert services.folders.rescans >= 2  # the scan of the folder, then the rescan
    finally:
        window.set_theme("dark")
        dispose(window)


def test_autosave_off_and_cancel_changes_nothing(qtbot, settings):
    save_settings(Settings(device="cuda"))
    dialog = PreferencesDialog()
    qtbot.addWidget(dialog)
    assert dialog.device_combo.currentText() == "cuda"
    dialog.device_combo.setCurrentText("mps")
    dialog.reject()
    assert saved_settings().device == "cuda"
    dialog = PreferencesDialog()
    qtbot.addWidget(dialog)
    dialog.autosave_spin.setValue(0)
    assert dialog.autosave_spin.text() == "Off"
    dialog.accept()
    assert saved_settings().autosave_minutes == 0
