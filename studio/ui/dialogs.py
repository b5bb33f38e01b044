"""Small dialogs and texts: resize canvas, adding models, about."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QSpinBox,
    QWidget,
)

from studio.core.document.edits import ANCHORS

NO_MODEL_TEXT = (
    "<h3>No diffusion model found</h3>"
    "<p>Latent Studio needs a Stable Diffusion model to generate images. To add one:</p>"
    "<ul>"
    "<li>put a <b>diffusers folder</b> (with <i>model_index.json</i>) or a single "
    "<b>.safetensors</b> checkpoint into your models folder, or</li>"
    "<li>download one into the Hugging Face cache, e.g. "
    "<code>huggingface-cli download stabilityai/sd-turbo</code>,</li>"
    "</ul>"
    "<p>then choose <b>Models ▸ Reload Models</b>. Painting, masks and layers work "
    "without a model.</p>"
)

ABOUT_TEXT = (
    "<h3>Latent Studio</h3><p>A desktop studio for generating, editing and exploring images "
    "with local generative models.</p><p>Everything runs on your machine.</p>"
)


class ResizeCanvasDialog(QDialog):
    """Ask for a new canvas size and where the current content stays."""

    def __init__(self, width: int, height: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("resize_canvas_dialog")
        self.setWindowTitle("Resize Canvas")
        self.width_spin = QSpinBox(objectName="resize_width_spin")
        self.height_spin = QSpinBox(objectName="resize_height_spin")
        for spin, value in ((self.width_spin, width), (self.height_spin, height)):
            spin.setRange(8, 8192)
            spin.setSingleStep(64)
            spin.setValue(value)
            spin.setSuffix(" px")
        self.anchor_combo = QComboBox(objectName="resize_anchor_combo")
        self.anchor_combo.addItems(list(ANCHORS))
        self.anchor_combo.setCurrentText("center")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Width", self.width_spin)
        form.addRow("Height", self.height_spin)
        form.addRow("Keep content at", self.anchor_combo)
        form.addRow(buttons)

    def values(self) -> tuple[int, int, str]:
        return self.width_spin.value(), self.height_spin.value(), self.anchor_combo.currentText()
