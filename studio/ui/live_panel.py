"""``LiveView``: live mode's side view in the prompt panel: the live picture, its strength,
steps and seed lock, and Keep (the picture as a new layer).

As in Krita's AI Diffusion live mode, the picture is shown beside the canvas, not over it:
the artist keeps seeing their own strokes, and keeps the picture when it is right.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QImage, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from studio.session.live import DEFAULT_STEPS, DEFAULT_STRENGTH
from studio.ui.canvas_image import to_qimage
from studio.ui.theme import color, set_icon
from studio.ui.widgets import float_slider, int_slider, section_label


class LivePicture(QWidget):
    """The latest live picture, fitted into the widget (its aspect ratio kept)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("live_picture")
        self.setAccessibleName("Live picture")
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.image: QImage | None = None
        self.array: np.ndarray | None = None
        self.placeholder = "Paint on the canvas: the model repaints it here."

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        return QSize(260, 260)

    def set_image(self, array: np.ndarray) -> None:
        self.array = array
        self.image = to_qimage(array)
        self.update()

    def clear(self) -> None:
        self.image = self.array = None
        self.update()

    def picture_rect(self) -> QRectF:
        """Where the picture is drawn: fitted and centred."""
        if self.image is None:
            return QRectF()
        w, h = self.image.width(), self.image.height()
        scale = min(self.width() / max(1, w), self.height() / max(1, h))
        dw, dh = w * scale, h * scale
        return QRectF((self.width() - dw) / 2, (self.height() - dh) / 2, dw, dh)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt API)
        p = QPainter(self)
        p.fillRect(self.rect(), color("canvas"))
        if self.image is None:
            p.setPen(color("muted"))
            p.drawText(self.rect().adjusted(12, 12, -12, -12),
                       Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                       self.placeholder)
        else:
            small = self.image.width() * 4 <= self.width()  # a 64 px picture: crisp pixels
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, not small)
            p.drawImage(self.picture_rect(), self.image)
        p.end()


class LiveView(QWidget):
    """Live mode's controls and picture (shown while live mode is on)."""

    keep_requested = Signal()
    settings_changed = Signal()  # strength, steps or seed lock

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("live_view")
        self.status_label = QLabel("", objectName="live_status_label")
        self.status_label.setWordWrap(True)
        self.picture = LivePicture()
        self.strength_slider = float_slider("live_strength_slider", 0.1, 1.0,
                                            DEFAULT_STRENGTH, 2)
        self.strength_slider.setToolTip("How much each update repaints your canvas: low keeps "
                                        "your strokes, high follows the prompt")
        self.steps_slider = int_slider("live_steps_slider", 1, 12, DEFAULT_STEPS)
        self.steps_slider.setToolTip("Denoising steps per update: fewer follow the brush "
                                     "faster, more give a finer picture")
        self.seed_lock_check = QCheckBox("Same seed while painting",
                                         objectName="live_seed_lock_check")
        self.seed_lock_check.setChecked(True)
        self.seed_lock_check.setToolTip("Every update uses the prompt panel's seed, so the "
                                        "picture stays put while you paint; unticked, each "
                                        "update draws a new seed")
        self.keep_button = QPushButton("Keep as layer", objectName="live_keep_button")
        set_icon(self.keep_button, "place")
        self.keep_button.setToolTip("Add the live picture as a new layer, with its settings "
                                    "in History (undoable)")
        self.keep_button.setEnabled(False)
        self.keep_button.clicked.connect(self.keep_requested)
        for signal in (self.strength_slider.valueChanged, self.steps_slider.valueChanged,
                       self.seed_lock_check.toggled):
            signal.connect(lambda *_a: self.settings_changed.emit())

        head = QHBoxLayout()
        head.addWidget(section_label("Live"))
        head.addWidget(self.status_label, 1)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Strength", self.strength_slider)
        form.addRow("Steps", self.steps_slider)
        form.addRow("", self.seed_lock_check)
        col = QVBoxLayout(self)
        col.setContentsMargins(10, 4, 10, 4)
        col.addLayout(head)
        col.addWidget(self.picture, 1)
        col.addLayout(form)
        col.addWidget(self.keep_button)

    # -- values --------------------------------------------------------------------------
    @property
    def strength(self) -> float:
        return round(float(self.strength_slider.value()), 2)

    @property
    def steps(self) -> int:
        return int(self.steps_slider.value())

    @property
    def seed_locked(self) -> bool:
        return self.seed_lock_check.isChecked()

    # -- showing -------------------------------------------------------------------------
    def show_picture(self, image: np.ndarray, text: str) -> None:
        self.picture.set_image(image)
        self.keep_button.setEnabled(True)
        self.status_label.setText(text)

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)

    def clear(self) -> None:
        """Live mode is off: no picture to keep."""
        self.picture.clear()
        self.keep_button.setEnabled(False)
        self.status_label.setText("")
