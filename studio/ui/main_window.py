"""``MainWindow``: the canvas in the centre, dockable panels, menus, status bar."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QObject, QSettings, Qt
from PySide6.QtGui import QActionGroup, QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QApplication,
    QMainWindow,
    QMenu,
    QMessageBox,
    QVBoxLayout,
    QWidget,
)

from studio.core.document.layers import Document
from studio.core.engines import EngineServices
from studio.core.errors import StudioError
from studio.core.jobs.request import GenerationRequest
from studio.session.connection import Connection
from studio.session.document import DocumentModel, UndoState
from studio.session.jobs import JobQueue, Runner
from studio.session.live import LiveSession
from studio.session.model_card import startup_settings
from studio.session.sliders import SliderSession
from studio.settings import Settings, load_settings, save_settings, saved_settings
from studio.ui import theme
from studio.ui.actions import ACTIONS, MENUS, create_actions, shortcut_table
from studio.ui.bridge import JobBridge
from studio.ui.busy import after_drawn
from studio.ui.canvas import CanvasView
from studio.ui.controller import GenerationController
from studio.ui.dialogs import NO_MODEL_TEXT
from studio.ui.docks import PREFERRED_SIZE, PanelDocks
from studio.ui.gallery_panel import GalleryPanel
from studio.ui.layer_actions import LayerActions
from studio.ui.layers_panel import LayersPanel
from studio.ui.live import LiveController
from studio.ui.live_panel import LiveView
from studio.ui.project_actions import FileActions
from studio.ui.project_controller import ProjectController
from studio.ui.prompt_panel import PromptPanel
from studio.ui.queue_panel import QueuePanel
from studio.ui.recent_files import RecentFiles
from studio.ui.sliders_panel import SlidersPanel
from studio.ui.staging import StagingArea
from studio.ui.status_bar import StudioStatusBar
from studio.ui.tool_actions import TOOLS, ToolActions
from studio.ui.tool_bars import ToolBars
from studio.ui.widgets import MessageBanner
from studio.ui.window_commands import WindowCommands

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
OPENABLE_SUFFIXES = IMAGE_SUFFIXES | {".studio", ".ora", ".psd"}
SETTINGS_VERSION = 1


class MainWindow(QMainWindow):
    """The studio window.

    ``services`` (a backend's ``EngineServices``) and the ``runner`` that owns its thread
    come from the composition root; when the engine loads after the window shows, they come
    later through ``connection.connect``. What the backend cannot do is greyed out.
    ``settings`` keeps the window's own state (geometry, docks, the last prompt);
    ``config`` is the studio's settings (``studio.settings``: theme, autosave interval),
    read from the settings file when not given. ``confirm_close``: ask Save / Discard /
    Cancel before closing with unsaved changes (someone is at the screen).
    """

    def __init__(self, services: EngineServices | None = None, runner: Runner | None = None,
                 settings: QSettings | None = None, config: Settings | None = None, *,
                 confirm_close: bool = False) -> None:
        super().__init__()
        self.setObjectName("main_window")
        self.setWindowTitle("Latent Studio")
        self.setWindowIcon(theme.icon("app"))
        self.setAcceptDrops(True)
        self.settings = settings if settings is not None else QSettings("LatentStudio",
                                                                        "Latent Studio")
        self.config = config if config is not None else _studio_settings()
        # No Qt parent: the runner's listener list keeps the bridge alive, so an event
        # emitted while the window is being destroyed never reaches a deleted object.
        self.bridge = JobBridge()
        self.connection = Connection(JobQueue(post=self.bridge.post))
        self.jobs = self.connection.jobs
        for signal in (self.jobs.queued, self.jobs.started, self.jobs.progressed,
                       self.jobs.finished, self.jobs.failed, self.jobs.cancelled):
            signal.connect(self.bridge.on_event)
        self.document = DocumentModel()
        self.doc, self.undo = self.document.doc, self.document.undo_stack
        self.undo.release_later = after_drawn  # an undone result is freed after the edit
        self.document.replacing.connect(self._on_document_replacing)
        self.document.replaced.connect(self._on_document_replaced)
        self.slider_base_id: str | None = None  # the record the sliders edit

        self.canvas = CanvasView(self.doc, self.undo)
        self.banner = MessageBanner()
        central = QWidget(objectName="central_widget")
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.banner)
        column.addWidget(self.canvas, 1)
        self.setCentralWidget(central)
        self.status = StudioStatusBar(self, self.jobs.labels)
        self.setStatusBar(self.status)

        self.prompt_panel = PromptPanel()
        self.layers_panel = LayersPanel(self.doc, self.undo)
        self.gallery_panel = GalleryPanel(self.doc, self.undo)
        self.queue_panel = QueuePanel(self.bridge, self.jobs)
        self.sliders = SliderSession(self.doc, self.undo, self.connection,
                                     photo_model=lambda: self.prompt_panel.model_id)
        self.sliders_panel = SlidersPanel(self.sliders, self.connection)
        # Slider previews are drawn on the canvas over the layer they edit.
        self.sliders.overlay_shown.connect(self.canvas.set_slider_preview)
        self.sliders.overlay_cleared.connect(self.canvas.clear_slider_preview)
        self.controller = GenerationController(self.doc, self.undo, self.canvas,
                                               self.prompt_panel, self.bridge, self.banner,
                                               self.connection, self)
        # A batch's results wait over the canvas to be kept or discarded (studio.ui.staging).
        self.staging = StagingArea(self.document, self.canvas, lambda: self.controller.busy,
                                   self.controller.generation_applied.emit, self)
        self.controller.staging = self.staging
        for signal in (self.bridge.job_failed, self.bridge.job_cancelled):
            signal.connect(lambda event: self.staging.job_ended(event.job_id))
        # Live mode: the model repaints the canvas as it is painted (studio.ui.live).
        self.live = LiveSession(self.doc, self.undo, self.connection)
        self.live_view = LiveView()
        self.prompt_panel.add_live_view(self.live_view)
        self.live_controller = LiveController(self.live, self, self.canvas, self.prompt_panel,
                                              self.live_view, self.prompt_panel.live_button,
                                              self.banner, self.connection, self)
        self.actions = create_actions(self, self.canvas)
        self.panel_docks = PanelDocks(self, self.prompt_panel, self.sliders_panel,
                                      self.layers_panel, self.gallery_panel, self.queue_panel)
        self.docks = self.panel_docks.docks
        # Rows of another slider set wait, while the Sliders tab is hidden, until it shows.
        self.docks["sliders"].visibilityChanged.connect(self.sliders_panel.set_tab_visible)
        self.tool_bars = ToolBars(self.canvas, self.actions, self)
        self.addToolBar(Qt.ToolBarArea.LeftToolBarArea, self.tool_bars.tools_bar)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, self.tool_bars.options_bar)
        self.layer_actions = LayerActions(self, self.document, self.show_status,
                                          self.show_error, self.canvas.fit,
                                          self.controller.add_image_layer,
                                          lambda: self.projects.new_project())
        self.commands = WindowCommands(self, self.document, self.canvas, self.banner,
                                       self.layer_actions.add_opened_image,
                                       self.tool_bars.set_color, self.show_status)
        self.tools = ToolActions(self, self.connection, self.document, self.prompt_panel,
                                 self.settings, self.show_error,
                                 models_changed=self.reload_models,
                                 canvas_resized=self.canvas.fit)
        self.tools.stage_grid_cell = self.staging.stage_grid_cell  # a grid's cells are staged
        self.projects = ProjectController(self, self.document, RecentFiles(self.settings),
                                          self._prompt_texts, self.show_status,
                                          self.show_error, self.config.autosave_minutes,
                                          confirm_close, prepare_views=self._prepare_views)
        self.file_actions = FileActions(self, self.document, self.projects, self.gallery_panel,
                                        self.prompt_panel, self.settings,
                                        self.commands.open_image, self.canvas.fit,
                                        self.show_status, self.show_error)
        self._build_menus()
        self._connect_actions()
        self.styles_box = self.prompt_panel.styles_box
        self._default_state = self.saveState(SETTINGS_VERSION)
        self._wire()
        self._restore_settings()
        self.connection.connected.connect(self._on_connection_connected)
        self.connection.state_changed.connect(self._on_connection_state_changed)
        if services is not None:
            self.connection.connect(services, runner)
        else:
            self.status.set_loading("Loading engine…")
        # Typing right after the window opens writes the prompt (the bare-key tool
        # shortcuts act only on the canvas).
        self.prompt_panel.prompt_edit.setFocus(Qt.FocusReason.OtherFocusReason)

    # -- building ------------------------------------------------------------------------
    def _build_menus(self) -> None:
        bar = self.menuBar()
        menus = {name: bar.addMenu(f"&{name}") for name in MENUS}
        for name, menu in menus.items():
            menu.setObjectName(f"{name.lower()}_menu")
        submenus: dict[str, Any] = {}
        for spec in ACTIONS:
            top, _, sub = spec.menu.partition("/")
            menu = menus[top]
            if sub:
                key = spec.menu
                if key not in submenus:
                    submenus[key] = menu.addMenu(sub)
                    submenus[key].setObjectName(f"{sub.lower()}_menu")
                menu = submenus[key]
            if spec.separator_before:
                menu.addSeparator()
            menu.addAction(self.actions[spec.name])
        panels = menus["View"].addMenu("&Panels")
        panels.setObjectName("panels_menu")
        for dock in self.docks.values():
            panels.addAction(dock.toggleViewAction())
        for name, _text, menu_name, _feature in TOOLS:
            self.actions[name] = self.tools.actions[name]
            menus[menu_name].addSeparator()
            menus[menu_name].addAction(self.tools.actions[name])
        for menu in menus.values():
            menu.setToolTipsVisible(True)  # a greyed-out entry says why
        group = QActionGroup(self)
        group.addAction(self.actions["theme_dark"])
        group.addAction(self.actions["theme_light"])
        file_menu = menus["File"]
        recent = QMenu("Open &Recent", file_menu)
        recent.setObjectName("recent_menu")
        file_menu.insertMenu(self.actions["save_project"], recent)
        self.projects.recent.attach_menu(recent, self.file_actions.open_path)
        file_menu.insertAction(self.actions["export_gallery"], self.file_actions.strip_action)
        self.actions["strip_metadata"] = self.file_actions.strip_action

    def _connect_actions(self) -> None:
        """What each action does."""
        a, canvas, prompt, ctrl = self.actions, self.canvas, self.prompt_panel, self.controller
        layers, gallery, queue = self.layers_panel, self.gallery_panel, self.queue_panel
        files, projects, commands = self.file_actions, self.projects, self.commands
        handlers = {
            "new_project": projects.new_project,
            "open_image": lambda: files.open_file(),
            "save_project": projects.save,
            "save_project_as": lambda: projects.save_as(),
            "export_image": lambda: files.export_canvas(),
            "export_gallery": lambda: files.export_gallery(),
            "import_settings": lambda: files.import_settings(),
            "preferences": self.open_preferences,
            "quit": self.close,
            "undo": self.document.undo,
            "redo": self.document.redo,
            "select_all": lambda: canvas.set_selection(None),
            "deselect": lambda: canvas.set_selection(None),
            "copy_settings": gallery.copy_settings,
            "zoom_in": lambda: canvas.set_zoom(canvas.zoom * 1.25),
            "zoom_out": lambda: canvas.set_zoom(canvas.zoom / 1.25),
            "zoom_fit": canvas.fit,
            "zoom_100": canvas.actual_size,
            "theme_dark": lambda: self.set_theme("dark"),
            "theme_light": lambda: self.set_theme("light"),
            "reset_layout": self.reset_layout,
            "brush_smaller": lambda: self.tool_bars.scale_brush(1 / 1.25),
            "brush_bigger": lambda: self.tool_bars.scale_brush(1.25),
            "brush_color": commands.pick_brush_color,
            "resize_canvas": commands.resize_canvas,
            "crop": commands.crop,
            "clear_mask": commands.clear_mask,
            "new_layer": layers.add_layer,
            "delete_layer": layers.delete_layer,
            "raise_layer": lambda: layers.move_layer(+1),
            "lower_layer": lambda: layers.move_layer(-1),
            "toggle_layer": layers.toggle_visibility,
            "duplicate_layer": self.layer_actions.duplicate,
            "merge_down": self.layer_actions.merge_down,
            "flatten_image": self.layer_actions.flatten,
            "new_group": self.layer_actions.group,
            "ungroup": self.layer_actions.ungroup,
            "lock_alpha": lambda: self.layer_actions.set_lock_alpha(a["lock_alpha"].isChecked()),
            "invert_mask": self.layer_actions.invert_mask,
            "show_mask": lambda: canvas.set_mask_overlay(a["show_mask"].isChecked()),
            "mask_color": lambda: self.layer_actions.pick_mask_color(canvas),
            "cut": self.layer_actions.cut,
            "copy": self.layer_actions.copy,
            "paste": self.layer_actions.paste,
            "scale_image": self.layer_actions.scale_image,
            "gallery_place": gallery.place_button.click,
            "gallery_init": gallery.init_button.click,
            "gallery_vary": gallery.vary_button.click,
            "gallery_delete": gallery.remove_current,
            "queue_earlier": lambda: queue.move_selected(-1),
            "queue_later": lambda: queue.move_selected(+1),
            "queue_cancel": queue.cancel_selected,
            "generate": ctrl.generate,
            "cancel": ctrl.cancel_current,
            "cancel_all": ctrl.cancel_all,
            "randomize_seed": prompt.randomise_seed,
            "lock_seed": lambda: prompt.seed_lock_button.setChecked(a["lock_seed"].isChecked()),
            "reload_models": lambda: self.reload_models(rescan=True),
            "help_models": lambda: QMessageBox.information(self, "Adding models",
                                                           NO_MODEL_TEXT),
            "help_shortcuts": lambda: QMessageBox.information(self, "Keyboard shortcuts",
                                                              shortcut_table()),
            "about": self.about,
        }
        for name, handler in handlers.items():
            a[name].triggered.connect(lambda _checked=False, h=handler: h())
        prompt.seed_lock_button.toggled.connect(a["lock_seed"].setChecked)
        self.layer_actions.bind_lock_action(a["lock_alpha"])
        a["show_mask"].setChecked(canvas.mask_shown)
        self.canvas.group_painted.connect(lambda name: self.banner.show_message(
            f"{name!r} is a group: select a layer in it to paint.", "info", 4000))

    def _wire(self) -> None:
        self.prompt_panel.generate_requested.connect(self.controller.generate)
        self.prompt_panel.cancel_requested.connect(self.controller.cancel_current)
        self.prompt_panel.model_changed.connect(self._on_prompt_model_changed)
        self.prompt_panel.size_changed.connect(self._on_prompt_size_changed)
        self.controller.busy_changed.connect(self.prompt_panel.set_busy)
        self.prompt_panel.set_busy(False)
        self.gallery_panel.item_clicked.connect(self._on_gallery_item_clicked)
        self.gallery_panel.place_requested.connect(self.controller.place)
        self.gallery_panel.init_requested.connect(self.controller.use_as_init)
        self.gallery_panel.vary_requested.connect(self.controller.vary)
        self.bridge.job_progressed.connect(self.status.on_job_progressed)
        self.status.cancel_requested.connect(self.controller.cancel_current)
        self.projects.open_progressed.connect(self.status.show_task)
        self.projects.open_ended.connect(self.status.end_task)
        self.bridge.job_started.connect(self.status.on_job_started)
        for signal in (self.bridge.job_finished, self.bridge.job_failed,
                       self.bridge.job_cancelled):
            signal.connect(self.status.on_job_ended)
        self.controller.generation_applied.connect(self._on_generation_applied_for_sliders)
        self.gallery_panel.item_clicked.connect(
            lambda record: self._on_generation_applied_for_sliders(record.id))
        self.document.undo_changed.connect(self._on_document_undo_changed)
        self._on_document_undo_changed(UndoState())

    # -- engine ------------------------------------------------------------------------
    def _on_connection_connected(self, services: EngineServices) -> None:
        """The backend is ready: generation, the queue and the model picker use it."""
        engine = services.engine
        schedulers = self.connection.features.schedulers
        if schedulers:  # what this backend runs (a remote server may offer fewer)
            self.prompt_panel.set_schedulers(schedulers)
        try:
            self.status.show_device(engine.device_info(), engine.memory_in_use,
                                    model_info=getattr(engine, "model_device_info", None))
        except StudioError as err:
            self.status.show_device(None, engine.memory_in_use, str(err))
        if hasattr(engine, "server_status"):  # remote servers: polled off this thread
            from studio.session.servers import ServersState

            self.status.show_servers(ServersState(engine.server_status))
        self.reload_models()

    def _on_connection_state_changed(self, state: str) -> None:
        if state == "failed":
            message = self.connection.message
            self.status.set_loading("Engine unavailable")
            self.show_error(message)

    def detach_engine(self) -> None:
        """Stop listening to the runner (before it shuts down)."""
        self.connection.disconnect()
        self.status.clear_device()

    def reload_models(self, rescan: bool = False) -> None:
        """Fill the model picker; ``rescan`` asks the backend to look at the disk again."""
        services = self.connection.services
        if services is None:
            return
        try:
            if rescan and services.folders is not None:
                services.folders.rescan()
            models = services.engine.list_models("diffusion")
        except StudioError as err:
            self.banner.show_message(str(err))
            models = []
        last = str(self.settings.value("prompt/model", "") or "")
        self.prompt_panel.set_models(models, last)
        if last and self.prompt_panel.model_id == last:
            self._restore_prompt_state()
        if not models:
            self.banner.show_message("No diffusion model found. Put a diffusers folder or a "
                                     ".safetensors checkpoint in your models folder, then "
                                     "Models ▸ Reload Models (Models ▸ Adding Models).", "info")
        self.status.set_model(self.prompt_panel.model_id)
        self._select_model(self.prompt_panel.model_id)

    def _on_prompt_model_changed(self, model_id: str) -> None:
        self.status.set_model(model_id)
        self._select_model(model_id)

    def _select_model(self, model_id: str) -> None:
        """Local models and server models side by side: what is on follows the model's
        backend (its schedulers too)."""
        self.connection.select_model(model_id)
        model = self.prompt_panel.model  # regions: greyed out with the reason where refused
        self.layers_panel.set_regions_reason(
            self.connection.features.regions_reason(model.family if model else ""))
        if self.connection.services is not None and self.connection.services.routing:
            schedulers = self.connection.features.schedulers
            if schedulers:
                self.prompt_panel.set_schedulers(schedulers)

    def _on_prompt_size_changed(self, width: int, height: int) -> None:
        """A blank, untitled canvas shows the size the first image will have."""
        if self.projects.path is None and self.document.resize_blank(width, height):
            self.canvas.fit()

    def _on_gallery_item_clicked(self, record: Any) -> None:
        self.prompt_panel.apply_request(record.request)

    def _on_generation_applied_for_sliders(self, record_id: str) -> None:
        """The sliders edit the selected layer (``SliderSession.target``), not a record."""
        if record_id in self.doc.log:
            self.slider_base_id = record_id

    def _on_sliders_render(self, request: GenerationRequest) -> None:
        """A slider release: render the edited image over the one it edits."""
        from studio.ui.generation import GenerationPlan

        base_id = self.slider_base_id
        rect = self.controller.rects.get(base_id or "") or self.doc.generation_rect
        mode = "inpaint" if request.task == "inpaint" else request.task
        plan = GenerationPlan(mode, rect, request.width, request.height, request.init_image,
                              request.mask)
        try:
            self.controller.submit(request, plan, base_id, "slider")
        except StudioError as err:
            self.banner.show_message(str(err))

    def _prepare_views(self, doc: Document) -> Callable[[], None]:
        """On the thread reading a project: draw what the views show of ``doc``, so that
        showing it takes the GUI thread no time; returns the call that hands it over."""
        canvas = CanvasView.prepare(doc)
        layers = LayersPanel.prepare(doc)
        gallery = GalleryPanel.prepare(doc)

        def show() -> None:
            self.canvas.prime(canvas)
            self.layers_panel.prime(layers)
            self.gallery_panel.prime(gallery)

        return show

    def _on_document_replacing(self) -> None:
        """Another document (an opened project) comes: its jobs and places are not ours."""
        self.controller.cancel_all()
        self.live_controller.set_live(False)  # its picture belongs to the old canvas
        self.controller.rects.clear()

    def _on_document_replaced(self) -> None:
        self.gallery_panel.rebuild()
        self.sliders.reload_from_document()
        doc = self.doc
        if doc.prompt or doc.negative_prompt:
            self.prompt_panel.set_values({"prompt": doc.prompt,
                                          "negative_prompt": doc.negative_prompt})
        self.canvas.fit()

    def _on_document_undo_changed(self, state: UndoState) -> None:
        undo, redo = self.actions["undo"], self.actions["redo"]
        undo.setEnabled(state.can_undo)
        redo.setEnabled(state.can_redo)
        undo.setText(f"&Undo {state.undo_text}".strip())
        redo.setText(f"&Redo {state.redo_text}".strip())

    # -- files ---------------------------------------------------------------------------
    def open_paths(self, paths: list[str]) -> None:
        for path in paths:
            self.file_actions.open_path(path)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if any(Path(u.toLocalFile()).suffix.lower() in OPENABLE_SUFFIXES
               for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in event.mimeData().urls()
                 if Path(u.toLocalFile()).suffix.lower() in OPENABLE_SUFFIXES]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    # -- settings ------------------------------------------------------------------------
    def _restore_settings(self) -> None:
        s = self.settings
        self.set_theme(self.config.theme)
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:  # 1400 x 900, or the screen's free area where that is smaller
            self.panel_docks.fit_window(PREFERRED_SIZE)
        state = s.value("window/state")
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state, SETTINGS_VERSION)
        else:
            self.panel_docks.apply_default_widths()
        # The model's card before the engine loads: its size, steps and guidance from the
        # start, so nothing jumps when the model arrives; then the last session's values.
        last_model = str(s.value("prompt/model", "") or "")
        _model, card = startup_settings(last_model, self.config.default_model)
        self.prompt_panel.set_values(card, defaults=True)
        self._restore_prompt_state()
        brush = s.value("canvas/brush")
        if brush:
            self.tool_bars.restore_brush(json.loads(str(brush)))

    def _restore_prompt_state(self) -> None:
        raw = self.settings.value("prompt/state")
        if raw:
            try:  # defaults: what was typed meanwhile stays
                self.prompt_panel.set_values(json.loads(str(raw)), defaults=True)
            except (ValueError, TypeError):
                pass  # an old or damaged entry: keep the defaults

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState(SETTINGS_VERSION))
        state = self.prompt_panel.state()
        s.setValue("prompt/state", json.dumps(state))
        if state["model"]:
            s.setValue("prompt/model", state["model"])
        s.setValue("canvas/brush", json.dumps(self.tool_bars.brush_state()))
        s.sync()
        self._save_theme()

    def _save_theme(self) -> None:
        """The theme in use goes to the settings file (only when it changed)."""
        saved = saved_settings()
        if saved.theme != theme.current_theme():
            try:
                save_settings(saved.replace(theme=theme.current_theme()))
            except OSError as err:  # a read-only config folder: the window still closes
                self.show_error(f"Could not save the theme: {err.strerror or err}.")

    def reset_layout(self) -> None:
        """Every panel back in its place, open, in a window that fits the screen."""
        self.restoreState(self._default_state, SETTINGS_VERSION)
        self.panel_docks.fit_window()
        self.panel_docks.apply_default_widths()

    def set_theme(self, name: str) -> None:
        app = QApplication.instance()
        if isinstance(app, QApplication):
            theme.apply_theme(app, name)
        self.actions["theme_dark"].setChecked(theme.current_theme() == "dark")
        self.actions["theme_light"].setChecked(theme.current_theme() == "light")
        self.canvas.refresh_theme()
        for spec in ACTIONS:
            if spec.icon:
                self.actions[spec.name].setIcon(theme.icon(spec.icon))
        theme.refresh_icons(self)
        self.setWindowIcon(theme.icon("app"))

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self.projects.close_requested():  # unsaved changes and the user cancelled
            event.ignore()
            return
        self.save_settings()
        self.live_controller.stop()
        self.detach_engine()
        self.sliders_panel.unsubscribe()
        self.status.stop()
        super().closeEvent(event)
        if event.isAccepted():
            self._quiet_children()

    def close_for_shutdown(self) -> None:
        """The system asks the app to end (SIGTERM): close without asking; unsaved work is
        saved (see ``ProjectController.shutting_down``)."""
        self.projects.shutting_down = True
        self.close()

    def _quiet_children(self) -> None:
        """A closed window is done: its widgets must not call Python slots while Qt
        destroys them (a combo box or list emitting "current changed" on its way out, when
        the garbage collector frees the window, would run a slot on half-deleted widgets)."""
        for child in self.findChildren(QObject):
            child.blockSignals(True)
        for fn in list(self.doc._listeners):
            self.doc.remove_listener(fn)
        for fn in list(self.doc.log._listeners):
            self.doc.log.remove_listener(fn)

    def show_error(self, message: str) -> None:
        self.banner.show_message(message)

    def show_status(self, text: str) -> None:
        self.status.message_label.setText(text)

    def _prompt_texts(self) -> tuple[str, str]:
        """The prompts as typed (a project keeps them)."""
        panel = self.prompt_panel
        return panel.prompt_edit.toPlainText(), panel.negative_edit.toPlainText()

    # -- preferences ---------------------------------------------------------------------
    def open_preferences(self) -> Any:
        from studio.ui.preferences_dialog import PreferencesDialog

        dialog = PreferencesDialog(self)
        dialog.applied.connect(lambda: self._on_preferences_applied(dialog))
        dialog.open()
        return dialog

    def _on_preferences_applied(self, dialog: Any) -> None:
        """Apply what can change now: autosave interval, theme, model folders."""
        self.projects.set_autosave_interval(dialog.config.autosave_minutes * 60)
        self.set_theme(dialog.config.theme)
        if dialog.model_dirs_changed():
            services = self.connection.services
            folders = services.folders if services is not None else None
            if folders is not None:
                for folder in dialog.added_model_dirs():
                    try:
                        folders.add_folder(folder)
                    except StudioError as err:
                        self.show_error(str(err))
            self.reload_models(rescan=True)

    def about(self) -> None:
        from studio.ui.dialogs import ABOUT_TEXT

        QMessageBox.about(self, "About Latent Studio", ABOUT_TEXT)


def _studio_settings() -> Settings:
    """The settings for this window: the file and the ``STUDIO_*`` environment (a bad value
    in the environment falls back to the file alone: the window still opens)."""
    try:
        return load_settings()
    except StudioError:
        return saved_settings()

