"""``GridDialog``: an X/Y/Z grid from the current settings, queued as one job per cell."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from studio.core.errors import StudioError
from studio.core.grids import GridPlan, GridRun, plan_grid
from studio.core.jobs.request import GenerationRequest
from studio.core.prompt_syntax import parse_prompt
from studio.session.jobs import JobQueue

AXIS_KINDS = ("", "seed", "steps", "guidance", "scheduler", "strength", "clip_skip", "S/R",
              "slider:", "lora:")
EXAMPLES = {"seed": "1,2,3", "steps": "10,20,30", "guidance": "3,5,7",
            "scheduler": "Euler,Euler a,DPM++ 2M Karras", "strength": "0.3,0.5,0.7",
            "clip_skip": "1,2", "S/R": "word in prompt,other word", "slider:": "-1,0,1",
            "lora:": "0,0.5,1"}


class AxisRow:
    """A kind combo, a target field (slider id / LoRA name) and the values."""

    def __init__(self, title: str) -> None:
        self.label = QLabel(title)
        self.kind = QComboBox()
        for kind in AXIS_KINDS:
            self.kind.addItem(kind.rstrip(":") or "—", kind)
        self.target = QLineEdit()
        self.target.setPlaceholderText("slider id / LoRA name")
        self.target.setVisible(False)
        self.values = QLineEdit()
        self.kind.currentIndexChanged.connect(self._on_kind_changed)

    def _on_kind_changed(self, _index: int) -> None:
        kind = str(self.kind.currentData())
        self.target.setVisible(kind.endswith(":"))
        self.values.setPlaceholderText(EXAMPLES.get(kind, ""))

    def set(self, kind: str, values: str, target: str = "") -> None:
        self.kind.setCurrentIndex(max(0, self.kind.findData(kind)))
        self.target.setText(target)
        self.values.setText(values)

    def spec(self) -> str:
        kind = str(self.kind.currentData())
        if not kind:
            return ""
        name = kind + self.target.text().strip() if kind.endswith(":") else kind
        return f"{name}={self.values.text()}"


class GridDialog(QDialog):
    """Plan, queue, watch and save an X/Y/Z grid.

    ``base_request`` gives the current settings (the prompt panel's request); cells go to
    ``jobs`` (the window's ``JobQueue``) as ordinary render jobs. ``cell_finished`` carries
    each result (the window adds it to the gallery); ``grid_finished`` the labelled grid image.
    """

    cell_finished = Signal(object)  # GenerationResult
    grid_finished = Signal(object)  # HxWx3 uint8
    _cell_done = Signal(int, object)  # from the engine thread

    def __init__(self, jobs: JobQueue, base_request: Callable[[], GenerationRequest],
                 parent: QWidget | None = None,
                 save_image: Callable[[str, np.ndarray], None] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("X/Y/Z grid")
        self.resize(720, 560)
        self.jobs = jobs
        self.base_request = base_request
        self._save_image = save_image
        self.run: GridRun | None = None
        self.image: np.ndarray | None = None
        self.rows = [AxisRow("X"), AxisRow("Y"), AxisRow("Z")]
        self.rows[0].set("seed", "1,2,3")
        form = QGridLayout()
        for i, row in enumerate(self.rows):
            form.addWidget(row.label, i, 0)
            form.addWidget(row.kind, i, 1)
            form.addWidget(row.target, i, 2)
            form.addWidget(row.values, i, 3)
            for w in (row.kind, row.target, row.values):
                signal = w.currentIndexChanged if isinstance(w, QComboBox) else w.textChanged
                signal.connect(self._on_axes_edited)
        form.setColumnStretch(3, 1)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.preview = QLabel()
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        scroll = QScrollArea()
        scroll.setWidget(self.preview)
        scroll.setWidgetResizable(True)
        self.run_button = QPushButton("Queue grid")
        self.cancel_button = QPushButton("Cancel grid")
        self.save_button = QPushButton("Save grid…")
        self.cancel_button.setEnabled(False)
        self.save_button.setEnabled(False)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.save_button.clicked.connect(self._on_save_clicked)
        buttons = QHBoxLayout()
        buttons.addWidget(self.progress, 1)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.summary)
        layout.addWidget(scroll, 1)
        layout.addLayout(buttons)
        self._cell_done.connect(self._on_cell_done, Qt.ConnectionType.QueuedConnection)
        self._on_axes_edited()

    def axes(self) -> list[str]:
        return [s for s in (r.spec() for r in self.rows) if s]

    def plan(self) -> GridPlan:
        return plan_grid(self.base_request(), self.axes())

    def _on_axes_edited(self, *_args: object) -> None:
        try:
            plan = self.plan()
        except StudioError as err:
            self.summary.setText(str(err))
            self.run_button.setEnabled(False)
            return
        cols, rows, panels = plan.shape
        warnings = parse_prompt(plan.base.prompt).warnings
        self.summary.setText(f"{len(plan.cells)} images ({cols} × {rows}"
                             + (f" × {panels}" if panels > 1 else "") + "), one job each."
                             + "".join(f"\nPrompt: {w}." for w in warnings))
        self.run_button.setEnabled(self.run is None or self.run.done)

    def start(self) -> bool:
        """Queue every cell; ``False`` (with the message shown) if the axes are wrong."""
        try:
            plan = self.plan()
        except StudioError as err:
            self.summary.setText(str(err))
            return False
        self.image = None
        self.progress.setRange(0, len(plan.cells))
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.save_button.setEnabled(False)
        self.run = GridRun(self.jobs, plan,
                           on_cell=lambda i, result: self._cell_done.emit(i, result))
        return True

    def cancel(self) -> None:
        if self.run is not None:
            self.run.cancel()

    def _on_cell_done(self, _index: int, result: Any) -> None:
        if self.run is None:
            return
        self.progress.setValue(self.progress.value() + 1)
        if result is not None:
            self.cell_finished.emit(result)
        if self.progress.value() >= len(self.run.plan.cells):
            self._finish()

    def _finish(self) -> None:
        assert self.run is not None
        self.image = self.run.image()
        h, w = self.image.shape[:2]
        qimage = QImage(self.image.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        self.preview.setPixmap(QPixmap.fromImage(qimage))
        failed = len(self.run.plan.cells) - len(self.run.results)
        self.summary.setText(f"Done: {len(self.run.results)} of {len(self.run.plan.cells)} "
                             "images" + (f" ({failed} cancelled or failed)" if failed else "")
                             + ".")
        self.progress.setVisible(False)
        self.cancel_button.setEnabled(False)
        self.save_button.setEnabled(True)
        self.run_button.setEnabled(True)
        self.grid_finished.emit(self.image)

    def save(self, path: str) -> None:
        if self.image is None:
            return
        if self._save_image is not None:
            self._save_image(path, self.image)
        else:
            from PIL import Image

            Image.fromarray(self.image).save(path)

    def _on_save_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save grid", "grid.png",
                                              "Images (*.png *.jpg *.webp)")
        if path:
            try:
                self.save(path)
            except (OSError, StudioError) as err:
                self.summary.setText(f"Cannot save {path}: {err}")

    def reject(self) -> None:
        self.cancel()
        super().reject()
