"""``SlidersPanel``: latent sliders over the current image, previewed while dragging.

Dragging a slider records one undoable ``SetSliderValue`` per drag and sends throttled
preview requests on the runner's preview channel (the newest cancels the stale one);
releasing it renders the final image. The slider set and values live in
``Document.sliders`` (saved with the project) and every request records them.

Targets: the image last generated (prompt directions, LoRA weights, seed exploration) or,
in VAE/GAN mode, the embedded ``studio-tiny-vae`` / ``studio-tiny-gan`` latent.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any

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

from studio.core.document.edits import SetSliderValue
from studio.core.document.layers import Document
from studio.core.jobs.events import JobFailed, JobFinished
from studio.core.document.pixels import Pixels
from studio.core.jobs.request import GenerationRequest
from studio.core.sliders.specs import (
    GAN,
    INTERP,
    LATENT_MODELS,
    LATENT_SPACES,
    LORA,
    PORTRAIT_ATTRIBUTES,
    PROMPT,
    VAE,
    VARIATION,
    SliderSet,
    SliderSpec,
    example_slider,
    interpolation_requests,
    interpolation_slider,
    inversion_request,
    latent_slider,
    lora_slider,
    neighbourhood_requests,
    placement_note,
    preview_request,
    prompt_pair,
    spec_from_id,
    starter_sliders,
    variation_slider,
)
from studio.core.document.undo import UndoStack
from studio.ui.value_widgets import LabeledDoubleSlider, Throttle
from studio.ui.widgets import VerticalScrollArea, tool_button

MODES = (("diffusion", "Current image (diffusion)"), (VAE, "VAE latent (studio-tiny-vae)"),
         (GAN, "GAN latent (studio-tiny-gan)"))
PREVIEW_SIZE = 160


_log = logging.getLogger(__name__)


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
    """Latent sliders over the current image (or a VAE/GAN latent).

    Parameters
    ----------
    doc, undo
        The document (``doc.sliders`` holds the slider set and values) and its undo stack.
    bridge
        The runner's event bridge (``job_finished`` / ``job_failed`` signals).
    """

    slider_moved = Signal(str, float)  # while dragging
    slider_released = Signal(str, float)
    preview_requested = Signal(object)  # GenerationRequest
    render_requested = Signal(object)  # GenerationRequest
    preview_shown = Signal(object)  # np.ndarray
    frames_shown = Signal(int)  # how many frames the strip/grid now shows

    def __init__(self, doc: Document, undo: UndoStack, bridge: Any = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sliders_panel")
        self.doc, self.undo = doc, undo
        self.runner: Any = None
        self.render_handler: Callable[[GenerationRequest], Any] | None = None
        self.starters = starter_sliders()
        self.sliders = SliderSet.from_values(doc.sliders, self.starters)
        self.base_request: GenerationRequest | None = None
        self.canvas_image: Pixels | None = None
        self._rows: dict[str, SliderRow] = {}
        self._drag_ids = itertools.count(1)
        self._drag: dict[str, str] = {}  # slider id -> merge id of the drag in progress
        self._preview_job: int | None = None
        self._frame_jobs: dict[int, int] = {}  # job id -> frame index
        self.last_preview: np.ndarray | None = None
        self.frames: dict[int, np.ndarray] = {}
        # Marked examples (images with / without an attribute) and the engine call that turns
        # them into a latent direction: (space, with, without) -> vector, run as runner work.
        self.examples: dict[bool, list[np.ndarray]] = {True: [], False: []}
        self.direction_builder: Callable[[str, np.ndarray, np.ndarray], Any] | None = None
        self._example_job: tuple[int, str, str] | None = None
        self._syncing = False
        self._submit_preview_throttled = Throttle(self._submit_preview, 40, parent=self)
        self._build()
        self._rebuild_rows()
        doc.add_listener(self._on_document_event)
        if bridge is not None:
            bridge.job_finished.connect(self._on_job_finished)
            bridge.job_failed.connect(self._on_job_failed)

    # -- building ------------------------------------------------------------------------
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
        for spec in self.starters.values():
            self.starter_combo.addItem(spec.label, spec.slider_id)
        starter_button = QPushButton("Add", objectName="add_starter_button")
        starter_button.clicked.connect(self._on_add_starter_clicked)
        form.addRow("Starter", _row(self.starter_combo, starter_button))
        self.positive_edit = QLineEdit(objectName="positive_edit", placeholderText="old")
        self.negative_edit = QLineEdit(objectName="negative_edit", placeholderText="young")
        pair_button = QPushButton("Add", objectName="add_pair_button")
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
        lora_button.clicked.connect(self._on_add_lora_clicked)
        form.addRow("LoRA", lora_button)
        self.attribute_combo = QComboBox(objectName="attribute_combo")
        self.attribute_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.attribute_combo.setMinimumContentsLength(8)
        for attribute in PORTRAIT_ATTRIBUTES:
            self.attribute_combo.addItem(attribute, attribute)
        latent_button = QPushButton("Add", objectName="add_latent_button")
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
        has_button.clicked.connect(lambda: self.mark_example(True))
        lacks_button = QPushButton("Lacks it", objectName="mark_lacks_button")
        lacks_button.setToolTip("Mark the image shown as not having the attribute")
        lacks_button.clicked.connect(lambda: self.mark_example(False))
        build_button = QPushButton("Build", objectName="build_example_button")
        build_button.clicked.connect(self.build_example_slider)
        form.addRow("Examples", _row(self.example_name, build_button))
        form.addRow("", _row(has_button, lacks_button))
        strip_button = QPushButton("Strip", objectName="strip_button")
        strip_button.setToolTip("Frames from the current image to the seed in the Seed box")
        strip_button.clicked.connect(self.make_strip)
        grid_button = QPushButton("3×3 grid", objectName="grid_button")
        grid_button.setToolTip("A 3×3 neighbourhood of seeds around the current image")
        grid_button.clicked.connect(self.make_grid)
        reset_button = QPushButton("Reset all", objectName="reset_sliders_button")
        reset_button.clicked.connect(self.reset_all)
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
        for spec in self.sliders:
            self._add_row(spec)
        self._update_groups()

    def _add_row(self, spec: SliderSpec) -> None:
        row = SliderRow(spec, self.sliders.values.get(spec.slider_id, 0.0))
        sid = spec.slider_id
        row.slider.sliderPressed.connect(lambda: self._on_slider_pressed(sid))
        row.slider.valueChanged.connect(lambda v: self._on_slider_value_changed(sid, v))
        row.slider.sliderReleased.connect(lambda: self._on_slider_released(sid))
        row.remove_button.clicked.connect(lambda: self.remove_slider(sid))
        group = INTERP if spec.space == INTERP else spec.space
        box = self._groups[VARIATION if group == INTERP else group]
        box.layout().addWidget(row)
        self._rows[sid] = row
        self._update_notes()

    def _update_notes(self) -> None:
        """Tell each prompt slider's tooltip where its words go in the current prompt."""
        prompt = self.base_request.prompt if self.base_request is not None else ""
        for row in self._rows.values():
            row.set_note(placement_note(row.spec, prompt) if prompt else "")

    def _update_groups(self) -> None:
        mode = self.mode
        for key, box in self._groups.items():
            if mode in LATENT_SPACES:
                box.setVisible(key == mode)
            else:
                box.setVisible(key not in LATENT_SPACES)

    # -- the slider set ------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return str(self.mode_combo.currentData())

    def set_mode(self, mode: str) -> None:
        self.mode_combo.setCurrentIndex(max(0, self.mode_combo.findData(mode)))

    def row(self, slider_id: str) -> SliderRow:
        return self._rows[slider_id]

    def add_slider(self, spec: SliderSpec) -> None:
        """Show a slider (at 0) and record it in the document (one undo entry)."""
        if spec.slider_id in self.sliders.specs:
            return
        self.undo.push(SetSliderValue(spec.slider_id, 0.0, merge_id=None,
                                      text=f"Add slider {spec.label}"))

    def remove_slider(self, slider_id: str) -> None:
        # Undo brings the slider back with its value (the command restores the old value).
        self.undo.push(SetSliderValue(slider_id, 0.0, merge_id=None, text="Remove slider"))
        self.doc.sliders.pop(slider_id, None)
        self.doc.emit("slider_changed", slider_id=slider_id, value=None)

    def reset_all(self) -> None:
        with self.undo.macro("Reset sliders"):
            for sid, value in list(self.sliders.values.items()):
                if value != 0:
                    self.undo.push(SetSliderValue(sid, 0.0, merge_id=None))
        self.render()

    def _on_document_event(self, name: str, payload: dict[str, Any]) -> None:
        if name == "slider_changed":
            sid, value = payload["slider_id"], payload["value"]
            if value is None:
                self.sliders.remove(sid)
                row = self._rows.pop(sid, None)
                if row is not None:
                    row.setParent(None)
                    row.deleteLater()
                return
            if sid not in self.sliders.specs:
                try:
                    spec = spec_from_id(sid, self.starters)
                except (KeyError, ValueError):
                    return
                self.sliders.add(spec, value)
                self._add_row(spec)
                self._update_groups()
            self.sliders.values[sid] = float(value)
            row = self._rows.get(sid)
            if row is not None and sid not in self._drag:
                self._syncing = True
                try:
                    row.slider.setValue(float(value))
                finally:
                    self._syncing = False

    def reload_from_document(self) -> None:
        """Rebuild the rows from ``doc.sliders`` (after a project is opened)."""
        for sid, data in self.doc.slider_specs.items():
            try:
                self.starters[sid] = SliderSpec.from_dict(data)
            except (KeyError, TypeError, ValueError):
                _log.warning("slider %r in the project is unreadable, left out", sid)
        self.sliders = SliderSet.from_values(self.doc.sliders, self.starters)
        self._rebuild_rows()

    # -- dragging ------------------------------------------------------------------------
    def _on_slider_pressed(self, slider_id: str) -> None:
        self._drag[slider_id] = f"drag:{slider_id}:{next(self._drag_ids)}"

    def _on_slider_value_changed(self, slider_id: str, value: float) -> None:
        if self._syncing:
            return
        merge = self._drag.get(slider_id)
        self.undo.push(SetSliderValue(slider_id, float(value),
                                      merge_id=merge if merge else None))
        self.slider_moved.emit(slider_id, float(value))
        if merge:
            self._submit_preview_throttled()
        else:  # keyboard, wheel or a click on the groove: a whole edit at once
            self.render()

    def _on_slider_released(self, slider_id: str) -> None:
        self._drag.pop(slider_id, None)
        self._submit_preview_throttled.cancel()
        value = self.sliders.values.get(slider_id, 0.0)
        self.slider_released.emit(slider_id, float(value))
        self.render()

    # -- requests ------------------------------------------------------------------------
    def set_base_request(self, request: GenerationRequest | None) -> None:
        """The image the sliders edit (the last generation's request)."""
        self.base_request = request
        self._update_notes()
        self.hint.setText("Move a slider to edit this image." if request is not None else
                          "Generate an image, then move a slider.")

    def set_canvas_image(self, pixels: Pixels | None) -> None:
        """An image for VAE/GAN mode to start from, whatever the canvas holds (None: the
        canvas when "Edit the init image" is ticked, else the seed)."""
        self.canvas_image = pixels

    def _latent_start_image(self) -> Pixels | None:
        """What VAE/GAN mode encodes: the image set, or with the box ticked the canvas
        flattened over white (None when nothing is drawn: the seed then)."""
        if self.canvas_image is not None:
            return self.canvas_image
        if not self.invert_check.isChecked() or not self.doc.layers:
            return None
        rgba = self.doc.composite()
        if not rgba[..., 3].any():
            return None
        alpha = rgba[..., 3:4].astype(np.float32) / 255.0
        rgb = rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return Pixels.from_array(np.round(rgb).astype(np.uint8))

    def current_request(self) -> GenerationRequest | None:
        """The base request with the sliders of the current mode applied."""
        mode = self.mode
        if mode in LATENT_SPACES:
            seed = self.base_request.seed if self.base_request is not None else 0
            base = GenerationRequest("", model=LATENT_MODELS[mode], seed=seed, steps=1,
                                     width=64, height=64)
            start = self._latent_start_image()
            if start is not None:  # the VAE encodes it, the GAN inverts it (once per image)
                base = base.replace(task="img2img", init_image=start)
            specs = [s for s in self.sliders if s.space == mode]
        else:
            if self.base_request is None:
                return None
            # The base as it was before any slider: its own slider entries are replaced.
            base = self.base_request.replace(batch_size=1, model_hash="", device="", dtype="",
                                             sliders=(), loras=(), variation_seed=None,
                                             variation_strength=0.0)
            if self.invert_check.isChecked() and base.init_image is not None:
                base = inversion_request(base)
            specs = [s for s in self.sliders if s.space not in LATENT_SPACES]
        return SliderSet(specs, self.sliders.values).apply(base)

    def _submit_preview(self) -> None:
        request = self.current_request()
        if request is None:
            return
        if self.mode not in LATENT_SPACES:
            request = preview_request(request)
        self.preview_requested.emit(request)
        if self.runner is not None:
            self._preview_job = self.runner.submit(request, "preview")

    def render(self) -> None:
        """Render the final image of the current values."""
        request = self.current_request()
        if request is None:
            return
        self.render_requested.emit(request)
        if self.render_handler is not None and self.mode not in LATENT_SPACES:
            self.render_handler(request)
        elif self.runner is not None:
            # The preview slot: a render after release replaces any stale preview.
            self._preview_job = self.runner.submit(request, "preview")

    def attach(self, engine: Any, runner: Any) -> None:
        """Use ``runner`` for previews and renders; an engine with VAE/GAN slider support
        (``latent_models``) also builds directions from marked examples."""
        self.runner = runner
        latent = getattr(engine, "latent_models", None)
        if latent is None or not hasattr(engine, "resolve_model"):
            self.direction_builder = None
            return

        def build(space: str, with_: np.ndarray, without: np.ndarray) -> Any:
            info = engine.resolve_model(LATENT_MODELS[space])
            return engine.latent_models.direction_from_images(info, with_, without).vector

        self.direction_builder = build

    # -- attribute vectors from examples ------------------------------------------------
    def mark_example(self, has_attribute: bool, image: np.ndarray | None = None) -> None:
        """Mark an image (default: the one shown) as having or lacking the attribute."""
        image = self.last_preview if image is None else image
        if image is None:
            self.hint.setText("Move a slider or generate first: there is no image to mark.")
            return
        self.examples[has_attribute].append(np.ascontiguousarray(image[..., :3]))
        n_has, n_lacks = len(self.examples[True]), len(self.examples[False])
        self.hint.setText(f"Examples: {n_has} with, {n_lacks} without the attribute.")

    def build_example_slider(self) -> None:
        """Build a VAE/GAN slider from the marked examples (mean difference of latents)."""
        name = self.example_name.text().strip() or "example"
        space = self.mode if self.mode in LATENT_SPACES else VAE
        if not self.examples[True] or not self.examples[False]:
            self.hint.setText("Mark at least one image with and one without the attribute.")
            return
        if self.runner is None or self.direction_builder is None:
            self.hint.setText("The engine is not ready to build a direction.")
            return
        with_, without = np.stack(self.examples[True]), np.stack(self.examples[False])
        builder = self.direction_builder

        def work(_on_step: Any, _cancel: Any) -> Any:
            return builder(space, with_, without)

        job = self.runner.submit(work=work, label=f"Direction: {name}")
        self._example_job = (job, space, name)

    def _on_example_built(self, vector: Any) -> None:
        assert self._example_job is not None
        _job, space, name = self._example_job
        self._example_job = None
        self.examples = {True: [], False: []}
        self.set_mode(space)
        spec = example_slider(space, name, vector)
        self.starters[spec.slider_id] = spec  # so the id resolves while the panel lives
        self.doc.slider_specs[spec.slider_id] = spec.to_dict()  # and after a reopen
        self.add_slider(spec)

    def _on_job_finished(self, event: JobFinished) -> None:
        if self._example_job is not None and event.job_id == self._example_job[0]:
            self._on_example_built(event.result)
            return
        if event.job_id == self._preview_job:
            self._preview_job = None
            self.show_preview(event.result.images[0])
        elif event.job_id in self._frame_jobs:
            index = self._frame_jobs.pop(event.job_id)
            self.frames[index] = event.result.images[0]
            label = QLabel(objectName=f"frame_{index}")
            label.setPixmap(to_pixmap(event.result.images[0], 64))
            columns = 3 if self._frames_grid_kind == "grid" else 8
            self._frames_grid.addWidget(label, index // columns, index % columns)
            self.frames_shown.emit(len(self.frames))

    def _on_job_failed(self, event: JobFailed) -> None:
        if self._example_job is not None and event.job_id == self._example_job[0]:
            self._example_job = None
            self.hint.setText(event.message)
        if event.job_id == self._preview_job or event.job_id in self._frame_jobs:
            self._frame_jobs.pop(event.job_id, None)
            self.hint.setText(event.message)

    def show_preview(self, image: np.ndarray) -> None:
        self.last_preview = image
        self.preview.setPixmap(to_pixmap(image))
        self.preview.show()
        self.preview_shown.emit(image)

    # -- seed exploration ----------------------------------------------------------------
    _frames_grid_kind = "strip"

    def _submit_frames(self, requests: list[GenerationRequest], kind: str) -> None:
        while self._frames_grid.count():
            item = self._frames_grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.frames.clear()
        self._frames_grid_kind = kind
        if self.runner is None:
            return
        for i, req in enumerate(requests):
            self._frame_jobs[self.runner.submit(req, "render")] = i

    def make_strip(self, frames: int = 8) -> None:
        """Interpolate from the current image to the seed in the seed box, as frames."""
        request = self.current_request()
        if request is not None and self.mode not in LATENT_SPACES:
            self._submit_frames(interpolation_requests(request, self.seed_spin.value(),
                                                       int(frames) or 8), "strip")

    def make_grid(self, strength: float = 0.2) -> None:
        """A 3x3 grid of variations around the current image (the centre is the image)."""
        request = self.current_request()
        if request is not None and self.mode not in LATENT_SPACES:
            self._submit_frames(neighbourhood_requests(request, float(strength or 0.2)), "grid")

    # -- adding sliders ------------------------------------------------------------------
    def _on_mode_changed(self, _index: int) -> None:
        self._update_groups()

    def _on_add_starter_clicked(self) -> None:
        sid = self.starter_combo.currentData()
        if sid:
            self.add_slider(self.starters[str(sid)])

    def _on_add_pair_clicked(self) -> None:
        try:
            spec = prompt_pair(self.positive_edit.text(), self.negative_edit.text(),
                               local=self.keep_rest_check.isChecked())
        except ValueError as err:
            self.hint.setText(str(err))
            return
        if spec.slider_id not in self.sliders.specs:  # its "keep the rest" choice, kept
            self.starters[spec.slider_id] = spec
            self.doc.slider_specs[spec.slider_id] = spec.to_dict()
        self.add_slider(spec)
        self.positive_edit.clear()
        self.negative_edit.clear()

    def _on_add_lora_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add a LoRA", "",
                                              "LoRA files (*.safetensors)")
        if path:
            self.add_slider(lora_slider(path))

    def _on_add_latent_clicked(self) -> None:
        mode = self.mode if self.mode in LATENT_SPACES else VAE
        self.set_mode(mode)
        self.add_slider(latent_slider(mode, str(self.attribute_combo.currentData())))

    def _on_add_variation_clicked(self) -> None:
        self.add_slider(variation_slider(self.seed_spin.value()))

    def _on_add_interp_clicked(self) -> None:
        self.add_slider(interpolation_slider(self.seed_spin.value()))


def _row(*widgets: QWidget) -> QWidget:
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        layout.addWidget(w)
    return box
