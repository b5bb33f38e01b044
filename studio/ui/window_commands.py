"""``WindowCommands``: what each of the window's actions does."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtGui import QColor
from PySide6.QtWidgets import QColorDialog, QFileDialog, QMessageBox

from studio.core.document.edits import Crop, PaintPixels, ResizeCanvas
from studio.core.errors import StudioError
from studio.ui.actions import shortcut_table
from studio.ui.dialogs import NO_MODEL_TEXT, ResizeCanvasDialog

if TYPE_CHECKING:
    from studio.ui.main_window import MainWindow

OPEN_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff *.gif);;All files (*)"
EXPORT_FILTER = "PNG (*.png);;JPEG (*.jpg *.jpeg);;WebP (*.webp)"


class WindowCommands:
    """Connects every action of ``window`` to its handler."""

    def __init__(self, window: MainWindow) -> None:
        self.w = window
        a = window.actions
        canvas, prompt, ctrl = window.canvas, window.prompt_panel, window.controller
        handlers = {
            "open_image": lambda: self.open_image(),
            "export_image": lambda: self.export_image(),
            "quit": window.close,
            "undo": window.undo.undo,
            "redo": window.undo.redo,
            "select_all": lambda: canvas.set_selection(None),
            "deselect": lambda: canvas.set_selection(None),
            "copy_settings": window.gallery_panel.copy_settings,
            "zoom_in": lambda: canvas.set_zoom(canvas.zoom * 1.25),
            "zoom_out": lambda: canvas.set_zoom(canvas.zoom / 1.25),
            "zoom_fit": canvas.fit,
            "zoom_100": canvas.actual_size,
            "theme_dark": lambda: window.set_theme("dark"),
            "theme_light": lambda: window.set_theme("light"),
            "reset_layout": window.reset_layout,
            "brush_smaller": lambda: window.tool_bars.scale_brush(1 / 1.25),
            "brush_bigger": lambda: window.tool_bars.scale_brush(1.25),
            "brush_color": self.pick_brush_color,
            "resize_canvas": self.resize_canvas,
            "crop": self.crop,
            "clear_mask": self.clear_mask,
            "new_layer": window.layers_panel.add_layer,
            "delete_layer": window.layers_panel.delete_layer,
            "raise_layer": lambda: window.layers_panel.move_layer(+1),
            "lower_layer": lambda: window.layers_panel.move_layer(-1),
            "toggle_layer": window.layers_panel.toggle_visibility,
            "gallery_place": window.gallery_panel.place_button.click,
            "gallery_init": window.gallery_panel.init_button.click,
            "gallery_vary": window.gallery_panel.vary_button.click,
            "gallery_delete": window.gallery_panel.remove_current,
            "queue_earlier": lambda: window.queue_panel.move_selected(-1),
            "queue_later": lambda: window.queue_panel.move_selected(+1),
            "queue_cancel": window.queue_panel.cancel_selected,
            "generate": ctrl.generate,
            "cancel": ctrl.cancel_current,
            "cancel_all": ctrl.cancel_all,
            "randomize_seed": prompt.randomise_seed,
            "lock_seed": lambda: prompt.seed_lock_button.setChecked(a["lock_seed"].isChecked()),
            "reload_models": lambda: window.reload_models(rescan=True),
            "help_models": lambda: QMessageBox.information(window, "Adding models",
                                                           NO_MODEL_TEXT),
            "help_shortcuts": lambda: QMessageBox.information(window, "Keyboard shortcuts",
                                                              shortcut_table()),
            "about": window.about,
        }
        for name, handler in handlers.items():
            a[name].triggered.connect(lambda _checked=False, h=handler: h())
        prompt.seed_lock_button.toggled.connect(a["lock_seed"].setChecked)

    # -- files ---------------------------------------------------------------------------
    def open_image(self, path: str | None = None) -> bool:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self.w, "Open image", "", OPEN_FILTER)
            if not path:
                return False
        try:
            from studio.core.formats.imageio import load_image
        except ImportError:  # pragma: no cover - the core module is part of the package
            self.w.show_error("Opening images is not available in this build.")
            return False
        try:
            pixels = load_image(path)
        except StudioError as err:
            self.w.show_error(str(err))
            return False
        except OSError as err:
            self.w.show_error(f"Could not open {Path(path).name}: {err.strerror or err}")
            return False
        self.w.controller.add_image_layer(pixels, Path(path).stem)
        self.w.canvas.fit()
        self.w.status.message_label.setText(f"Opened {Path(path).name}")
        return True

    def export_image(self, path: str | None = None) -> bool:
        doc = self.w.doc
        if not doc.layers:
            self.w.show_error("Nothing to export: the canvas is empty.")
            return False
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self.w, "Export image", "image.png",
                                                  EXPORT_FILTER)
            if not path:
                return False
        request = None
        active = doc.active_layer
        if active is not None and active.record_id and active.record_id in doc.log:
            request = doc.log.get(active.record_id).request
        try:
            from studio.core.formats.metadata import save_image

            save_image(path, doc.composite(), request)
        except StudioError as err:
            self.w.show_error(str(err))
            return False
        self.w.status.message_label.setText(f"Exported {Path(path).name}")
        return True

    # -- image ---------------------------------------------------------------------------
    def resize_canvas(self) -> None:
        doc = self.w.doc
        dialog = ResizeCanvasDialog(doc.width, doc.height, self.w)
        if dialog.exec():
            width, height, anchor = dialog.values()
            self.w.undo.push(ResizeCanvas.anchored(doc, width, height, anchor))
            self.w.canvas.fit()

    def crop(self) -> None:
        doc = self.w.doc
        if doc.selection is None:
            self.w.banner.show_message("Select a region first (R), then crop to it.", "info",
                                       4000)
            return
        self.w.undo.push(Crop(doc.selection))
        self.w.canvas.fit()

    def clear_mask(self) -> None:
        layer = self.w.doc.active_layer
        if layer is None or layer.mask is None or not layer.mask.any():
            return
        import numpy as np

        cmd = PaintPixels.from_change(layer.id, layer.mask, np.zeros_like(layer.mask), "mask",
                                      "Clear mask")
        if cmd is not None:
            self.w.undo.push(cmd)

    def pick_brush_color(self) -> None:
        color = QColorDialog.getColor(QColor(*self.w.canvas.brush.color), self.w,
                                      "Brush colour")
        if color.isValid():
            self.w.tool_bars.set_color((color.red(), color.green(), color.blue()))



