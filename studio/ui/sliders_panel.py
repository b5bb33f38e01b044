"""``SlidersPanel``: latent sliders over the image on the canvas, previewed while dragging.

What they edit is ``SliderSession.target()`` (the selected layer, the selection in it, or the
flattened canvas), named under *Edits*. A drag sends throttled previews on the runner's
preview channel (the newest cancels the stale one; the window draws them on the canvas) and
its release renders the final image and keeps it as one undo entry; changes without a drag
(arrow keys, Page Up/Down, the wheel, a typed value, a double-click) are kept as one edit
once they pause for ``SETTLE_MS``. The slider set and values live in ``Document.sliders``
(saved with the project) and every request records them. In VAE/GAN mode the embedded
``studio-tiny-vae`` / ``studio-tiny-gan`` encode (invert) the target.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QImage, QMouseEvent, QPixmap, QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGraphicsOpacityEffect,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.jobs.request import GenerationRequest
from studio.core.sliders.specs import (
    GAN,
    INTERP,
    LATENT_MODELS,
    LATENT_NOT_ON,
    LATENT_SPACES,
    LORA,
    PORTRAIT_ATTRIBUTES,
    PROMPT,
    VAE,
    VARIATION,
    SliderSpec,
    interpolation_slider,
    latent_slider,
    lora_slider,
    placement_note,
    prompt_pair,
    variation_slider,
)
from studio.session.connection import Connection
from studio.session.sliders import DIFFUSION, SliderSession, SliderTarget
from studio.ui.value_widgets import LabeledDoubleSlider, Throttle
from studio.ui.widgets import VerticalScrollArea, tool_button

MODES = ((DIFFUSION, "Diffusion: prompt, LoRA, seed"), (VAE, "VAE latent (studio-tiny-vae)"),
         (GAN, "GAN latent (studio-tiny-gan)"))
NEW_LAYER_KEY = "sliders/new_layer"
PREVIEW_SIZE = 64
SETTLE_MS = 300  # keys, wheel turns, a typed value: kept once they pause this long
UNAVAILABLE_OPACITY = 0.4  # a greyed slider row
DRAG_TIP = ("Drag to preview on the canvas, release to keep. Shift: fine steps. "
            "Double-click: back to 0. Type a value in the box.")


def to_pixmap(image: np.ndarray, size: int = PREVIEW_SIZE) -> QPixmap:
    rgb = np.ascontiguousarray(image[..., :3])
    h, w = rgb.shape[:2]
    qimage = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(qimage).scaled(QSize(size, size), Qt.AspectRatioMode.KeepAspectRatio,
                                            Qt.TransformationMode.SmoothTransformation)


class SliderRow(QWidget):
    """One slider: its name above a full-width track, the value (editable in place) and a
    remove button. Shift while dragging moves a tenth as fast; a double-click resets it."""

    reset_requested = Signal()

    def __init__(self, spec: SliderSpec, value: float, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.spec = spec
        self.setObjectName(f"slider_row:{spec.slider_id}")
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 2, 0, 2)
        column.setSpacing(0)
        top = QHBoxLayout()
        label = QLabel(spec.label)
        self.label = label
        self.set_note("")
        self.remove_button = tool_button("remove_slider_button", "close", f"Remove {spec.label}")
        top.addWidget(label, 1)
        top.addWidget(self.remove_button)
        self.slider = LabeledDoubleSlider()
        self.slider.setObjectName("slider")
        self.slider.setRange(spec.minimum, spec.maximum)
        self.slider.setDecimals(2)
        self.slider.setSingleStep(0.01)
        self.slider.setValue(value)
        self.slider.setAccessibleName(spec.label)
        self.slider.slider.setPageStep(10)
        self.slider.setToolTip(DRAG_TIP)
        self.slider.slider.installEventFilter(self)
        self._fine: tuple[float, float] | None = None  # press x, value at the press
        column.addLayout(top)
        column.addWidget(self.slider)

    def set_spec(self, spec: SliderSpec) -> None:
        """Show ``spec`` instead: the same slider (id and kind) as another document keeps it
        (its words, range and description); the caller keeps the value's signals quiet."""
        self.spec = spec
        self.label.setText(spec.label)
        self.remove_button.setToolTip(f"Remove {spec.label}")
        self.remove_button.setAccessibleName(f"Remove {spec.label}")
        self.slider.setRange(spec.minimum, spec.maximum)
        self.slider.setAccessibleName(spec.label)
        self.set_note("")

    def set_note(self, note: str) -> None:
        """The label's tooltip: the slider's description and how it acts on the prompt."""
        text = self.spec.description or self.spec.slider_id
        self.label.setToolTip(f"{text}\n{note}" if note else text)

    def set_unavailable(self, reason: str) -> None:
        """Grey the slider out, saying why (empty: it works)."""
        was = not self.slider.isEnabled()
        self.slider.setEnabled(not reason)
        self.label.setEnabled(not reason)
        for widget in (self.slider, self.label):  # the theme draws no disabled state: dim
            if reason and was and isinstance(widget.graphicsEffect(), QGraphicsOpacityEffect):
                continue  # dimmed already (asked again at every change of target)
            if reason:
                effect = QGraphicsOpacityEffect(widget)
                effect.setOpacity(UNAVAILABLE_OPACITY)
                widget.setGraphicsEffect(effect)
            elif was:
                widget.setGraphicsEffect(None)  # type: ignore[arg-type]
        if reason:
            self.label.setToolTip(reason)
            self.slider.setToolTip(reason)
        elif was:  # back on: its own tooltips again
            self.slider.setToolTip(DRAG_TIP)
            self.set_note("")

    def eventFilter(self, obj: Any, event: QEvent) -> bool:  # noqa: N802 (Qt API)
        kind = event.type()
        if kind == QEvent.Type.MouseButtonDblClick:
            self.reset_requested.emit()
            return True
        if kind == QEvent.Type.MouseMove and isinstance(event, QMouseEvent):
            fine = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
            if fine and obj.isSliderDown():
                if self._fine is None:
                    self._fine = (event.position().x(), self.slider.value())
                x0, v0 = self._fine
                span = (self.spec.maximum - self.spec.minimum) / max(1, obj.width())
                self.slider.setValue(v0 + (event.position().x() - x0) * span / 10)
                return True
            self._fine = None
        if kind == QEvent.Type.MouseButtonRelease:
            self._fine = None
        return False


