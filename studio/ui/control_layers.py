"""Control layers in the window: any layer marked as a control of a kind (scribble, line
art, edges, depth, depth from a photo, tile, pose, reference image) with a strength and a
range of the steps.

``ControlSection`` is the layers panel's "Control" box for the active layer; the marks are
kept per document (``marks_for``) and ``request_controls`` turns the visible marked layers
into the request's ``ControlLayer`` values, cut to the generation rect and scaled to the
request's size. "Show map" adds the preprocessed map (what the control model will read) as
a new layer, to check it before generating. A kind the backend cannot run now (depth from a
photo without a depth-estimation model) is greyed out with the reason from its features.

A reference image layer (IP-Adapter) goes whole, wherever it lies (its look is taken, not
its place; at most ``REFERENCE_SIDE`` pixels a side); it is offered on the local engine
where an IP-Adapter was found (``reference_off_reason``), else greyed out with the reason.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.control import (
    CONTROL_KINDS,
    DEPTH_ESTIMATE_OFF,
    KIND_LABELS,
    REFERENCE_KINDS,
    REFERENCE_LOCAL_ONLY,
    ControlLayer,
    control_map,
    is_empty,
    reference_off_reason,
)
from studio.core.document.layers import Document, Layer, Rect, intersect
from studio.core.document.pixels import Pixels
from studio.core.document.undo import UndoStack
from studio.ui.value_widgets import ClampingDoubleSpinBox
from studio.ui.widgets import float_slider


@dataclass(frozen=True)
class ControlMark:
    """How a layer acts as a control: its kind, strength, step range and model ("": auto)."""

    kind: str
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    model: str = ""


REFERENCE_SIDE = 1024  # a reference image's longest side in the request (CLIP reads 224)

_MARKS: weakref.WeakKeyDictionary[Document, dict[str, ControlMark]] = \
    weakref.WeakKeyDictionary()


def marks_for(doc: Document) -> dict[str, ControlMark]:
    """The control marks of ``doc``'s layers, by layer id (edited in place)."""
    return _MARKS.setdefault(doc, {})


def _cut(doc: Document, layer: Layer, rect: Rect) -> np.ndarray | None:
    """The layer's RGBA pixels over ``rect`` on a transparent canvas (None: outside)."""
    rx, ry, rw, rh = rect
    part = intersect(rect, layer.rect)
    if part is None:
        return None
    px, py, pw, ph = part
    canvas = np.zeros((rh, rw, 4), np.uint8)
    canvas[py - ry:py - ry + ph, px - rx:px - rx + pw] = \
        layer.pixels[py - layer.y:py - layer.y + ph, px - layer.x:px - layer.x + pw]
    return canvas


@contextmanager
def control_layers_hidden(doc: Document) -> Iterator[None]:
    """The marked layers counted as hidden for the call (planning the generation: a sketch
    that guides the image is not part of the image to refine or inpaint)."""
    marks = marks_for(doc)
    hidden = [layer for layer in doc.layers if layer.id in marks and layer.visible]
    for layer in hidden:
        layer.visible = False
    try:
        yield
    finally:
        for layer in hidden:
            layer.visible = True


def request_controls(doc: Document, rect: Rect | None = None,
                     size: tuple[int, int] | None = None) -> tuple[ControlLayer, ...]:
    """The visible marked layers as request controls, bottom to top: each cut to ``rect``
    (default: the generation rect) and scaled to ``size`` (default: the rect's size)."""
    from PIL import Image

    rect = rect if rect is not None else doc.generation_rect
    marks = marks_for(doc)
    out = []
    for layer in doc.layers:
        mark = marks.get(layer.id)
        if mark is None or not layer.visible:
            continue
        if mark.kind in REFERENCE_KINDS:  # its look, whole: read by the image encoder
            whole = layer.pixels
            if max(whole.shape[:2]) > REFERENCE_SIDE:
                scale = REFERENCE_SIDE / max(whole.shape[:2])
                whole = np.asarray(Image.fromarray(np.ascontiguousarray(whole)).resize(
                    (max(1, round(whole.shape[1] * scale)), max(1, round(whole.shape[0]
                                                                     * scale))),
                    Image.Resampling.LANCZOS))
            out.append(ControlLayer(mark.kind, Pixels.from_array(np.ascontiguousarray(whole)),
                                    mark.strength, mark.start, mark.end, mark.model))
            continue
        image = _cut(doc, layer, rect)
        if image is None:
            continue
        if size is not None and size != (rect[2], rect[3]):
            image = np.asarray(Image.fromarray(image, "RGBA").resize(
                size, Image.Resampling.LANCZOS))
        out.append(ControlLayer(mark.kind, Pixels.from_array(np.ascontiguousarray(image)),
                                mark.strength, mark.start, mark.end, mark.model))
    return tuple(out)


