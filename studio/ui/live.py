"""``LiveController``: wires live mode (``studio.session.live``) to the window.

When a stroke ends, an update is sent at once; while the brush rests mid-stroke (``REST_MS``
without a dab) one is sent too; other changes of the canvas, the prompt or live's own
settings send one after a short pause (``SETTLE_MS``). The canvas region is read from the
canvas's cached composite (the reduced copy nearest the request size, so a large canvas
costs the GUI thread no more than a small one), laid on white and sized for the model. The
picture comes back on the GUI thread and is drawn in the live view; nothing ever waits for
the engine. Live mode pauses while the window is hidden or minimised.

While live mode is on, the GIL changes hands every ``SWITCH_INTERVAL_S`` instead of Python's
5 ms (as ``studio.ui.busy`` does for file work): an update runs the model's Python code on
the engine thread almost without pause (small tensors: each torch call holds the GIL
briefly), so each time the GUI thread came back from a Qt call that had let the GIL go it
waited up to 5 ms for it, several times a frame (a paint, a dab): the GUI stall max over a
40-stroke bench was 51 ms on a quiet machine.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QObject, QTimer, Signal
from PySide6.QtWidgets import QPushButton, QWidget

from studio.core.document.layers import Document, intersect
from studio.session.connection import Connection
from studio.session.live import (
    OFF,
    ON,
    PAUSED,
    LiveResult,
    LiveSession,
    LiveSource,
    flatten_over_white,
)
from studio.ui.canvas import CanvasView
from studio.ui.generation import request_size
from studio.ui.live_panel import LiveView
from studio.ui.prompt_panel import PromptPanel
from studio.ui.widgets import MessageBanner

REST_MS = 250  # the brush rests this long mid-stroke: update
SETTLE_MS = 120  # other changes (prompt, layers, undo): update after this pause
SWITCH_INTERVAL_S = 0.0005  # the GIL's switch interval while live mode is on
LIVE_TIP = ("Live: the model repaints the canvas (or the selection) as you paint; Keep adds "
            "the picture as a layer")


class LiveController(QObject):
    """Live mode in the window: the toggle, the view, the triggers and the pause."""

    shown = Signal(object)  # LiveResult, once the view shows it

    def __init__(self, session: LiveSession, window: QWidget, canvas: CanvasView,
                 prompt: PromptPanel, view: LiveView, button: QPushButton,
                 banner: MessageBanner, connection: Connection,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session, self.window, self.canvas = session, window, canvas
        self.prompt, self.view, self.button = prompt, view, button
        self.banner, self.connection = banner, connection
        self.doc: Document = canvas.doc
        self.latencies: list[float] = []  # seconds from the asking event to the picture
        self._interval: float | None = None  # Python's switch interval before live mode
        self._rest = QTimer(self, singleShot=True, interval=REST_MS)
        self._rest.timeout.connect(self._on_rest)
        self._settle = QTimer(self, singleShot=True, interval=SETTLE_MS)
        self._settle.timeout.connect(lambda: self.request_update())
        view.hide()
        button.setCheckable(True)
        button.toggled.connect(self._on_button_toggled)
        view.keep_requested.connect(self.keep)
        view.settings_changed.connect(self._on_view_settings_changed)
        canvas.stroke_ended.connect(self._on_stroke_ended)
        self.doc.add_listener(self._on_document_event)
        for signal in (prompt.prompt_edit.textChanged, prompt.negative_edit.textChanged,
                       prompt.guidance_slider.valueChanged, prompt.seed_spin.valueChanged,
                       prompt.scheduler_combo.currentIndexChanged,
                       prompt.width_spin.valueChanged, prompt.height_spin.valueChanged):
            signal.connect(self._on_prompt_changed)
        prompt.model_changed.connect(self._on_prompt_changed)
        session.updated.connect(self._on_updated)
        session.state_changed.connect(self._on_state_changed)
        session.busy_changed.connect(self._on_busy_changed)
        session.message.connect(self._on_message)
        connection.state_changed.connect(lambda _s: self.refresh_availability())
        connection.connected.connect(lambda _s: self.refresh_availability())
        window.installEventFilter(self)
        self._on_view_settings_changed()
        self.refresh_availability()

    # -- the toggle ----------------------------------------------------------------------
    def refresh_availability(self) -> None:
        """Grey the toggle out, with the reason, where the backend cannot do live mode."""
        why = self.session.reason()
        self.button.setEnabled(not why)
        self.button.setToolTip(f"Live mode is off: {why}" if why else LIVE_TIP)
        if why and self.session.on:
            self.set_live(False)

    def set_live(self, on: bool) -> bool:
        """Turn live mode on or off (as the toggle does); returns whether it is on."""
        if self.button.isChecked() != on:
            self.button.setChecked(on)  # -> _on_button_toggled
        else:
            self._on_button_toggled(on)
        return self.session.on

    def _on_button_toggled(self, checked: bool) -> None:
        on = self.session.set_on(checked, self.prompt.values())
        if on != checked:
            self.button.blockSignals(True)
            self.button.setChecked(on)
            self.button.blockSignals(False)
        if on and self.window.isVisible() and not self.window.isMinimized():
            self.session.resume()
        elif on:
            self.session.pause(self._hidden_reason())
        if on:
            self.request_update()

    def _on_state_changed(self, state: str) -> None:
        self._hand_over_gil_often(state == ON)
        self.view.setVisible(state != OFF)
        if state == OFF:
            self._rest.stop()
            self._settle.stop()
            self.view.clear()
            if self.button.isChecked():
                self.button.blockSignals(True)
                self.button.setChecked(False)
                self.button.blockSignals(False)
        elif state == PAUSED:
            self.view.set_status(f"Paused: {self.session.pause_reason}")
        elif state == ON and self.session.latest is None:
            self.view.set_status("Starting…")

    def _hand_over_gil_often(self, on: bool) -> None:
        """While updates run, the GUI thread gets the GIL back within half a millisecond."""
        if on and self._interval is None:
            self._interval = sys.getswitchinterval()
            sys.setswitchinterval(min(self._interval, SWITCH_INTERVAL_S))
        elif not on and self._interval is not None:
            sys.setswitchinterval(self._interval)
            self._interval = None

    # -- triggers ------------------------------------------------------------------------
    def _on_stroke_ended(self) -> None:
        self._rest.stop()
        self._settle.stop()
        self.request_update(time.perf_counter())

    def _on_rest(self) -> None:
        if self.canvas.is_stroking:
            self.request_update(time.perf_counter())

    def _on_document_event(self, name: str, payload: dict[str, Any]) -> None:
        if self.session.state != ON:
            return
        if name not in ("layer_changed", "layer_added", "layer_removed", "layers_reordered",
                        "selection_changed", "canvas_resized"):
            return
        if name == "layer_changed" and payload.get("what") == "props" \
                and payload.get("rect") is None:
            return  # a rename
        if self.canvas.is_stroking:
            self._rest.start()  # a dab: the brush moves; update when it rests
        else:
            self._settle.start()

    def _on_prompt_changed(self, *_args: Any) -> None:
        if self.session.state == ON:
            self._settle.start()

    def _on_view_settings_changed(self) -> None:
        s, v = self.session, self.view
        s.strength, s.steps, s.seed_locked = v.strength, v.steps, v.seed_locked
        if s.state == ON:
            self._settle.start()

    # -- updates -------------------------------------------------------------------------
    def source(self, stamp: float | None = None) -> LiveSource:
        """The canvas region (selection or canvas) laid on white, at the request size."""
        values = self.prompt.values()
        doc = self.doc
        rect = doc.generation_rect
        rx, ry, rw, rh = rect
        width, height = request_size(rw, rh, values["width"], values["height"])
        cache = self.canvas.composite_cache
        level = 0  # the smallest reduced copy still at least the request size
        while level + 1 < len(cache.levels) and rw >> (level + 1) >= width \
                and rh >> (level + 1) >= height:
            level += 1
        f = 2 ** level
        array = cache.levels[level][0]
        region = np.zeros((max(1, rh // f), max(1, rw // f), 4), np.uint8)
        part = intersect(rect, doc.rect)
        if part is not None:
            px, py, pw, ph = (v // f for v in part)
            ox, oy = (part[0] - rx) // f, (part[1] - ry) // f
            src = array[py:py + ph, px:px + pw]
            dst = region[oy:oy + src.shape[0], ox:ox + src.shape[1]]
            dst[...] = src[:dst.shape[0], :dst.shape[1]]
        rgb = flatten_over_white(region)
        if rgb.shape[:2] != (height, width):
            from PIL import Image

            rgb = np.asarray(Image.fromarray(rgb).resize((width, height), Image.LANCZOS))
        return LiveSource(rgb, rect, time.perf_counter() if stamp is None else stamp)

    def request_update(self, stamp: float | None = None) -> int | None:
        """Send an update of the canvas as it is now (the newest replaces a stale one)."""
        if self.session.state != ON:
            return None
        self._settle.stop()
        return self.session.update(self.prompt.values(), self.source(stamp))

    def _on_updated(self, live: LiveResult) -> None:
        ms = live.result.seconds * 1000
        self.view.show_picture(live.image, f"{ms:.0f} ms an update")
        self.latencies.append(time.perf_counter() - live.stamp)
        self.shown.emit(live)

    def _on_busy_changed(self, busy: bool) -> None:
        if busy and self.session.latest is None:
            self.view.set_status("Updating…")

    def _on_message(self, text: str) -> None:
        self.view.set_status(text)
        self.banner.show_message(text, "info", 8000)

    def keep(self) -> str | None:
        """Keep the live picture as a new layer (History and undo)."""
        record_id = self.session.keep()
        if record_id is not None:
            self.view.set_status("Kept as a new layer")
        return record_id

    # -- the window ----------------------------------------------------------------------
    def _hidden_reason(self) -> str:
        return "the window is minimised" if self.window.isMinimized() else \
            "the window is hidden"

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt API)
        if watched is self.window and self.session.on:
            kind = event.type()
            if kind == QEvent.Type.Hide or (kind == QEvent.Type.WindowStateChange
                                            and self.window.isMinimized()):
                self.session.pause(self._hidden_reason())
            elif kind == QEvent.Type.Show or (kind == QEvent.Type.WindowStateChange
                                              and not self.window.isMinimized()
                                              and self.window.isVisible()):
                if self.session.state == PAUSED:
                    self.session.resume()
                    self.request_update()
        return False

    def stop(self) -> None:
        """The window closes: no more updates."""
        self.window.removeEventFilter(self)
        self.session.set_on(False)
        self.doc.remove_listener(self._on_document_event)

