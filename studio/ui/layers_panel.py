"""``LayersPanel``: the layer stack (top first) with visibility, opacity, order, rename, delete."""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.core.document.edits import AddLayer, MoveLayer, RemoveLayer, SetLayerProps
from studio.core.document.layers import Document, Layer
from studio.core.document.undo import UndoStack
from studio.ui.widgets import float_slider, tool_button

LAYER_ID_ROLE = Qt.ItemDataRole.UserRole
THUMB = 40


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


def has_mask(layer: Layer) -> bool:
    return layer.mask is not None and bool(layer.mask.any())


PreparedLayers = dict[str, tuple[QImage, bool]]  # layer id -> (thumbnail, has a mask)


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
        self.list = QListWidget(objectName="layers_list")
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setUniformItemSizes(True)  # no per-row measuring: 200 layers list at once
        self.list.setEditTriggers(QListWidget.EditTrigger.DoubleClicked
                                  | QListWidget.EditTrigger.EditKeyPressed)
        self.list.currentItemChanged.connect(self._on_list_current_changed)
        self.list.itemChanged.connect(self._on_list_item_changed)
        self.add_button = tool_button("layer_add_button", "add", "New empty layer")
        self.delete_button = tool_button("layer_delete_button", "delete", "Delete layer")
        self.up_button = tool_button("layer_up_button", "up", "Move layer up")
        self.down_button = tool_button("layer_down_button", "down", "Move layer down")
        self.add_button.clicked.connect(self.add_layer)
        self.delete_button.clicked.connect(self.delete_layer)
        self.up_button.clicked.connect(lambda: self.move_layer(+1))
        self.down_button.clicked.connect(lambda: self.move_layer(-1))
        buttons = QHBoxLayout()
        for b in (self.add_button, self.up_button, self.down_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.delete_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.opacity_slider)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        doc.add_listener(self._on_document_event)
        self._rebuild()

    # -- model -> view -------------------------------------------------------------------
    def _on_document_event(self, name: str, payload: dict[str, Any]) -> None:
        if name in ("layer_added", "layer_removed", "layers_reordered", "active_layer_changed"):
            self._rebuild()
        elif name == "layer_changed":
            self._refresh_layer(payload.get("layer_id", ""))
        elif name == "canvas_resized":
            self._rebuild()

    @staticmethod
    def prepare(doc: Document) -> PreparedLayers:
        """The thumbnails of ``doc``'s layers, made on any thread (a project being opened):
        ``prime`` hands them to the panel before the document is shown."""
        return {layer.id: (layer_thumbnail_image(layer), has_mask(layer))
                for layer in doc.layers}

    def prime(self, prepared: PreparedLayers) -> None:
        """Use ``prepared`` (from ``prepare``) at the next rebuild."""
        self._primed = dict(prepared)

    def _rebuild(self) -> None:
        self._updating = True
        self.list.clear()
        active = self.doc.active_layer
        for layer in reversed(self.doc.layers):
            item = QListWidgetItem()
            item.setData(LAYER_ID_ROLE, layer.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable
                          | Qt.ItemFlag.ItemIsUserCheckable)
            self._fill(item, layer)
            self.list.addItem(item)
            if active is not None and layer.id == active.id:
                self.list.setCurrentItem(item)
        self._primed.clear()
        self._updating = False
        self._update_controls()

    def _fill(self, item: QListWidgetItem, layer: Layer) -> None:
        primed = self._primed.pop(layer.id, None)
        thumb, masked = primed if primed is not None else (layer_thumbnail_image(layer),
                                                           has_mask(layer))
        item.setText(layer.name)
        item.setIcon(QIcon(QPixmap.fromImage(thumb)))
        item.setCheckState(Qt.CheckState.Checked if layer.visible else Qt.CheckState.Unchecked)
        item.setToolTip(f"{layer.name}\n{layer.width}×{layer.height} at ({layer.x}, {layer.y})"
                        f"\nopacity {layer.opacity:.0%}" + ("\nhas an inpaint mask"
                                                            if masked else ""))

    def _refresh_layer(self, layer_id: str) -> None:
        item = self._item_of(layer_id)
        if item is None or not self.doc.has_layer(layer_id):
            return
        self._updating = True
        self._fill(item, self.doc.layer(layer_id))
        self._updating = False
        self._update_controls()

    def _item_of(self, layer_id: str) -> QListWidgetItem | None:
        for i in range(self.list.count()):
            if self.list.item(i).data(LAYER_ID_ROLE) == layer_id:
                return self.list.item(i)
        return None

    def _update_controls(self) -> None:
        layer = self.doc.active_layer
        self.delete_button.setEnabled(layer is not None)
        self.up_button.setEnabled(layer is not None)
        self.down_button.setEnabled(layer is not None)
        self.opacity_slider.setEnabled(layer is not None)
        if layer is not None:
            self.opacity_slider.blockSignals(True)
            self.opacity_slider.setValue(layer.opacity)
            self.opacity_slider.blockSignals(False)

    # -- view -> commands ----------------------------------------------------------------
    def _on_list_current_changed(self, item: QListWidgetItem | None, _old: Any) -> None:
        if self._updating or item is None:
            return
        layer_id = item.data(LAYER_ID_ROLE)
        self.doc.set_active_layer(layer_id)
        self.layer_activated.emit(layer_id)

    def _on_list_item_changed(self, item: QListWidgetItem) -> None:
        if self._updating:
            return
        layer = self.doc.layer(item.data(LAYER_ID_ROLE))
        visible = item.checkState() == Qt.CheckState.Checked
        name = item.text().strip() or layer.name
        if visible != layer.visible:
            self.undo.push(SetLayerProps(layer.id, "Show layer" if visible else "Hide layer",
                                         visible=visible))
        if name != layer.name:
            self.undo.push(SetLayerProps(layer.id, "Rename layer", name=name))

    def _on_opacity_slider_changed(self, value: float) -> None:
        layer = self.doc.active_layer
        if layer is not None and abs(layer.opacity - value) > 1e-4:
            self.undo.push(SetLayerProps(layer.id, "Layer opacity",
                                         merge_id=f"opacity:{layer.id}", opacity=float(value)))

    def add_layer(self) -> None:
        blank = Layer.blank(self.doc.width, self.doc.height, f"Layer {len(self.doc.layers) + 1}",
                            kind="paint")
        active = self.doc.active_layer
        index = self.doc.index_of(active.id) + 1 if active is not None else None
        self.undo.push(AddLayer(blank, index=index, text="New layer"))

    def delete_layer(self) -> None:
        layer = self.doc.active_layer
        if layer is not None:
            self.undo.push(RemoveLayer(layer.id, f"Delete layer {layer.name!r}"))

    def move_layer(self, delta: int) -> None:
        layer = self.doc.active_layer
        if layer is None:
            return
        index = self.doc.index_of(layer.id)
        target = max(0, min(len(self.doc.layers) - 1, index + delta))
        if target != index:
            self.undo.push(MoveLayer(layer.id, target, "Raise layer" if delta > 0
                                     else "Lower layer"))

    def toggle_visibility(self) -> None:
        layer = self.doc.active_layer
        if layer is not None:
            self.undo.push(SetLayerProps(layer.id, "Hide layer" if layer.visible
                                         else "Show layer", visible=not layer.visible))

    def rename_layer(self, layer_id: str, name: str) -> None:
        self.undo.push(SetLayerProps(layer_id, "Rename layer", name=name))
