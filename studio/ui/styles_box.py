"""``StylesBox``: pick a named style for the prompt, save the current prompt as a style."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.errors import StudioError
from studio.core.styles import Style, StyleLibrary

NO_STYLE = "No style"


class StylesBox(QWidget):
    """A combo box of styles with save and delete buttons.

    The prompt panel calls ``apply_to(prompt, negative)`` when it builds a request (the
    chosen style wraps the prompt; the fields themselves stay as typed). ``style_changed``
    tells it the choice changed; ``prompt_source`` gives the text to save as a new style.
    """

    style_changed = Signal(str)
    style_saved = Signal(str)
    message_shown = Signal(str)

    def __init__(self, library: StyleLibrary, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.library = library
        self.prompt_source = lambda: ("{prompt}", "")
        self.combo = QComboBox()
        self.combo.setObjectName("styleCombo")
        self.combo.setToolTip("A style wraps your prompt in a template")
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(8)  # long style names must not widen the dock
        self.save_button = QToolButton(text="Save…")
        self.save_button.setToolTip("Save the current prompt as a style ({prompt} marks where "
                                    "future prompts go)")
        self.delete_button = QToolButton(text="Delete")
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setVisible(False)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Style"))
        row.addWidget(self.combo, 1)
        # The buttons go on a row of their own: one row would make the dock too wide.
        self.buttons_row = QHBoxLayout()
        self.buttons_row.setContentsMargins(0, 0, 0, 0)
        self.buttons_row.addStretch(1)
        self.buttons_row.addWidget(self.save_button)
        self.buttons_row.addWidget(self.delete_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addLayout(self.buttons_row)
        layout.addWidget(self.message)
        self.combo.currentIndexChanged.connect(self._on_combo_changed)
        self.save_button.clicked.connect(self._on_save_clicked)
        self.delete_button.clicked.connect(self._on_delete_clicked)
        self.refresh()

    # -- state ---------------------------------------------------------------------------
    def refresh(self, select: str | None = None) -> None:
        current = select if select is not None else self.current_name()
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItem(NO_STYLE, "")
        for style in self.library.styles():
            self.combo.addItem(style.name, style.name)
            tip = style.prompt + (f"\nNegative: {style.negative_prompt}"
                                  if style.negative_prompt else "")
            self.combo.setItemData(self.combo.count() - 1, tip, 3)  # Qt.ToolTipRole
        index = self.combo.findData(current) if current else 0
        self.combo.setCurrentIndex(max(0, index))
        self.combo.blockSignals(False)
        self._update_buttons()
        if self.library.problem:
            self._show(self.library.problem)

    def current_name(self) -> str:
        return str(self.combo.currentData() or "")

    def current_style(self) -> Style | None:
        name = self.current_name()
        return self.library.get(name) if name else None

    def set_current(self, name: str) -> None:
        self.combo.setCurrentIndex(max(0, self.combo.findData(name)))

    def apply_to(self, prompt: str, negative: str) -> tuple[str, str]:
        """The prompts with the chosen style applied (unchanged with no style)."""
        style = self.current_style()
        return style.apply(prompt, negative) if style else (prompt, negative)

    # -- actions -------------------------------------------------------------------------
    def save_style(self, name: str, prompt: str, negative: str) -> bool:
        """Save a user style and select it; a problem is shown, not raised."""
        try:
            self.library.save(Style(name.strip(), prompt, negative))
        except StudioError as err:
            self._show(str(err))
            return False
        self.refresh(select=name.strip())
        self._show(f"Saved the style {name.strip()!r}.")
        self.style_saved.emit(name.strip())
        self.style_changed.emit(name.strip())
        return True

    def delete_current(self) -> bool:
        name = self.current_name()
        if not name:
            return False
        try:
            self.library.delete(name)
        except StudioError as err:
            self._show(str(err))
            return False
        self.refresh(select="")
        self.style_changed.emit("")
        return True

    def _show(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))
        self.message_shown.emit(text)

    def _update_buttons(self) -> None:
        style = self.current_style()
        self.delete_button.setEnabled(style is not None and not style.builtin)

    def _on_combo_changed(self, _index: int) -> None:
        self._update_buttons()
        self.style_changed.emit(self.current_name())

    def _on_save_clicked(self) -> None:
        prompt, negative = self.prompt_source()
        if "{prompt}" not in prompt:
            prompt = "{prompt}, " + prompt if prompt.strip() else "{prompt}"
        name, ok = QInputDialog.getText(self, "Save style", "Style name:")
        if ok and name.strip():
            self.save_style(name, prompt, negative)

    def _on_delete_clicked(self) -> None:
        self.delete_current()
