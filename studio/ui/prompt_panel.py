"""``PromptPanel``: model, prompts, seed, steps, guidance, size, scheduler, batch, strength."""

from __future__ import annotations

import html
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QPainter, QTextCursor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.core.errors import InvalidRequestError
from studio.core.jobs.request import EDIT_STRENGTH, GenerationRequest
from studio.core.models import ModelInfo
from studio.core.samplers import (
    SCHEDULER_GROUPS,
    SCHEDULER_NAMES,
    fast_setting,
    fast_setting_note,
    scheduler_name,
    scheduler_note,
)
from studio.core.styles import StyleLibrary
from studio.ui.prompt_words import PromptTextEdit, PromptWords
from studio.ui.styles_box import StylesBox
from studio.ui.theme import set_icon
from studio.ui.value_widgets import ClampingSpinBox, SeedSpinBox
from studio.ui.widgets import (
    VerticalScrollArea,
    float_slider,
    int_slider,
    section_label,
    tool_button,
)

SCHEDULERS = SCHEDULER_NAMES  # the local engine's (EngineFeatures.schedulers), grouped
SIZE_PRESETS = (("Square 512", 512, 512), ("Square 768", 768, 768),
                ("Square 1024", 1024, 1024), ("Portrait 2:3", 512, 768),
                ("Landscape 3:2", 768, 512), ("Wide 16:9", 1024, 576),
                ("Tiny 64", 64, 64))
CUSTOM = "Custom"
MAX_SEED = 2**32 - 1

# The request fields this panel owns (restored from the gallery, saved in the settings).
FIELDS = ("prompt", "negative_prompt", "model", "scheduler", "seed", "steps", "guidance",
          "width", "height", "strength")
# The fields a model's card recommends.
CARD_FIELDS = ("scheduler", "steps", "guidance", "width", "height")
# Edit with words (an edit model such as Flux Kontext, its card's "edit"): the panel holds
# EDIT_STRENGTH while editing (below 1, so a covered region is the image to edit; the
# request's default, which the command line records too). The edit itself uses none.
EDIT_PLACEHOLDER = "Say what to change… (e.g. make the hair red)"
EDIT_TIP = ("This model edits a picture as the prompt says (\"make the hair red\"): the "
            "canvas, or the selection's area, becomes a new layer with the change. Off: it "
            "draws a new image from the words alone")
EDIT_ONLY_TIP = ("This model edits a picture as the prompt says (\"make the hair red\"): the "
                 "canvas, or the selection's area, becomes a new layer with the change. It "
                 "cannot draw from the words alone, so this stays on")


def _restore_text(edit: QPlainTextEdit, text: str) -> None:
    """Show a restored prompt (the last session's, a project's, a past generation's)
    selected: what the user types next replaces it, as a search box does, instead of landing
    in front of it; a click or an arrow key keeps it to edit, and Ctrl+Z brings it back."""
    if edit.toPlainText() == text:
        return  # the same words: the cursor and the undo history stay as they are
    edit.setPlainText(text)
    cursor = edit.textCursor()
    cursor.select(QTextCursor.SelectionType.Document)
    edit.setTextCursor(cursor)


class OneLineLabel(QLabel):
    """A label that keeps to one line, so the panel under it never moves: text that does
    not fit ends in "…", and the tooltip has it whole (then ``hint``). ``text()`` is whole."""

    def __init__(self, text: str = "", parent: QWidget | None = None, *, hint: str = "",
                 objectName: str = "") -> None:  # noqa: N803 (Qt's keyword)
        super().__init__(parent, objectName=objectName)
        self._hint = hint
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 (Qt's name)
        super().setText(text)
        self.setToolTip("\n".join(t for t in (text, self._hint) if t))

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return QSize(0, super().minimumSizeHint().height())

    def paintEvent(self, _event: object) -> None:  # noqa: N802
        painter = QPainter(self)
        rect = self.contentsRect()
        shown = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight,
                                              rect.width())
        self.style().drawItemText(painter, rect, int(self.alignment()), self.palette(),
                                  self.isEnabled(), shown, self.foregroundRole())


