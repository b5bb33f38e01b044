"""Menu entries and the styles box for issue 8's features, installed into a ``MainWindow``.

``install(window)`` adds File ▸ Model Manager…, Image ▸ Upscale… and Generate ▸ X/Y/Z Grid…,
and a ``StylesBox`` under the prompt. Engine work goes through ``engine.table_stakes`` (the
callables ``studio.app`` attaches); with an engine that has none (tests' fake engine) the
entries say so instead of failing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDialog, QMenu, QPushButton

from studio.core.errors import StudioError
from studio.core.jobs.request import GenerationRequest
from studio.core.styles import StyleLibrary
from studio.ui.grid_dialog import GridDialog
from studio.ui.model_manager import ModelManagerDialog, ModelManagerService
from studio.ui.styles_box import StylesBox
from studio.ui.upscale_dialog import UpscaleDialog


def _menu(window: Any, name: str) -> QMenu | None:
    return window.menuBar().findChild(QMenu, f"{name.lower()}_menu")


def install(window: Any) -> None:
    """Add the actions and the styles box to ``window`` (a ``MainWindow``)."""
    specs = (("model_manager", "&Model Manager…", "File", lambda: open_model_manager(window)),
             ("upscale", "&Upscale…", "Image", lambda: open_upscale(window)),
             ("xyz_grid", "X/Y/Z &Grid…", "Generate", lambda: open_grid(window)))
    for name, text, menu_name, slot in specs:
        action = QAction(text, window)
        action.setObjectName(f"{name}_action")
        action.triggered.connect(slot)
        window.actions[name] = action
        menu = _menu(window, menu_name)
        if menu is not None:
            menu.addSeparator()
            menu.addAction(action)
    _install_styles_box(window)


def _install_styles_box(window: Any) -> None:
    panel = window.prompt_panel
    box = StylesBox(StyleLibrary(), panel)
    apply = QPushButton("Apply")
    apply.setToolTip("Write the chosen style into the prompt fields")
    box.buttons_row.insertWidget(1, apply)  # after the stretch, before Save… and Delete
    box.prompt_source = lambda: (panel.prompt_edit.toPlainText(),
                                 panel.negative_edit.toPlainText())

    def apply_style() -> None:
        prompt, negative = box.apply_to(panel.prompt_edit.toPlainText(),
                                        panel.negative_edit.toPlainText())
        panel.prompt_edit.setPlainText(prompt)
        panel.negative_edit.setPlainText(negative)
        box.set_current("")

    apply.clicked.connect(apply_style)
    host = panel.negative_edit.parentWidget()
    layout = host.layout() if host is not None else None
    index = layout.indexOf(panel.negative_edit) if layout is not None else -1
    if layout is not None and hasattr(layout, "insertWidget"):
        layout.insertWidget(index + 1 if index >= 0 else layout.count(), box)
    window.styles_box = box


def _services(window: Any) -> Any:
    services = getattr(window.engine, "table_stakes", None)
    if services is None:
        window.show_error("The engine is still loading, or this engine has no model tools.")
    return services


def open_model_manager(window: Any) -> ModelManagerDialog | None:
    services = _services(window)
    if services is None:
        return None
    settings = window.settings

    def get_default() -> str:
        stored = str(settings.value("models/default", "") or "")
        if stored:
            return stored
        model = window.engine.default_model()
        return model.id if model is not None else ""

    def set_default(model: Any) -> None:
        # The window starts with the last model used ("prompt/model"): the default is that.
        settings.setValue("models/default", model.id)
        settings.setValue("prompt/model", model.id)
        window.prompt_panel.set_models(window.engine.list_models("diffusion"), model.id)

    dialog = ModelManagerDialog(ModelManagerService(
        list_models=services.list_models, rescan=services.rescan,
        add_folder=services.add_folder, compute_hash=services.compute_hash,
        download=services.download, get_default=get_default, set_default=set_default), window)
    dialog.finished.connect(lambda _r: window.reload_models())
    dialog.show()
    return dialog


def _base_request(window: Any) -> GenerationRequest:
    values = window.prompt_panel.values()
    values["seed"] = int(window.prompt_panel.seed_spin.value())
    return GenerationRequest(**values)


def open_grid(window: Any) -> GridDialog | None:
    if window.runner is None:
        window.show_error("The engine is still loading; try again in a moment.")
        return None
    dialog = GridDialog(window.runner, lambda: _base_request(window), window)

    def add_to_gallery(result: Any) -> None:
        window.doc.log.add_result(result, None, "grid")

    dialog.cell_finished.connect(add_to_gallery)
    dialog.show()
    return dialog


def open_upscale(window: Any) -> int | None:
    """Ask, then upscale the visible image on the engine thread into a new layer."""
    services = _services(window)
    if services is None or window.runner is None:
        return None
    if not window.doc.layers:
        window.show_error("Open or generate an image first.")
        return None
    image = np.ascontiguousarray(window.doc.composite()[..., :3])
    dialog = UpscaleDialog(services.upscaler_names(), (image.shape[1], image.shape[0]), window)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    values = dialog.values()
    return submit_upscale(window, services, image, values)


def submit_upscale(window: Any, services: Any, image: np.ndarray,
                   values: dict[str, Any]) -> int:
    """Queue the upscale as custom work; the result becomes a layer (one undo step)."""
    from studio.core.document.edits import AddLayer, ResizeCanvas
    from studio.core.document.layers import Layer

    def work(on_step: Any, cancel: Any) -> Any:
        return services.upscale(image, values, on_step, cancel)

    ids: list[int] = []  # the job id, known once submitted

    def on_failed(event: Any) -> None:
        if event.job_id in ids:
            disconnect()
            window.show_error(event.message)

    def on_finished(event: Any) -> None:
        if event.job_id not in ids:
            return
        disconnect()
        big = np.ascontiguousarray(np.asarray(event.result))
        layer = Layer(name=f"Upscaled ×{values['scale']:g}", pixels=big, kind="image")
        try:
            with window.undo.macro("Upscale"):
                window.undo.push(ResizeCanvas(big.shape[1], big.shape[0]))
                window.undo.push(AddLayer(layer, text="Add upscaled layer"))
        except StudioError as err:
            window.show_error(str(err))
            return
        window.canvas.fit()
        window.upscale_finished = big

    def on_cancelled(event: Any) -> None:
        if event.job_id in ids:
            disconnect()

    def disconnect() -> None:
        window.bridge.job_finished.disconnect(on_finished)
        window.bridge.job_failed.disconnect(on_failed)
        window.bridge.job_cancelled.disconnect(on_cancelled)

    window.bridge.job_finished.connect(on_finished)
    window.bridge.job_failed.connect(on_failed)
    window.bridge.job_cancelled.connect(on_cancelled)
    # Connected before submitting: a queued signal only reaches slots connected at emit time.
    ids.append(window.runner.submit(work=work, label=f"Upscale ×{values['scale']:g}"))
    return ids[0]
