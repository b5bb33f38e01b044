"""The staging area: a batch's (or a grid's) results as candidates over the canvas.

As in InvokeAI: the results of a batch do not pile up as layers. The first one is drawn
over the region it was made for, framed, with a bar at the bottom of the canvas; the others
wait. Each is kept (a layer named after what made it, one undoable edit linked to its
History entry) or discarded (it leaves History; the image stays in the project file).

Keys, while the canvas (or the bar) has the focus — never while a text field has the caret:
Left/Right browse, 1..9 pick, Enter keeps, Shift+Enter keeps all, Delete (or Backspace)
discards, Esc discards too unless a job is running (then Esc cancels it, as always), H hides
the result to compare with the canvas under it (as InvokeAI's "show results" toggle).

The state lives in ``studio.session.staging.Staging`` (no Qt); this module draws it and
turns kept candidates into layers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from studio.core.document.edits import ApplyGeneration, generated_pixels
from studio.core.document.operations import generated_layer_name, land_generation
from studio.core.jobs.events import GenerationResult
from studio.core.project.generation_log import GenerationRecord
from studio.session.document import DocumentModel
from studio.session.staging import Candidate, Staging
from studio.ui.canvas import CanvasView
from studio.ui.controller import LARGE_REGION

_TEXT_INPUTS = (QLineEdit, QTextEdit, QPlainTextEdit, QAbstractSpinBox)
_BROWSE = {Qt.Key.Key_Left: -1, Qt.Key.Key_Right: +1}
_KEEP = (Qt.Key.Key_Return, Qt.Key.Key_Enter)
_DISCARD = (Qt.Key.Key_Delete, Qt.Key.Key_Backspace)
_DIGITS = {getattr(Qt.Key, f"Key_{n}"): n for n in range(1, 10)}


class StagingBar(QFrame):
    """The bar over the bottom of the canvas: which candidate, browse, keep, discard."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("staging_bar")
        self.setAccessibleName("Staging area")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        # A click on the bar (its label, its margins) is the bar's: it never reaches the
        # canvas below, where it would paint.
        self.setAttribute(Qt.WidgetAttribute.WA_NoMousePropagation)

        def button(name: str, text: str, tip: str) -> QPushButton:
            b = QPushButton(text, self, objectName=name)
            b.setToolTip(tip)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the keys stay with the canvas
            return b

        self.prev_button = button("staging_prev_button", "◀", "Previous result (Left)")
        self.next_button = button("staging_next_button", "▶", "Next result (Right)")
        for b in (self.prev_button, self.next_button):
            b.setFixedWidth(32)
        self.label = QLabel(self, objectName="staging_label")
        self.label.setMinimumWidth(200)
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.keep_button = button("staging_keep_button", "Keep",
                                  "Keep this result as a layer (Enter)")
        self.keep_all_button = button("staging_keep_all_button", "Keep all",
                                      "Keep every result, each as a layer (Shift+Enter)")
        self.discard_button = button("staging_discard_button", "Discard",
                                     "Discard this result (Delete)")
        self.discard_all_button = button("staging_discard_all_button", "Discard all",
                                         "Discard every result left")
        self.hide_button = button("staging_hide_button", "Hide",
                                  "Hide the result to see the canvas under it (H)")
        self.hide_button.setCheckable(True)
        self.keep_button.setDefault(True)
        self.label.setToolTip("Left/Right or 1..9: browse · Enter: keep · Shift+Enter: keep "
                              "all · Delete or Esc: discard (click here first if you were "
                              "typing)")
        column = QVBoxLayout(self)
        column.setContentsMargins(8, 4, 8, 4)
        column.setSpacing(2)
        top, row = QHBoxLayout(), QHBoxLayout()
        row.setSpacing(4)
        top.addWidget(self.prev_button)
        top.addWidget(self.label, 1)
        top.addWidget(self.next_button)
        for w in (self.keep_button, self.keep_all_button, self.discard_button,
                  self.discard_all_button, self.hide_button):
            row.addWidget(w)
        column.addLayout(top)
        column.addLayout(row)
        self.hide()

    def place(self) -> None:
        """Centred near the bottom of the canvas."""
        parent = self.parentWidget()
        if parent is None:
            return
        self.adjustSize()
        width = min(self.sizeHint().width(), max(200, parent.width() - 16))
        self.resize(width, self.sizeHint().height())
        self.move((parent.width() - width) // 2, parent.height() - self.height() - 12)


class StagingArea(QObject):
    """The staging area of one window (see the module docs).

    Parameters
    ----------
    document
        The window's document and undo stack (kept candidates become layers there).
    canvas
        Where candidates are drawn; the bar sits on it and its keys act there.
    is_busy
        Whether a job is running (Esc then cancels it instead of discarding).
    on_kept
        Called with each kept candidate's record id (after its layer exists).
    """

    changed = Signal()

    def __init__(self, document: DocumentModel, canvas: CanvasView,
                 is_busy: Callable[[], bool] = lambda: False,
                 on_kept: Callable[[str], None] | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.document, self.canvas = document, canvas
        self.is_busy, self.on_kept = is_busy, on_kept
        self.staging = Staging()
        self.bar = StagingBar(canvas)
        self._jobs: set[int] = set()  # batch jobs whose results are staged
        self.bar.prev_button.clicked.connect(lambda: self.staging.step(-1))
        self.bar.next_button.clicked.connect(lambda: self.staging.step(+1))
        self.bar.keep_button.clicked.connect(self.keep)
        self.bar.keep_all_button.clicked.connect(self.keep_all)
        self.bar.discard_button.clicked.connect(self.discard)
        self.bar.discard_all_button.clicked.connect(self.discard_all)
        self.bar.hide_button.toggled.connect(lambda _on: self._on_changed())
        self.staging.changed.connect(self._on_changed)
        self.staging.kept.connect(self._on_kept)
        self.staging.discarded.connect(self._on_discarded)
        document.replacing.connect(self._on_document_replacing)
        canvas.installEventFilter(self)
        self.bar.installEventFilter(self)

    # -- what arrives --------------------------------------------------------------------
    def expect(self, job_ids: list[int]) -> None:
        """A batch was queued: its results are staged as they arrive."""
        fresh = [j for j in job_ids if j not in self._jobs]
        self._jobs.update(fresh)
        self.staging.expect(len(fresh))

    def job_ended(self, job_id: int) -> None:
        """A batch job failed or was cancelled: its result will not come."""
        if job_id in self._jobs:
            self._jobs.discard(job_id)
            self.staging.arrived(1)

    def stage(self, job_id: int, record: GenerationRecord, plan: Any) -> bool:
        """Stage a finished job's images if it belongs to a batch (or made several
        images); ``False``: not for staging, the caller applies it as usual."""
        images = record.image_hashes
        expected = job_id in self._jobs
        if not expected and len(images) < 2:
            return False
        self._jobs.discard(job_id)
        log = self.document.doc.log
        for i, key in enumerate(images):
            self.staging.add(Candidate(record.id, i, log.image(key), plan.rect, record.request,
                                       task=record.mode, mask=plan.layer_mask,
                                       canvas_size=plan.canvas_size))
        if expected:
            self.staging.arrived(1)
        return True

    def stage_grid_cell(self, result: GenerationResult) -> GenerationRecord:
        """An X/Y/Z grid cell: recorded hidden from History (a grid's cells would flood it)
        and staged over the generation region; kept, it shows in History too."""
        doc = self.document.doc
        record = doc.log.add_result(result, deleted=True)
        image = doc.log.image(record.image_hashes[0])
        if doc.layers or doc.selection is not None:
            rect, size = doc.generation_rect, None
        else:
            rect, size = (0, 0, image.shape[1], image.shape[0]), (image.shape[1],
                                                                  image.shape[0])
        self.staging.add(Candidate(record.id, 0, image, rect, record.request, grid=True,
                                   canvas_size=size))
        return record

    # -- choices -------------------------------------------------------------------------
    def keep(self) -> Candidate | None:
        return self.staging.keep()

    def keep_all(self) -> list[Candidate]:
        return self.staging.keep_all()

    def discard(self) -> Candidate | None:
        return self.staging.discard()

    def discard_all(self) -> list[Candidate]:
        return self.staging.discard_all()

    def _on_kept(self, candidates: list[Candidate]) -> None:
        undo, doc = self.document.undo_stack, self.document.doc
        was_empty = not doc.layers
        one = candidates[0]
        text = (f"Keep {one.caption}" if len(candidates) == 1
                else f"Keep {len(candidates)} results")
        big = [c for c in candidates if c.rect[2] * c.rect[3] > LARGE_REGION]
        prepared = {}
        if big:  # seconds of resizing on an 8000x8000 canvas: off the GUI thread
            from studio.ui.busy import run_while_painting

            made = run_while_painting(lambda: [ApplyGeneration.prepare(c.image, c.rect, c.mask)
                                               for c in big])
            prepared = {id(c): p for c, p in zip(big, made, strict=True)}
        with undo.macro(text):
            for c in candidates:
                land_generation(undo, c.image, c.rect, c.record_id,
                                generated_layer_name(c.request, c.index, c.task),
                                mask=c.mask, canvas_size=c.canvas_size, unhide=c.grid,
                                prepared=prepared.get(id(c)))
        if was_empty:
            self.canvas.fit()
        if self.on_kept is not None:
            for c in candidates:
                self.on_kept(c.record_id)

    def _on_discarded(self, candidates: list[Candidate]) -> None:
        """A discarded result leaves History, unless another image of its record is still
        staged or on the canvas (its image stays in the project file)."""
        log, doc = self.document.doc.log, self.document.doc
        staged = {c.record_id for c in self.staging.candidates}
        placed = {layer.record_id for layer in doc.layers if layer.record_id}
        for record_id in dict.fromkeys(c.record_id for c in candidates):
            if record_id in log and record_id not in staged | placed:
                log.set_deleted(record_id, True)

    def _on_document_replacing(self) -> None:
        self._jobs.clear()
        self.staging.clear()

    # -- drawing -------------------------------------------------------------------------
    def _on_changed(self) -> None:
        shown = self.staging.shown
        bar = self.bar
        if shown is None:
            self.canvas.set_staged(None)
            if self.staging.expected:
                bar.label.setText(f"Waiting for {self.staging.expected} result(s)…")
                self._set_buttons(False)
                bar.show()
                bar.place()
            else:
                bar.hide()
            self.changed.emit()
            return
        first = not bar.isVisible() or not bar.keep_button.isEnabled()
        image, mask = shown.image, shown.mask
        if mask is not None and mask.shape[:2] != image.shape[:2]:  # a large region's mask:
            from PIL import Image  # sampled down to the image (the painter scales it up)

            mask = np.asarray(Image.fromarray(mask).resize(
                (image.shape[1], image.shape[0]), Image.Resampling.NEAREST))
        pixels = generated_pixels(image, image.shape[1], image.shape[0], mask)
        if bar.hide_button.isChecked():  # compare with the canvas under it
            self.canvas.set_staged(None)
        else:
            self.canvas.set_staged(shown.rect, pixels)
        bar.label.setText(self.label_text())
        self._set_buttons(True)
        bar.prev_button.setEnabled(len(self.staging) > 1)
        bar.next_button.setEnabled(len(self.staging) > 1)
        bar.show()
        bar.raise_()
        bar.place()
        if first:
            focus = QApplication.focusWidget()
            if not isinstance(focus, _TEXT_INPUTS):  # never take the caret from a field
                self.canvas.setFocus(Qt.FocusReason.OtherFocusReason)
        self.changed.emit()

    def label_text(self) -> str:
        shown = self.staging.shown
        if shown is None:
            return ""
        text = f"{self.staging.current + 1} of {len(self.staging)} · {shown.caption}"
        if self.staging.expected:
            text += f" · {self.staging.expected} to come"
        return text

    def _set_buttons(self, on: bool) -> None:
        bar = self.bar
        for b in (bar.keep_button, bar.keep_all_button, bar.discard_button,
                  bar.discard_all_button, bar.prev_button, bar.next_button, bar.hide_button):
            b.setEnabled(on)

    # -- keys ----------------------------------------------------------------------------
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        kind = event.type()
        if kind == QEvent.Type.Resize and watched is self.canvas and self.bar.isVisible():
            self.bar.place()
        elif kind in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress) and isinstance(
                event, QKeyEvent) and self.staging.candidates:
            if self._handles(event):
                event.accept()
                if kind == QEvent.Type.KeyPress:
                    self._act(event)
                return True
        return super().eventFilter(watched, event)

    def _handles(self, event: QKeyEvent) -> bool:
        key, mods = event.key(), event.modifiers()
        plain = mods & ~(Qt.KeyboardModifier.KeypadModifier
                         | Qt.KeyboardModifier.ShiftModifier) == Qt.KeyboardModifier.NoModifier
        if not plain:
            return False
        if key == Qt.Key.Key_Escape:
            return not self.is_busy()
        return (key in _BROWSE or key in _KEEP or key in _DISCARD or key in _DIGITS
                or key == Qt.Key.Key_H)

    def _act(self, event: QKeyEvent) -> None:
        key = event.key()
        shift = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        if key in _BROWSE:
            self.staging.step(_BROWSE[key])
        elif key in _DIGITS:
            self.staging.select(_DIGITS[key] - 1)
        elif key in _KEEP:
            self.keep_all() if shift else self.keep()
        elif key in _DISCARD or key == Qt.Key.Key_Escape:
            self.discard()
        elif key == Qt.Key.Key_H:
            self.bar.hide_button.toggle()


# -- grids ---------------------------------------------------------------------------------
GRID_KEY = "studio-grid"  # PNG text: the axes and every cell's request, as JSON


def grid_parameters(plan: Any) -> str:
    """A1111-style ``parameters`` of a grid: the base settings, then the axes as A1111's
    X/Y/Z script writes them (``Script: X/Y/Z plot, X Type: Seed, X Values: 1,2,3``)."""
    from studio.core.formats.a1111 import a1111_parameters

    text = a1111_parameters(plan.base)
    extra = ["Script: X/Y/Z plot"]
    for name, axis in zip("XYZ", plan.axes, strict=False):
        what = axis.title if axis.kind not in ("seed", "steps", "scheduler") else \
            axis.kind.capitalize()
        extra.append(f"{name} Type: {what}")
        extra.append(f'{name} Values: "{",".join(axis.values)}"')
    return text + ", " + ", ".join(extra)


def save_grid(path: str, image: Any, plan: Any) -> None:
    """Save an X/Y/Z grid with its metadata: the base settings and axes (read by A1111's
    PNG Info) and, in PNG, every cell's full request (``studio-grid``), so any cell can be
    made again; JPEG and WebP carry the base settings."""
    import json
    from pathlib import Path

    from studio.core.formats.metadata import save_image

    target = Path(path)
    if plan is None or target.suffix.lower() != ".png":
        save_image(target, image, plan.base if plan is not None else None)
        return
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from studio.core.formats.imageio import atomic_write
    from studio.core.formats.metadata import studio_text
    from studio.core.formats.metadata_texts import PARAMETERS_KEY, STUDIO_KEY

    info = PngInfo()
    info.add_text(PARAMETERS_KEY, grid_parameters(plan))
    info.add_text(STUDIO_KEY, studio_text(plan.base), zip=True)
    cells = [{"x": c.x, "y": c.y, "z": c.z, "caption": plan.caption(c),
              "request": c.request.to_dict()} for c in plan.cells]
    axes = [{"kind": a.kind, "target": a.target, "values": list(a.values)} for a in plan.axes]
    info.add_text(GRID_KEY, json.dumps({"axes": axes, "cells": cells}), zip=True)
    im = Image.fromarray(image)
    atomic_write(target, lambda stream: im.save(stream, format="PNG", pnginfo=info))
