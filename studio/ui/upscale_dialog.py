"""``UpscaleDialog``: Image > Upscale… (factor, model or Lanczos, optional tiled refine)."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLineEdit,
    QWidget,
)

LANCZOS = "lanczos"


class UpscaleDialog(QDialog):
    """Asks how to upscale; ``values()`` are the keyword arguments of the engine's settings."""

    def __init__(self, upscalers: list[str], size: tuple[int, int],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Upscale")
        self._size = size
        self.scale = QDoubleSpinBox(minimum=1.0, maximum=8.0, singleStep=0.5, value=2.0)
        self.model = QComboBox()
        for name in upscalers:
            self.model.addItem(name, name)
        self.model.addItem("Lanczos (no model)", LANCZOS)
        self.refine = QCheckBox("Refine with the diffusion model, in overlapping tiles")
        self.strength = QDoubleSpinBox(minimum=0.05, maximum=1.0, singleStep=0.05, value=0.3)
        self.prompt = QLineEdit()
        self.prompt.setPlaceholderText("what the image shows (for the refine)")
        self.target = QWidget()
        form = QFormLayout(self)
        form.addRow("Factor", self.scale)
        form.addRow("Upscaler", self.model)
        form.addRow(self.refine)
        form.addRow("Refine strength", self.strength)
        form.addRow("Refine prompt", self.prompt)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.refine.toggled.connect(self._on_refine_toggled)
        self._on_refine_toggled(False)

    def _on_refine_toggled(self, on: bool) -> None:
        self.strength.setEnabled(on)
        self.prompt.setEnabled(on)

    def output_size(self) -> tuple[int, int]:
        w, h = self._size
        return round(w * self.scale.value()), round(h * self.scale.value())

    def values(self) -> dict[str, Any]:
        return {"scale": float(self.scale.value()), "model": str(self.model.currentData()),
                "refine": self.refine.isChecked(), "strength": float(self.strength.value()),
                "prompt": self.prompt.text()}
