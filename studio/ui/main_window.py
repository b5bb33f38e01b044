"""``MainWindow``: the canvas in the centre, dockable panels, menus, status bar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QObject, QSettings, Qt
from PySide6.QtGui import QActionGroup, QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QMainWindow,
    QMessageBox,
    QVBoxLayout,
    QWidget,
)

from studio.core.engines import EngineServices
from studio.core.errors import StudioError
from studio.core.jobs.request import GenerationRequest
from studio.session.connection import Connection
from studio.session.document import DocumentModel, UndoState
from studio.session.jobs import JobQueue, Runner
from studio.session.sliders import SliderSession
from studio.ui import theme
from studio.ui.actions import ACTIONS, MENUS, create_actions
from studio.ui.bridge import JobBridge
from studio.ui.canvas import CanvasView
from studio.ui.controller import GenerationController
from studio.ui.gallery_panel import GalleryPanel
from studio.ui.layers_panel import LayersPanel
from studio.ui.project_actions import install as install_projects
from studio.ui.prompt_panel import PromptPanel
from studio.ui.queue_panel import QueuePanel
from studio.ui.sliders_panel import SlidersPanel
from studio.ui.status_bar import StudioStatusBar
from studio.ui.styles_box import add_styles_box
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
    """

    def __init__(self, services: EngineServices | None = None, runner: Runner | None = None,
                 settings: QSettings | None = None) -> None:
        super().__init__()
        self.setObjectName("main_window")
        self.setWindowTitle("Latent Studio")
        self.setWindowIcon(theme.icon("app"))
        self.setAcceptDrops(True)
        self.settings = settings if settings is not None else QSettings("LatentStudio",
                                                                        "Latent Studio")
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

        self.prompt_panel = PromptPanel()
        self.layers_panel = LayersPanel(self.doc, self.undo)
        self.gallery_panel = GalleryPanel(self.doc, self.undo)
        self.queue_panel = QueuePanel(self.bridge)
        self.sliders = SliderSession(self.doc, self.undo, self.connection,
                                     render=self._on_sliders_render)
        self.sliders_panel = SlidersPanel(self.sliders, self.connection)
        self.controller = GenerationController(self.doc, self.undo, self.canvas,
                                               self.prompt_panel, self.bridge, self.banner,
                                               self)
        self.actions = create_actions(self)
        self.docks: dict[str, QDockWidget] = {}
        self._build_docks()
        self.tool_bars = ToolBars(self)
        self.commands = WindowCommands(self)
        self.tools = ToolActions(self, self.connection, self.document, self.prompt_panel,
                                 self.settings, self.show_error,
                                 models_changed=self.reload_models,
                                 canvas_resized=self.canvas.fit)
        self._build_menus()
        self.styles_box = add_styles_box(self.prompt_panel)
        install_projects(self)  # projects, export/import, preferences: self.projects
        self.status = StudioStatusBar(self)
        self.setStatusBar(self.status)
        self._default_state = self.saveState(SETTINGS_VERSION)
        self._wire()
        self._restore_settings()
        self.connection.connected.connect(self._on_connection_connected)
        self.connection.state_changed.connect(self._on_connection_state_changed)
        if services is not None:
            self.connection.connect(services, runner)
        else:
            self.status.set_loading("Loading engine…")

    # -- building ------------------------------------------------------------------------
    def _build_docks(self) -> None:
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks
                            | QMainWindow.DockOption.AllowTabbedDocks)
        self.setTabPosition(Qt.DockWidgetArea.AllDockWidgetAreas,
                            self.tabPosition(Qt.DockWidgetArea.LeftDockWidgetArea))
        specs = (("prompt", "Prompt", self.prompt_panel, Qt.DockWidgetArea.LeftDockWidgetArea),
                 ("sliders", "Sliders", self.sliders_panel,
                  Qt.DockWidgetArea.LeftDockWidgetArea),
                 ("layers", "Layers", self.layers_panel, Qt.DockWidgetArea.RightDockWidgetArea),
                 ("gallery", "History", self.gallery_panel,
                  Qt.DockWidgetArea.RightDockWidgetArea),
                 ("queue", "Queue", self.queue_panel, Qt.DockWidgetArea.RightDockWidgetArea))
        for key, title, widget, area in specs:
            dock = QDockWidget(title, self)
            dock.setObjectName(f"{key}_dock")
            dock.setWidget(widget)
            dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                             | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                             | QDockWidget.DockWidgetFeature.DockWidgetClosable)
            self.addDockWidget(area, dock)
            self.docks[key] = dock
        self.tabifyDockWidget(self.docks["prompt"], self.docks["sliders"])
        self.docks["prompt"].raise_()
        self.tabifyDockWidget(self.docks["gallery"], self.docks["queue"])
        self.docks["gallery"].raise_()
        # The Prompt and Sliders tabs share one width: switching tabs must not move the
        # canvas or squeeze the docks on the other side.
        shared = max(self.prompt_panel.minimumSizeHint().width(),
                     self.sliders_panel.minimumSizeHint().width())
        for panel in (self.prompt_panel, self.sliders_panel):
            panel.setMinimumWidth(shared)
        self._default_dock_widths = [max(330, shared), 300]

    def _apply_default_dock_widths(self) -> None:
        """The first-run widths of the left and right docks (once the window has its size)."""
        self.resizeDocks([self.docks["prompt"], self.docks["layers"]], self._default_dock_widths,
                         Qt.Orientation.Horizontal)

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

    def _wire(self) -> None:
        self.prompt_panel.generate_requested.connect(self.controller.generate)
        self.prompt_panel.cancel_requested.connect(self.controller.cancel_current)
        self.prompt_panel.model_changed.connect(self._on_prompt_model_changed)
        self.controller.busy_changed.connect(self.prompt_panel.set_busy)
        self.prompt_panel.set_busy(False)
        self.gallery_panel.item_clicked.connect(self._on_gallery_item_clicked)
        self.gallery_panel.place_requested.connect(self.controller.place)
        self.gallery_panel.init_requested.connect(self.controller.use_as_init)
        self.gallery_panel.vary_requested.connect(self.controller.vary)
        self.bridge.job_progressed.connect(self.status.on_job_progressed)
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
        self.controller.runner = self.jobs
        self.queue_panel.runner = self.jobs
        self.status.set_engine(services.engine)
        self.reload_models()

    def _on_connection_state_changed(self, state: str) -> None:
        if state == "failed":
            message = self.connection.message
            self.controller.unavailable = f"Generation is unavailable: {message}"
            self.status.set_loading("Engine unavailable")
            self.show_error(message)

    def detach_engine(self) -> None:
        """Stop listening to the runner (before it shuts down)."""
        self.connection.disconnect()
        self.status.set_engine(None)

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
                                     "Generate ▸ Reload Models (Help ▸ Adding Models).", "info")
        self.status.set_model(self.prompt_panel.model_id)

    def _on_prompt_model_changed(self, model_id: str) -> None:
        self.status.set_model(model_id)

    def _on_gallery_item_clicked(self, record: Any) -> None:
        self.prompt_panel.apply_request(record.request)

    def _on_generation_applied_for_sliders(self, record_id: str) -> None:
        """The sliders edit the image last generated (or picked in the history)."""
        if record_id in self.doc.log:
            self.slider_base_id = record_id
            self.sliders.set_base_request(self.doc.log.get(record_id).request)

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
        name = str(s.value("view/theme", "dark") or "dark")
        self.set_theme(name)
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1400, 900)
        state = s.value("window/state")
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state, SETTINGS_VERSION)
        else:
            self._apply_default_dock_widths()
        self._restore_prompt_state()
        brush = s.value("canvas/brush")
        if brush:
            self.tool_bars.restore_brush(json.loads(str(brush)))

    def _restore_prompt_state(self) -> None:
        raw = self.settings.value("prompt/state")
        if raw:
            try:
                self.prompt_panel.set_values(json.loads(str(raw)))
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
        s.setValue("view/theme", theme.current_theme())
        s.setValue("canvas/brush", json.dumps(self.tool_bars.brush_state()))
        s.sync()

    def reset_layout(self) -> None:
        self.restoreState(self._default_state, SETTINGS_VERSION)
        self._apply_default_dock_widths()

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
        self.detach_engine()
        self.sliders_panel.unsubscribe()
        self.status.stop()
        super().closeEvent(event)
        if event.isAccepted():
            self._quiet_children()

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

    def about(self) -> None:
        from studio.ui.dialogs import ABOUT_TEXT

        QMessageBox.about(self, "About Latent Studio", ABOUT_TEXT)

