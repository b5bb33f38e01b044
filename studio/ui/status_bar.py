"""``StudioStatusBar``: device, precision, model, memory in use and the job progress."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar, QToolButton, QWidget

from studio.core.errors import StudioError
from studio.core.jobs.events import JobEvent, JobProgress, JobStarted
from studio.core.models import DeviceInfo

REFRESH_MS = 2000
PHASE_TEXT = {"encoding": "Encoding the prompt…", "decoding": "Decoding the image…"}


def memory_text(nbytes: int) -> str:
    if nbytes >= 2**30:
        return f"{nbytes / 2**30:.2f} GB"
    return f"{nbytes / 2**20:.0f} MB"


class StudioStatusBar(QStatusBar):
    """Shows what runs where; memory is refreshed by a timer.

    ``show_device`` shows the backend's device (or why it cannot say) and starts asking
    ``memory_in_use`` every few seconds; ``clear_device`` stops asking.
    The running job shows its phase (loading the model, steps with the time left,
    decoding) and a Cancel button (``cancel_requested``); ``job_labels`` names the jobs that
    are not generations (an upscale), by job id.
    """

    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None,
                 job_labels: Mapping[int, str] | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("status_bar")
        self.job_labels: Mapping[int, str] = job_labels if job_labels is not None else {}
        self._job: int | None = None
        self._others: dict[int, str] = {}  # other running jobs (several servers) -> title
        self._title = ""
        self._phase = ""
        self._started = self._phase_started = 0.0
        self._steps_at_phase = 0
        self._load_seconds: float | None = None  # how long the last model load took
        self._model_id = ""
        self._device_info: DeviceInfo | None = None
        self._model_info: Callable[[str], DeviceInfo] | None = None
        self._tick_timer = QTimer(self, interval=1000)
        self._tick_timer.timeout.connect(self._on_tick_timer)
        self.cancel_button = QToolButton(objectName="status_cancel_button")
        self.cancel_button.setText("Cancel")
        self.cancel_button.setToolTip("Cancel the running job (Esc)")
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.cancel_button.hide()
        self.memory_in_use: Callable[[], int] | None = None
        self.message_label = QLabel("", objectName="status_message_label")
        self.progress = QProgressBar(objectName="status_progress_bar")
        self.progress.setFixedWidth(160)
        self.progress.setFixedHeight(6)
        self.progress.hide()
        self.device_label = QLabel("", objectName="status_device_label")
        self.dtype_label = QLabel("", objectName="status_dtype_label")
        self.model_label = QLabel("", objectName="status_model_label")
        self.memory_label = QLabel("", objectName="status_memory_label")
        self.addWidget(self.message_label, 1)
        self.addPermanentWidget(self.progress)
        self.addPermanentWidget(self.cancel_button)
        for label in (self.model_label, self.device_label, self.dtype_label,
                      self.memory_label):
            self.addPermanentWidget(label)
        self.timer = QTimer(self, interval=REFRESH_MS)
        self.timer.timeout.connect(self.refresh_memory)

    def set_loading(self, text: str) -> None:
        self.message_label.setText(text)
        self.device_label.setText("engine: loading…")

    def show_device(self, info: DeviceInfo | None, memory_in_use: Callable[[], int],
                    problem: str = "",
                    model_info: Callable[[str], DeviceInfo] | None = None) -> None:
        """The backend is ready: its device, or (``None``) the ``problem`` that hides it.

        ``model_info(model_id)`` (the local engine's ``model_device_info``) says the precision
        a model runs in (small models stay float32 where the device autocasts large ones):
        the precision label then follows the model shown (``set_model``)."""
        self._device_info, self._model_info = info, model_info
        if info is None:
            self.device_label.setText("device: unavailable")
            self.device_label.setToolTip(problem)
        else:
            self.device_label.setText(info.device)
            self.device_label.setToolTip(info.description)
            self._show_precision(self._model_id)
        self.memory_in_use = memory_in_use
        self.message_label.setText("Ready")
        self.refresh_memory()
        self.timer.start()

    def clear_device(self) -> None:
        """The backend is gone: stop asking it."""
        self.memory_in_use = None
        self.timer.stop()

    def show_servers(self, state) -> None:
        """Remote servers (a ``studio.session.servers.ServersState``): one label with each
        server's state, GPU, free memory and queue, updated as the state polls them."""
        if getattr(self, "servers_label", None) is None:
            self.servers_label = ServersLabel(self)
            self.addPermanentWidget(self.servers_label)
        self.servers_label.watch(state)

    def set_model(self, model_id: str) -> None:
        self.model_label.setText(model_id or "no model")
        self._model_id = model_id
        self._show_precision(model_id)

    def _show_precision(self, model_id: str) -> None:
        """The precision the model shown runs in (the device's when it cannot say)."""
        info, model_info = self._device_info, self._model_info
        if info is None:
            return
        if model_id and model_info is not None:
            try:
                info = model_info(model_id)
            except StudioError:  # not a model the engine knows (yet): the device's
                pass
        self.dtype_label.setText(f"{info.dtype} autocast" if info.autocast else info.dtype)
        self.dtype_label.setToolTip(f"{model_id}: {info.description}" if model_id
                                    else info.description)

    def refresh_memory(self) -> None:
        if self.memory_in_use is None:
            return
        try:
            self.memory_label.setText(f"mem {memory_text(self.memory_in_use())}")
        except StudioError:
            self.memory_label.setText("")

    def stop(self) -> None:
        self.timer.stop()
        self._tick_timer.stop()
        if getattr(self, "servers_label", None) is not None:
            self.servers_label.unwatch()

    # -- long operations ---------------------------------------------------------------
    def show_task(self, text: str, fraction: float | None = None) -> None:
        """Something long that is not a job (opening a project): ``fraction`` done (0..1),
        ``None`` when unknown."""
        self.message_label.setText(text + "…")
        if fraction is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 100)
            self.progress.setValue(int(round(100 * max(0.0, min(1.0, fraction)))))
        self.progress.show()

    def end_task(self) -> None:
        if self._job is None:
            self.progress.hide()

    # -- jobs ----------------------------------------------------------------------------
    def on_job_started(self, event: JobStarted) -> None:
        if self._job is not None:  # several servers: the bar follows the newest job
            self._others[self._job] = self._title
        self._job = event.job_id
        self._started = self._phase_started = time.monotonic()
        self._phase = ""
        if event.request is not None:
            self._title = f"Generating “{event.request.prompt[:40]}”"
        else:
            self._title = self.job_labels.get(event.job_id, "") or "Working"
        self.message_label.setText(self._title + "…")
        self.progress.setRange(0, 0)  # busy until the first report
        self.progress.show()
        self.cancel_button.show()

    def on_job_progressed(self, event: JobProgress) -> None:
        if event.job_id != self._job:
            return
        now = time.monotonic()
        if event.phase != self._phase:
            if self._phase == "loading":
                self._load_seconds = now - self._phase_started
            self._phase, self._phase_started = event.phase, now
            self._steps_at_phase = event.step
        self._tick_timer.stop()
        if event.phase == "loading":
            self.progress.setRange(0, 0)
            self._tick_timer.start()
            self._on_tick_timer()
            return
        if event.phase in ("encoding", "decoding"):
            self.progress.setRange(0, 0)
            self.message_label.setText(PHASE_TEXT[event.phase])
            return
        self.progress.setRange(0, max(1, event.total))
        self.progress.setValue(event.step)
        text = (f"Step {event.step} of {event.total}" if self._title.startswith("Generating")
                else f"{self._title}: {event.step} of {event.total}")
        done = event.step - self._steps_at_phase
        if done > 0 and event.total > event.step:
            left = (now - self._phase_started) / done * (event.total - event.step)
            text += f" · about {duration_text(left)} left"
        self.message_label.setText(text)

    def _on_tick_timer(self) -> None:
        """While the model loads: how long so far, and how long the last load took."""
        elapsed = time.monotonic() - self._phase_started
        text = f"Loading model… {duration_text(elapsed)}"
        if self._load_seconds is not None and self._load_seconds > 1:
            text += f" (last time {duration_text(self._load_seconds)})"
        self.message_label.setText(text)

    def on_job_ended(self, event: JobEvent) -> None:
        if self._others.pop(event.job_id, None) is not None:
            return  # a job of another server ended; the one shown goes on
        if event.job_id == self._job and self._others:
            # Another server's job still runs: the bar follows it from its next report.
            self._job, self._title = self._others.popitem()
            self._phase = ""
            self._tick_timer.stop()
            self.progress.setRange(0, 0)
            self.message_label.setText(self._title + "…")
            return
        if event.job_id == self._job:
            self._job = None
            self._tick_timer.stop()
            if self._phase == "loading":
                self._load_seconds = time.monotonic() - self._phase_started
        self.progress.hide()
        self.cancel_button.hide()
        kind = type(event).__name__.removeprefix("Job").lower()
        self.message_label.setText({"finished": "Done", "failed": "Failed",
                                    "cancelled": "Cancelled"}.get(kind, ""))


class ServersLabel(QLabel):
    """``2 servers: 1 idle, 1 failed``, each server's line in the tooltip (red when one
    failed). The state polls on its own thread; its snapshots reach this label through a
    queued Qt signal, so a slow or lost server never blocks the window."""

    _snapshot = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("servers: connecting…", parent, objectName="status_servers_label")
        self.state = None
        self._snapshot.connect(self._show)

    def watch(self, state) -> None:
        self.unwatch()
        self.state = state
        state.changed.connect(self._snapshot.emit)
        state.start()

    def unwatch(self) -> None:
        if self.state is not None:
            self.state.changed.disconnect(self._snapshot.emit)
            self.state.stop()
            self.state = None

    def _show(self, _servers: object) -> None:
        state = self.state
        if state is None:
            return
        self.setText(state.summary)
        lines = [s.text for s in state.servers] or [state.error or "connecting…"]
        self.setToolTip("\n".join(lines))
        failed = bool(state.error) or any(s.state == "failed" for s in state.servers)
        self.setStyleSheet("color: #e06c6c;" if failed else "")


def duration_text(seconds: float) -> str:
    """``"4 s"``, ``"1 min 5 s"``: how long, as a person says it."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60} s"
