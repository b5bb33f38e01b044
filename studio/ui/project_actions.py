"""``FileActions``: the File menu's open, export and import entries.

Open… (projects, images, layered files), Export…, Export Gallery…, Import Settings from
Image… and the Strip Metadata toggle; projects themselves go to the ``ProjectController``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from psygnal import Signal
from PySide6.QtCore import QSettings
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.document.layers import Document, Layer
from studio.core.errors import CancelledError, StudioError
from studio.core.project.generation_log import GenerationRecord
from studio.session.document import DocumentModel
from studio.ui.busy import TaskState, run_cancellable
from studio.ui.gallery_panel import GalleryPanel
from studio.ui.project_controller import PROJECT_SUFFIX, ProjectController
from studio.ui.prompt_panel import PromptPanel

IMAGE_TYPES = ".png .jpg .jpeg .webp .bmp .tif .tiff .gif"
OPEN_FILTER = (f"Everything Latent Studio opens (*.studio *.ora *.psd "
               f"{' '.join('*' + s for s in IMAGE_TYPES.split())});;"
               "Latent Studio projects (*.studio);;"
               f"Images ({' '.join('*' + s for s in IMAGE_TYPES.split())});;"
               "Layered images (*.ora *.psd);;All files (*)")
EXPORT_FILTER = ("PNG with settings (*.png);;JPEG (*.jpg *.jpeg);;WebP (*.webp);;"
                 "OpenRaster layers (*.ora);;Photoshop layers (*.psd)")
LAYERED = {".ora", ".psd"}
FLAT = {".png", ".jpg", ".jpeg", ".webp"}
STRIP_KEY = "export/strip_metadata"
TEMPLATE_KEY = "export/gallery_template"
DEFAULT_TEMPLATE = "{date}_{index:03}_{seed}_{prompt}"


def _bool(value: Any) -> bool:
    return value in (True, "true", "1", 1)


def _partial_path(target: Path) -> Path:
    """Where an export is written before it is moved over ``target`` (same folder)."""
    return target.with_name(f".{target.stem}.partial{target.suffix}")


def _layer_copy(layer: Layer) -> Layer:
    twin = copy.copy(layer)
    twin.pixels = layer.pixels.copy()
    return twin


def _document(width: int, height: int, layers: list[Layer]) -> Document:
    doc = Document()
    doc.width, doc.height, doc.layers = width, height, layers
    return doc


class FileActions:
    """Opening, exporting and importing files.

    Parameters
    ----------
    parent
        The widget the file dialogs belong to.
    document
        The document opened files add layers to (one undo step each).
    projects
        Opens ``.studio`` files; keeps the recent files.
    gallery, prompt
        What Export Gallery… exports; where Import Settings… writes.
    settings
        The window's settings: the export choices (strip metadata, file-name template).
    open_image
        Opens a plain image as a layer; ``True`` when it did.
    fit_canvas, show_status, show_error
        Fit the canvas to the window; a status line; a problem, in one line.
    """

    task_started = Signal(object)  # an export began: its TaskState (progress, cancel)

    def __init__(self, parent: QWidget, document: DocumentModel, projects: ProjectController,
                 gallery: GalleryPanel, prompt: PromptPanel, settings: QSettings,
                 open_image: Callable[[str], bool], fit_canvas: Callable[[], None],
                 show_status: Callable[[str], None],
                 show_error: Callable[[str], None]) -> None:
        self.parent_widget = parent
        self.document, self.projects = document, projects
        self.gallery, self.prompt, self.settings = gallery, prompt, settings
        self.open_image = open_image
        self.fit_canvas, self.show_status, self.show_error = fit_canvas, show_status, show_error
        self.strip_action = QAction("Strip &Metadata from Exports", parent)
        self.strip_action.setObjectName("action_strip_metadata")
        self.strip_action.setCheckable(True)
        self.strip_action.setChecked(_bool(settings.value(STRIP_KEY, False)))
        self.strip_action.toggled.connect(self._on_strip_action_toggled)

    def _on_strip_action_toggled(self, on: bool) -> None:
        self.settings.setValue(STRIP_KEY, on)

    # -- opening -----------------------------------------------------------------------------
    def open_file(self) -> bool:
        path, _ = QFileDialog.getOpenFileName(self.parent_widget, "Open", "", OPEN_FILTER)
        return self.open_path(path) if path else False

    def open_path(self, path: str) -> bool:
        """A project replaces the document; images and layered files add layers."""
        suffix = Path(path).suffix.lower()
        if suffix == PROJECT_SUFFIX:
            return self.projects.open_project(path)
        if suffix in LAYERED:
            ok = self.open_layered(path)
        else:
            ok = bool(self.open_image(path))
        if ok:
            self.projects.recent.add(path)
        return ok

    def open_layered(self, path: str) -> bool:
        from studio.core.document.edits import AddLayer, ResizeCanvas
        from studio.core.formats.layered import import_ora, import_psd
        from studio.ui.import_worker import run_in_background

        name = Path(path).name
        try:  # read on a worker thread: the window paints, Cancel appears if it is slow
            image = run_in_background(self.parent_widget, f"Opening {name}…",
                                      import_ora if path.lower().endswith(".ora") else import_psd,
                                      path)
        except CancelledError:
            self.show_status(f"Open cancelled: {name} was not added")
            return False
        except StudioError as err:
            self.show_error(str(err))
            return False
        except OSError as err:
            self.show_error(f"Could not open {name}: {err.strerror or err}")
            return False
        layers = image.to_document_layers()
        if not layers:
            self.show_error(f"{name} has no layers.")
            return False
        with self.document.macro(f"Open {name}"):
            if not self.document.doc.layers:
                self.document.push(ResizeCanvas(image.width, image.height))
            for layer in layers:
                self.document.push(AddLayer(layer, text=f"Add {layer.name}"))
        self.fit_canvas()
        # groups or blend modes the canvas lacks were merged: say so in the one status line
        said = f" {image.warnings[0]}" if image.warnings else ""
        self.show_status(f"Opened {name} ({len(layers)} layers).{said}")
        return True

    # -- exporting ---------------------------------------------------------------------------
    @property
    def strip_metadata(self) -> bool:
        return _bool(self.settings.value(STRIP_KEY, False))

    def export_canvas(self, path: str | None = None, strip: bool | None = None) -> bool:
        """The canvas as PNG/JPEG/WebP (with its settings unless stripped) or as layers.

        The file is written on a worker thread with a progress window and Cancel (see
        ``run_cancellable``); a cancelled or failed export leaves no file behind, and an
        existing file of that name as it was."""
        doc = self.document.doc
        if not doc.layers:
            self.show_error("Nothing to export: the canvas is empty.")
            return False
        if path is None:
            start = f"{self.projects.name}.png"
            path, _ = QFileDialog.getSaveFileName(self.parent_widget, "Export", start,
                                                  EXPORT_FILTER)
            if not path:
                return False
        strip = self.strip_metadata if strip is None else strip
        target = Path(path)
        suffix = target.suffix.lower()
        if suffix not in LAYERED | FLAT:
            self.show_error(f"Cannot export {target.name}: use .png, .jpg, .webp, "
                            ".ora or .psd.")
            return False
        # What is exported is copied now: results that arrive meanwhile do not change it.
        layers = [_layer_copy(layer) for layer in doc.layers]
        width, height, request = doc.width, doc.height, self._canvas_request()

        def work(task: TaskState) -> None:
            partial = _partial_path(target)
            try:
                if suffix in LAYERED:
                    from studio.core.formats.layered import (
                        LayeredImage,
                        export_ora,
                        export_psd,
                    )

                    task.report(None, f"Writing {len(layers)} layers to {target.name}…")
                    image = LayeredImage.from_document(_document(width, height, layers))
                    task.check()
                    export = export_ora if suffix == ".ora" else export_psd
                    export(partial, image.width, image.height, image.layers)
                else:
                    from studio.core.formats.metadata import save_image

                    task.report(None, f"Flattening {len(layers)} layers…")
                    pixels = _document(width, height, layers).composite()
                    task.check()
                    task.report(None, f"Writing {target.name}…")
                    from studio.session.workflows import WORKFLOWS

                    # A server's image carries the ComfyUI workflow that made it.
                    workflow = WORKFLOWS.for_pixels(pixels) if request is not None else None
                    save_image(partial, pixels, request, strip=strip, workflow=workflow)
                task.check()
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)

        try:
            self._run(f"Exporting {target.name}…", work)
        except CancelledError:
            self.show_status(f"Export cancelled: {target.name} was not written")
            return False
        except StudioError as err:  # named as the user named it, not as the partial file
            self.show_error(str(err).replace(_partial_path(target).name, target.name))
            return False
        except OSError as err:
            self.show_error(f"Could not save {target.name}: {err.strerror or err}.")
            return False
        self.show_status(f"Exported {target.name}")
        return True

    def _run(self, title: str, work: Callable[[TaskState], Any]) -> Any:
        """Run slow export work with progress and Cancel; ``task_started`` hears of it."""
        task = TaskState()
        self.task_started.emit(task)
        return run_cancellable(self.parent_widget, title, work, task)

    def _canvas_request(self) -> Any:
        """The settings a flat export carries: only those of a canvas that is exactly one
        generated image (never the top layer's for a composite it did not make)."""
        from studio.core.document.operations import composite_request

        return composite_request(self.document.doc)

    def gallery_records(self, selected_only: bool) -> list[GenerationRecord]:
        panel = self.gallery
        if selected_only:
            rows = sorted(panel.list.row(item) for item in panel.list.selectedItems())
            chosen = [panel.items[r] for r in rows if 0 <= r < len(panel.items)]
            if chosen:
                return chosen
        return list(panel.items)

    def export_gallery(self, folder: str | None = None, template: str | None = None, *,
                       selected_only: bool | None = None, suffix: str = ".png",
                       contact_sheet: bool = False, strip: bool | None = None) -> list[Path]:
        """Write gallery images to ``folder`` named by ``template``; returns the files."""
        if folder is None:
            dialog = GalleryExportDialog(self.settings, self._selected_count(),
                                         len(self.gallery.items), self.parent_widget)
            if dialog.exec() != QDialog.DialogCode.Accepted:
                return []
            values = dialog.values()
            self.settings.setValue(TEMPLATE_KEY, values["template"])
            return self.export_gallery(**values)
        records = self.gallery_records(bool(selected_only))
        if not records:
            self.show_error("The gallery is empty: generate something first.")
            return []
        strip = self.strip_metadata if strip is None else strip
        from studio.core.formats.naming import batch_paths

        try:
            paths = batch_paths(folder, [r.request for r in records],
                                template=template or DEFAULT_TEMPLATE, suffix=suffix,
                                when=datetime.now())
        except StudioError as err:
            self.show_error(str(err))
            return []
        log = self.document.doc.log

        def work(task: TaskState) -> list[Path]:
            from studio.core.formats.contact_sheet import caption_for
            from studio.core.formats.contact_sheet import contact_sheet as make_sheet
            from studio.core.formats.metadata import save_image
            from studio.session.workflows import WORKFLOWS

            written: list[Path] = []
            try:
                images = []
                total = len(records) + (1 if contact_sheet else 0)
                for i, (path, record) in enumerate(zip(paths, records, strict=True)):
                    task.report(i / total, f"Writing image {i + 1} of {len(records)}: "
                                           f"{path.name}")
                    task.check()
                    image = log.image(record.image_hashes[0])
                    images.append(image)
                    workflow = WORKFLOWS.get(record.image_hashes[0])  # a server's: its own
                    written.append(Path(save_image(path, image, record.request, strip=strip,
                                                   workflow=workflow)))
                if contact_sheet:
                    task.report(len(records) / total, "Writing the contact sheet…")
                    task.check()
                    sheet = make_sheet(images, [caption_for(r.request) for r in records])
                    target, n = Path(folder) / "contact_sheet.png", 1
                    while target.exists():
                        n += 1
                        target = Path(folder) / f"contact_sheet-{n}.png"
                    written.append(Path(save_image(target, sheet, None)))
                task.check()
            except CancelledError:
                for done in written:  # a cancelled export writes nothing
                    done.unlink(missing_ok=True)
                raise
            return written

        try:
            written = self._run(f"Exporting {len(records)} images…", work)
        except CancelledError:
            self.show_status("Export cancelled: no image was written")
            return []
        except StudioError as err:
            self.show_error(str(err))
            return []
        except OSError as err:
            self.show_error(f"Could not export to {folder}: {err.strerror or err}.")
            return []
        self.show_status(f"Exported {len(records)} images to {folder}")
        return list(written)

    def _selected_count(self) -> int:
        return len(self.gallery.list.selectedItems())

    # -- importing ---------------------------------------------------------------------------
    def import_settings(self, path: str | None = None) -> bool:
        """Restore prompt, negative prompt, seed, steps, guidance, sampler and size."""
        if path is None:
            path, _ = QFileDialog.getOpenFileName(
                self.parent_widget, "Import settings from image", "",
                "Images (*.png *.jpg *.jpeg *.webp);;All files (*)")
            if not path:
                return False
        from studio.core.jobs.request import GenerationRequest
        from studio.ui.import_worker import read_settings_in_background

        name = Path(path).name
        try:  # read on a worker thread: the window paints, Cancel appears if it is slow
            settings = read_settings_in_background(self.parent_widget, path)
        except CancelledError:
            self.show_status(f"Import cancelled: the settings of {name} were not read")
            return False
        except StudioError as err:
            self.show_error(str(err))
            return False
        if settings is None:
            self.show_error(f"{name} holds no generation settings that Latent Studio "
                              "can read.")
            return False
        panel = self.prompt
        try:
            base = GenerationRequest(**panel.values())
        except (StudioError, TypeError, ValueError):
            base = None
        values = settings.changes(base)  # only what was read: the rest stays as typed
        if not values:
            self.show_error(f"{name} holds no generation settings that Latent Studio "
                            f"can read ({settings.source}).")
            return False
        if settings.request is None:
            values.pop("model", None)
        panel.set_values(values)
        if "seed" in values:
            panel.seed_lock_button.setChecked(True)
        task = f", {settings.task}" if settings.task != "txt2img" else ""
        unread = settings.unread_message
        self.show_status(f"Imported the settings of {name} ({settings.source}{task})"
                         + (f"; {unread}" if unread else ""))
        return True


class GalleryExportDialog(QDialog):
    """Folder, file-name template, which images, format and an optional contact sheet."""

    def __init__(self, settings: QSettings, selected: int, total: int,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export gallery")
        self.setObjectName("gallery_export_dialog")
        form = QFormLayout()
        self.folder_edit = QLineEdit(objectName="export_folder_edit")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._on_browse_clicked)
        row = QHBoxLayout()
        row.addWidget(self.folder_edit, 1)
        row.addWidget(browse)
        form.addRow("Folder", row)
        template = str(settings.value(TEMPLATE_KEY, DEFAULT_TEMPLATE) or DEFAULT_TEMPLATE)
        self.template_edit = QLineEdit(template, objectName="export_template_edit")
        self.template_edit.setToolTip("Fields: {seed} {prompt} {model} {index} {date} "
                                      "{time} {steps} {guidance}; {index:03} pads with zeros")
        form.addRow("File names", self.template_edit)
        form.addRow("", QLabel("{seed}, {prompt}, {model}, {index}, {date}, {time}, {steps}"))
        self.selected_radio = QRadioButton(f"Selected images ({selected})")
        self.all_radio = QRadioButton(f"All images ({total})")
        (self.selected_radio if selected > 1 else self.all_radio).setChecked(True)
        self.selected_radio.setEnabled(selected > 0)
        which = QVBoxLayout()
        which.addWidget(self.selected_radio)
        which.addWidget(self.all_radio)
        form.addRow("Export", which)
        self.format_combo = QComboBox(objectName="export_format_combo")
        for text, suffix in (("PNG", ".png"), ("JPEG", ".jpg"), ("WebP", ".webp")):
            self.format_combo.addItem(text, suffix)
        form.addRow("Format", self.format_combo)
        self.sheet_check = QCheckBox("Also write a contact sheet (contact_sheet.png)")
        self.strip_check = QCheckBox("Strip metadata (no prompt or settings in the files)")
        self.strip_check.setChecked(_bool(settings.value(STRIP_KEY, False)))
        form.addRow("", self.sheet_check)
        form.addRow("", self.strip_check)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._on_accepted)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)

    def _on_browse_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export to folder",
                                                  self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    def _on_accepted(self) -> None:
        if not self.folder_edit.text().strip():
            self._on_browse_clicked()
        if self.folder_edit.text().strip():
            self.accept()

    def values(self) -> dict[str, Any]:
        return {"folder": self.folder_edit.text().strip(),
                "template": self.template_edit.text().strip() or DEFAULT_TEMPLATE,
                "selected_only": self.selected_radio.isChecked(),
                "suffix": self.format_combo.currentData(),
                "contact_sheet": self.sheet_check.isChecked(),
                "strip": self.strip_check.isChecked()}
