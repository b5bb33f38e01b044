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
40-stroke bench was 51 ms on a quiet machine. For the same reason Python's automatic full
garbage collections wait while live mode is on (``defer_full_collections``): one walks every
object the process holds (over 400,000 with torch and Qt loaded) with the GIL held, on
whichever thread allocated last, the remote backend's event loop as often as any; on a
server's live mode that froze the brush once a bench run for 0.3 to 1.3 s. Collections of the
young generations, which free almost all cyclic garbage, go on as before; the full ones are
due again once live mode pauses or turns off.

On a model that lives on a ComfyUI server (``studio.remote``), each update is an image to
image workflow run on that server, through the same preview channel: a new stroke cancels
the update on its way, and the remote engine deletes its prompt from the server's queue or
interrupts it there before the next one is sent, so the server never holds more than one
live prompt; the canvas region is uploaded once per content (named by its hash). ComfyUI's
sampler runs all its ``steps`` over a schedule lengthened by 1/denoise, so a server's update
asks for live's steps themselves (``_server_fields``). The visible control layers go with
every update where the model's backend runs them (``_control_fields``, as Generate sends
them; locally and in a server's workflow). When the server drops out (an update
fails as unreachable or lost, or goes back to the pool's queue because its server lost it),
live mode turns itself off with that one line on the toggle; the canvas is untouched.
"""

from __future__ import annotations

import gc
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
NO_FULL_COLLECTIONS = 1 << 30  # the oldest generation's threshold while live mode is on
LIVE_TIP = ("Live: the model repaints the canvas (or the selection) as you paint; Keep adds "
            "the picture as a layer")
SERVER_BACKEND = "comfyui"  # ``EngineFeatures.backend`` of a model on a ComfyUI server
# A live update that failed so: the server is gone (live mode turns itself off).
SERVER_GONE = ("server-unreachable", "server-lost", "server-stalled", "not-comfyui")
REQUEUED = "back in the queue"  # the remote engine's word for a job its server lost
# A server's update with no word (queued, started, a step) for this long: the server is
# gone without closing the connection (a cut network). The first update may load the model.
SILENT_S, FIRST_SILENT_S = 30.0, 180.0


_deferring: set[int] = set()  # the live controllers that hold full collections back
_threshold: tuple[int, ...] | None = None  # gc's thresholds before the first of them


def defer_full_collections(holder: object, on: bool) -> None:
    """While any ``holder`` asks (live mode is on), Python's automatic collections of the
    oldest generation wait; the young ones go on. A full collection holds the GIL while it
    walks every tracked object (0.2 s with 400,000 of them; over a second on a loaded
    machine), so the GUI thread stalled whichever thread it fell on. ``gc.freeze`` at the
    start would not be enough: the next full collection still walks all that live mode
    promoted since (about 100,000 objects in a bench run)."""
    global _threshold
    key = id(holder)
    if on and key not in _deferring:
        if not _deferring:
            _threshold = gc.get_threshold()
            gc.set_threshold(_threshold[0], _threshold[1], NO_FULL_COLLECTIONS)
        _deferring.add(key)
    elif not on and key in _deferring:
        _deferring.discard(key)
        if not _deferring and _threshold is not None:
            gc.set_threshold(*_threshold)
            _threshold = None


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
        self.off_reason = ""  # why live mode turned itself off (a server gone), on the toggle
        self._sent: set[int] = set()  # live update jobs on their way (to tell them apart)
        self._heard = 0.0  # time.perf_counter() of the last word of a live update
        self._started: int | None = None  # the live update the runner started last
        self._where = ""  # the server the last live update ran on ("host:port")
        self._silence = QTimer(self, interval=1000)  # a server's update that goes quiet
        self._silence.timeout.connect(self._check_silence)
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
        session.add_contributor(self._server_fields)
        session.add_contributor(self._control_fields)
        jobs = session.jobs
        jobs.failed.connect(self._on_job_failed)
        jobs.progressed.connect(self._on_job_progressed)
        jobs.started.connect(self._on_job_heard)
        jobs.finished.connect(self._on_job_ended)
        jobs.cancelled.connect(self._on_job_ended)
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
        shown = why or self.off_reason  # a server that dropped out: on, to try again
        self.button.setToolTip(f"Live mode is off: {shown}" if shown else LIVE_TIP)
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
        if checked and self.off_reason:  # the artist tries again: the server may be back
            self.off_reason = ""
            self.refresh_availability()
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
        defer_full_collections(self, state == ON)
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
        width, height = request_size(rect[2], rect[3], values["width"], values["height"])
        from studio.ui.control_layers import control_layers_hidden, marks_for

        marks = marks_for(doc)
        if any(layer.visible and layer.id in marks for layer in doc.layers):
            # A control layer guides the update; it is no part of the picture to repaint
            # (as for Generate): the region drawn without it (the cache has it in).
            with control_layers_hidden(doc):
                region = doc.composite(rect)
        else:
            region = self._cached_region(rect, width, height)
        rgb = flatten_over_white(region)
        if rgb.shape[:2] != (height, width):
            from PIL import Image

            rgb = np.asarray(Image.fromarray(rgb).resize((width, height), Image.LANCZOS))
        return LiveSource(rgb, rect, time.perf_counter() if stamp is None else stamp)

    def _cached_region(self, rect: Any, width: int, height: int) -> np.ndarray:
        """The region of the canvas's cached composite, from the smallest reduced copy still
        at least ``width`` x ``height``."""
        doc = self.doc
        rx, ry, rw, rh = rect
        canvas = self.canvas
        level = 0  # the smallest reduced copy still at least the request size
        while level + 1 < canvas.composite_levels and rw >> (level + 1) >= width \
                and rh >> (level + 1) >= height:
            level += 1
        f = 2 ** level
        # Only that copy is brought up to date (a large canvas is never drawn at full size
        # on the window's thread for an update sent at a fraction of it).
        array = canvas.composite_at(level)
        region = np.zeros((max(1, rh // f), max(1, rw // f), 4), np.uint8)
        part = intersect(rect, doc.rect)
        if part is not None:
            px, py, pw, ph = (v // f for v in part)
            ox, oy = (part[0] - rx) // f, (part[1] - ry) // f
            src = array[py:py + ph, px:px + pw]
            dst = region[oy:oy + src.shape[0], ox:ox + src.shape[1]]
            dst[...] = src[:dst.shape[0], :dst.shape[1]]
        return region

    def request_update(self, stamp: float | None = None) -> int | None:
        """Send an update of the canvas as it is now (the newest replaces a stale one)."""
        if self.session.state != ON:
            return None
        self._settle.stop()
        job_id = self.session.update(self.prompt.values(), self.source(stamp))
        if job_id is not None:
            self._sent.add(job_id)
            self._heard = time.perf_counter()
            if self.on_server() and not self._silence.isActive():
                self._silence.start()
        return job_id

    def _on_updated(self, live: LiveResult) -> None:
        ms = live.result.seconds * 1000
        device = live.request.device or ""
        host = device.split(":", 1)[1].split("://", 1)[-1] \
            if device.startswith(SERVER_BACKEND + ":") else ""
        where = f" on {host}" if host else ""
        self._where = host or self._where
        self.view.show_picture(live.image, f"{ms:.0f} ms an update{where}")
        self.latencies.append(time.perf_counter() - live.stamp)
        self.shown.emit(live)

    # -- on a server -----------------------------------------------------------------------
    def on_server(self) -> bool:
        """Whether the current model's updates run on a ComfyUI server."""
        return self.connection.features.backend == SERVER_BACKEND

    def _server_fields(self, _rect: Any, _size: tuple[int, int]) -> dict[str, Any]:
        """A server's update runs live's steps themselves: ComfyUI's KSampler runs all its
        ``steps`` at denoise = strength (over a schedule of ``steps / strength``), where the
        local engine runs ``int(steps * strength)`` of them."""
        return {"steps": self.session.steps} if self.on_server() else {}

    def _control_fields(self, rect: Any, size: tuple[int, int]) -> dict[str, Any]:
        """The visible control layers cut to the live region, as Generate sends them, where
        the model's backend runs them (a server: ControlNet nodes in its workflow)."""
        from studio.ui.control_layers import marks_for, request_controls

        if not marks_for(self.doc) or not self.connection.features.control:
            return {}
        return {"controls": request_controls(self.doc, rect, size)}

    def _on_job_ended(self, event: Any) -> None:
        self._sent.discard(event.job_id)
        if not self._sent:
            self._silence.stop()

    def _on_job_heard(self, event: Any) -> None:
        if event.job_id in self._sent:
            self._heard = time.perf_counter()
            self._started = event.job_id

    def _check_silence(self) -> None:
        """A server's update with no word for ``SILENT_S`` (``FIRST_SILENT_S`` before the
        first picture, which may load the model): the server is gone without a word."""
        if not self._sent or not self.session.busy or self.session.state != ON:
            self._silence.stop()
            return
        if self.session.job_id != self._started:  # waiting behind other jobs here: no word
            return  # is due yet
        quiet = time.perf_counter() - self._heard
        if quiet > (SILENT_S if self.session.latest is not None else FIRST_SILENT_S):
            where = f"at {self._where}" if self._where else "of this model"
            self.turn_off(f"The server {where} has not answered for {quiet:.0f} s (gone, or "
                          "busy with other prompts).")

    def _on_job_failed(self, event: Any) -> None:
        """A live update failed: a server that is gone turns live mode off, with its line."""
        if event.job_id not in self._sent:
            return
        self._sent.discard(event.job_id)
        if event.kind in SERVER_GONE:
            self.turn_off(event.message)

    def _on_job_progressed(self, event: Any) -> None:
        """A live update whose server dropped it goes back to the pool's queue to wait for
        a server: a stale stroke is not worth waiting for; live mode turns off instead."""
        where = getattr(event, "where", "") or ""
        if event.job_id in self._sent:
            self._heard = time.perf_counter()
            if where.startswith("on "):
                self._where = where[3:]
        if event.job_id in self._sent and where.startswith(REQUEUED):
            self._sent.discard(event.job_id)
            engine = self.connection.services.engine if self.connection.services else None
            lost = (getattr(getattr(engine, "remote", engine), "requeued", None) or [""])[-1]
            why = lost.split(": ", 1)[1] if ": " in lost else ""  # "url: why"
            self.turn_off(f"{why.rstrip('.')}; the update on its way was lost." if why else
                          f"the server dropped the update on its way ({where}).")

    def turn_off(self, reason: str) -> None:
        """Live mode off with ``reason`` (one line) on the toggle, the view and the banner;
        nothing of the canvas changes. Turning it on again tries again."""
        line = " ".join(str(reason).split()) or "the server is gone."
        self._silence.stop()
        self.off_reason = line
        self.set_live(False)
        self.refresh_availability()
        self.banner.show_message(f"Live mode is off: {line}", "error", 12000)

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
        jobs = self.session.jobs
        for signal, slot in ((jobs.failed, self._on_job_failed),
                             (jobs.progressed, self._on_job_progressed),
                             (jobs.started, self._on_job_heard),
                             (jobs.finished, self._on_job_ended),
                             (jobs.cancelled, self._on_job_ended)):
            signal.disconnect(slot)