class StepRange(QWidget):
    """The share of the steps a control acts on: two fields, start and end (0..1), that
    keep start <= end. (superqt's range slider would load superqt at window start, which
    costs a third of start-up: see studio/ui/value_widgets.py.)"""

    valueChanged = Signal(tuple)

    def __init__(self, objectName: str = "") -> None:  # noqa: N803 (Qt's keyword)
        super().__init__(objectName=objectName)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.start_box = ClampingDoubleSpinBox(objectName=f"{objectName}_start")
        self.end_box = ClampingDoubleSpinBox(objectName=f"{objectName}_end")
        for box, value, label in ((self.start_box, 0.0, "from"), (self.end_box, 1.0, "to")):
            box.setRange(0.0, 1.0)
            box.setDecimals(2)
            box.setSingleStep(0.05)
            box.setValue(value)
            box.valueChanged.connect(self._changed)
            row.addWidget(QLabel(label))
            row.addWidget(box, 1)

    def value(self) -> tuple[float, float]:
        return (self.start_box.value(), self.end_box.value())

    def setValue(self, value: tuple[float, float]) -> None:  # noqa: N802 (Qt's name)
        start, end = sorted((float(value[0]), float(value[1])))
        for box, v in ((self.start_box, start), (self.end_box, end)):
            box.blockSignals(True)
            box.setValue(v)
            box.blockSignals(False)
        self.valueChanged.emit(self.value())

    def setToolTip(self, text: str) -> None:  # noqa: N802 (Qt's name)
        super().setToolTip(text)
        self.start_box.setToolTip(text)
        self.end_box.setToolTip(text)

    def _changed(self) -> None:
        start, end = self.value()
        if start > end:  # keep the range ordered: the other end follows
            other = self.end_box if self.sender() is self.start_box else self.start_box
            other.blockSignals(True)
            other.setValue(start if other is self.end_box else end)
            other.blockSignals(False)
        self.valueChanged.emit(self.value())


class _KindCombo(QComboBox):
    """The kind list; ``before_popup`` runs as it opens (the backend's kinds may change)."""

    def __init__(self, before_popup, **kwargs: object) -> None:
        from PySide6.QtWidgets import QStyledItemDelegate

        super().__init__(**kwargs)
        self._before_popup = before_popup
        # An item view delegate draws each item's own colour (the menu-style one a styled
        # combo uses draws every item alike, the ones that cannot be picked too).
        self.setItemDelegate(QStyledItemDelegate(self))

    def showPopup(self) -> None:  # noqa: N802 (Qt's name)
        self._before_popup()
        super().showPopup()


def _look_off(item, off: bool) -> None:
    """Draw an item that cannot be picked in the muted text colour (the style sheet's popup
    draws disabled items like the others)."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QPalette
    from PySide6.QtWidgets import QApplication

    muted = QApplication.palette().color(QPalette.ColorRole.PlaceholderText)
    item.setData(muted if off else None, Qt.ItemDataRole.ForegroundRole)


def _backend_kinds_off(widget: QWidget) -> dict[str, str]:
    """The control kinds the window's backend says are off (kind -> reason), from its
    features' ``why_not`` (no backend yet: none)."""
    connection = getattr(widget.window(), "connection", None)
    try:
        why_not = dict(connection.features.why_not) if connection is not None else {}
    except Exception:  # a backend that cannot say: nothing is greyed out here
        return {}
    off = {kind: why_not[kind] for kind in CONTROL_KINDS if kind in why_not}
    if connection is not None:  # reference images: the local engine with an IP-Adapter
        try:
            why = reference_off_reason(connection.features)
        except Exception:
            why = REFERENCE_LOCAL_ONLY
        if why:
            off["reference"] = why
    return off


