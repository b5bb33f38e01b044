"""``LayersPanel``: the layer stack (top first) with visibility, opacity, order, rename, delete.

The list is a ``QListView`` over ``LayerListModel``: rows are drawn only when they are seen
(thumbnails made, or taken from those drawn while a project was read, on first show), so a
200-layer project lists at once.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6.QtCore import (
    QAbstractListModel,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QListView,
    QVBoxLayout,
    QWidget,
)

from studio.core.document import operations as ops
from studio.core.document.blend import MODES, label
from studio.core.document.edits import AddLayer, SetLayerProps
from studio.core.document.layers import Document, Layer
from studio.core.document.undo import UndoStack
from studio.ui.control_layers import ControlSection
from studio.ui.widgets import float_slider, tool_button

LAYER_ID_ROLE = Qt.ItemDataRole.UserRole
THUMB = 40

AnyIndex = QModelIndex | QPersistentModelIndex


def layer_thumbnail_image(layer: Layer, size: int = THUMB) -> QImage:
    """The layer's thumbnail as an image (any thread may make it)."""
    px = layer.pixels
    step = max(1, max(px.shape[0], px.shape[1]) // (size * 2))
    small = np.ascontiguousarray(px[::step, ::step])
    h, w = small.shape[:2]
    image = QImage(small.data, w, h, w * 4, QImage.Format.Format_RGBA8888).copy()
    return image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                        Qt.TransformationMode.SmoothTransformation)


def layer_thumbnail(layer: Layer, size: int = THUMB) -> QIcon:
    return QIcon(QPixmap.fromImage(layer_thumbnail_image(layer, size)))


def tree_rows(doc: Document) -> list[tuple[Layer, int]]:
    """The layers as the panel lists them: top first, each group followed by what it holds
    (indented one step deeper)."""
    rows: list[tuple[Layer, int]] = []

    def walk(parent: str | None, depth: int, seen: frozenset[str]) -> None:
        for layer in reversed(doc.children(parent)):
            rows.append((layer, depth))
            if layer.is_group and layer.id not in seen:
                walk(layer.id, depth + 1, seen | {layer.id})

    if not doc.has_groups():
        return [(layer, 0) for layer in reversed(doc.layers)]
    walk(None, 0, frozenset())
    return rows


