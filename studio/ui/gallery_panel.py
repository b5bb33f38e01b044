"""``GalleryPanel``: thumbnails of the session's generations, with their settings.

The panel observes the document's ``GenerationLog``: it shows the records that are not
deleted, newest first. Clicking one restores its settings into the prompt panel; the buttons
place it on the canvas, use it as the init image, vary its seed, copy its settings as A1111
text, or delete it from the gallery (``SetGenerationDeleted``: undoable, the image is kept).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QSize, Qt, Signal
from PySide6.QtGui import QGuiApplication, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QVBoxLayout,
    QWidget,
)

from studio.core.document.edits import SetGenerationDeleted
from studio.core.document.layers import Document
from studio.core.document.undo import UndoStack
from studio.core.formats.a1111 import a1111_parameters
from studio.core.project.generation_log import GenerationRecord
from studio.session.staging import candidate_caption
from studio.ui.widgets import tool_button

RECORD_ROLE = Qt.ItemDataRole.UserRole
THUMB = 96
CAPTION_LINES = 3  # task, seed, variation seed (``caption``)


def summary(record: GenerationRecord) -> str:
    r = record.request
    uses_strength = r.task != "txt2img" and not r.is_edit  # an edit has no strength
    return (f"{'Edit: ' if r.is_edit else ''}{r.prompt or '(no prompt)'}\n"
            f"{record.task} · {r.model} · {r.scheduler} · {r.steps} steps · CFG {r.guidance:g}\n"
            f"seed {r.seed}"
            + (f" · variation seed {r.variation_seed} ({r.variation_strength:g})"
               if r.variation_seed is not None and r.variation_strength > 0 else "")
            + f" · {r.width}×{r.height}"
            + (f" · strength {r.strength:g}" if uses_strength else "")
            + (f" · {record.duration:.1f} s" if record.duration else "")
            + (f"\nmade on {r.device.split(':', 1)[1]} · its ComfyUI workflow is kept"
               if record.workflow() is not None and r.device.startswith("comfyui:") else ""))


def caption(record: GenerationRecord) -> str:
    """The lines under a thumbnail: task, seed and variation seed (``"txt2img\nseed 7\n
    var 123"``), so the variations of one seed tell apart."""
    return candidate_caption(record.request, 0, record.task).replace(" · ", "\n")


def thumbnail_image(image: np.ndarray, size: int = THUMB) -> QImage:
    """A gallery thumbnail as an image (any thread may make it)."""
    arr = np.ascontiguousarray(image[..., :3])
    h, w = arr.shape[:2]
    qimg = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_RGB888).copy()
    return qimg.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                       Qt.TransformationMode.SmoothTransformation)


def thumbnail(image: np.ndarray, size: int = THUMB) -> QIcon:
    return QIcon(QPixmap.fromImage(thumbnail_image(image, size)))