def _chosen_model(widget: QWidget) -> tuple[Any, Any]:
    """(the window's backend's ``engine.controls``, the diffusion model chosen in its prompt
    panel); either may be ``None``."""
    window = widget.window()
    engine = getattr(getattr(getattr(window, "connection", None), "services", None),
                     "engine", None)
    panel = getattr(window, "prompt_panel", None)
    model = getattr(panel, "_models", {}).get(getattr(panel, "model_id", "")) \
        if panel is not None else None
    return getattr(engine, "controls", None), model


def fitting_control_models(widget: QWidget) -> list:
    """The control models the window's backend offers for the diffusion model chosen in its
    prompt panel (``controls.fitting(model)``: the backend knows which fit; none where it
    has no list or no model is chosen)."""
    controls, model = _chosen_model(widget)
    fitting = getattr(controls, "fitting", None)
    if fitting is None or model is None or not getattr(model, "family", ""):
        return []
    try:
        return list(fitting(model))
    except Exception:  # a folder or server that cannot be read: nothing to offer
        return []


def fitting_references(widget: QWidget) -> list:
    """The IP-Adapters (with their image encoder) the window's backend offers for the
    diffusion model chosen in its prompt panel (``controls.references.fitting``)."""
    controls, model = _chosen_model(widget)
    fitting = getattr(getattr(controls, "references", None), "fitting", None)
    if fitting is None:
        return []
    try:
        return list(fitting(model))
    except Exception:  # a folder that cannot be read: nothing to offer
        return []


