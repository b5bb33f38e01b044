"""``WindowCommands``: Open Image and the Image menu's canvas commands (resize, crop, clear
mask, brush colour)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QColorDialog, QFileDialog, QWidget

from studio.core.document.edits import Crop, PaintPixels, ResizeCanvas
from studio.core.errors import StudioError
from studio.session.document import DocumentModel
from studio.ui.canvas import CanvasView
from studio.ui.dialogs import ResizeCanvasDialog
from studio.ui.widgets import MessageBanner

OPEN_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff *.gif);;All files (*)"


class WindowCommands:
    """The commands that change the canvas from a menu.

    Parameters
    ----------
    parent
        The widget the dialogs belong to.
    document, canvas
        What the commands edit (one undo step each), and the view they fit afterwards.
    banner
        Where problems and hints are shown.
    add_image_layer
        Adds an opened image as a layer: ``add_image_layer(pixels, name)``.
    set_brush_color
        Sets the brush colour (the tool bars keep it).
    show_status
        A line in the status bar.
    """

    def __init__(self, parent: QWidget, document: DocumentModel, canvas: CanvasView,
                 banner: MessageBanner, add_image_layer: Callable[[np.ndarray, str], object],
                 set_brush_color: Callable[[tuple[int, int, int]], None],
                 show_status: Callable[[str], None]) -> None:
        self.parent_widget = parent
        self.document, self.canvas, self.banner = document, canvas, banner
        self.add_image_layer = add_image_layer
        self.set_brush_color = set_brush_color
        self.show_status = show_status

    def show_error(self, message: str) -> None:
        self.banner.show_message(message)

    # -- files ---------------------------------------------------------------------------
    def open_image(self, path: str | None = None) -> bool:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self.parent_widget, "Open image", "",
                                                  OPEN_FILTER)
            if not path:
                return False
        from studio.core.errors import CancelledError
        from studio.core.formats.imageio import load_image
        from studio.ui.import_worker import run_in_background

        try:  # decoded on a worker thread: the window paints, Cancel appears if it is slow
            pixels = run_in_background(self.parent_widget, f"Opening {Path(path).name}…",
                                       load_image, path)
        except CancelledError:
            self.show_status(f"Open cancelled: {Path(path).name} was not added")
            return False
        except StudioError as err:
            self.show_error(str(err))
            return False
        except OSError as err:
            self.show_error(f"Could not open {Path(path).name}: {err.strerror or err}")
            return False
        if self.add_image_layer(pixels, Path(path).stem) is False:
            return False  # a large image, and the user cancelled
        self.canvas.fit()
        self.show_status(f"Opened {Path(path).name}")
        return True

    # -- image ---------------------------------------------------------------------------
    def resize_canvas(self) -> None:
        doc = self.document.doc
        dialog = ResizeCanvasDialog(doc.width, doc.height, self.parent_widget)
        if dialog.exec():
            width, height, anchor = dialog.values()
            self.document.push(ResizeCanvas.anchored(doc, width, height, anchor))
            self.canvas.fit()

    def crop(self) -> None:
        doc = self.document.doc
        if doc.selection is None:
            self.banner.show_message("Select a region first (R), then crop to it.", "info",
                                       4000)
            return
        self.document.push(Crop(doc.selection))
        self.canvas.fit()

    def clear_mask(self) -> None:
        layer = self.document.doc.active_layer
        if layer is None or layer.mask is None or not layer.mask.any():
            return
        cmd = PaintPixels.from_change(layer.id, layer.mask, np.zeros_like(layer.mask), "mask",
                                      "Clear mask")
        if cmd is not None:
            self.document.push(cmd)

    def pick_brush_color(self) -> None:
        color = QColorDialog.getColor(QColor(*self.canvas.brush.color), self.parent_widget,
                                      "Brush colour")
        if color.isValid():
            self.set_brush_color((color.red(), color.green(), color.blue()))
