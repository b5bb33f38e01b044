"""Value widgets of the start-up path: labelled sliders, a 64-bit seed box, a throttle.

They stand in for superqt's ``QLabeledSlider``, ``QLabeledDoubleSlider``,
``QLargeIntSpinBox`` and ``qthrottled`` on the widgets every window builds: importing superqt
pulls in qtpy and with it QtOpenGL and more, about a third of the start-up time measured by
``studio bench`` (section ``startup``). superqt stays for what runs later (worker threads).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QSlider,
    QSpinBox,
    QWidget,
)


def _number(box: QAbstractSpinBox, text: str) -> float | None:
    """The number typed in ``box`` (prefix, suffix and spaces left out), or ``None``."""
    core = text
    prefix, suffix = box.prefix(), box.suffix()  # type: ignore[attr-defined]
    if prefix and core.startswith(prefix):
        core = core[len(prefix):]
    if suffix and core.endswith(suffix):
        core = core[:-len(suffix)]
    core = core.strip().replace(box.locale().groupSeparator(), "")
    try:
        return float(core.replace(box.locale().decimalPoint(), "."))
    except ValueError:
        return None


def _clamp_note(box: QAbstractSpinBox, typed: float, value: float) -> str:
    lo, hi = box.minimum(), box.maximum()  # type: ignore[attr-defined]
    name = box.accessibleName() or box.toolTip().split("(")[0].strip() or "This field"
    bound = f"at least {lo:g}" if typed < lo else f"at most {hi:g}"
    return f"{name} is {bound}: {typed:g} was set to {value:g}."


class _Clamping:
    """What a typed number past the range does: it is accepted while typed (``"300"``
    is not cut to ``"30"``), then clamped when the field is left, and ``clamped`` says so
    (also as a tooltip at the field)."""

    def _validate(self, base: Any, text: str, pos: int) -> object:
        result = base.validate(self, text, pos)
        state = result[0] if isinstance(result, tuple) else result
        if state == QValidator.State.Invalid and _number(self, text) is not None:  # type: ignore[arg-type]
            return (QValidator.State.Intermediate, text, pos)
        return result

    def _fixup(self, base: Any, text: str) -> str:
        typed = _number(self, text)  # type: ignore[arg-type]
        if typed is None:
            return base.fixup(self, text)
        lo, hi = self.minimum(), self.maximum()  # type: ignore[attr-defined]
        value = min(max(typed, lo), hi)
        if value != typed:
            note = _clamp_note(self, typed, value)  # type: ignore[arg-type]
            self.clamped.emit(note)  # type: ignore[attr-defined]
            from PySide6.QtWidgets import QToolTip

            QToolTip.showText(self.mapToGlobal(self.rect().bottomLeft()), note,  # type: ignore
                              self)
        return self.textFromValue(value)  # type: ignore[attr-defined]


class ClampingSpinBox(_Clamping, QSpinBox):
    """A ``QSpinBox`` that clamps a number typed past its range and says so."""

    clamped = Signal(str)

    def validate(self, text: str, pos: int) -> object:
        return self._validate(QSpinBox, text, pos)

    def fixup(self, text: str) -> str:
        return self._fixup(QSpinBox, text)

    def textFromValue(self, value: float) -> str:  # noqa: N802 (Qt API)
        return super().textFromValue(int(round(value)))


class ClampingDoubleSpinBox(_Clamping, QDoubleSpinBox):
    """A ``QDoubleSpinBox`` that clamps a number typed past its range and says so."""

    clamped = Signal(str)

    def validate(self, text: str, pos: int) -> object:
        return self._validate(QDoubleSpinBox, text, pos)

    def fixup(self, text: str) -> str:
        return self._fixup(QDoubleSpinBox, text)


class _LabeledSliderBase(QWidget):
    """A horizontal ``QSlider`` with an editable spin box beside it, kept in step.

    ``valueChanged`` fires once per change, from the slider or the box; ``sliderPressed``
    and ``sliderReleased`` pass the slider's own through (a drag is press ... release).
    """

    sliderPressed = Signal()
    sliderReleased = Signal()

    def __init__(self, box: QSpinBox | QDoubleSpinBox, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.box = box
        self.box.setKeyboardTracking(False)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.box)
        self.slider.valueChanged.connect(self._on_slider)
        self.box.valueChanged.connect(self._on_box)
        self.slider.sliderPressed.connect(self.sliderPressed)
        self.slider.sliderReleased.connect(self.sliderReleased)

    # the scale between the slider's ints and the value (1 for the int slider)
    def _to_slider(self, value: float) -> int:
        return int(round(value))

    def _from_slider(self, position: int) -> float:
        return position

    def _emit(self, value: Any) -> None:
        raise NotImplementedError

    def _on_slider(self, position: int) -> None:
        value = self._from_slider(position)
        self.box.blockSignals(True)
        self.box.setValue(value)
        self.box.blockSignals(False)
        self._emit(self.box.value())

    def _on_box(self, value: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(self._to_slider(value))
        self.slider.blockSignals(False)
        self._emit(value)

    def setToolTip(self, text: str) -> None:  # noqa: N802 (Qt API)
        super().setToolTip(text)
        self.slider.setToolTip(text)
        self.box.setToolTip(text)

    def setAccessibleName(self, name: str) -> None:  # noqa: N802 (Qt API)
        super().setAccessibleName(name)
        self.slider.setAccessibleName(name)
        self.box.setAccessibleName(name)

    def value(self) -> Any:
        return self.box.value()

    def setValue(self, value: float) -> None:  # noqa: N802 (Qt API)
        self.box.setValue(value)  # -> _on_box moves the slider and emits when it changed

    def minimum(self) -> Any:
        return self.box.minimum()

    def maximum(self) -> Any:
        return self.box.maximum()


class LabeledSlider(_LabeledSliderBase):
    """Integer slider with a spin box (``valueChanged(int)``)."""

    valueChanged = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(ClampingSpinBox(), parent)

    def _emit(self, value: Any) -> None:
        self.valueChanged.emit(int(value))

    def setRange(self, lo: int, hi: int) -> None:  # noqa: N802 (Qt API)
        self.slider.setRange(lo, hi)
        self.box.setRange(lo, hi)

    def setSingleStep(self, step: int) -> None:  # noqa: N802 (Qt API)
        self.slider.setSingleStep(step)
        self.box.setSingleStep(step)


class LabeledDoubleSlider(_LabeledSliderBase):
    """Float slider with a spin box (``valueChanged(float)``); ``setDecimals`` sets the
    precision of both (the slider moves in steps of ``10 ** -decimals``)."""

    valueChanged = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(ClampingDoubleSpinBox(), parent)
        self._scale = 100

    def _to_slider(self, value: float) -> int:
        return int(round(value * self._scale))

    def _from_slider(self, position: int) -> float:
        return position / self._scale

    def _emit(self, value: Any) -> None:
        self.valueChanged.emit(float(value))

    def setRange(self, lo: float, hi: float) -> None:  # noqa: N802 (Qt API)
        self.box.setRange(lo, hi)
        self.slider.setRange(self._to_slider(lo), self._to_slider(hi))

    def setDecimals(self, decimals: int) -> None:  # noqa: N802 (Qt API)
        lo, hi, value = self.box.minimum(), self.box.maximum(), self.box.value()
        self.box.setDecimals(decimals)
        self._scale = 10 ** decimals
        self.slider.blockSignals(True)
        self.slider.setRange(self._to_slider(lo), self._to_slider(hi))
        self.slider.setValue(self._to_slider(value))
        self.slider.blockSignals(False)

    def setSingleStep(self, step: float) -> None:  # noqa: N802 (Qt API)
        self.box.setSingleStep(step)
        self.slider.setSingleStep(max(1, self._to_slider(step)))
        self.slider.setPageStep(max(1, self._to_slider(step * 10)))


class SeedSpinBox(QAbstractSpinBox):
    """A spin box of Python ints (seeds go past ``QSpinBox``'s 2**31 - 1)."""

    valueChanged = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._min, self._max, self._value = 0, 2**31 - 1, 0
        self.lineEdit().setText("0")
        self.editingFinished.connect(self._commit)

    def _parse(self) -> int | None:
        text = self.lineEdit().text().strip()
        return int(text) if text.isdigit() and self._min <= int(text) <= self._max else None

    def _commit(self) -> None:
        parsed = self._parse()
        self.setValue(self._value if parsed is None else parsed)

    def setRange(self, lo: int, hi: int) -> None:  # noqa: N802 (Qt API)
        self._min, self._max = int(lo), int(hi)
        self.setValue(self._value)

    def minimum(self) -> int:
        return self._min

    def maximum(self) -> int:
        return self._max

    def value(self) -> int:
        parsed = self._parse()  # what is typed counts, as in QSpinBox
        return self._value if parsed is None else parsed

    def setValue(self, value: int) -> None:  # noqa: N802 (Qt API)
        value = min(max(int(value), self._min), self._max)
        if self.lineEdit().text() != str(value):
            self.lineEdit().setText(str(value))
        if value != self._value:
            self._value = value
            self.valueChanged.emit(value)

    def stepBy(self, steps: int) -> None:  # noqa: N802 (Qt API)
        self.setValue(self.value() + steps)

    def stepEnabled(self) -> QAbstractSpinBox.StepEnabledFlag:  # noqa: N802 (Qt API)
        flags = QAbstractSpinBox.StepEnabledFlag.StepNone
        if self.value() > self._min:
            flags |= QAbstractSpinBox.StepEnabledFlag.StepDownEnabled
        if self.value() < self._max:
            flags |= QAbstractSpinBox.StepEnabledFlag.StepUpEnabled
        return flags

    def validate(self, text: str, pos: int) -> object:
        if text == "":
            return QValidator.State.Intermediate
        if not text.isdigit():
            return QValidator.State.Invalid
        return (QValidator.State.Acceptable if self._min <= int(text) <= self._max
                else QValidator.State.Intermediate if int(text) < self._min
                else QValidator.State.Invalid)


class Throttle(QObject):
    """Calls ``fn`` at most once per ``timeout_ms``: the first call at once, the last of a
    burst when the window ends (leading and trailing, like superqt's ``qthrottled``)."""

    def __init__(self, fn: Callable[[], Any], timeout_ms: int,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._fn = fn
        self._pending = False
        self._timer = QTimer(self, singleShot=True, interval=timeout_ms)
        self._timer.timeout.connect(self._on_timeout)

    def __call__(self) -> None:
        if self._timer.isActive():
            self._pending = True
            return
        self._fn()
        self._timer.start()

    def _on_timeout(self) -> None:
        if self._pending:
            self._pending = False
            self._fn()
            self._timer.start()

    def cancel(self) -> None:
        """Drop a pending trailing call."""
        self._pending = False
        self._timer.stop()
