"""``PanelDocks``: the window's panels as dock widgets, tabbed in pairs, with first-run widths
and a window size that fits the screen (a 1366 x 768 laptop with every panel open)."""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QDockWidget, QMainWindow, QWidget

from studio.ui.widgets import VerticalScrollArea

LEFT = Qt.DockWidgetArea.LeftDockWidgetArea
RIGHT = Qt.DockWidgetArea.RightDockWidgetArea
PREFERRED_SIZE = QSize(1400, 900)  # the first-run size where the screen has room
FRAME_ALLOWANCE = QSize(8, 32)  # a title bar and borders, before the window has its frame
LAYERS_SHARE = 0.6  # of the right column's height, over History and Queue
SCROLLED = ("layers",)  # panels put in a scroll area by the dock (see ``PanelDocks``)


class PanelDocks:
    """Docks ``prompt`` and ``sliders`` (tabbed, left) and ``layers``, ``gallery`` and
    ``queue`` (history and queue tabbed, right) into ``window``; ``docks`` by key.

    The Layers panel stacks its list over sections (regions, control) that grow with the
    features: it scrolls up and down in its dock, so it never makes the window taller than
    a 1366 x 768 screen (the other panels scroll within themselves)."""

    def __init__(self, window: QMainWindow, prompt: QWidget, sliders: QWidget, layers: QWidget,
                 gallery: QWidget, queue: QWidget) -> None:
        self.window = window
        window.setDockOptions(QMainWindow.DockOption.AnimatedDocks
                              | QMainWindow.DockOption.AllowTabbedDocks)
        window.setTabPosition(Qt.DockWidgetArea.AllDockWidgetAreas, window.tabPosition(LEFT))
        specs = (("prompt", "Prompt", prompt, LEFT), ("sliders", "Sliders", sliders, LEFT),
                 ("layers", "Layers", layers, RIGHT), ("gallery", "History", gallery, RIGHT),
                 ("queue", "Queue", queue, RIGHT))
        self.docks: dict[str, QDockWidget] = {}
        for key, title, widget, area in specs:
            dock = QDockWidget(title, window)
            dock.setObjectName(f"{key}_dock")
            dock.setWidget(VerticalScrollArea(widget) if key in SCROLLED else widget)
            dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                             | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                             | QDockWidget.DockWidgetFeature.DockWidgetClosable)
            window.addDockWidget(area, dock)
            self.docks[key] = dock
        window.tabifyDockWidget(self.docks["prompt"], self.docks["sliders"])
        self.docks["prompt"].raise_()
        window.tabifyDockWidget(self.docks["gallery"], self.docks["queue"])
        self.docks["gallery"].raise_()
        # The Prompt and Sliders tabs share one width: switching tabs must not move the
        # canvas or squeeze the docks on the other side.
        shared = max(prompt.minimumSizeHint().width(), sliders.minimumSizeHint().width())
        for panel in (prompt, sliders):
            panel.setMinimumWidth(shared)
        self.default_widths = [max(330, shared), 300]

    def apply_default_widths(self) -> None:
        """The first-run widths of the left and right docks, and on the right the larger
        share of the height for Layers (once the window has its size)."""
        self.window.resizeDocks([self.docks["prompt"], self.docks["layers"]],
                                self.default_widths, Qt.Orientation.Horizontal)
        right = [self.docks["layers"], self.docks["gallery"]]
        height = sum(dock.height() for dock in right)
        self.window.resizeDocks(right, [round(height * LAYERS_SHARE),
                                        round(height * (1 - LAYERS_SHARE))],
                                Qt.Orientation.Vertical)

    def fit_window(self, size: QSize | None = None) -> None:
        """Give the window ``size`` (default: the size it has), or the screen's free area
        where that is smaller, and move it onto that area (a maximised or full-screen
        window stays as it is)."""
        window = self.window
        size = QSize(size) if size is not None else window.size()
        if window.isMaximized() or window.isFullScreen():
            return
        screen = window.screen() or QGuiApplication.primaryScreen()
        if screen is None:
            window.resize(size)
            return
        area = screen.availableGeometry()
        frame = window.frameGeometry().size() - window.geometry().size()
        if not window.isVisible() or frame.isEmpty():
            frame = FRAME_ALLOWANCE
        size = size.boundedTo(area.size() - frame)
        window.resize(size.expandedTo(window.minimumSizeHint()))
        outer = QRect(window.frameGeometry().topLeft(), window.size() + frame)
        dx = max(0, outer.right() - area.right()) or min(0, outer.left() - area.left())
        dy = max(0, outer.bottom() - area.bottom()) or min(0, outer.top() - area.top())
        if dx or dy:
            window.move(window.pos().x() - dx, window.pos().y() - dy)
