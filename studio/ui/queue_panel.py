"""``QueuePanel``: the running job(s) and the waiting render jobs; reorder and cancel them.

With several remote servers several jobs run at once: each running row says where it runs
("on 127.0.0.1:8188"), or that a server lost it and it is back in the queue."""

from __future__ import annotations

from typing import Protocol

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from studio.core.jobs.events import JobEvent, JobProgress, JobQueued, JobStarted
from studio.core.jobs.request import GenerationRequest
from studio.ui.bridge import JobBridge
from studio.ui.widgets import tool_button

JOB_ID_ROLE = Qt.ItemDataRole.UserRole


class QueueRunner(Protocol):
    """What the panel uses of ``JobRunner``."""

    def cancel(self, job_id: int) -> bool: ...

    def move(self, job_id: int, index: int) -> bool: ...


def job_title(request: GenerationRequest | None, job_id: int) -> str:
    if request is None:
        return f"Job {job_id}"
    prompt = request.prompt or "(no prompt)"
    prompt = prompt if len(prompt) <= 40 else prompt[:39] + "…"
    return f"{prompt}\n{request.task} · {request.width}×{request.height} · {request.seed}"


class QueuePanel(QWidget):
    """Shows the render channel: the running jobs on top, then the queue in run order."""

    def __init__(self, bridge: JobBridge, runner: QueueRunner | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("queue_panel")
        self.runner = runner
        self._running: int | None = None  # the job the label and the bar follow
        self._started: dict[int, tuple[GenerationRequest | None, str]] = {}  # running jobs:
        # their request and where they run ("" until the engine says), in start order
        self.current_label = QLabel("Idle", objectName="queue_current_label")
        self.progress_bar = QProgressBar(objectName="queue_progress_bar")
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setFixedHeight(6)
        self.list = QListWidget(objectName="queue_list")
        self.list.setAlternatingRowColors(True)
        self.list.setWordWrap(True)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.currentRowChanged.connect(self._on_list_current_changed)
        self.up_button = tool_button("queue_up_button", "up", "Run earlier")
        self.down_button = tool_button("queue_down_button", "down", "Run later")
        self.cancel_button = tool_button("queue_cancel_button", "close", "Cancel this job")
        self.up_button.clicked.connect(lambda: self.move_selected(-1))
        self.down_button.clicked.connect(lambda: self.move_selected(+1))
        self.cancel_button.clicked.connect(self.cancel_selected)
        buttons = QHBoxLayout()
        buttons.addWidget(self.up_button)
        buttons.addWidget(self.down_button)
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.current_label)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        bridge.job_queued.connect(self._on_job_queued)
        bridge.job_started.connect(self._on_job_started)
        bridge.job_progressed.connect(self._on_job_progressed)
        bridge.job_finished.connect(self._on_job_ended)
        bridge.job_failed.connect(self._on_job_ended)
        bridge.job_cancelled.connect(self._on_job_ended)
        self._update_buttons()

    # -- queries (also used by tests) ----------------------------------------------------
    def job_ids(self) -> list[int]:
        """Waiting jobs, in the order they will run (the running ones excluded)."""
        return [self.list.item(i).data(JOB_ID_ROLE) for i in range(self.list.count())
                if self.list.item(i).data(JOB_ID_ROLE) not in self._started]

    @property
    def running_job(self) -> int | None:
        return self._running

    def running_jobs(self) -> dict[int, str]:
        """The running jobs (in start order) and where each runs ("" when not said)."""
        return {job_id: where for job_id, (_request, where) in self._started.items()}

    def _row_of(self, job_id: int) -> int:
        for i in range(self.list.count()):
            if self.list.item(i).data(JOB_ID_ROLE) == job_id:
                return i
        return -1

    def select_job(self, job_id: int) -> None:
        self.list.setCurrentRow(self._row_of(job_id))

    # -- user actions --------------------------------------------------------------------
    def move_selected(self, delta: int) -> None:
        item = self.list.currentItem()
        if item is None or self.runner is None:
            return
        job_id = item.data(JOB_ID_ROLE)
        waiting = self.job_ids()
        if job_id not in waiting:
            return
        index = max(0, min(len(waiting) - 1, waiting.index(job_id) + delta))
        if self.runner.move(job_id, index):
            row = self.list.row(item)
            offset = sum(1 for i in range(self.list.count())
                         if self.list.item(i).data(JOB_ID_ROLE) in self._started)
            self.list.takeItem(row)
            self.list.insertItem(index + offset, item)
            self.list.setCurrentItem(item)

    def cancel_selected(self) -> None:
        item = self.list.currentItem()
        if item is not None and self.runner is not None:
            self.runner.cancel(item.data(JOB_ID_ROLE))

    # -- runner events -------------------------------------------------------------------
    def _on_job_queued(self, event: JobQueued) -> None:
        if event.channel != "render":
            return
        item = QListWidgetItem(job_title(event.request, event.job_id))
        item.setData(JOB_ID_ROLE, event.job_id)
        item.setToolTip(event.request.prompt if event.request is not None else "")
        self.list.addItem(item)
        self._update_buttons()

    def _on_job_started(self, event: JobStarted) -> None:
        if event.channel != "render":
            return
        running_rows = len(self._started)
        self._started[event.job_id] = (event.request, "")
        row = self._row_of(event.job_id)
        if row > running_rows:  # below the running ones, above the waiting ones
            self.list.insertItem(running_rows, self.list.takeItem(row))
        item = self.list.item(self._row_of(event.job_id))
        if item is not None:
            font = item.font()
            font.setBold(True)
            item.setFont(font)
        if self._running is None:
            self._follow(event.job_id)
        self._show_label()
        self._update_buttons()

    def _follow(self, job_id: int) -> None:
        """The label's and the bar's job."""
        self._running = job_id
        request = self._started[job_id][0]
        self.progress_bar.setRange(0, request.steps if request else 1)
        self.progress_bar.setValue(0)

    def _show_label(self) -> None:
        if not self._started:
            self.current_label.setText("Idle")
            return
        if len(self._started) > 1:
            places = [where for _request, where in self._started.values() if where]
            text = f"Running {len(self._started)} jobs"
            self.current_label.setText(text + (": " + "; ".join(places) if places else ""))
            return
        job_id, (request, where) = next(iter(self._started.items()))
        title = job_title(request, job_id).split("\n")[0]
        self.current_label.setText(f"Running: {title}" + (f" · {where}" if where else ""))

    def _on_job_progressed(self, event: JobProgress) -> None:
        where = getattr(event, "where", "")
        if where and event.job_id in self._started:
            request, old = self._started[event.job_id]
            if where != old:
                self._started[event.job_id] = (request, where)
                item = self.list.item(self._row_of(event.job_id))
                if item is not None:
                    item.setText(job_title(request, event.job_id) + f"\n{where}")
                    item.setToolTip(f"{request.prompt if request else ''}\n{where}".strip())
                self._show_label()
        if event.job_id == self._running:
            self.progress_bar.setRange(0, max(1, event.total))
            self.progress_bar.setValue(event.step)

    def _on_job_ended(self, event: JobEvent) -> None:
        row = self._row_of(event.job_id)
        if row >= 0:
            self.list.takeItem(row)
        self._started.pop(event.job_id, None)
        if event.job_id == self._running:
            self._running = None
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(0)
            if self._started:
                self._follow(next(iter(self._started)))
        self._show_label()
        self._update_buttons()

    def _on_list_current_changed(self, _row: int) -> None:
        self._update_buttons()

    def _update_buttons(self) -> None:
        item = self.list.currentItem()
        waiting = item is not None and item.data(JOB_ID_ROLE) not in self._started
        self.up_button.setEnabled(waiting)
        self.down_button.setEnabled(waiting)
        self.cancel_button.setEnabled(item is not None)