class SlidersPanel(QWidget):
    """The widgets of the latent sliders; the state and actions are ``session``'s.

    Parameters
    ----------
    session
        The sliders' state (``studio.session.SliderSession``): the panel shows its slider set
        and results, and calls its actions.
    connection
        The backend: what its features lack is greyed out, with the reason as the tooltip.
    """

    slider_moved = Signal(str, float)  # while dragging
    slider_released = Signal(str, float)
    preview_shown = Signal(object)  # np.ndarray
    frames_shown = Signal(int)  # how many frames the strip/grid now shows

    def __init__(self, session: SliderSession, connection: Connection | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sliders_panel")
        self.session = session
        self.connection = connection if connection is not None else session.connection
        self._rows: dict[str, SliderRow] = {}
        self._rows_stale = False  # a rebuild waits for the panel to be shown
        self._syncing = False
        self._submit_preview_throttled = Throttle(session.submit_preview, 40, parent=self)
        # Changes without a drag (arrow keys, Page Up/Down, the wheel, a typed value, a
        # double-click) are one edit per pause: a held arrow key renders and keeps once.
        self._render_settled = QTimer(self, singleShot=True, interval=SETTLE_MS)
        self._render_settled.timeout.connect(session.render)
        self._build()
        self._rebuild_rows()
        self._subscriptions = [
            (session.slider_added, self._on_session_slider_added),
            (session.slider_removed, self._on_session_slider_removed),
            (session.value_changed, self._on_session_value_changed),
            (session.sliders_reloaded, self._on_session_sliders_reloaded),
            (session.base_changed, self._on_session_base_changed),
            (session.mode_changed, self._on_session_mode_changed),
            (session.preview_shown, self.show_preview),
            (session.frames_cleared, self._on_session_frames_cleared),
            (session.frame_shown, self._on_session_frame_shown),
            (session.message, self._on_session_message),
            (session.target_changed, self._on_session_target_changed),
            (session.busy_changed, self._on_session_busy_changed),
            (self.connection.state_changed, self._on_connection_state_changed)]
        for signal, slot in self._subscriptions:
            signal.connect(slot)
        self._on_connection_state_changed(self.connection.state)
        self._on_session_target_changed(session.target())

    def unsubscribe(self) -> None:
        """Stop showing the session (before the panel goes: the session outlives it)."""
        for signal, slot in self._subscriptions:
            signal.disconnect(slot)
        self._subscriptions = []

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        top = QFormLayout()
        self.mode_combo = QComboBox(objectName="slider_mode_combo")
        self.mode_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.mode_combo.setMinimumContentsLength(12)
        for key, text in MODES:
            self.mode_combo.addItem(text, key)
        self.mode_combo.currentIndexChanged.connect(self._on_mode_changed)
        top.addRow("Space", self.mode_combo)
        self.target_label = QLabel(objectName="slider_target_label")
        self.target_label.setWordWrap(True)
        self.target_label.setToolTip("What the sliders edit: the selected layer (or the "
                                     "selection inside it), else the flattened canvas. "
                                     "Select another layer in Layers to edit it.")
        top.addRow("Edits", self.target_label)
        self.invert_check = QCheckBox("Edit the init image (inversion)",
                                      objectName="invert_check")
        self.invert_check.setToolTip("On a generated layer: sliders act on the image its "
                                     "generation started from, inverted with DDIM under its "
                                     "prompt. Other images are always edited this way.")
        self.invert_check.toggled.connect(self._on_invert_toggled)
        top.addRow(self.invert_check)
        outer.addLayout(top)
        actions = QHBoxLayout()
        self.apply_button = QPushButton("Apply", objectName="apply_sliders_button")
        self.apply_button.setToolTip("Render the sliders' values and keep the result (one "
                                     "undo step); releasing a slider does the same")
        self.apply_button.clicked.connect(self.session.render)
        self.new_layer_check = QCheckBox("As a new layer", objectName="new_layer_check")
        self.new_layer_check.setToolTip("Keep each slider edit as a new layer over the "
                                        "target instead of changing the target's pixels")
        self.new_layer_check.setChecked(bool(QSettings().value(NEW_LAYER_KEY, False, bool)))
        self.session.new_layer = self.new_layer_check.isChecked()
        self.new_layer_check.toggled.connect(self._on_new_layer_toggled)
        self.busy_label = QLabel("Rendering…", objectName="slider_busy_label")
        self.busy_label.setVisible(False)
        actions.addWidget(self.apply_button)
        actions.addWidget(self.new_layer_check)
        actions.addStretch(1)
        actions.addWidget(self.busy_label)
        outer.addLayout(actions)
        self.hint = QLabel("", objectName="slider_hint")
        self.hint.setWordWrap(True)
        self.hint.setVisible(False)
        outer.addWidget(self.hint)

        body = QWidget()
        self._body = QVBoxLayout(body)
        self._groups: dict[str, QGroupBox] = {}
        for key, title in ((PROMPT, "Prompt directions"), (LORA, "LoRA and concepts"),
                           (VARIATION, "Seed exploration"), (VAE, "VAE latent"),
                           (GAN, "GAN latent")):
            box = QGroupBox(title, objectName=f"{key}_group")
            QVBoxLayout(box)
            self._groups[key] = box
            self._body.addWidget(box)
        scroll = VerticalScrollArea(body)
        scroll.setObjectName("sliders_scroll")
        self.scroll = scroll
        outer.addWidget(scroll, 1)

        # Adding sliders.
        add = QGroupBox("Add a slider", objectName="add_slider_group")
        form = QFormLayout(add)
        self.starter_combo = QComboBox(objectName="starter_combo")
        self.starter_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.starter_combo.setMinimumContentsLength(8)
        for spec in self.session.starters.values():
            self.starter_combo.addItem(spec.label, spec.slider_id)
        starter_button = QPushButton("Add", objectName="add_starter_button")
        self.starter_button = starter_button
        starter_button.clicked.connect(self._on_add_starter_clicked)
        form.addRow("Starter", _row(self.starter_combo, starter_button))
        self.positive_edit = QLineEdit(objectName="positive_edit", placeholderText="old")
        self.negative_edit = QLineEdit(objectName="negative_edit", placeholderText="young")
        pair_button = QPushButton("Add", objectName="add_pair_button")
        self.pair_button = pair_button
        pair_button.clicked.connect(self._on_add_pair_clicked)
        form.addRow("Pair", _row(self.positive_edit, self.negative_edit, pair_button))
        self.keep_rest_check = QCheckBox("Keep the rest of the image", objectName="keep_rest_check",
                                         checked=True)
        self.keep_rest_check.setToolTip(
            "The pair changes the image only where its words act (found by comparing the "
            "two prompts' noise predictions); untick it for pairs that change the whole "
            "picture, such as a style or the lighting.")
        form.addRow("", self.keep_rest_check)
        lora_button = QPushButton("Add LoRA…", objectName="add_lora_button")
        self.lora_button = lora_button
        lora_button.clicked.connect(self._on_add_lora_clicked)
        form.addRow("LoRA", lora_button)
        self.attribute_combo = QComboBox(objectName="attribute_combo")
        self.attribute_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.attribute_combo.setMinimumContentsLength(8)
        for attribute in PORTRAIT_ATTRIBUTES:
            self.attribute_combo.addItem(attribute, attribute)
        latent_button = QPushButton("Add", objectName="add_latent_button")
        self.latent_button = latent_button
        latent_button.clicked.connect(self._on_add_latent_clicked)
        form.addRow("Attribute", _row(self.attribute_combo, latent_button))
        self.seed_spin = QSpinBox(objectName="other_seed_spin", maximum=2**31 - 1, value=1)
        self.seed_spin.setMinimumWidth(80)  # its hint fits 2**31 - 1 and widens the dock
        variation_button = QPushButton("Vary", objectName="add_variation_button")
        variation_button.clicked.connect(self._on_add_variation_clicked)
        interp_button = QPushButton("Towards", objectName="add_interp_button")
        interp_button.clicked.connect(self._on_add_interp_clicked)
        form.addRow("Seed", _row(self.seed_spin, variation_button, interp_button))
        self.example_name = QLineEdit(objectName="example_name_edit", placeholderText="freckles")
        has_button = QPushButton("Has it", objectName="mark_has_button")
        has_button.setToolTip("Mark the image shown as having the attribute")
        has_button.clicked.connect(lambda: self.session.mark_example(True))
        lacks_button = QPushButton("Lacks it", objectName="mark_lacks_button")
        lacks_button.setToolTip("Mark the image shown as not having the attribute")
        lacks_button.clicked.connect(lambda: self.session.mark_example(False))
        build_button = QPushButton("Build", objectName="build_example_button")
        self.build_button = build_button
        build_button.clicked.connect(self._on_build_example_clicked)
        self.example_rows = (_row(self.example_name, build_button), _row(has_button, lacks_button))
        form.addRow("Examples", self.example_rows[0])
        form.addRow("", self.example_rows[1])
        strip_button = QPushButton("Strip", objectName="strip_button")
        strip_button.setToolTip("Frames from the current image to the seed in the Seed box")
        strip_button.clicked.connect(lambda: self.session.make_strip(self.seed_spin.value()))
        grid_button = QPushButton("3×3 grid", objectName="grid_button")
        grid_button.setToolTip("A 3×3 neighbourhood of seeds around the current image")
        grid_button.clicked.connect(lambda: self.session.make_grid())
        reset_button = QPushButton("Reset all", objectName="reset_sliders_button")
        reset_button.clicked.connect(self.session.reset_all)
        form.addRow(_row(strip_button, grid_button, reset_button))
        # The frames and the adding tools scroll with the sliders: the panel never asks
        # the window for more height than the screen has.
        self.frames_view = QWidget(objectName="frames_view")
        self._frames_grid = QGridLayout(self.frames_view)
        self._frames_grid.setSpacing(2)
        self._frames_grid.setContentsMargins(0, 0, 0, 0)
        self._body.addWidget(self.frames_view)
        self._body.addWidget(add)
        self._body.addStretch(1)

    def _rebuild_rows(self) -> None:
        self._rows_stale = False
        for row in self._rows.values():
            row.setParent(None)
            row.deleteLater()
        self._rows.clear()
        for spec in self.session.sliders:
            self._add_row(spec)
        self._update_groups()

    def _add_row(self, spec: SliderSpec) -> None:
        row = SliderRow(spec, self.session.sliders.values.get(spec.slider_id, 0.0))
        sid = spec.slider_id
        row.slider.sliderPressed.connect(lambda: self._on_slider_pressed(sid))
        row.slider.valueChanged.connect(lambda v: self._on_slider_value_changed(sid, v))
        row.slider.sliderReleased.connect(lambda: self._on_slider_released(sid))
        row.remove_button.clicked.connect(lambda: self.session.remove_slider(sid))
        row.reset_requested.connect(lambda: self._on_row_reset(sid))
        row.set_unavailable(self._unavailable(spec))
        group = INTERP if spec.space == INTERP else spec.space
        box = self._groups[VARIATION if group == INTERP else group]
        box.layout().addWidget(row)
        self._rows[sid] = row
        self._update_notes()

    def _unavailable(self, spec: SliderSpec) -> str:
        """Why ``spec`` cannot work on the connected backend ('' when it can)."""
        connection = self.connection
        if not connection.ready:
            return ""
        feature = {VAE: "latent_sliders", GAN: "latent_sliders", LORA: "lora"}.get(
            spec.space, "prompt_sliders")
        if not connection.can(feature):
            return connection.reason(feature)
        if spec.space in LATENT_SPACES:  # a latent slider acts on its space's own model
            # (by attribute too: a project saved before the reason was known)
            return (spec.reason_not_on(LATENT_MODELS[spec.space])
                    or LATENT_NOT_ON.get((spec.space, spec.attribute), ""))
        return self.session.unavailable_reason(spec)  # known not to work on this model

    def _on_row_reset(self, slider_id: str) -> None:
        row = self._rows.get(slider_id)
        if row is not None and row.slider.value() != 0:
            row.slider.setValue(0.0)  # a whole edit: rendered and kept

    def _update_notes(self) -> None:
        """Tell each prompt slider's tooltip where its words go in the current prompt."""
        base = self.session.base_request
        prompt = base.prompt if base is not None else ""
        for row in self._rows.values():
            row.set_note(placement_note(row.spec, prompt) if prompt else "")

    def _update_groups(self) -> None:
        mode = self.session.mode
        for key, box in self._groups.items():
            if mode in LATENT_SPACES:
                box.setVisible(key == mode)
            else:
                box.setVisible(key not in LATENT_SPACES)

    def row(self, slider_id: str) -> SliderRow:
        """The row that shows ``slider_id``."""
        if self._rows_stale:
            self._rebuild_rows()
        return self._rows[slider_id]

    def on_screen(self) -> bool:
        """Whether the panel can be seen: shown, and in a docked tab, the current tab (Qt
        keeps the other tabs' docks visible but moves them off the window)."""
        return self.isVisible() and not self.visibleRegion().isEmpty()

    def set_tab_visible(self, visible: bool) -> None:
        """The panel's tab became current (``visible``) or another did: a rebuild that
        waited for it is done now (connect the dock's ``visibilityChanged``)."""
        if visible and self._rows_stale:
            self._rebuild_rows()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt API)
        self.set_tab_visible(True)
        super().showEvent(event)

    def set_mode(self, mode: str) -> None:
        self.mode_combo.setCurrentIndex(max(0, self.mode_combo.findData(mode)))

    # -- the session's events ------------------------------------------------------------
    def _on_session_sliders_reloaded(self) -> None:
        """Another document's slider set (a project opened). The same sliders (ids and
        kinds, in order) keep their rows and show the new values; another set rebuilds the
        rows (15 rows take tens of ms), and while the panel is hidden (the Sliders tab not
        the current one) that waits until it is shown (``set_tab_visible``)."""
        specs = list(self.session.sliders)
        same = not self._rows_stale and (
            [(s.slider_id, s.space) for s in specs]
            == [(row.spec.slider_id, row.spec.space) for row in self._rows.values()])
        if not same:
            if self.on_screen():
                self._rebuild_rows()
            else:
                self._rows_stale = True
            return
        values = self.session.sliders.values
        self._syncing = True
        try:
            for spec in specs:
                row = self._rows[spec.slider_id]
                if row.spec != spec or row.spec.description != spec.description:
                    row.set_spec(spec)
                    row.set_unavailable(self._unavailable(spec))
                row.slider.setValue(float(values.get(spec.slider_id, 0.0)))
        finally:
            self._syncing = False
        self._update_notes()
        self._update_groups()

    def _on_session_slider_added(self, spec: SliderSpec) -> None:
        if self._rows_stale:
            return  # the rebuild on showing adds its row
        self._add_row(spec)
        self._update_groups()

    def _on_session_slider_removed(self, slider_id: str) -> None:
        row = self._rows.pop(slider_id, None)
        if row is not None:
            row.setParent(None)
            row.deleteLater()

    def _on_session_value_changed(self, slider_id: str, value: float) -> None:
        row = self._rows.get(slider_id)
        if row is not None and not self.session.dragging(slider_id):
            self._syncing = True
            try:
                row.slider.setValue(float(value))
            finally:
                self._syncing = False

    def _on_session_base_changed(self, request: GenerationRequest | None) -> None:
        self._on_session_target_changed(self.session.target())
        self._update_notes()  # after: a row turned back on gets its note again

    def _on_session_mode_changed(self, mode: str) -> None:
        if self.mode_combo.currentData() != mode:
            self.set_mode(mode)
        self._update_groups()

    def _on_session_frames_cleared(self, _kind: str) -> None:
        while self._frames_grid.count():
            item = self._frames_grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()

    def _on_session_frame_shown(self, index: int, image: np.ndarray) -> None:
        cell = QToolButton(objectName=f"frame_{index}")
        cell.setIcon(QIcon(to_pixmap(image, 64)))
        cell.setIconSize(QSize(56, 56))
        cell.setAutoRaise(True)
        cell.setToolTip("Use this image: a new layer over the target")
        cell.clicked.connect(lambda: self.session.use_frame(index))
        columns = 3 if self.session.frames_kind == "grid" else 4
        self._frames_grid.addWidget(cell, index // columns, index % columns)
        self.frames_shown.emit(len(self.session.frames))

    def _on_session_message(self, text: str) -> None:
        self.hint.setText(text)
        self.hint.setVisible(bool(text))

    def show_preview(self, image: np.ndarray) -> None:
        """A preview came (the canvas draws it over the target, in place)."""
        self.preview_shown.emit(image)

    def _on_session_target_changed(self, target: SliderTarget) -> None:
        self.target_label.setText(target.words)
        for row in self._rows.values():  # another model may be behind the new target
            row.set_unavailable(self._unavailable(row.spec))
        self.apply_button.setEnabled(target.kind != "none" or
                                     self.session.base_request is not None)

    def _on_session_busy_changed(self, busy: bool) -> None:
        self.busy_label.setVisible(busy)

    def _on_new_layer_toggled(self, checked: bool) -> None:
        self.session.new_layer = bool(checked)
        QSettings().setValue(NEW_LAYER_KEY, bool(checked))

    # -- what the backend offers ---------------------------------------------------------
    def _on_connection_state_changed(self, _state: str) -> None:
        """Grey out what the connected backend cannot do, saying why (while the engine
        loads, everything stays on: the sliders are document edits)."""
        connection = self.connection

        def allow(feature: str, *widgets: QWidget) -> None:
            on = not connection.ready or connection.can(feature)
            for widget in widgets:
                widget.setEnabled(on)
                if not on:
                    widget.setToolTip(connection.reason(feature))

        allow("prompt_sliders", self.starter_combo, self.starter_button, self.pair_button,
              self.positive_edit, self.negative_edit)
        allow("lora", self.lora_button)
        allow("latent_sliders", self.attribute_combo, self.latent_button)
        allow("example_directions", *self.example_rows)
        for row in self._rows.values():
            row.set_unavailable(self._unavailable(row.spec))
        latent_on = not connection.ready or connection.can("latent_sliders")
        model = self.mode_combo.model()
        for index in range(self.mode_combo.count()):
            if self.mode_combo.itemData(index) in LATENT_SPACES:
                item = model.item(index)  # type: ignore[attr-defined]
                item.setEnabled(latent_on)
                item.setToolTip("" if latent_on else connection.reason("latent_sliders"))

    # -- the widgets' events -------------------------------------------------------------
    def _on_slider_pressed(self, slider_id: str) -> None:
        if self._render_settled.isActive():  # keys pressed just before: kept now
            self._render_settled.stop()
            self.session.render()
        self.session.press(slider_id)

    def _on_slider_value_changed(self, slider_id: str, value: float) -> None:
        if self._syncing:
            return
        dragging = self.session.move(slider_id, float(value), render=False)
        self.slider_moved.emit(slider_id, float(value))
        if dragging:
            self._submit_preview_throttled()
        else:
            self._render_settled.start()

    def _on_slider_released(self, slider_id: str) -> None:
        self._submit_preview_throttled.cancel()
        value = self.session.release(slider_id)
        self.slider_released.emit(slider_id, float(value))

    def _on_invert_toggled(self, checked: bool) -> None:
        self.session.edit_init = bool(checked)

    def _on_build_example_clicked(self) -> None:
        self.session.build_example_slider(self.example_name.text())

    def _on_mode_changed(self, _index: int) -> None:
        self.session.set_mode(str(self.mode_combo.currentData()))
        self._update_groups()

    def _on_add_starter_clicked(self) -> None:
        sid = self.starter_combo.currentData()
        if sid:
            self.session.add_slider(self.session.starters[str(sid)])

    def _on_add_pair_clicked(self) -> None:
        try:
            spec = prompt_pair(self.positive_edit.text(), self.negative_edit.text(),
                               local=self.keep_rest_check.isChecked())
        except ValueError as err:
            self.hint.setText(str(err))
            return
        if spec.slider_id not in self.session.sliders.specs:  # its "keep the rest", kept
            self.session.remember(spec)
        self.session.add_slider(spec)
        self.positive_edit.clear()
        self.negative_edit.clear()

    def _on_add_lora_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add a LoRA", "",
                                              "LoRA files (*.safetensors)")
        if path:
            self.session.add_slider(lora_slider(path))

    def _on_add_latent_clicked(self) -> None:
        mode = self.session.mode if self.session.mode in LATENT_SPACES else VAE
        self.session.set_mode(mode)
        self.session.add_slider(latent_slider(mode, str(self.attribute_combo.currentData())))

    def _on_add_variation_clicked(self) -> None:
        self.session.add_slider(variation_slider(self.seed_spin.value()))

    def _on_add_interp_clicked(self) -> None:
        self.session.add_slider(interpolation_slider(self.seed_spin.value()))


def _row(*widgets: QWidget) -> QWidget:
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        layout.addWidget(w)
    return box