class ControlSection(QGroupBox):
    """The "Control" box of the layers panel, for the active layer."""

    def __init__(self, doc: Document, undo: UndoStack, parent: QWidget | None = None) -> None:
        super().__init__("Control", parent)
        self.setObjectName("layer_control_box")
        self.setToolTip("Use this layer as a control the generation follows (ControlNet or "
                        "T2I-Adapter): strokes, line art, edges, a depth map, a tile or a "
                        "pose; or as a reference image whose look the generation takes "
                        "(IP-Adapter). Recorded in each image's settings.")
        self.doc, self.undo = doc, undo
        self._layer: Layer | None = None
        self._updating = False
        self.kind_combo = _KindCombo(self.refresh_kinds, objectName="layer_control_kind")
        self.kind_combo.addItem("Not a control layer", "")
        for kind in CONTROL_KINDS:
            self.kind_combo.addItem(KIND_LABELS[kind], kind)
        self.kind_combo.currentIndexChanged.connect(self._on_control_changed)
        self.strength_slider = float_slider("layer_control_strength", 0.0, 2.0, 1.0, 2)
        self.strength_slider.setToolTip("Control strength (0: no effect, 1: as trained)")
        self.strength_slider.valueChanged.connect(self._on_control_changed)
        self.range_slider = StepRange(objectName="layer_control_range")
        self.range_slider.setToolTip("The share of the steps the control acts on (start, end)")
        self.range_slider.valueChanged.connect(self._on_control_changed)
        self.model_edit = QLineEdit(objectName="layer_control_model")
        self.model_edit.setPlaceholderText("Control model: auto (fits the model's family)")
        self.model_edit.setClearButtonEnabled(True)
        self.model_edit.editingFinished.connect(self._on_control_changed)
        # The control models found that fit the chosen diffusion model's family (SD 1.x,
        # SDXL and its unions, SD 3.x, Flux ...): picking one names it in the field.
        self.model_pick = _KindCombo(self.refresh_models, objectName="layer_control_model_pick")
        self.model_pick.setToolTip("The ControlNets and T2I-Adapters in your model folders "
                                   "that fit the chosen model")
        self.model_pick.activated.connect(self._on_model_picked)
        self.show_map_button = QPushButton("Show map as layer",
                                           objectName="layer_control_show_map")
        self.show_map_button.setToolTip("Add what the control model will read (the "
                                        "preprocessed map) as a new layer")
        self.show_map_button.clicked.connect(self.show_map)
        self.note = QLabel(objectName="layer_control_note")
        self.note.setWordWrap(True)
        column = QVBoxLayout(self)
        column.setContentsMargins(6, 6, 6, 6)
        column.addWidget(self.kind_combo)
        for text, widget in (("Strength", self.strength_slider),
                             ("Steps", self.range_slider)):
            row = QHBoxLayout()
            row.addWidget(QLabel(text))
            row.addWidget(widget, 1)
            column.addLayout(row)
        column.addWidget(self.model_pick)
        column.addWidget(self.model_edit)
        column.addWidget(self.show_map_button)
        column.addWidget(self.note)
        self.set_layer(None)

    # -- model -> view -------------------------------------------------------------------
    def refresh_kinds(self) -> None:
        """Grey out the kinds the backend cannot run now, with the reason as the tooltip."""
        off = _backend_kinds_off(self)
        model = self.kind_combo.model()
        for kind in CONTROL_KINDS:
            item = model.item(self.kind_combo.findData(kind))
            item.setEnabled(kind not in off)
            item.setToolTip(off.get(kind, ""))
            _look_off(item, kind in off)

    def set_layer(self, layer: Layer | None) -> None:
        """Show the control settings of ``layer`` (the active one)."""
        self._layer = layer
        mark = marks_for(self.doc).get(layer.id) if layer is not None else None
        self.refresh_kinds()
        self._updating = True
        try:
            self.kind_combo.setCurrentIndex(max(0, self.kind_combo.findData(
                mark.kind if mark else "")))
            self.strength_slider.setValue(mark.strength if mark else 1.0)
            self.range_slider.setValue((mark.start, mark.end) if mark else (0.0, 1.0))
            if self.model_edit.text() != (mark.model if mark else ""):
                self.model_edit.setText(mark.model if mark else "")
        finally:
            self._updating = False
        self.kind_combo.setEnabled(layer is not None and not layer.is_group)
        for widget in (self.strength_slider, self.range_slider, self.model_edit,
                       self.show_map_button):
            widget.setEnabled(mark is not None)
        reference = mark is not None and mark.kind in REFERENCE_KINDS
        self.show_map_button.setEnabled(mark is not None and not reference)  # no map: as is
        self.model_edit.setPlaceholderText(
            "IP-Adapter: auto (fits the model's family)" if reference
            else "Control model: auto (fits the model's family)")
        self.model_pick.setToolTip(
            "The IP-Adapters (with their image encoder) in your model folders that fit the "
            "chosen model" if reference else "The ControlNets and T2I-Adapters in your "
            "model folders that fit the chosen model")
        self.model_pick.setEnabled(mark is not None)
        self.refresh_models()
        self._show_note(layer, mark)

    def _show_note(self, layer: Layer | None, mark: ControlMark | None) -> None:
        text = ""
        if layer is not None and mark is not None and is_empty(Pixels.from_array(
                np.ascontiguousarray(layer.pixels))):
            text = "This layer is empty: it is skipped until something is drawn on it."
        elif mark is not None and mark.kind in (off := _backend_kinds_off(self)):
            text = off[mark.kind]
        self.note.setText(text)
        self.note.setVisible(bool(text))

    def refresh_models(self) -> None:
        """Offer the control models that fit the chosen diffusion model ("Auto" first)."""
        mark = marks_for(self.doc).get(self._layer.id) if self._layer is not None else None
        current = mark.model if mark is not None else ""
        self.model_pick.blockSignals(True)
        try:
            self.model_pick.clear()
            self.model_pick.addItem("Auto: the one that fits", "")
            reference = mark is not None and mark.kind in REFERENCE_KINDS
            for info in (fitting_references(self) if reference
                         else fitting_control_models(self)):
                self.model_pick.addItem(info.label, info.name)
                self.model_pick.setItemData(self.model_pick.count() - 1, info.path,
                                            Qt.ItemDataRole.ToolTipRole)
            index = self.model_pick.findData(current)
            if index < 0 and current:  # a model named by hand: shown as it is
                self.model_pick.addItem(current, current)
                index = self.model_pick.count() - 1
            self.model_pick.setCurrentIndex(max(0, index))
        finally:
            self.model_pick.blockSignals(False)

    def _on_model_picked(self, index: int) -> None:
        self.model_edit.setText(str(self.model_pick.itemData(index) or ""))
        self._on_control_changed()

    # -- view -> marks -------------------------------------------------------------------
    def _on_control_changed(self, *_args: object) -> None:
        if self._updating or self._layer is None:
            return
        marks = marks_for(self.doc)
        kind = self.kind_combo.currentData()
        if not kind:
            marks.pop(self._layer.id, None)
        else:
            start, end = self.range_slider.value()
            if end <= start:  # a range of no steps would be refused: keep one step's share
                end = min(1.0, start + 0.05)
            marks[self._layer.id] = ControlMark(kind, float(self.strength_slider.value()),
                                                float(start), float(end),
                                                self.model_edit.text().strip())
        self.set_layer(self._layer)

    def show_map(self) -> None:
        """Add the active control layer's preprocessed map (over the generation rect) as a
        new layer, not itself a control."""
        layer = self._layer
        mark = marks_for(self.doc).get(layer.id) if layer is not None else None
        if layer is None or mark is None or mark.kind in REFERENCE_KINDS:  # no map: as is
            return
        rect = self.doc.generation_rect
        image = _cut(self.doc, layer, rect)
        if image is None:
            return
        depth = None
        name = f"{KIND_LABELS[mark.kind]} map of {layer.name}"
        if mark.kind == "depth-estimate":  # the backend's estimator (the local engine's)
            connection = getattr(self.window(), "connection", None)
            engine = getattr(getattr(connection, "services", None), "engine", None)
            depth = getattr(getattr(engine, "controls", None), "estimate_depth", None)
            jobs = getattr(connection, "jobs", None)
            if depth is not None and jobs is not None and jobs.runner is not None:
                # A model run (seconds, and its load the first time): on the engine thread
                # that owns the model, never on the window's.
                self._show_map_as_job(jobs, mark.kind, image, rect, name, depth)
                return
        try:
            arr, _note = control_map(mark.kind, image, rect[2], rect[3], depth=depth)
        except Exception as err:  # no estimator, or it failed to load: say why, add nothing
            self.note.setText(str(err) or DEPTH_ESTIMATE_OFF)
            self.note.setVisible(True)
            return
        self._add_map(arr, name, rect)

    def _add_map(self, arr: np.ndarray, name: str, rect: Rect) -> None:
        from studio.core.document.edits import AddLayer

        rgba = np.concatenate([arr, np.full(arr.shape[:2] + (1,), 255, np.uint8)], axis=2)
        new = Layer(pixels=np.ascontiguousarray(rgba), name=name, x=rect[0], y=rect[1])
        self.undo.push(AddLayer(new))

    def _show_map_as_job(self, jobs: Any, kind: str, image: np.ndarray, rect: Rect,
                         name: str, depth: Any) -> None:
        """Estimate the map as a queued job (cancellable in the queue); the layer is added
        when it is ready, to the document it was asked for."""
        from studio.core.jobs.events import JobCancelled, JobFailed, JobFinished

        doc, made = self.doc, {}

        def work(_on_step: Any, _cancel: Any) -> None:
            made["map"] = control_map(kind, image, rect[2], rect[3], depth=depth)[0]

        def on_event(event: Any) -> None:
            if event.job_id != job or not isinstance(event, JobFinished | JobFailed |
                                                      JobCancelled):
                return
            jobs.remove_listener(on_event)
            if isinstance(event, JobFailed):
                self.note.setText(event.message or DEPTH_ESTIMATE_OFF)
                self.note.setVisible(True)
            elif isinstance(event, JobCancelled):
                self.note.setText("The depth map was cancelled.")
            elif "map" in made and self.doc is doc:
                self.note.setText("")
                self.note.setVisible(False)
                self._add_map(made["map"], name, rect)

        job = jobs.submit_work(work, f"Depth map of {name.rsplit(' of ', 1)[-1]}")
        jobs.add_listener(on_event)  # its events reach the window's thread after this
        self.note.setText("Estimating depth… the map is added as a layer when it is ready.")
        self.note.setVisible(True)

