"""Small shared widgets: section labels, labelled sliders, the error banner."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QSize, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QToolButton,
    QWidget,
)

from studio.ui.theme import icon, set_icon
from studio.ui.value_widgets import LabeledDoubleSlider, LabeledSlider


def section_label(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("section_label")
    return label


def int_slider(name: str, lo: int, hi: int, value: int) -> LabeledSlider:
    slider = LabeledSlider()
    slider.setObjectName(name)
    slider.setRange(lo, hi)
    slider.setValue(value)
    return slider


def float_slider(name: str, lo: float, hi: float, value: float,
                 decimals: int = 2) -> LabeledDoubleSlider:
    slider = LabeledDoubleSlider()
    slider.setObjectName(name)
    slider.setRange(lo, hi)
    slider.setDecimals(decimals)
    slider.setValue(value)
    return slider


def tool_button(name: str, icon_name: str, tip: str, checkable: bool = False) -> QToolButton:
    button = QToolButton()
    button.setObjectName(name)
    set_icon(button, icon_name)
    button.setToolTip(tip)
    button.setAccessibleName(tip)
    button.setCheckable(checkable)
    button.setAutoRaise(True)
    return button


class MessageBanner(QFrame):
    """A non-modal message strip above the canvas: errors the user can act on."""

    dismissed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner_frame")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        self._icon = QLabel()
        self.label = QLabel()
        self.label.setObjectName("banner_label")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QPushButton("Dismiss")
        close.setObjectName("banner_dismiss_button")
        close.clicked.connect(self.hide_message)
        # An answer the message offers ("Generate anyway"): shown only with such a message.
        self.action_button = QPushButton(objectName="banner_action_button")
        self.action_button.clicked.connect(self._on_action_button_clicked)
        self.action_button.hide()
        self._action: Callable[[], None] | None = None
        layout.addWidget(self._icon)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.action_button)
        layout.addWidget(close)
        self._timer = QTimer(self, singleShot=True)
        self._timer.timeout.connect(self.hide_message)
        self.hide()

    def show_message(self, text: str, kind: str = "error", timeout_ms: int = 0,
                     action: tuple[str, Callable[[], None]] | None = None) -> None:
        """Show ``text``; ``action`` (a button text and what it does) adds an answer."""
        self._action = action[1] if action is not None else None
        self.action_button.setText(action[0] if action is not None else "")
        self.action_button.setVisible(action is not None)
        self.setProperty("kind", kind)
        self.style().unpolish(self)
        self.style().polish(self)
        self._icon.setPixmap(icon("warning" if kind == "error" else "info").pixmap(18, 18))
        self.label.setText(text)
        self.show()
        if timeout_ms:
            self._timer.start(timeout_ms)

    def _on_action_button_clicked(self) -> None:
        action = self._action
        self.hide_message()
        if action is not None:
            action()

    def hide_message(self) -> None:
        self._action = None
        self._timer.stop()
        self.hide()
        self.dismissed.emit()

    @property
    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""


class VerticalScrollArea(QScrollArea):
    """A scroll area for a dock's form: scrolls up and down only, and is never narrower
    than what its form needs (so a narrow dock cannot clip buttons and values)."""

    def __init__(self, body: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWidget(body)
        body.installEventFilter(self)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        hint = super().minimumSizeHint()
        body = self.widget()
        if body is None:
            return hint
        width = body.minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width()
        return QSize(max(hint.width(), width), hint.height())

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt API)
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()  # the form changed: our minimum width follows it
        return super().eventFilter(watched, event)
