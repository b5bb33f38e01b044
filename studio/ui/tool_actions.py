"""``ToolActions``: Models ▸ Model Manager…, Image ▸ Upscale… and Generate ▸ X/Y/Z Grid….

The engine work goes through the backend's services (``studio.core.engines``), which the
``Connection`` holds; what the backend lacks is greyed out, with the reason as the tooltip.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QSettings
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDialog, QWidget

from studio.core.document.operations import scale_image
from studio.core.engines import Upscaling
from studio.core.errors import StudioError
from studio.core.jobs.events import JobCancelled, JobFailed, JobFinished
from studio.core.jobs.request import GenerationRequest
from studio.session.connection import Connection
from studio.session.document import DocumentModel
from studio.settings import save_settings, saved_settings
from studio.ui.grid_dialog import GridDialog
from studio.ui.model_manager import ModelManagerDialog, ModelManagerService
from studio.ui.prompt_panel import PromptPanel
from studio.ui.upscale_dialog import UpscaleDialog

#: (action name, text, menu it goes in, the feature it needs)
TOOLS = (("model_manager", "&Model Manager…", "Models", "model_management"),
         ("upscale", "&Upscale…", "Image", "upscaling"),
         ("xyz_grid", "X/Y/Z &Grid…", "Generate", ""))


class ToolActions(QObject):
    """The model manager, upscaling and the X/Y/Z grid, as actions over one backend.

    Parameters
    ----------
    parent
        The widget the dialogs belong to.
    connection
        The backend's services and job queue.
    document
        The document upscaling adds its layer to (one undo step).
    prompt
        The prompt panel: the grid's base request; the default model's picker.
    settings
        Where the default model is kept.
    show_error
        Says what went wrong, in one line.
    models_changed, canvas_resized
        Called after the model manager closes, and after an upscale grew the canvas.
    """

    def __init__(self, parent: QWidget, connection: Connection, document: DocumentModel,
                 prompt: PromptPanel, settings: QSettings, show_error: Callable[[str], None],
                 models_changed: Callable[[], None],
                 canvas_resized: Callable[[], None]) -> None:
        super().__init__(parent)
        self.parent_widget = parent
        self.connection, self.document, self.prompt = connection, document, prompt
        self.settings, self.show_error = settings, show_error
        self.models_changed, self.canvas_resized = models_changed, canvas_resized
        self.last_upscale: np.ndarray | None = None
        #: Where a grid's cells go (the window's staging area); ``None``: into History.
        self.stage_grid_cell: Callable[[Any], Any] | None = None
        slots = {"model_manager": self.open_model_manager, "upscale": self.open_upscale,
                 "xyz_grid": self.open_grid}
        self.actions: dict[str, QAction] = {}
        for name, text, _menu, _feature in TOOLS:
            action = QAction(text, parent)
            action.setObjectName(f"{name}_action")
            action.triggered.connect(lambda _c=False, slot=slots[name]: slot())
            self.actions[name] = action
        connection.state_changed.connect(self._on_connection_state_changed)
        self._on_connection_state_changed(connection.state)

    def _on_connection_state_changed(self, _state: str) -> None:
        for name, _text, _menu, feature in TOOLS:
            action = self.actions[name]
            on = self.connection.can(feature) if feature else self.connection.ready
            action.setEnabled(on)
            action.setToolTip(action.text().replace("&", "").rstrip("…") if on else
                              self.connection.reason(feature or "img2img"))

    # -- model manager -------------------------------------------------------------------
    def open_model_manager(self) -> ModelManagerDialog | None:
        services = self.connection.services
        folders = services.folders if services is not None else None
        if services is None or folders is None:
            self.show_error(self.connection.reason("model_management"))
            return None
        engine, settings = services.engine, self.settings

        def get_default() -> str:
            stored = saved_settings().default_model  # what `studio generate` uses too
            if stored:
                return stored
            model = engine.default_model()
            return model.id if model is not None else ""

        def set_default(model: Any) -> None:
            save_settings(saved_settings().replace(default_model=model.id))
            # The window starts with the last model used ("prompt/model"): the default is that.
            settings.setValue("prompt/model", model.id)
            self.prompt.set_models(engine.list_models("diffusion"), model.id)

        dialog = ModelManagerDialog(ModelManagerService(
            list_models=lambda: engine.list_models(), rescan=folders.rescan,
            add_folder=folders.add_folder, compute_hash=folders.compute_hash,
            download=folders.download, get_default=get_default, set_default=set_default),
            self.parent_widget)
        dialog.finished.connect(lambda _r: self.models_changed())
        dialog.show()
        return dialog

    # -- X/Y/Z grid ----------------------------------------------------------------------
    def _base_request(self) -> GenerationRequest:
        values = self.prompt.values()
        values["seed"] = int(self.prompt.seed_spin.value())
        return GenerationRequest(**values)

    def open_grid(self) -> GridDialog | None:
        jobs = self.connection.jobs
        if not jobs.ready:
            self.show_error("The engine is still loading; try again in a moment.")
            return None
        from studio.ui.staging import save_grid

        dialogs: list[GridDialog] = []  # saved with its axes and every cell's request
        dialog = GridDialog(jobs, self._base_request, self.parent_widget,
                            save_image=lambda path, image: save_grid(
                                path, image, dialogs[0].run.plan if dialogs[0].run else None))
        dialogs.append(dialog)
        log = self.document.doc.log
        stage = self.stage_grid_cell  # the staging area: cells wait there, not in History
        dialog.cell_finished.connect(lambda result: stage(result) if stage is not None
                                     else log.add_result(result, None, "grid"))
        dialog.show()
        return dialog

    # -- upscaling -----------------------------------------------------------------------
    def open_upscale(self) -> int | None:
        """Ask, then scale the whole document up: the upscaler on generated layers (on the
        engine thread), a resampler on the rest (one undo step)."""
        services = self.connection.services
        upscaling = services.upscaling if services is not None else None
        if upscaling is None or not self.connection.jobs.ready:
            self.show_error(self.connection.reason("upscaling"))
            return None
        doc = self.document.doc
        if not doc.layers:
            self.show_error("Open or generate an image first.")
            return None
        dialog = UpscaleDialog(upscaling.upscaler_names(), (doc.width, doc.height),
                               self.parent_widget)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return None
        return self.submit_upscale(upscaling, dialog.values())

    def submit_upscale(self, upscaling: Upscaling, values: dict[str, Any]) -> int:
        """Queue the upscale as custom work: every generated layer goes through the upscaler;
        when it ends, the canvas and every layer are scaled (the others resampled, Lanczos)
        in one undo step."""
        jobs = self.connection.jobs
        doc = self.document.doc
        scale = float(values["scale"])
        # What the engine thread reads is copied now: edits meanwhile do not reach it.
        sources = {layer.id: np.ascontiguousarray(layer.pixels[..., :3]) for layer in doc.layers
                   if layer.kind == "generated"}
        size = (doc.width, doc.height)

        def work(on_step: Any, cancel: Any) -> Any:
            return {layer_id: np.asarray(upscaling.upscale(rgb, values, on_step, cancel))
                    for layer_id, rgb in sources.items()}

        ids: list[int] = []  # the job id, known once submitted

        def on_failed(event: JobFailed) -> None:
            if event.job_id in ids:
                disconnect()
                self.show_error(event.message)

        def on_finished(event: JobFinished) -> None:
            if event.job_id not in ids:
                return
            disconnect()
            made = {k: v for k, v in dict(event.result).items() if doc.has_layer(k)}
            width, height = round(size[0] * scale), round(size[1] * scale)
            if (doc.width, doc.height) != size:  # the canvas changed meanwhile: follow it
                width, height = round(doc.width * scale), round(doc.height * scale)
            try:
                scale_image(self.document.undo_stack, width, height, made,
                            text=f"Upscale ×{scale:g}")
            except (StudioError, ValueError) as err:
                self.show_error(str(err))
                return
            self.canvas_resized()
            self.last_upscale = doc.composite()

        def on_cancelled(event: JobCancelled) -> None:
            if event.job_id in ids:
                disconnect()

        def disconnect() -> None:
            jobs.finished.disconnect(on_finished)
            jobs.failed.disconnect(on_failed)
            jobs.cancelled.disconnect(on_cancelled)

        # Connected before submitting: the job may end before ``submit`` returns.
        jobs.finished.connect(on_finished)
        jobs.failed.connect(on_failed)
        jobs.cancelled.connect(on_cancelled)
        ids.append(jobs.submit_work(work, f"Upscale ×{scale:g}"))
        return ids[0]
