"""``SlidersPanel``: latent sliders over the current image, previewed while dragging.

Dragging a slider records one undoable ``SetSliderValue`` per drag and sends throttled
preview requests on the runner's preview channel (the newest cancels the stale one);
releasing it renders the final image. The slider set and values live in
``Document.sliders`` (saved with the project) and every request records them.

Targets: the image last generated (prompt directions, LoRA weights, seed exploration) or,
in VAE/GAN mode, the embedded ``studio-tiny-vae`` / ``studio-tiny-gan`` latent.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.core.jobs.request import GenerationRequest
from studio.core.sliders.specs import (
    GAN,
    INTERP,
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
from studio.session.sliders import DIFFUSION, SliderSession
from studio.ui.value_widgets import LabeledDoubleSlider, Throttle
from studio.ui.widgets import VerticalScrollArea, tool_button

MODES = ((DIFFUSION, "Current image (diffusion)"), (VAE, "VAE latent (studio-tiny-vae)"),
         (GAN, "GAN latent (studio-tiny-gan)"))
PREVIEW_SIZE = 160


def to_pixmap(image: np.ndarray, size: int = PREVIEW_SIZE) -> QPixmap:
    rgb = np.ascontiguousarray(image[..., :3])
    h, w = rgb.shape[:2]
    qimage = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(qimage).scaled(QSize(size, size), Qt.AspectRatioMode.KeepAspectRatio,
                                            Qt.TransformationMode.SmoothTransformation)


class SliderRow(QWidget):
    """One slider: its label, a labelled double slider and a remove button."""

    def __init__(self, spec: SliderSpec, value: float, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.spec = spec
        self.setObjectName(f"slider_row:{spec.slider_id}")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        label = QLabel(spec.label)
        self.label = label
        self.set_note("")
        label.setMinimumWidth(90)
        self.slider = LabeledDoubleSlider()
        self.slider.setObjectName("slider")
        self.slider.setRange(spec.minimum, spec.maximum)
        self.slider.setDecimals(2)
        self.slider.setSingleStep(0.05)
        self.slider.setValue(value)
        self.slider.setAccessibleName(spec.label)
        self.remove_button = tool_button("remove_slider_button", "close", f"Remove {spec.label}")
        row.addWidget(label)
        row.addWidget(self.slider, 1)
        row.addWidget(self.remove_button)

    def set_note(self, note: str) -> None:
        """The label's tooltip: the slider's description and how it acts on the prompt."""
        text = self.spec.description or self.spec.slider_id
        self.label.setToolTip(f"{text}\n{note}" if note else text)


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
        self._syncing = False
        self._submit_preview_throttled = Throttle(session.submit_preview, 40, parent=self)
        self._build()
        self._rebuild_rows()
        self._update_hint(session.base_request)
        self._subscriptions = [
            (session.slider_added, self._on_session_slider_added),
            (session.slider_removed, self._on_session_slider_removed),
            (session.value_changed, self._on_session_value_changed),
            (session.sliders_reloaded, self._rebuild_rows),
            (session.base_changed, self._on_session_base_changed),
            (session.mode_changed, self._on_session_mode_changed),
            (session.preview_shown, self.show_preview),
            (session.frames_cleared, self._on_session_frames_cleared),
            (session.frame_shown, self._on_session_frame_shown),
            (session.message, self._on_session_message),
            (self.connection.state_changed, self._on_connection_state_changed)]
        for signal, slot in self._subscriptions:
            signal.connect(slot)
        self._on_connection_state_changed(self.connection.state)

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
        top.addRow("Target", self.mode_combo)
        self.invert_check = QCheckBox("Edit the init image (inversion)",
                                      objectName="invert_check")
        self.invert_check.setToolTip("Sliders act on the image this generation started from "
                                     "(an imported photo), inverted with DDIM under its prompt. "
                                     "In VAE or GAN mode they act on the canvas: the VAE "
                                     "encodes it, the GAN finds its latent (about 1.5 s, "
                                     "once per image).")
        self.invert_check.toggled.connect(self._on_invert_toggled)
        top.addRow(self.invert_check)
        outer.addLayout(top)
        self.hint = QLabel("Generate an image, then move a slider.", objectName="slider_hint")
        self.hint.setWordWrap(True)
        outer.addWidget(self.hint)
        self.preview = QLabel(objectName="slider_preview")
        self.preview.setFixedSize(PREVIEW_SIZE, PREVIEW_SIZE)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.hide()  # until there is a preview: no empty square above the sliders
        outer.addWidget(self.preview, 0, Qt.AlignmentFlag.AlignHCenter)

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
        self._body.addStretch(1)
        scroll = VerticalScrollArea(body)
        scroll.setObjectName("sliders_scroll")
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
        outer.addWidget(add)
        self.frames_view = QWidget(objectName="frames_view")
        self._frames_grid = QGridLayout(self.frames_view)
        self._frames_grid.setSpacing(2)
        outer.addWidget(self.frames_view)

    def _rebuild_rows(self) -> None:
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
        row.slider.sliderPressed.connect(lambda: self.session.press(sid))
        row.slider.valueChanged.connect(lambda v: self._on_slider_value_changed(sid, v))
        row.slider.sliderReleased.connect(lambda: self._on_slider_released(sid))
        row.remove_button.clicked.connect(lambda: self.session.remove_slider(sid))
        group = INTERP if spec.space == INTERP else spec.space
        box = self._groups[VARIATION if group == INTERP else group]
        box.layout().addWidget(row)
        self._rows[sid] = row
        self._update_notes()

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
        return self._rows[slider_id]

    def set_mode(self, mode: str) -> None:
        self.mode_combo.setCurrentIndex(max(0, self.mode_combo.findData(mode)))

    # -- the session's events ------------------------------------------------------------
    def _on_session_slider_added(self, spec: SliderSpec) -> None:
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
        self._update_notes()
        self._update_hint(request)

    def _update_hint(self, request: GenerationRequest | None) -> None:
        self.hint.setText("Move a slider to edit this image." if request is not None else
                          "Generate an image, then move a slider.")

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
        label = QLabel(objectName=f"frame_{index}")
        label.setPixmap(to_pixmap(image, 64))
        columns = 3 if self.session.frames_kind == "grid" else 8
        self._frames_grid.addWidget(label, index // columns, index % columns)
        self.frames_shown.emit(len(self.session.frames))

    def _on_session_message(self, text: str) -> None:
        self.hint.setText(text)

    def show_preview(self, image: np.ndarray) -> None:
        self.preview.setPixmap(to_pixmap(image))
        self.preview.show()
        self.preview_shown.emit(image)

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
        latent_on = not connection.ready or connection.can("latent_sliders")
        model = self.mode_combo.model()
        for index in range(self.mode_combo.count()):
            if self.mode_combo.itemData(index) in LATENT_SPACES:
                item = model.item(index)  # type: ignore[attr-defined]
                item.setEnabled(latent_on)
                item.setToolTip("" if latent_on else connection.reason("latent_sliders"))

    # -- the widgets' events -------------------------------------------------------------
    def _on_slider_value_changed(self, slider_id: str, value: float) -> None:
        if self._syncing:
            return
        dragging = self.session.move(slider_id, float(value))
        self.slider_moved.emit(slider_id, float(value))
        if dragging:
            self._submit_preview_throttled()

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
