"""``PanelDocks``: the window's panels as dock widgets, tabbed in pairs, with first-run widths."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget, QMainWindow, QWidget

LEFT = Qt.DockWidgetArea.LeftDockWidgetArea
RIGHT = Qt.DockWidgetArea.RightDockWidgetArea


class PanelDocks:
    """Docks ``prompt`` and ``sliders`` (tabbed, left) and ``layers``, ``gallery`` and
    ``queue`` (history and queue tabbed, right) into ``window``; ``docks`` by key."""

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
            dock.setWidget(widget)
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
        """The first-run widths of the left and right docks (once the window has its size)."""
        self.window.resizeDocks([self.docks["prompt"], self.docks["layers"]],
                                self.default_widths, Qt.Orientation.Horizontal)