def group_thumbnail_image(doc: Document, group: Layer, size: int = THUMB) -> QImage:
    """What the group's members draw, small: rendered from the members sampled at every
    ``step``-th canvas pixel (the same pixels as a full render sampled, in microseconds on
    an 8000x8000 canvas). Any thread may make it; the panel makes it on a worker."""
    step = max(1, max(doc.width, doc.height) // (size * 2))
    small = doc.reduced(step).render_group(group.id)
    return layer_thumbnail_image(Layer(pixels=np.ascontiguousarray(small)), size)


_log = logging.getLogger(__name__)
_THUMB_JOBS: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
_THUMB_THREAD: list[threading.Thread] = []


def _make_thumbs() -> None:
    while True:
        _THUMB_JOBS.get()()


def _submit_thumb(job: Callable[[], None]) -> None:
    """Run ``job`` on the thread group thumbnails are made on (one for the app, a daemon:
    nothing to wait for at exit)."""
    if not _THUMB_THREAD:
        _THUMB_THREAD.append(threading.Thread(target=_make_thumbs, name="studio-thumbs",
                                              daemon=True))
        _THUMB_THREAD[0].start()
    _THUMB_JOBS.put(job)


def has_mask(layer: Layer) -> bool:
    return layer.has_mask()  # quick on a large layer


PreparedLayers = dict[str, tuple[QImage, bool]]  # layer id -> (thumbnail, has a mask)


class LayerListModel(QAbstractListModel):
    """The document's layers, top first. A thumbnail is made when its row is first drawn
    and kept until the layer changes; ``rename`` and ``set_visible`` are how an edit in the
    list reaches the undo stack. A group's thumbnail is made on a worker thread (its
    previous one is shown meanwhile)."""

    def __init__(self, doc: Document, rename: Callable[[str, str], None],
                 set_visible: Callable[[str, bool], None]) -> None:
        super().__init__()
        self.doc = doc
        self.rename, self.set_visible = rename, set_visible
        self.before_read: Callable[[], None] = lambda: None  # LayersPanel.flush
        self._rows: list[Layer] = []
        self._thumbs: dict[str, tuple[QImage, bool]] = {}
        # Group thumbnails: each group's version (one more at each change), the one shown
        # until the new one is made, and the groups whose thumbnail is being made.
        self._versions: dict[str, int] = {}
        self._stale: dict[str, tuple[QImage, bool]] = {}
        self._making: set[str] = set()
        self._failed: dict[str, int] = {}
        # Made thumbnails (group id, version, QImage or None), looked at on the GUI thread
        # every few ms while some are being made: no signal emitted from the worker
        # (PySide6 6.12's emit drops a reference to the bool it returns).
        self._made: queue.SimpleQueue[tuple[str, int, QImage | None]] = queue.SimpleQueue()
        self._made_timer = QTimer(self, interval=15)
        self._made_timer.timeout.connect(self._take_made)
        self.reset()

    def reset(self, prepared: PreparedLayers | None = None) -> None:
        """Show the document's layers as they are now (``prepared``: thumbnails ready)."""
        self.beginResetModel()
        rows = tree_rows(self.doc)
        self._rows = [layer for layer, _depth in rows]
        self._depth = {layer.id: depth for layer, depth in rows}
        ids = {layer.id for layer in self._rows}
        self._thumbs = {k: v for k, v in self._thumbs.items() if k in ids}
        self._stale = {k: v for k, v in self._stale.items() if k in ids}
        if prepared:
            self._thumbs.update(prepared)
        self.endResetModel()

    def row_of(self, layer_id: str) -> int:
        """The layer's row as the list shows the document now (-1: not listed)."""
        self.before_read()  # the panel's pending refresh, if any
        return self._row_of(layer_id)

    def _row_of(self, layer_id: str) -> int:
        for row, layer in enumerate(self._rows):
            if layer.id == layer_id:
                return row
        return -1

    def _forget_thumb(self, layer_id: str) -> None:
        entry = self._thumbs.pop(layer_id, None)
        if layer_id in self._versions:  # a group: one being made now is out of date
            self._versions[layer_id] += 1
            if entry is not None:
                self._stale[layer_id] = entry  # shown until the new one is made

    def layer_changed(self, layer_id: str) -> None:
        """The layer's pixels or properties changed: redraw its row when it is seen."""
        self._forget_thumb(layer_id)
        if self.doc.has_groups() and self.doc.has_layer(layer_id):  # its groups show it too
            parent = self.doc.parent_of(self.doc.layer(layer_id))
            seen: set[str] = set()
            while parent is not None and parent not in seen:
                seen.add(parent)
                self._forget_thumb(parent)
                row = self._row_of(parent)
                if row >= 0:
                    self.dataChanged.emit(self.index(row), self.index(row))
                parent = self.doc.parent_of(self.doc.layer(parent))
        row = self._row_of(layer_id)
        if row >= 0 and self.doc.has_layer(layer_id):
            self._rows[row] = self.doc.layer(layer_id)
            index = self.index(row)
            self.dataChanged.emit(index, index)

    def _thumb(self, layer: Layer) -> tuple[QImage, bool]:
        entry = self._thumbs.get(layer.id)
        if entry is None and layer.is_group:
            return self._group_thumb(layer)
        if entry is None:
            entry = self._thumbs[layer.id] = (layer_thumbnail_image(layer), has_mask(layer))
        return entry

    def _group_thumb(self, group: Layer) -> tuple[QImage, bool]:
        """The group's thumbnail is made on the worker thread; until it lands, its previous
        one (a new group: an empty one) is shown."""
        if group.id not in self._making:
            self._making.add(group.id)
            version = self._versions.setdefault(group.id, 0)
            _submit_thumb(lambda: self._make_group_thumb(group.id, version))
            self._made_timer.start()
        return self._stale.get(group.id) or self._blank()

    @staticmethod
    def _blank() -> tuple[QImage, bool]:
        blank = QImage(THUMB, THUMB, QImage.Format.Format_ARGB32_Premultiplied)
        blank.fill(0)
        return blank, False

    def _make_group_thumb(self, group_id: str, version: int) -> None:
        """On the worker thread: the group's thumbnail, handed to the GUI thread."""
        try:
            image: QImage | None = group_thumbnail_image(self.doc, self.doc.layer(group_id))
        except Exception:  # the group or a member changed while it was read: made again
            _log.debug("group thumbnail of %s not made", group_id, exc_info=True)
            image = None
        self._made.put((group_id, version, image))

    def _take_made(self) -> None:
        while not self._made.empty():
            self._on_group_thumb_made(*self._made.get())
        if not self._making:
            self._made_timer.stop()

    def _on_group_thumb_made(self, group_id: str, version: int, image: QImage | None) -> None:
        self._making.discard(group_id)
        if image is not None and self._versions.get(group_id) == version:
            self._thumbs[group_id] = (image, False)
            self._stale.pop(group_id, None)
        elif image is None and self._versions.get(group_id) == version:
            self._failed[group_id] = self._failed.get(group_id, 0) + 1
            if self._failed[group_id] >= 3:  # a lasting fault: no endless retries
                self._thumbs[group_id] = self._stale.get(group_id) or self._blank()
        row = self._row_of(group_id)
        if row >= 0:  # drawn now, or asked again (the group changed meanwhile)
            self.dataChanged.emit(self.index(row), self.index(row))

    # -- QAbstractListModel ------------------------------------------------------------------
    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        layer = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            extras = [label(layer.blend)] if layer.blend != "normal" else []
            if layer.opacity < 1.0:
                extras.append(f"{layer.opacity:.0%}")
            if layer.lock_alpha:
                extras.append("alpha locked")
            indent = "\u2003" * self._depth.get(layer.id, 0)  # em spaces: the group's depth
            name = f"\u25be {layer.name}" if layer.is_group else layer.name
            return indent + name + (f"\n{indent}{' · '.join(extras)}" if extras else "")
        if role == Qt.ItemDataRole.EditRole:
            return layer.name
        if role == LAYER_ID_ROLE:
            return layer.id
        if role == Qt.ItemDataRole.CheckStateRole:
            return Qt.CheckState.Checked if layer.visible else Qt.CheckState.Unchecked
        if role == Qt.ItemDataRole.DecorationRole:
            return self._thumb(layer)[0]
        if role == Qt.ItemDataRole.ToolTipRole:
            masked = self._thumb(layer)[1]
            if layer.is_group:
                return (f"Group {layer.name}: {len(self.doc.children(layer.id))} layers\n"
                        f"opacity {layer.opacity:.0%}, blend {label(layer.blend)}")
            return (f"{layer.name}\n{layer.width}×{layer.height} at ({layer.x}, {layer.y})"
                    f"\nopacity {layer.opacity:.0%}, blend {label(layer.blend)}"
                    + ("\nalpha locked" if layer.lock_alpha else "")
                    + ("\nhas an inpaint mask" if masked
                                                        else "")
                    + (f"\nregion: {layer.region_prompt}" if layer.region_prompt else ""))
        return None

    def flags(self, index: AnyIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return (Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
                | Qt.ItemFlag.ItemIsEditable | Qt.ItemFlag.ItemIsUserCheckable)

    def setData(self, index: AnyIndex, value: Any,  # noqa: N802
                role: int = Qt.ItemDataRole.EditRole) -> bool:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return False
        layer = self._rows[index.row()]
        if role == Qt.ItemDataRole.CheckStateRole:
            visible = Qt.CheckState(value) == Qt.CheckState.Checked
            if visible != layer.visible:
                self.set_visible(layer.id, visible)
            return True
        if role == Qt.ItemDataRole.EditRole:
            name = str(value).strip()
            if name and name != layer.name:
                self.rename(layer.id, name)
            return True
        return False


class LayersPanel(QWidget):
    """Lists the document's layers, top first; every change is a command on the stack."""

    layer_activated = Signal(str)

    def __init__(self, doc: Document, undo: UndoStack, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("layers_panel")
        self.doc = doc
        self.undo = undo
        self._updating = False
        self._primed: PreparedLayers = {}
        self.opacity_slider = float_slider("layer_opacity_slider", 0.0, 1.0, 1.0, 2)
        self.opacity_slider.setToolTip("Opacity of the selected layer")
        self.opacity_slider.valueChanged.connect(self._on_opacity_slider_changed)
        self.blend_combo = QComboBox(objectName="layer_blend_combo")
        for mode, (text, _ora, _psd) in MODES.items():
            self.blend_combo.addItem(text, mode)
        self.blend_combo.setToolTip("Blend mode of the selected layer (as GIMP, Krita and "
                                    "Photoshop draw it; kept in .ora and .psd exports)")
        self.blend_combo.currentIndexChanged.connect(self._on_blend_combo_changed)
        self.lock_alpha_button = tool_button("layer_lock_alpha_button", "lock",
                                             "Lock alpha: paint only where the layer already "
                                             "has pixels", checkable=True)
        self.lock_alpha_button.toggled.connect(self._on_lock_alpha_toggled)
        self.region_box = self._region_section()
        self.control_box = ControlSection(doc, undo, self)  # the layer as a control
        self.model = LayerListModel(doc, self.rename_layer, self._set_visible)
        self.model.before_read = self.flush
        self.list = QListView(objectName="layers_list")
        self.list.setModel(self.model)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setUniformItemSizes(True)  # no per-row measuring: 200 layers list at once
        self.list.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                  | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.list.selectionModel().currentChanged.connect(self._on_list_current_changed)
        self.add_button = tool_button("layer_add_button", "add", "New empty layer")
        self.delete_button = tool_button("layer_delete_button", "delete", "Delete layer")
        self.up_button = tool_button("layer_up_button", "up", "Move layer up")
        self.down_button = tool_button("layer_down_button", "down", "Move layer down")
        self.duplicate_button = tool_button("layer_duplicate_button", "copy",
                                            "Duplicate layer (Ctrl+J)")
        self.merge_button = tool_button("layer_merge_down_button", "down",
                                        "Merge down into the layer below (Ctrl+E)")
        self.merge_button.setText("Merge")
        self.group_button = tool_button("layer_group_button", "layers",
                                        "Put the selected layer in a new group (Ctrl+G)")
        self.group_button.clicked.connect(self.group_layer)
        self.duplicate_button.clicked.connect(self.duplicate_layer)
        self.merge_button.clicked.connect(self.merge_down)
        self.add_button.clicked.connect(self.add_layer)
        self.delete_button.clicked.connect(self.delete_layer)
        self.up_button.clicked.connect(lambda: self.move_layer(+1))
        self.down_button.clicked.connect(lambda: self.move_layer(-1))
        buttons = QHBoxLayout()
        for b in (self.add_button, self.group_button, self.duplicate_button, self.up_button,
                  self.down_button, self.merge_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.delete_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        mode_row = QHBoxLayout()
        mode_row.addWidget(self.blend_combo, 1)
        mode_row.addWidget(self.lock_alpha_button)
        layout.addLayout(mode_row)
        layout.addWidget(self.opacity_slider)
        # four rows at least: the stack stays readable beside the sections below it
        self.list.setMinimumHeight(4 * (THUMB + 6) + 4)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.region_box)
        layout.addWidget(self.control_box)
        layout.addLayout(buttons)
        # The list and controls follow the document one event-loop turn later, once for
        # all the events of that turn (a result landing on a large canvas: its slice stays
        # short); ``flush`` brings them up to date at once, and what reads them calls it.
        self._pending: set[str] = set()  # "rebuild": the stack changed
        self.refreshes = 0  # how many deferred refreshes ran (one per turn at most)
        self._refresh_timer = QTimer(self, singleShot=True, interval=0)
        self._refresh_timer.timeout.connect(self.flush)
        doc.add_listener(self._on_document_event)
        self._rebuild()

    def count(self) -> int:
        """How many layers the list shows."""
        self.flush()
        return self.model.rowCount()

    def row_text(self, row: int) -> str:
        self.flush()
        return str(self.model.data(self.model.index(row)))

    def current_layer_id(self) -> str | None:
        self.flush()
        index = self.list.currentIndex()
        return str(index.data(LAYER_ID_ROLE)) if index.isValid() else None

    # -- model -> view -------------------------------------------------------------------
    def _on_document_event(self, name: str, payload: dict[str, Any]) -> None:
        # A change of the stack is listed at the next turn, once for all the changes of
        # that turn (the list, its selection and the controls); the controls of the active
        # layer follow a change of it, or of which layer is active, at once (quick).
        if name in ("layer_added", "layer_removed", "layers_reordered", "canvas_resized"):
            self._defer("rebuild")
        elif name == "active_layer_changed":
            if not self._pending:  # else the rebuild selects it in the new list
                self._select_active()
            self._update_controls()
        elif name == "layer_changed":
            self.model.layer_changed(payload.get("layer_id", ""))  # its thumbnail forgotten
            self._update_controls()

    def _defer(self, *what: str) -> None:
        self._pending.update(what)
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def pending(self) -> bool:
        """Whether the list or controls wait for a refresh (the next event-loop turn)."""
        return bool(self._pending)

    def flush(self) -> None:
        """Bring the list and controls up to date with the document now (what a deferred
        refresh would do at the next event-loop turn); nothing when they are."""
        if not self._pending:
            return
        self.refreshes += 1
        self._rebuild()  # the list, its selection and the controls

    @staticmethod
    def prepare(doc: Document) -> PreparedLayers:
        """The thumbnails of ``doc``'s layers, made on any thread (a project being opened):
        ``prime`` hands them to the panel before the document is shown."""
        return {layer.id: (group_thumbnail_image(doc, layer) if layer.is_group
                           else layer_thumbnail_image(layer), has_mask(layer))
                for layer in doc.layers}

    def prime(self, prepared: PreparedLayers) -> None:
        """Use ``prepared`` (from ``prepare``) at the next rebuild."""
        self._primed = dict(prepared)

    def _rebuild(self) -> None:
        self._pending.clear()
        self._refresh_timer.stop()
        self._updating = True
        try:
            primed, self._primed = self._primed, {}
            self.model.reset(primed)
            self._select_active()
        finally:
            self._updating = False
        self._update_controls()

    def _select_active(self) -> None:
        active = self.doc.active_layer
        row = self.model._row_of(active.id) if active is not None else -1
        if row < 0:
            self.list.selectionModel().clearCurrentIndex()
            return
        index = self.model.index(row)
        if self.list.currentIndex() != index:
            was, self._updating = self._updating, True
            try:
                self.list.selectionModel().setCurrentIndex(
                    index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
            finally:
                self._updating = was

    def _update_controls(self) -> None:
        layer = self.doc.active_layer
        self.delete_button.setEnabled(layer is not None)
        self.up_button.setEnabled(layer is not None)
        self.down_button.setEnabled(layer is not None)
        self.opacity_slider.setEnabled(layer is not None)
        self.blend_combo.setEnabled(layer is not None)
        self.lock_alpha_button.setEnabled(layer is not None)
        self.duplicate_button.setEnabled(layer is not None)
        self.merge_button.setEnabled(layer is not None and (
            layer.is_group or self.doc.children(self.doc.parent_of(layer))[0] is not layer))
        self.merge_button.setToolTip("Merge the group into one layer" if layer is not None
                                     and layer.is_group else
                                     "Merge down into the layer below (Ctrl+E)")
        self.lock_alpha_button.setEnabled(layer is not None and not layer.is_group)
        self._update_region_controls(layer)
        self.control_box.set_layer(layer)
        if layer is not None:
            self.opacity_slider.blockSignals(True)
            self.opacity_slider.setValue(layer.opacity)
            self.opacity_slider.blockSignals(False)
            self.blend_combo.blockSignals(True)
            self.blend_combo.setCurrentIndex(max(0, self.blend_combo.findData(layer.blend)))
            self.blend_combo.blockSignals(False)
            self.lock_alpha_button.blockSignals(True)
            self.lock_alpha_button.setChecked(layer.lock_alpha)
            self.lock_alpha_button.blockSignals(False)

    # -- view -> commands ----------------------------------------------------------------
    def _on_list_current_changed(self, index: QModelIndex, _old: QModelIndex) -> None:
        if self._updating or not index.isValid():
            return
        layer_id = str(index.data(LAYER_ID_ROLE))
        if not self.doc.has_layer(layer_id):  # a row gone from the document, not yet listed
            self.flush()
            return
        self.doc.set_active_layer(layer_id)
        self.layer_activated.emit(layer_id)

    def _set_visible(self, layer_id: str, visible: bool) -> None:
        self.undo.push(SetLayerProps(layer_id, "Show layer" if visible else "Hide layer",
                                     visible=visible))

    def _on_opacity_slider_changed(self, value: float) -> None:
        layer = self.doc.active_layer
        if layer is not None and abs(layer.opacity - value) > 1e-4:
            self.undo.push(SetLayerProps(layer.id, "Layer opacity",
                                         merge_id=f"opacity:{layer.id}", opacity=float(value)))

    def _on_blend_combo_changed(self, _index: int) -> None:
        layer = self.doc.active_layer
        mode = self.blend_combo.currentData()
        if layer is not None and mode and mode != layer.blend:
            self.undo.push(SetLayerProps(layer.id, f"Blend mode {label(mode)}", blend=mode))

    def _on_lock_alpha_toggled(self, locked: bool) -> None:
        layer = self.doc.active_layer
        if layer is not None and locked != layer.lock_alpha:
            self.undo.push(SetLayerProps(layer.id, "Lock alpha" if locked else "Unlock alpha",
                                         lock_alpha=locked))

    def duplicate_layer(self) -> None:
        layer = self.doc.active_layer
        if layer is not None:
            ops.duplicate_layer(self.undo, layer.id)

    def merge_down(self) -> None:
        layer = self.doc.active_layer
        if layer is not None and layer.is_group:
            ops.merge_group(self.undo, layer.id)
        elif layer is not None:
            ops.merge_down(self.undo, layer.id)

    def group_layer(self) -> None:
        layer = self.doc.active_layer
        ops.new_group(self.undo, layer.id if layer is not None else None)

    # -- the Regions section: a layer's mask (or alpha) as a regional prompt --------------
    def _region_section(self) -> QGroupBox:
        box = QGroupBox("Region", objectName="layer_region_box")
        self._region_tip = ("A regional prompt: it applies where this layer's mask is painted "
                            "(without a mask: where the layer has pixels), added to the main "
                            "prompt there. Saved with the project and in each image's "
                            "settings.")
        self.regions_reason = ""  # why the chosen model takes no regions ("": it does)
        box.setToolTip(self._region_tip)
        self.region_prompt_edit = QLineEdit(objectName="layer_region_prompt")
        self.region_prompt_edit.setPlaceholderText("Prompt of this layer's region (none)")
        self.region_prompt_edit.setClearButtonEnabled(True)
        self.region_prompt_edit.editingFinished.connect(self._on_region_prompt_edited)
        self.region_strength_slider = float_slider("layer_region_strength_slider", 0.0, 1.0,
                                                   1.0, 2)
        self.region_strength_slider.setToolTip("How far the region's prompt replaces the "
                                               "main prompt inside it (0 to 1)")
        self.region_strength_slider.valueChanged.connect(
            self._on_region_strength_slider_changed)
        column = QVBoxLayout(box)
        column.setContentsMargins(6, 6, 6, 6)
        column.addWidget(self.region_prompt_edit)
        column.addWidget(self.region_strength_slider)
        return box

    def set_regions_reason(self, why: str) -> None:
        """Why the chosen model (or backend) takes no regional prompts, from the engine's
        features ("": it takes them): the Region section is greyed out with the reason."""
        self.regions_reason = why
        self.region_box.setTitle("Region: off for this model" if why else "Region")
        self.region_box.setToolTip(why or self._region_tip)
        self._update_region_controls(self.doc.active_layer)

    def _update_region_controls(self, layer: Layer | None) -> None:
        self.region_box.setEnabled(layer is not None and not self.regions_reason)
        if layer is None:
            return
        if self.region_prompt_edit.text() != layer.region_prompt:
            self.region_prompt_edit.setText(layer.region_prompt)
        self.region_strength_slider.blockSignals(True)
        self.region_strength_slider.setValue(layer.region_strength)
        self.region_strength_slider.blockSignals(False)
        self.region_strength_slider.setEnabled(bool(layer.region_prompt))

    def set_region(self, prompt: str, strength: float | None = None) -> None:
        """Make the active layer a region with ``prompt`` (empty: no region), one undo entry."""
        layer = self.doc.active_layer
        if layer is None:
            return
        props: dict[str, Any] = {}
        if prompt.strip() != layer.region_prompt:
            props["region_prompt"] = prompt.strip()
        if strength is not None and abs(strength - layer.region_strength) > 1e-4:
            props["region_strength"] = float(strength)
        if props:
            self.undo.push(SetLayerProps(layer.id, "Layer region", **props))

    def _on_region_prompt_edited(self) -> None:
        self.set_region(self.region_prompt_edit.text())

    def _on_region_strength_slider_changed(self, value: float) -> None:
        layer = self.doc.active_layer
        if layer is not None and abs(layer.region_strength - value) > 1e-4:
            self.undo.push(SetLayerProps(layer.id, "Region strength",
                                         merge_id=f"region_strength:{layer.id}",
                                         region_strength=float(value)))

    def add_layer(self) -> None:
        """A new paint layer above the active one (in a selected group: at its top)."""
        blank = Layer.blank(self.doc.width, self.doc.height, f"Layer {len(self.doc.layers) + 1}",
                            kind="paint")
        active = self.doc.active_layer
        index = self.doc.index_of(active.id) + 1 if active is not None else None
        if active is not None:
            blank.parent = active.id if active.is_group else self.doc.parent_of(active)
            if active.is_group:
                index = self.doc.index_of(active.id)
        self.undo.push(AddLayer(blank, index=index, text="New layer"))

    def delete_layer(self) -> None:
        layer = self.doc.active_layer
        if layer is not None:
            ops.delete_layer(self.undo, layer.id)

    def move_layer(self, delta: int) -> None:
        """Raise or lower the active layer past its neighbour as listed (into and out of
        groups on the way)."""
        layer = self.doc.active_layer
        if layer is not None:
            ops.move_in_tree(self.undo, layer.id, delta)

    def toggle_visibility(self) -> None:
        layer = self.doc.active_layer
        if layer is not None:
            self.undo.push(SetLayerProps(layer.id, "Hide layer" if layer.visible
                                         else "Show layer", visible=not layer.visible))

    def rename_layer(self, layer_id: str, name: str) -> None:
        self.undo.push(SetLayerProps(layer_id, "Rename layer", name=name))