class PromptPanel(QWidget):
    """What to generate. Reads and writes the request fields it owns.

    ``styles`` are the named styles of the styles box under the negative prompt (the
    user's style file when not given); its Apply button writes a style into the prompts.
    """

    generate_requested = Signal()
    cancel_requested = Signal()
    model_changed = Signal(str)
    size_changed = Signal(int, int)  # the width and height asked for

    def __init__(self, styles: StyleLibrary | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("prompt_panel")
        self._models: dict[str, ModelInfo] = {}
        # "Use settings" on a server's image: (model, "comfyui:URL") it runs on again, while
        # that model stays chosen (the backend says in one line if that server is gone).
        self.pinned: tuple[str, str] = ("", "")
        # The fields set since the window opened (typed, imported, picked from the gallery):
        # defaults that arrive later (a model's card, the last session's values) skip them.
        self.edited: set[str] = set()
        self._defaults_depth = 0
        self._mode_text = "Text to image"  # as the canvas decides it (edit models reword it)
        self._strength_before_edit: float | None = None  # restored when leaving an edit model
        self.styles_box = StylesBox(styles if styles is not None else StyleLibrary())
        self._build()
        self._build_styles_box()
        self._track_edits()

    # -- building ------------------------------------------------------------------------
    def _build_styles_box(self) -> None:
        box = self.styles_box
        apply = QPushButton("Apply")
        apply.setToolTip("Write the chosen style into the prompt fields")
        box.buttons_row.insertWidget(1, apply)  # after the stretch, before Save… and Delete
        box.prompt_source = lambda: (self.prompt_edit.toPlainText(),
                                     self.negative_edit.toPlainText())
        apply.clicked.connect(self._on_style_apply_clicked)

    def _on_style_apply_clicked(self) -> None:
        prompt, negative = self.styles_box.apply_to(self.prompt_edit.toPlainText(),
                                                    self.negative_edit.toPlainText())
        self.prompt_edit.setPlainText(prompt)
        self.negative_edit.setPlainText(negative)
        self.styles_box.set_current("")

    def _build(self) -> None:
        self.model_combo = QComboBox(objectName="model_combo")
        self.model_combo.setToolTip("The diffusion model that makes the image")
        self.model_combo.currentIndexChanged.connect(self._on_model_combo_changed)
        self.prompt_edit = PromptTextEdit(objectName="prompt_edit")
        self.prompt_edit.setPlaceholderText("Describe the image…")
        self.prompt_edit.setTabChangesFocus(True)
        # The embedded model's words: completion, and one line when it knows none of them.
        self.prompt_words = PromptWords(self.prompt_edit,
                                        lambda: self._models.get(self.model_id))
        self.model_combo.currentIndexChanged.connect(self.prompt_words.refresh)
        self.negative_edit = QPlainTextEdit(objectName="negative_prompt_edit")
        self.negative_edit.setPlaceholderText("What to avoid…")
        self.negative_edit.setTabChangesFocus(True)
        self.negative_edit.setFixedHeight(56)

        self.seed_spin = SeedSpinBox()  # seeds go past 2**31
        self.seed_spin.setObjectName("seed_spin")
        self.seed_spin.setRange(0, MAX_SEED)
        self.seed_lock_button = tool_button("seed_lock_button", "unlock",
                                            "Lock the seed (otherwise each run gets a new one)",
                                            checkable=True)
        self.seed_lock_button.toggled.connect(self._on_seed_lock_toggled)
        self.seed_random_button = tool_button("seed_random_button", "dice", "New random seed")
        self.seed_random_button.clicked.connect(self.randomise_seed)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed_spin, 1)
        seed_row.addWidget(self.seed_lock_button)
        seed_row.addWidget(self.seed_random_button)

        self.steps_slider = int_slider("steps_slider", 1, 150, 20)
        self.guidance_slider = float_slider("guidance_slider", 0.0, 20.0, 7.0, 1)
        self.strength_slider = float_slider("strength_slider", 0.0, 1.0, 1.0, 2)
        self.strength_slider.setToolTip(
            "How much of the region is regenerated. 1: a new image over it (text to image); "
            "below 1: the image there is refined (image to image); inpainting uses it too")
        self.scheduler_combo = QComboBox(objectName="scheduler_combo")
        self.set_schedulers(SCHEDULERS)
        # The model card's fast setting (studio-tiny-diffusion: DPM++ 2M at guidance 3.5 for
        # 4 steps), offered in one line while the steps are that few and it is not in use.
        self.fast_label = QLabel(objectName="fast_setting_label")
        self.fast_label.setWordWrap(True)
        self.fast_label.setVisible(False)
        self.fast_label.linkActivated.connect(lambda _link: self.use_fast_setting())
        for signal in (self.steps_slider.valueChanged, self.guidance_slider.valueChanged,
                       self.scheduler_combo.currentIndexChanged):
            signal.connect(self._update_fast_note)
        self.edit_check = QCheckBox("Edit with words", objectName="edit_check")
        self.edit_check.setToolTip(EDIT_TIP)
        self.edit_check.setVisible(False)  # shown for edit models only
        self.edit_check.toggled.connect(self._on_edit_toggled)

        self.size_combo = QComboBox(objectName="size_combo")
        for name, w, h in SIZE_PRESETS:
            self.size_combo.addItem(f"{name}  ({w}×{h})", f"{w}x{h}")
        self.size_combo.addItem(CUSTOM, None)
        for combo in (self.model_combo, self.scheduler_combo, self.size_combo):
            # Long model names and presets must not make the dock wider than the form.
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(10)
        self.size_combo.currentIndexChanged.connect(self._on_size_combo_changed)
        self.width_spin = self._size_spin("width_spin")
        self.height_spin = self._size_spin("height_spin")
        size_row = QHBoxLayout()
        size_row.addWidget(self.width_spin)
        size_row.addWidget(QLabel("×"))
        size_row.addWidget(self.height_spin)

        self.batch_spin = ClampingSpinBox(objectName="batch_count_spin")  # 99 -> 64, said
        self.batch_spin.setAccessibleName("Batch")
        self.batch_spin.setRange(1, 64)
        self.batch_spin.setToolTip("How many images to queue, each with the next seed")

        self.mode_label = OneLineLabel("Text to image", objectName="mode_label",
                                       hint="Follows the canvas: selection, mask and image "
                                            "extent")
        self.generate_button = QPushButton("Generate", objectName="generate_button")
        set_icon(self.generate_button, "generate", "accent_text")
        self.generate_button.setToolTip("Generate (Ctrl+Enter)")
        self.generate_button.clicked.connect(self.generate_requested)
        self.cancel_button = QPushButton("Cancel", objectName="cancel_button")
        set_icon(self.cancel_button, "cancel")
        self.cancel_button.setToolTip("Cancel the running job (Esc)")
        self.cancel_button.clicked.connect(self.cancel_requested)
        # Live mode's toggle (``studio.ui.live``); its view goes in ``live_slot``.
        self.live_button = QPushButton("Live", objectName="live_button")
        self.live_button.setCheckable(True)
        set_icon(self.live_button, "brush")

        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Seed", seed_row)
        form.addRow("Steps", self.steps_slider)
        form.addRow("Guidance", self.guidance_slider)
        form.addRow("Sampler", self.scheduler_combo)
        form.addRow("", self.fast_label)
        form.addRow("Size", self.size_combo)
        form.addRow("", size_row)
        form.addRow("Strength", self.strength_slider)
        form.addRow("Batch", self.batch_spin)
        self._form = form  # edit models hide the Strength row (``_sync_edit``)

        body = QWidget()
        col = QVBoxLayout(body)
        col.setContentsMargins(10, 8, 10, 8)
        col.addWidget(section_label("Model"))
        col.addWidget(self.model_combo)
        col.addWidget(self.edit_check)
        col.addWidget(section_label("Prompt"))
        col.addWidget(self.prompt_edit, 2)
        col.addWidget(self.prompt_words.hint_label)
        col.addWidget(section_label("Negative prompt"))
        col.addWidget(self.negative_edit)
        col.addWidget(self.styles_box)
        col.addWidget(section_label("Settings"))
        col.addLayout(form)
        col.addStretch(0)
        scroll = VerticalScrollArea(body)
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button, 3)
        buttons.addWidget(self.cancel_button, 1)
        buttons.addWidget(self.live_button, 1)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 8)
        outer.addWidget(scroll, 1)
        self.live_slot = QVBoxLayout()
        self.live_slot.setContentsMargins(0, 0, 0, 0)
        outer.addLayout(self.live_slot)
        mode_row = QHBoxLayout()
        mode_row.setContentsMargins(10, 0, 10, 0)
        mode_row.addWidget(self.mode_label)
        outer.addLayout(mode_row)
        buttons.setContentsMargins(10, 0, 10, 0)
        outer.addLayout(buttons)
        self._set_size(512, 512)

    def _track_edits(self) -> None:
        fields = ((self.prompt_edit.textChanged, ("prompt",)),
                  (self.negative_edit.textChanged, ("negative_prompt",)),
                  (self.steps_slider.valueChanged, ("steps",)),
                  (self.guidance_slider.valueChanged, ("guidance",)),
                  (self.strength_slider.valueChanged, ("strength",)),
                  (self.scheduler_combo.currentIndexChanged, ("scheduler",)),
                  (self.seed_spin.valueChanged, ("seed",)),
                  (self.size_combo.currentIndexChanged, ("width", "height")),
                  (self.width_spin.valueChanged, ("width", "height")),
                  (self.height_spin.valueChanged, ("width", "height")))
        for signal, names in fields:
            signal.connect(lambda *_a, n=names: self._on_field_edited(n))
        self.model_combo.activated.connect(self._on_model_combo_activated)

    def _on_field_edited(self, names: tuple[str, ...]) -> None:
        if not self._defaults_depth:
            self.edited.update(names)

    @contextmanager
    def _setting_defaults(self) -> Iterator[None]:
        self._defaults_depth += 1
        try:
            yield
        finally:
            self._defaults_depth -= 1

    def _size_spin(self, name: str) -> QSpinBox:
        spin = ClampingSpinBox(objectName=name)  # a number past the range is clamped, said
        spin.setAccessibleName(name.split("_")[0].title())
        spin.setRange(8, 4096)
        spin.setSingleStep(8)
        spin.valueChanged.connect(self._on_size_spin_changed)
        return spin

    # -- models --------------------------------------------------------------------------
    def set_models(self, models: list[ModelInfo], current: str = "") -> None:
        """Fill the model picker; keeps ``current`` (or the current one) if still there."""
        current = current or self.model_id
        self._models = {m.id: m for m in models}
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        # Beside server models, this computer's say where they live too.
        here = "this computer" if any(server_hosts(m) for m in models) else ""
        for m in models:
            where = server_hosts(m) or here  # a server's model: its file, and where it lives
            label = f"{m.name}  ·  {m.family or '?'}  ·  on {where}" if where else \
                f"{m.name}  ·  {m.family}"
            self.model_combo.addItem(label, m.id)
            self.model_combo.setItemData(self.model_combo.count() - 1,
                                         f"{m.path or m.id}\n{m.source}, {m.size_text}",
                                         Qt.ItemDataRole.ToolTipRole)
        index = self.model_combo.findData(current)
        self.model_combo.blockSignals(False)
        if index >= 0:
            self.model_combo.setCurrentIndex(index)
        elif models:
            self.model_combo.setCurrentIndex(0)
            self._on_model_combo_changed(0)
        self._update_fast_note()  # the list may come after the steps were set

    @property
    def model_id(self) -> str:
        return self.model_combo.currentData() or ""

    @property
    def model(self) -> ModelInfo | None:
        """The chosen model's card (``None``: none yet)."""
        return self._models.get(self.model_id)

    def _on_model_combo_changed(self, index: int) -> None:
        model = self._models.get(self.model_combo.itemData(index) or "")
        if model is None:
            return
        self.apply_recommended(model)
        self._enter_or_leave_edit()
        self._update_fast_note()
        self.model_changed.emit(model.id)

    def _on_model_combo_activated(self, index: int) -> None:
        """The user picked a model: its card's values replace the ones set before."""
        model = self._models.get(self.model_combo.itemData(index) or "")
        if model is not None:
            self.edited -= set(CARD_FIELDS)
            self.apply_recommended(model)

    def _fast(self) -> tuple[str, float] | None:
        model = self.model
        if model is None:
            return None
        return fast_setting(dict(model.recommended), int(self.steps_slider.value()),
                            self.scheduler_combo.currentText(),
                            float(self.guidance_slider.value()))

    def _update_fast_note(self, *_args: object) -> None:
        fast = self._fast()
        model = self.model
        if fast is not None and model is not None and self.scheduler_combo.findText(fast[0]) >= 0:
            note = fast_setting_note(dict(model.recommended), int(self.steps_slider.value()),
                                     self.scheduler_combo.currentText(),
                                     float(self.guidance_slider.value()))
            self.fast_label.setText(f'{html.escape(note, quote=False)} <a href="fast">Use them</a>')
            self.fast_label.setVisible(True)
        else:
            self.fast_label.setVisible(False)

    def use_fast_setting(self) -> None:
        """Switch to the model card's fast sampler and guidance (the link in the note)."""
        fast = self._fast()
        if fast is not None:
            self._set_scheduler(fast[0])
            self.guidance_slider.setValue(fast[1])

    def set_schedulers(self, names: tuple[str, ...]) -> None:
        """Offer the backend's schedulers (``EngineFeatures.schedulers``), grouped by family
        with a separator between groups; each tooltip says how it differs from A1111's sampler
        of that name and the fewest steps it is good for."""
        combo = self.scheduler_combo
        current = combo.currentText()
        with self._setting_defaults():  # offering other names is no edit of the user's
            combo.clear()
            order = [n for _, group in SCHEDULER_GROUPS for n in group if n in names]
            order += [n for n in names if n not in order]
            group_of = {n: g for g, group in SCHEDULER_GROUPS for n in group}
            for name in order:
                last = combo.itemText(combo.count() - 1) if combo.count() else name
                if group_of.get(name) != group_of.get(last):
                    combo.insertSeparator(combo.count())
                combo.addItem(name)
                note = scheduler_note(name)
                if note:
                    combo.setItemData(combo.count() - 1, note, Qt.ItemDataRole.ToolTipRole)
            if current:
                self._set_scheduler(current)

    def _set_scheduler(self, name: str) -> None:
        """Select ``name`` written any common way (a diffusers class name too); an unknown
        name leaves the selection as it is."""
        try:
            name = scheduler_name(name)
        except InvalidRequestError:
            return
        if self.scheduler_combo.findText(name) >= 0:
            self.scheduler_combo.setCurrentText(name)

    def apply_recommended(self, model: ModelInfo) -> None:
        """Apply the model's recommended steps, guidance, size and scheduler, except the
        fields set since the window opened (see ``edited``). A scheduler that does not fit
        the model (a diffusion sampler on a flow-matching model, or the other way round)
        gives way to the model's own."""
        self.set_values(dict(model.recommended), defaults=True)
        fits = model.recommended_value("schedulers")
        if isinstance(fits, tuple | list) and fits and self.scheduler_combo.currentText() not in fits:
            self._set_scheduler(str(model.recommended_value("scheduler", fits[0])))

    # -- size ----------------------------------------------------------------------------
    def _set_size(self, width: int, height: int) -> None:
        for spin, value in ((self.width_spin, width), (self.height_spin, height)):
            spin.blockSignals(True)
            spin.setValue(value)
            spin.blockSignals(False)
        self._on_size_spin_changed()

    def _on_size_combo_changed(self, index: int) -> None:
        size = self.size_combo.itemData(index)
        if size:
            w, h = str(size).split("x")
            self._set_size(int(w), int(h))

    def _on_size_spin_changed(self, _value: int = 0) -> None:
        index = self.size_combo.findData(f"{self.width_spin.value()}x{self.height_spin.value()}")
        self.size_combo.blockSignals(True)
        self.size_combo.setCurrentIndex(index if index >= 0 else self.size_combo.count() - 1)
        self.size_combo.blockSignals(False)
        self.size_changed.emit(self.width_spin.value(), self.height_spin.value())

    # -- seed ----------------------------------------------------------------------------
    def randomise_seed(self) -> int:
        self.seed_spin.setValue(random.randint(0, MAX_SEED))
        return self.seed_spin.value()

    def _on_seed_lock_toggled(self, locked: bool) -> None:
        set_icon(self.seed_lock_button, "lock" if locked else "unlock")

    @property
    def seed_locked(self) -> bool:
        return self.seed_lock_button.isChecked()

    def take_seed(self) -> int:
        """The seed for the next run: the shown one if locked, else a new random one."""
        return self.seed_spin.value() if self.seed_locked else self.randomise_seed()

    # -- mode ----------------------------------------------------------------------------
    def set_mode_text(self, text: str) -> None:
        self._mode_text = text
        self.mode_label.setText(self._edit_mode_text(text))

    # -- edit with words -----------------------------------------------------------------
    @property
    def is_edit_model(self) -> bool:
        """Whether the chosen model edits with words (its card says ``edit``)."""
        model = self._models.get(self.model_id)
        return bool(model is not None and model.recommended_value("edit"))

    @property
    def is_edit_only_model(self) -> bool:
        """Whether the chosen model can only edit (Qwen-Image-Edit: no text to image)."""
        model = self._models.get(self.model_id)
        return bool(model is not None and model.recommended_value("edit_only"))

    @property
    def editing(self) -> bool:
        """Whether the next run edits the canvas with words (an edit model, the box on)."""
        return self.is_edit_model and self.edit_check.isChecked()

    def _enter_or_leave_edit(self) -> None:
        """Choosing an edit model turns edit with words on (Strength below 1, so a covered
        region is the picture to edit); leaving it gives the Strength back."""
        edit = self.is_edit_model
        if edit and self._strength_before_edit is None:
            self._strength_before_edit = float(self.strength_slider.value())
            with self._setting_defaults():
                self.strength_slider.setValue(EDIT_STRENGTH)
        elif not edit and self._strength_before_edit is not None:
            before, self._strength_before_edit = self._strength_before_edit, None
            with self._setting_defaults():
                self.strength_slider.setValue(before)
        self._sync_edit()

    def _sync_edit(self) -> None:
        """The box shown for edit models, on while the Strength is below 1; the Strength
        slider off while editing (an edit has none)."""
        edit = self.is_edit_model
        if not edit:
            self._strength_before_edit = None  # another model restored: its own Strength
        self.edit_check.setVisible(edit)
        only = edit and self.is_edit_only_model
        if only and self.strength_slider.value() >= 1.0:  # it cannot draw from words
            with self._setting_defaults():
                self.strength_slider.setValue(EDIT_STRENGTH)
        self.edit_check.blockSignals(True)
        self.edit_check.setChecked(edit and self.strength_slider.value() < 1.0)
        self.edit_check.blockSignals(False)
        self.edit_check.setEnabled(not only)
        self.edit_check.setToolTip(EDIT_ONLY_TIP if only else EDIT_TIP)
        self.strength_slider.setEnabled(not edit)
        # An edit has no strength: its row is hidden, not left showing an unused 0.75.
        self._form.setRowVisible(self.strength_slider, not edit)
        self.prompt_edit.setPlaceholderText(EDIT_PLACEHOLDER if self.editing
                                            else "Describe the image…")
        self.mode_label.setText(self._edit_mode_text(self._mode_text))

    def _on_edit_toggled(self, on: bool) -> None:
        self.strength_slider.setValue(EDIT_STRENGTH if on else 1.0)  # the canvas follows
        self._sync_edit()

    def _edit_mode_text(self, text: str) -> str:
        """The canvas's mode in an edit model's words."""
        if self.is_edit_model and self.is_edit_only_model and text.startswith("Text to image"):
            return "Edit with words needs a picture: open one or paint on the canvas"
        if self.is_edit_model and not self.editing:  # its Strength is off: the box edits
            return text.replace("(Strength below 1 refines)", "(Edit with words edits it)")
        if not self.editing:
            return text
        where = text[text.rfind("(") + 1:-1] if text.endswith(")") else "canvas"
        if text.startswith("Image to image"):
            return f"Edit with words ({where}): the change as a new layer"
        if text.startswith(("Inpainting", "Outpainting")):
            return (f"Edit with words takes a whole picture: clear the mask or select a "
                    f"covered area ({where})")
        return text

    def add_live_view(self, view: QWidget) -> None:
        """Show live mode's view (picture and settings) above the Generate row."""
        self.live_slot.addWidget(view)

    def set_busy(self, busy: bool) -> None:
        self.cancel_button.setEnabled(busy)

    # -- values --------------------------------------------------------------------------
    @property
    def batch_count(self) -> int:
        return self.batch_spin.value()

    def values(self) -> dict[str, Any]:
        """The request fields of this panel, without touching the seed."""
        return {
            "prompt": self.prompt_edit.toPlainText().strip(),
            "negative_prompt": self.negative_edit.toPlainText().strip(),
            "model": self.model_id,
            "scheduler": self.scheduler_combo.currentText(),
            "seed": self.seed_spin.value(),
            "steps": int(self.steps_slider.value()),
            "guidance": round(float(self.guidance_slider.value()), 2),
            "width": self.width_spin.value(),
            "height": self.height_spin.value(),
            "strength": round(float(self.strength_slider.value()), 2),
            **({"device": self.pinned[1]} if self.pinned[1] and self.pinned[0] == self.model_id
               else {}),
        }

    def set_values(self, values: dict[str, Any], defaults: bool = False) -> None:
        """Restore fields (from a gallery item or the saved settings); unknown keys ignored.

        ``defaults``: the values are defaults (a model's card, the last session's values):
        they never overwrite a field set since the window opened.
        """
        if defaults:
            values = {k: v for k, v in values.items() if k not in self.edited}
            if "width" not in values or "height" not in values:
                values.pop("width", None)
                values.pop("height", None)
            with self._setting_defaults():
                self._set_values(values)
            return
        self._set_values(values)
        self.edited.update(k for k in values if k in FIELDS)

    def _set_values(self, values: dict[str, Any]) -> None:
        if "model" in values:
            index = self.model_combo.findData(values["model"])
            if index >= 0 and index != self.model_combo.currentIndex():
                # Not through the combo's handler (the model's card would replace the values
                # being set), but the window still follows: the status bar, the backend.
                self.model_combo.blockSignals(True)
                self.model_combo.setCurrentIndex(index)
                self.model_combo.blockSignals(False)
                self.model_changed.emit(str(values["model"]))
        if "prompt" in values:
            _restore_text(self.prompt_edit, str(values["prompt"]))
        if "negative_prompt" in values:
            _restore_text(self.negative_edit, str(values["negative_prompt"]))
        if "scheduler" in values:
            self._set_scheduler(str(values["scheduler"]))
        if "seed" in values:
            self.seed_spin.setValue(int(values["seed"]) % (MAX_SEED + 1))
        if "steps" in values:
            self.steps_slider.setValue(int(values["steps"]))
        if "guidance" in values:
            self.guidance_slider.setValue(float(values["guidance"]))
        if "strength" in values:
            self.strength_slider.setValue(float(values["strength"]))
        if "model" in values or "strength" in values:
            self._sync_edit()  # an edit model's box follows the restored Strength
        if "width" in values and "height" in values:
            self._set_size(int(values["width"]), int(values["height"]))
        if "batch_count" in values:
            self.batch_spin.setValue(int(values["batch_count"]))
        if "seed_locked" in values:
            self.seed_lock_button.setChecked(bool(values["seed_locked"]))

    def apply_request(self, request: GenerationRequest, lock_seed: bool = True) -> None:
        """Restore the settings of a past generation; its seed is locked so it reproduces."""
        values = {name: getattr(request, name) for name in FIELDS}
        if request.task == "txt2img" and "strength" in values:
            # A text-to-image record keeps the request's unused strength (0.75 from the CLI
            # or another tool): restored as is over a painted canvas, the next Generate would
            # refine the canvas instead of making the image again.
            values["strength"] = 1.0
        elif request.is_edit:  # an edit with words: its model's edit mode (no strength used)
            values["strength"] = EDIT_STRENGTH
        self.set_values(values)
        device = str(request.device or "")
        self.pinned = (request.model, device) if device.startswith("comfyui:") else ("", "")
        if lock_seed:
            self.seed_lock_button.setChecked(True)

    def state(self) -> dict[str, Any]:
        """What survives a restart."""
        values = {k: v for k, v in self.values().items() if k != "device"}  # a pin: not kept
        return {**values, "batch_count": self.batch_count, "seed_locked": self.seed_locked}


def server_hosts(model: ModelInfo) -> str:
    """``127.0.0.1:8188, gpu2:8188`` for a model on ComfyUI servers (its ``path`` reads
    ``http://127.0.0.1:8188 · checkpoints/x.safetensors, ...``); "" for a local one."""
    if not model.source.startswith("comfyui"):
        return ""
    hosts = [part.split(" · ", 1)[0].split("://", 1)[-1] for part in model.path.split(", ")]
    return ", ".join(dict.fromkeys(h for h in hosts if h))
