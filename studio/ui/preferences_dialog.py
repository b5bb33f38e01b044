"""Edit ▸ Preferences…: device, precision, model folders, autosave, theme and servers.

Everything goes to the shared settings file (``studio.settings``), which the CLI reads too.
Device and precision apply at the next start; the autosave interval, the theme and the model
folders apply at once (the window does it when ``applied`` is emitted).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.settings import Settings, save_settings, saved_settings
from studio.ui import theme as themes

DEVICES = ("auto", "cuda", "mps", "cpu")
DTYPES = ("auto", "float16", "bfloat16", "float32")
THEMES = ("dark", "light")
RESTART_NOTE = "Device and precision apply the next time Latent Studio starts."


class PreferencesDialog(QDialog):
    """Shows the saved preferences; OK saves them and emits ``applied``."""

    applied = Signal()

    def __init__(self, parent: QWidget | None = None, config_file: Path | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("preferences_dialog")
        self.setWindowTitle("Preferences")
        self.setMinimumWidth(460)
        self.config_file = config_file
        self.config = saved_settings(config_file)
        self._initial_dirs = tuple(self.config.model_dirs)
        self._build()

    def _build(self) -> None:
        engine = QGroupBox("Engine")
        form = QFormLayout(engine)
        self.device_combo = QComboBox(objectName="device_combo")
        self.device_combo.addItems(DEVICES)
        self.device_combo.setCurrentText(self.config.device if self.config.device in DEVICES
                                         else "auto")
        self.dtype_combo = QComboBox(objectName="dtype_combo")
        self.dtype_combo.addItems(DTYPES)
        self.dtype_combo.setCurrentText(self.config.dtype if self.config.dtype in DTYPES
                                        else "auto")
        form.addRow("Device", self.device_combo)
        form.addRow("Precision", self.dtype_combo)
        note = QLabel(RESTART_NOTE, objectName="restart_note_label")
        note.setWordWrap(True)
        form.addRow(note)

        models = QGroupBox("Model folders")
        self.dirs_list = QListWidget(objectName="model_dirs_list")
        self.dirs_list.addItems(list(self.config.model_dirs))
        self.add_dir_button = QPushButton("Add…", objectName="add_model_dir_button")
        self.remove_dir_button = QPushButton("Remove", objectName="remove_model_dir_button")
        self.add_dir_button.clicked.connect(self._on_add_dir_clicked)
        self.remove_dir_button.clicked.connect(self._on_remove_dir_clicked)
        self.dirs_list.currentRowChanged.connect(self._update_buttons)
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_dir_button)
        buttons.addWidget(self.remove_dir_button)
        buttons.addStretch(1)
        column = QVBoxLayout(models)
        column.addWidget(self.dirs_list)
        column.addLayout(buttons)

        general = QGroupBox("Window")
        gform = QFormLayout(general)
        self.autosave_spin = QSpinBox(objectName="autosave_spin")
        self.autosave_spin.setRange(0, 120)
        self.autosave_spin.setSuffix(" min")
        self.autosave_spin.setSpecialValueText("Off")
        minutes = self.config.autosave_minutes
        self.autosave_spin.setValue(0 if minutes <= 0 else max(1, round(minutes)))
        self._initial_minutes = self.autosave_spin.value()
        gform.addRow("Autosave every", self.autosave_spin)
        self.theme_combo = QComboBox(objectName="theme_combo")
        self.theme_combo.addItems(THEMES)
        self.theme_combo.setCurrentText(themes.current_theme())
        gform.addRow("Theme", self.theme_combo)

        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                               | QDialogButtonBox.StandardButton.Cancel)
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)
        remote = QGroupBox("Remote servers (ComfyUI)")
        rform = QFormLayout(remote)
        self.servers_edit = QPlainTextEdit(objectName="servers_edit")
        self.servers_edit.setPlaceholderText("http://127.0.0.1:8188 (one address a line)")
        self.servers_edit.setPlainText("\n".join(self.config.servers))
        self.servers_edit.setFixedHeight(64)
        rform.addRow("Addresses", self.servers_edit)
        self.token_edit = QLineEdit(self.config.server_token, objectName="server_token_edit")
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("optional: sent as a bearer token")
        rform.addRow("Access token", self.token_edit)
        self.trust_check = QCheckBox("Trust certificates that do not verify",
                                     objectName="trust_servers_check")
        self.trust_check.setChecked(self.config.trust_servers)
        rform.addRow(self.trust_check)
        rform.addRow(QLabel("With addresses, generation runs on the servers (next start)."))

        layout = QVBoxLayout(self)
        for part in (engine, models, general, remote):
            layout.addWidget(part)
        layout.addWidget(box)
        self._update_buttons()

    # -- model folders -----------------------------------------------------------------------
    def model_dirs(self) -> tuple[str, ...]:
        return tuple(self.dirs_list.item(i).text() for i in range(self.dirs_list.count()))

    def add_model_dir(self, folder: str) -> None:
        folder = str(Path(folder).expanduser())
        if folder and folder not in self.model_dirs():
            self.dirs_list.addItem(folder)
            self.dirs_list.setCurrentRow(self.dirs_list.count() - 1)
        self._update_buttons()

    def _on_add_dir_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a model folder")
        if folder:
            self.add_model_dir(folder)

    def _on_remove_dir_clicked(self) -> None:
        row = self.dirs_list.currentRow()
        if row >= 0:
            self.dirs_list.takeItem(row)
        self._update_buttons()

    def _update_buttons(self, *_args: object) -> None:
        self.remove_dir_button.setEnabled(self.dirs_list.currentRow() >= 0)

    def model_dirs_changed(self) -> bool:
        return self.model_dirs() != self._initial_dirs

    def added_model_dirs(self) -> list[str]:
        return [d for d in self.model_dirs() if d not in self._initial_dirs]

    # -- values ------------------------------------------------------------------------------
    def autosave_minutes(self) -> float:
        if self.autosave_spin.value() == self._initial_minutes:
            return self.config.autosave_minutes  # keep a finer interval set elsewhere
        return float(self.autosave_spin.value())

    def theme(self) -> str:
        return self.theme_combo.currentText()

    def new_config(self) -> Settings:
        return self.config.replace(device=self.device_combo.currentText(),
                                   dtype=self.dtype_combo.currentText(),
                                   model_dirs=self.model_dirs(),
                                   autosave_minutes=self.autosave_minutes(),
                                   theme=self.theme(),
                                   servers=self.server_addresses(),
                                   server_token=self.token_edit.text().strip(),
                                   trust_servers=self.trust_check.isChecked())

    def server_addresses(self) -> tuple[str, ...]:
        text = self.servers_edit.toPlainText().replace(",", "\n")
        return tuple(line.strip() for line in text.splitlines() if line.strip())

    def accept(self) -> None:
        try:
            config = self.new_config()
        except ValueError as err:  # pydantic's ValidationError: a server address
            QMessageBox.warning(self, "Preferences not saved",
                                str(err).strip().splitlines()[-1])
            return
        try:
            self.config = save_config_and_return(config, self.config_file)
        except OSError as err:
            QMessageBox.warning(self, "Preferences not saved",
                                f"Could not save the preferences: {err.strerror or err}.")
            return
        super().accept()
        self.applied.emit()


def save_config_and_return(config: Settings, path: Path | None) -> Settings:
    # Re-read first: the model manager may have added a folder while the dialog was open.
    current = saved_settings(path)
    merged = config.replace(default_model=current.default_model)
    save_settings(merged, path)
    return merged
