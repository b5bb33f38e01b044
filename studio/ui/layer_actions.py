"""``LayerActions``: duplicate, merge down, flatten, lock alpha, cut/copy/paste through the
system clipboard, and Scale Image: each one undo entry, saved with the project.

The clipboard carries the pixels as an image (any program pastes them) and, for a layer
copied whole, ``LAYER_MIME``: its name, blend mode, opacity and place, so a paste here
gives the same layer back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6.QtCore import QMimeData
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QSpinBox,
    QWidget,
)

from studio.core.document import operations as ops
from studio.core.document.edits import SetLayerProps
from studio.core.document.layers import intersect
from studio.session.document import DocumentModel

LAYER_MIME = "application/x-latent-studio-layer"
MAX_SIDE = 16384


def qimage_to_rgba(image: QImage) -> np.ndarray:
    """An ``HxWx4`` uint8 straight-alpha copy of ``image``."""
    image = image.convertToFormat(QImage.Format.Format_RGBA8888)
    w, h = image.width(), image.height()
    data = np.frombuffer(image.constBits(), np.uint8, count=image.bytesPerLine() * h)
    return data.reshape(h, image.bytesPerLine())[:, :w * 4].reshape(h, w, 4).copy()


def rgba_to_qimage(array: np.ndarray) -> QImage:
    arr = np.ascontiguousarray(array)
    h, w = arr.shape[:2]
    return QImage(arr.data, w, h, w * 4, QImage.Format.Format_RGBA8888).copy()


class ScaleImageDialog(QDialog):
    """Ask for the new image size; the aspect ratio stays locked unless unticked."""

    def __init__(self, width: int, height: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("scale_image_dialog")
        self.setWindowTitle("Scale Image")
        self._ratio = width / max(1, height)
        self.width_spin = QSpinBox(objectName="scale_width_spin")
        self.height_spin = QSpinBox(objectName="scale_height_spin")
        for spin, value in ((self.width_spin, width), (self.height_spin, height)):
            spin.setRange(1, MAX_SIDE)
            spin.setValue(value)
            spin.setSuffix(" px")
            spin.setKeyboardTracking(False)
        self.keep_ratio = QCheckBox("Keep aspect ratio", objectName="scale_keep_ratio")
        self.keep_ratio.setChecked(True)
        self.width_spin.valueChanged.connect(lambda v: self._follow(self.height_spin,
                                                                    v / self._ratio))
        self.height_spin.valueChanged.connect(lambda v: self._follow(self.width_spin,
                                                                     v * self._ratio))
        note = QLabel("Every layer is scaled with its offset and mask (Lanczos).")
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Width", self.width_spin)
        form.addRow("Height", self.height_spin)
        form.addRow(self.keep_ratio)
        form.addRow(note)
        form.addRow(buttons)

    def _follow(self, other: QSpinBox, value: float) -> None:
        if self.keep_ratio.isChecked():
            other.blockSignals(True)
            other.setValue(max(1, round(value)))
            other.blockSignals(False)

    def values(self) -> tuple[int, int]:
        return self.width_spin.value(), self.height_spin.value()


class LayerActions:
    """What the layer and clipboard actions do, on the window's document."""

    def __init__(self, parent: QWidget, document: DocumentModel,
                 show_status: Callable[[str], None], show_error: Callable[[str], None],
                 fit: Callable[[], None] | None = None,
                 add_image_layer: Callable[[np.ndarray, str], object] | None = None,
                 new_document: Callable[[], bool] | None = None) -> None:
        self.parent_widget = parent
        self.document = document
        self.show_status, self.show_error = show_status, show_error
        self.fit = fit or (lambda: None)
        self.add_image_layer = add_image_layer
        self.new_document = new_document

    # -- opening an image ------------------------------------------------------------------
    def choose_for_large_image(self, name: str, size: tuple[int, int]) -> str:
        """Ask what to do with an image larger than the canvas: ``"new"`` (a new document
        of its size), ``"layer"`` (a layer on this canvas, its hidden part kept) or ``""``."""
        from PySide6.QtWidgets import QMessageBox

        doc = self.document.doc
        box = QMessageBox(QMessageBox.Icon.Question, "Open image",
                          f"{name} is {size[0]} x {size[1]} pixels, larger than this "
                          f"{doc.width} x {doc.height} canvas.", parent=self.parent_widget)
        box.setInformativeText("Open it as a new document of its own size, or add it to "
                               "this canvas as a layer (the part past the edge is kept, "
                               "hidden; Canvas Size or Scale Image shows it).")
        new = box.addButton("New Document", QMessageBox.ButtonRole.AcceptRole)
        layer = box.addButton("Add as Layer", QMessageBox.ButtonRole.ActionRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(new)
        box.exec()
        clicked = box.clickedButton()
        return "new" if clicked is new else "layer" if clicked is layer else ""

    def add_opened_image(self, pixels: np.ndarray, name: str) -> bool:
        """An opened image: a layer, or, when it is larger than a canvas that already has
        layers, a new document or a layer as the user chooses."""
        assert self.add_image_layer is not None
        doc = self.document.doc
        h, w = pixels.shape[:2]
        if doc.layers and (w > doc.width or h > doc.height):
            choice = self.choose_for_large_image(name, (w, h))
            if not choice:
                return False
            if choice == "new":
                if self.new_document is None or not self.new_document():
                    return False
        self.add_image_layer(pixels, name)
        return True

    def bind_lock_action(self, action: Any) -> None:
        """Keep ``action``'s check mark on the active layer's alpha lock."""
        doc = self.document.doc

        def sync(name: str = "", _payload: Any = None) -> None:
            if name in ("", "active_layer_changed", "layer_changed", "layer_added",
                        "layer_removed", "canvas_resized"):
                layer = doc.active_layer
                action.blockSignals(True)
                action.setChecked(bool(layer is not None and layer.lock_alpha))
                action.blockSignals(False)

        doc.add_listener(sync)
        sync()

    @property
    def undo(self) -> Any:
        return self.document.undo_stack

    def _active(self) -> Any:
        layer = self.document.doc.active_layer
        if layer is None:
            self.show_error("There is no layer: open or generate an image first.")
        return layer

    # -- layers --------------------------------------------------------------------------
    def duplicate(self) -> None:
        layer = self._active()
        if layer is not None:
            ops.duplicate_layer(self.undo, layer.id)

    def merge_down(self) -> None:
        """Merge the active layer down (a group: into one layer)."""
        layer = self._active()
        if layer is None:
            return
        if layer.is_group:
            ops.merge_group(self.undo, layer.id)
            return
        if ops.merge_down(self.undo, layer.id) is None:
            doc = self.document.doc
            siblings = doc.children(doc.parent_of(layer))
            if siblings[0] is layer:
                self.show_error(f"{layer.name!r} is the bottom layer"
                                f"{' of its group' if layer.parent else ''}: there is nothing "
                                "below to merge it into.")
            else:
                self.show_error("The layer below is a group: select the group and Merge "
                                "Down to draw it into one layer first.")

    def group(self) -> None:
        layer = self.document.doc.active_layer
        ops.new_group(self.undo, layer.id if layer is not None else None)

    def ungroup(self) -> None:
        layer = self._active()
        if layer is None:
            return
        if not layer.is_group:
            self.show_error(f"{layer.name!r} is not a group.")
            return
        ops.ungroup(self.undo, layer.id)

    def flatten(self) -> None:
        if self.document.doc.layers:
            ops.flatten(self.undo)

    def set_lock_alpha(self, locked: bool | None = None) -> None:
        """Lock (or unlock; ``None``: toggle) the active layer's alpha."""
        layer = self._active()
        if layer is None:
            return
        locked = (not layer.lock_alpha) if locked is None else bool(locked)
        if locked != layer.lock_alpha:
            self.undo.push(SetLayerProps(layer.id, "Lock alpha" if locked else "Unlock alpha",
                                         lock_alpha=locked))

    def set_blend(self, mode: str) -> None:
        layer = self._active()
        if layer is not None and mode != layer.blend:
            from studio.core.document.blend import label

            self.undo.push(SetLayerProps(layer.id, f"Blend mode {label(mode)}", blend=mode))

    # -- the inpaint mask -----------------------------------------------------------------
    def invert_mask(self) -> bool:
        """Inpaint everywhere the mask was not painted, and nowhere it was (one undo entry)."""
        from studio.core.document.edits import PaintPixels

        layer = self._active()
        if layer is None or layer.is_group:
            return False
        old = layer.mask if layer.mask is not None else np.zeros(layer.pixels.shape[:2], np.uint8)
        cmd = PaintPixels(layer.id, 0, 0, old, 255 - old, "mask", "Invert mask")
        self.undo.push(cmd)
        return True

    def pick_mask_color(self, canvas: Any) -> None:
        from PySide6.QtGui import QColor
        from PySide6.QtWidgets import QColorDialog

        tint = canvas.mask_tint or (220, 60, 60)
        chosen = QColorDialog.getColor(QColor(*tint), self.parent_widget, "Mask overlay colour")
        if chosen.isValid():
            canvas.set_mask_overlay(True, (chosen.red(), chosen.green(), chosen.blue()))

    # -- clipboard -----------------------------------------------------------------------
    def _copy_rect(self) -> tuple[Any, tuple[int, int, int, int] | None]:
        doc = self.document.doc
        layer = self._active()
        if layer is None:
            return None, None
        if doc.selection is None:
            return layer, layer.rect
        return layer, intersect(doc.selection, layer.rect)

    def copy(self) -> bool:
        """The selection of the active layer (no selection: the whole layer, with its
        name, blend mode and opacity) onto the system clipboard."""
        doc = self.document.doc
        layer, rect = self._copy_rect()
        if layer is None:
            return False
        if rect is None:
            self.show_error(f"The selection holds no pixels of {layer.name!r}.")
            return False
        pixels = ops.layer_pixels_in(layer, rect)
        mime = QMimeData()
        mime.setImageData(rgba_to_qimage(pixels))
        whole = doc.selection is None
        info = {"name": layer.name if whole else f"{layer.name} (part)", "x": rect[0],
                "y": rect[1], "blend": layer.blend, "opacity": layer.opacity if whole else 1.0,
                "whole_layer": whole}
        mime.setData(LAYER_MIME, json.dumps(info).encode())
        QGuiApplication.clipboard().setMimeData(mime)
        self.show_status(f"Copied {rect[2]} x {rect[3]} pixels of {layer.name!r}.")
        return True

    def cut(self) -> bool:
        """Copy, then clear the copied pixels (one undo entry)."""
        layer, rect = self._copy_rect()
        if layer is None or rect is None or not self.copy():
            return False
        ops.clear_pixels(self.undo, layer.id, rect, f"Cut from {layer.name!r}")
        return True

    def paste(self) -> bool:
        """What the clipboard holds as a new layer above the active one: a layer copied
        here comes back as it was; an image from another program goes at the selection's
        top left (or the centre of the canvas)."""
        mime = QGuiApplication.clipboard().mimeData()
        image = QImage(mime.imageData()) if mime is not None and mime.hasImage() else QImage()
        if image.isNull():
            self.show_error("The clipboard holds no image to paste.")
            return False
        pixels = qimage_to_rgba(image)
        info: dict[str, Any] = {}
        if mime is not None and mime.hasFormat(LAYER_MIME):
            try:
                info = json.loads(bytes(mime.data(LAYER_MIME).data()).decode())
            except (ValueError, UnicodeDecodeError):
                info = {}
        props: dict[str, Any] = {}
        at = None
        if info:
            from studio.core.document.blend import MODES

            if info.get("blend") in MODES:
                props["blend"] = info["blend"]
            props["opacity"] = min(1.0, max(0.0, float(info.get("opacity", 1.0))))
            if self.document.doc.selection is None:
                at = (int(info.get("x", 0)), int(info.get("y", 0)))
        name = str(info.get("name") or "Pasted")
        layer = ops.paste_layer(self.undo, pixels, name, at, **props)
        self.show_status(f"Pasted {layer.width} x {layer.height} pixels as {layer.name!r}.")
        return True

    # -- the whole image -----------------------------------------------------------------
    def scale_image(self, size: tuple[int, int] | None = None) -> bool:
        """Scale the canvas and every layer (asks for the size when ``size`` is None)."""
        doc = self.document.doc
        if size is None:
            dialog = ScaleImageDialog(doc.width, doc.height, self.parent_widget)
            if dialog.exec() != QDialog.DialogCode.Accepted:
                return False
            size = dialog.values()
        width, height = size
        if (width, height) == (doc.width, doc.height):
            return False
        ops.scale_image(self.undo, width, height)
        self.fit()
        self.show_status(f"Scaled the image to {width} x {height}.")
        return True
