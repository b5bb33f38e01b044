"""The tool bar (left) and the tool options bar (top): tools, brush size, hardness, opacity,
colour, and the generate / cancel / undo buttons artists reach for."""

from __future__ import annotations

from typing import Any

from PySide6.QtGui import QAction, QActionGroup, QColor
from PySide6.QtWidgets import QLabel, QToolBar, QToolButton, QWidget

from studio.ui import canvas_tools as tools
from studio.ui.canvas import CanvasView
from studio.ui.canvas_tools import BrushSettings
from studio.ui.widgets import float_slider, int_slider

TOOL_ACTIONS = {tools.BRUSH: "tool_brush", tools.ERASER: "tool_eraser",
                tools.MASK_BRUSH: "tool_mask_brush", tools.MASK_ERASER: "tool_mask_eraser",
                tools.SELECT: "tool_select", tools.PICKER: "tool_picker", tools.PAN: "tool_pan"}


class ToolBars:
    """The two tool bars (``tools_bar``, ``options_bar``), in step with ``canvas``.

    ``actions`` are the window's actions by name (the tools, undo, redo, zoom, brush
    colour); ``parent`` is the window the bars go in.
    """

    def __init__(self, canvas: CanvasView, actions: dict[str, QAction],
                 parent: QWidget) -> None:
        self.canvas = canvas
        self.actions = actions
        self.tools_bar = QToolBar("Tools", parent)
        self.tools_bar.setObjectName("tools_toolbar")
        self.tools_bar.setMovable(False)
        self.group = QActionGroup(parent)
        for tool, name in TOOL_ACTIONS.items():
            action = actions[name]
            self.group.addAction(action)
            self.tools_bar.addAction(action)
            action.triggered.connect(lambda _c=False, t=tool: self.canvas.set_tool(t))
            if tool == tools.MASK_ERASER:  # the mask's own commands, next to its tools
                for extra in ("clear_mask", "invert_mask"):
                    if extra in actions:
                        self.tools_bar.addAction(actions[extra])

        self.options_bar = QToolBar("Tool options", parent)
        self.options_bar.setObjectName("options_toolbar")
        self.options_bar.setMovable(False)
        for name in ("undo", "redo"):
            self.options_bar.addAction(actions[name])
        self.options_bar.addSeparator()
        self.size_slider = int_slider("brush_size_slider", 1, 512, 24)
        self.hardness_slider = float_slider("brush_hardness_slider", 0.0, 1.0, 0.7)
        self.opacity_slider = float_slider("brush_opacity_slider", 0.05, 1.0, 1.0)
        for label, slider, width in (("Size", self.size_slider, 170),
                                     ("Hardness", self.hardness_slider, 150),
                                     ("Opacity", self.opacity_slider, 150)):
            slider.setFixedWidth(width)
            text = QLabel(label)
            text.setObjectName("section_label")
            text.setContentsMargins(8, 0, 4, 0)
            self.options_bar.addWidget(text)
            self.options_bar.addWidget(slider)
            slider.valueChanged.connect(self._on_slider_changed)
        self.color_button = QToolButton(objectName="brush_color_button")
        self.color_button.setToolTip("Brush colour")
        self.color_button.setFixedSize(26, 26)
        self.color_button.clicked.connect(actions["brush_color"].trigger)
        self.options_bar.addSeparator()
        self.options_bar.addWidget(self.color_button)
        self.options_bar.addSeparator()
        for name in ("zoom_fit", "zoom_100"):
            self.options_bar.addAction(actions[name])
        self.zoom_label = QLabel("100%", objectName="zoom_label")
        self.zoom_label.setMinimumWidth(48)
        self.options_bar.addWidget(self.zoom_label)

        self._auto_size: int | None = None  # the size last set to fit the canvas
        self.canvas.doc.add_listener(self._on_document_event)
        self.canvas.tool_changed.connect(self._on_canvas_tool_changed)
        self.canvas.color_picked.connect(self._on_canvas_color_picked)
        self.canvas.zoom_changed.connect(self._on_canvas_zoom_changed)
        self._on_canvas_tool_changed(self.canvas.tool)
        self._show_color(self.canvas.brush.color)

    # -- brush ---------------------------------------------------------------------------
    def _on_slider_changed(self, _value: Any = None) -> None:
        b = self.canvas.brush
        self.canvas.set_brush(BrushSettings(int(self.size_slider.value()),
                                            float(self.hardness_slider.value()),
                                            float(self.opacity_slider.value()), b.color))

    def set_brush(self, brush: BrushSettings) -> None:
        for slider, value in ((self.size_slider, brush.size),
                              (self.hardness_slider, brush.hardness),
                              (self.opacity_slider, brush.opacity)):
            slider.blockSignals(True)
            slider.setValue(value)
            slider.blockSignals(False)
        self.canvas.set_brush(brush)
        self._show_color(brush.color)

    def _on_document_event(self, name: str, _payload: Any) -> None:
        if name == "canvas_resized":
            self.fit_brush_to_canvas()

    def fit_brush_to_canvas(self) -> None:
        """Brush sizes start in proportion to the canvas (a 16th of its shorter side): after
        a new size, a size set this way follows, as does one over a quarter of the canvas;
        a size the user chose that fits is kept."""
        doc = self.canvas.doc
        side = min(doc.width, doc.height)
        size = int(max(1, min(512, round(side / 16))))
        current = self.canvas.brush.size
        if current == self._auto_size or current > side / 4 or self._auto_size is None:
            self._auto_size = size
            self.set_brush(BrushSettings(size, self.canvas.brush.hardness,
                                         self.canvas.brush.opacity, self.canvas.brush.color))

    def scale_brush(self, factor: float) -> None:
        self.set_brush(self.canvas.brush.resized(factor))

    def set_color(self, rgb: tuple[int, int, int]) -> None:
        b = self.canvas.brush
        self.set_brush(BrushSettings(b.size, b.hardness, b.opacity, rgb))

    def _show_color(self, rgb: tuple[int, int, int]) -> None:
        name = QColor(*rgb).name()
        if self.color_button.property("shownColor") == name:
            return  # a new style sheet re-polishes the bar: 5 ms of a project's open
        self.color_button.setProperty("shownColor", name)
        self.color_button.setStyleSheet(f"QToolButton {{ background: {name}; "
                                        "border: 2px solid #888; border-radius: 13px; }")

    def brush_state(self) -> dict[str, Any]:
        b = self.canvas.brush
        return {"size": b.size, "hardness": b.hardness, "opacity": b.opacity,
                "color": list(b.color), "tool": self.canvas.tool}

    def restore_brush(self, state: dict[str, Any]) -> None:
        try:
            color = tuple(int(c) for c in state.get("color", (240, 240, 240)))[:3]
            self.set_brush(BrushSettings(int(state["size"]), float(state["hardness"]),
                                         float(state["opacity"]), color))  # type: ignore[arg-type]
            self.canvas.set_tool(str(state.get("tool", tools.BRUSH)))
        except (KeyError, TypeError, ValueError):
            pass

    # -- canvas -> bars ------------------------------------------------------------------
    def _on_canvas_tool_changed(self, tool: str) -> None:
        self.actions[TOOL_ACTIONS[tool]].setChecked(True)

    def _on_canvas_color_picked(self, rgb: tuple[int, int, int]) -> None:
        self._show_color(rgb)

    def _on_canvas_zoom_changed(self, zoom: float) -> None:
        self.zoom_label.setText(f"{zoom * 100:.0f}%")
