"""``StudioStatusBar``: device, precision, model, memory in use and the job progress."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar, QWidget

from studio.core.errors import StudioError
from studio.core.jobs.events import JobEvent, JobProgress, JobStarted
from studio.core.models import DeviceInfo

REFRESH_MS = 2000


def memory_text(nbytes: int) -> str:
    if nbytes >= 2**30:
        return f"{nbytes / 2**30:.2f} GB"
    return f"{nbytes / 2**20:.0f} MB"


class StudioStatusBar(QStatusBar):
    """Shows what runs where; memory is refreshed by a timer.

    ``show_device`` shows the backend's device (or why it cannot say) and starts asking
    ``memory_in_use`` every few seconds; ``clear_device`` stops asking.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("status_bar")
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
        for label in (self.model_label, self.device_label, self.dtype_label,
                      self.memory_label):
            self.addPermanentWidget(label)
        self.timer = QTimer(self, interval=REFRESH_MS)
        self.timer.timeout.connect(self.refresh_memory)

    def set_loading(self, text: str) -> None:
        self.message_label.setText(text)
        self.device_label.setText("engine: loading…")

    def show_device(self, info: DeviceInfo | None, memory_in_use: Callable[[], int],
                    problem: str = "") -> None:
        """The backend is ready: its device, or (``None``) the ``problem`` that hides it."""
        if info is None:
            self.device_label.setText("device: unavailable")
            self.device_label.setToolTip(problem)
        else:
            self.device_label.setText(info.device)
            self.device_label.setToolTip(info.description)
            self.dtype_label.setText(f"{info.dtype} autocast" if info.autocast else info.dtype)
        self.memory_in_use = memory_in_use
        self.message_label.setText("Ready")
        self.refresh_memory()
        self.timer.start()

    def clear_device(self) -> None:
        """The backend is gone: stop asking it."""
        self.memory_in_use = None
        self.timer.stop()

    def set_model(self, model_id: str) -> None:
        self.model_label.setText(model_id or "no model")

    def refresh_memory(self) -> None:
        if self.memory_in_use is None:
            return
        try:
            self.memory_label.setText(f"mem {memory_text(self.memory_in_use())}")
        except StudioError:
            self.memory_label.setText("")

    def stop(self) -> None:
        self.timer.stop()

    # -- jobs ----------------------------------------------------------------------------
    def on_job_started(self, event: JobStarted) -> None:
        prompt = event.request.prompt[:40] if event.request is not None else ""
        self.message_label.setText(f"Generating “{prompt}”…")
        self.progress.setRange(0, max(1, event.request.steps if event.request else 1))
        self.progress.setValue(0)
        self.progress.show()

    def on_job_progressed(self, event: JobProgress) -> None:
        self.progress.setRange(0, max(1, event.total))
        self.progress.setValue(event.step)
        self.message_label.setText(f"Step {event.step} of {event.total}")

    def on_job_ended(self, event: JobEvent) -> None:
        self.progress.hide()
        kind = type(event).__name__.removeprefix("Job").lower()
        self.message_label.setText({"finished": "Done", "failed": "Failed",
                                    "cancelled": "Cancelled"}.get(kind, ""))