class GalleryPanel(QWidget):
    """The session's generations, newest first."""

    item_clicked = Signal(object)  # GenerationRecord: restore its settings
    place_requested = Signal(object)
    init_requested = Signal(object)
    vary_requested = Signal(object)

    def __init__(self, doc: Document, undo: UndoStack, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("gallery_panel")
        self.doc = doc
        self.undo = undo
        self.items: list[GenerationRecord] = []
        self.list = QListWidget(objectName="gallery_list")
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setWordWrap(True)
        self.list.setTextElideMode(Qt.TextElideMode.ElideNone)  # the whole caption, always
        self._fit_grid()
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setMovement(QListView.Movement.Static)
        self.list.setSpacing(2)
        # Several picks: Export Gallery… can export just the selected images.
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.itemClicked.connect(self._on_list_item_clicked)
        self.list.currentItemChanged.connect(self._on_list_current_changed)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._on_list_context_menu_requested)
        self.info_label = QLabel("Generations of this session appear here.",
                                 objectName="gallery_info_label")
        self.info_label.setWordWrap(True)
        self.info_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.place_button = tool_button("gallery_place_button", "place", "Place on canvas as a layer")
        self.init_button = tool_button("gallery_init_button", "init", "Use as init image")
        self.vary_button = tool_button("gallery_vary_button", "vary", "Vary the seed")
        self.copy_button = tool_button("gallery_copy_button", "copy",
                                       "Copy settings (A1111 text)")
        self.delete_button = tool_button("gallery_delete_button", "delete", "Remove from gallery")
        self.place_button.clicked.connect(lambda: self._emit_for_current(self.place_requested))
        self.init_button.clicked.connect(lambda: self._emit_for_current(self.init_requested))
        self.vary_button.clicked.connect(lambda: self._emit_for_current(self.vary_requested))
        self.copy_button.clicked.connect(self.copy_settings)
        self.delete_button.clicked.connect(self.remove_current)
        buttons = QHBoxLayout()
        for b in (self.place_button, self.init_button, self.vary_button, self.copy_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.delete_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.info_label)
        layout.addLayout(buttons)
        self._update_buttons()

        self._icons: dict[str, QIcon] = {}  # image hash -> thumbnail
        doc.log.add_listener(self._on_log_event)
        self.rebuild()

    def _fit_grid(self) -> None:
        """Cells tall enough for a whole caption (task, seed, variation seed: three lines in
        the list's font), so the selected one is not cut to "txt2img…"."""
        metrics = self.list.fontMetrics()
        # The widest line ("seed 4294967295") and the item's text margins on both sides.
        width = max(THUMB + 30, metrics.horizontalAdvance("seed 4294967295") + 28)
        grid = QSize(width, THUMB + CAPTION_LINES * metrics.lineSpacing() + 16)
        self.list.setGridSize(grid)
        # Each item asks for the whole cell: left to the delegate, it measures the caption
        # as one line and draws the first line elided ("txt2img…").
        self._cell = grid - QSize(4, 4)
        for row in range(self.list.count()):
            self.list.item(row).setSizeHint(self._cell)

    def showEvent(self, event: Any) -> None:  # the theme's font is known now
        super().showEvent(event)
        self._fit_grid()

    def changeEvent(self, event: Any) -> None:  # a theme or font change: fit again
        super().changeEvent(event)
        if event.type() in (QEvent.Type.FontChange, QEvent.Type.StyleChange) \
                and hasattr(self, "_cell"):
            self._fit_grid()

    # -- model -> view -------------------------------------------------------------------
    def _on_log_event(self, name: str, payload: dict[str, Any]) -> None:
        if name in ("record_added", "record_changed"):
            self.rebuild(payload["record"].id if name == "record_added" else None)

    @staticmethod
    def prepare(doc: Document) -> dict[str, QImage]:
        """The thumbnails of ``doc``'s gallery by image hash, made on any thread (a project
        being opened): ``prime`` hands them to the panel before the document is shown."""
        log = doc.log
        return {r.image_hashes[0]: thumbnail_image(log.image(r.image_hashes[0]))
                for r in log.gallery() if r.image_hashes}

    def prime(self, thumbnails: dict[str, QImage]) -> None:
        for key, image in thumbnails.items():
            self._icons[key] = QIcon(QPixmap.fromImage(image))

    def _icon(self, record: GenerationRecord) -> QIcon:
        key = record.image_hashes[0]
        icon = self._icons.get(key)
        if icon is None:  # images are stored by content: a hash's thumbnail never changes
            icon = self._icons[key] = thumbnail(self.image(record))
        return icon

    def rebuild(self, select: str | None = None) -> None:
        keep = select or (self.current().id if self.current() is not None else None)
        self.list.blockSignals(True)
        self.list.clear()
        self.items = [r for r in reversed(self.doc.log.gallery()) if r.image_hashes]
        shown = {r.image_hashes[0] for r in self.items}
        self._icons = {k: v for k, v in self._icons.items() if k in shown}
        for record in self.items:
            entry = QListWidgetItem(self._icon(record), caption(record))
            entry.setData(RECORD_ROLE, record.id)
            entry.setToolTip(summary(record))
            entry.setSizeHint(self._cell)
            self.list.addItem(entry)
            if record.id == keep:
                self.list.setCurrentItem(entry)
        self.list.blockSignals(False)
        self._update_buttons()

    def image(self, record: GenerationRecord) -> np.ndarray:
        return self.doc.log.image(record.image_hashes[0])

    def current(self) -> GenerationRecord | None:
        row = self.list.currentRow()
        return self.items[row] if 0 <= row < len(self.items) else None

    def select(self, record_id: str) -> None:
        for row, record in enumerate(self.items):
            if record.id == record_id:
                self.list.setCurrentRow(row)

    def find(self, record_id: str) -> GenerationRecord | None:
        return next((r for r in self.items if r.id == record_id), None)

    # -- actions -------------------------------------------------------------------------
    def copy_settings(self) -> str:
        item = self.current()
        if item is None:
            return ""
        text = a1111_parameters(item.request)
        QGuiApplication.clipboard().setText(text)
        return text

    def remove_current(self) -> None:
        item = self.current()
        if item is not None:
            self.undo.push(SetGenerationDeleted(item.id, True))

    def _emit_for_current(self, signal: Any) -> None:
        item = self.current()
        if item is not None:
            signal.emit(item)

    def _on_list_item_clicked(self, entry: QListWidgetItem) -> None:
        item = self.find(entry.data(RECORD_ROLE))
        if item is not None:
            self.item_clicked.emit(item)

    def _on_list_current_changed(self, *_args: Any) -> None:
        self._update_buttons()

    def _on_list_context_menu_requested(self, pos: Any) -> None:
        if self.current() is None:
            return
        menu = QMenu(self)
        menu.addAction("Restore settings", lambda: self._emit_for_current(self.item_clicked))
        menu.addAction(self.place_button.icon(), "Place on canvas",
                       lambda: self._emit_for_current(self.place_requested))
        menu.addAction(self.init_button.icon(), "Use as init image",
                       lambda: self._emit_for_current(self.init_requested))
        menu.addAction(self.vary_button.icon(), "Vary seed",
                       lambda: self._emit_for_current(self.vary_requested))
        menu.addAction(self.copy_button.icon(), "Copy settings", self.copy_settings)
        menu.addSeparator()
        menu.addAction(self.delete_button.icon(), "Remove from gallery", self.remove_current)
        menu.exec(self.list.viewport().mapToGlobal(pos))

    def _update_buttons(self) -> None:
        item = self.current()
        for b in (self.place_button, self.init_button, self.vary_button, self.copy_button,
                  self.delete_button):
            b.setEnabled(item is not None)
        if item is not None:
            self.info_label.setText(summary(item))
        else:
            self.info_label.setText("Generations of this session appear here."
                                    if not self.items else "")
