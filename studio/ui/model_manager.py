"""``ModelManagerDialog``: the models found, by kind and family, with size, hash, preview.

It talks to the engine only through ``ModelManagerService``, a bundle of callables given by
the caller (``studio.app`` wires the engine in; tests give fakes). Hashing and downloads run
on worker threads (superqt) and report back through signals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.core.errors import StudioError
from studio.core.jobs.cancel import CancelToken
from studio.core.models import ModelInfo

KIND_TITLES = {"diffusion": "Diffusion models", "lora": "LoRAs", "upscaler": "Upscalers",
               "vae": "VAEs", "gan": "GANs", "classifier": "Classifiers",
               "unknown": "Other"}
PREVIEW_NAMES = ("contact_sheet.png", "contact-sheet.png", "before_after.png", "preview.png",
                 "samples.png")
COL_NAME, COL_FAMILY, COL_SIZE, COL_SOURCE, COL_HASH = range(5)


@dataclass
class ModelManagerService:
    """What the model manager may do, as plain callables (none touches Qt).

    ``compute_hash`` and ``download`` are slow and run on worker threads; ``download``
    receives a progress callback ``(done, total)`` and a cancel token, and raises a
    ``StudioError`` (e.g. "You are offline: ...") on failure.
    """

    list_models: Callable[[], list[ModelInfo]]
    rescan: Callable[[], None]
    add_folder: Callable[[str], None]
    compute_hash: Callable[[ModelInfo], str]
    download: Callable[[str, Callable[[int, int], None], CancelToken], object] | None = None
    get_default: Callable[[], str] = lambda: ""
    set_default: Callable[[ModelInfo], None] = lambda _m: None
    known_hashes: dict[str, str] = field(default_factory=dict)


def preview_path(model: ModelInfo) -> Path | None:
    """A model card image: a contact sheet in the model folder, or ``NAME.png`` beside a file."""
    if not model.path:
        return None
    path = Path(model.path)
    if path.is_dir():
        for name in PREVIEW_NAMES:
            if (path / name).is_file():
                return path / name
        pngs = sorted(path.glob("*.png"))
        return pngs[0] if pngs else None
    for candidate in (path.with_suffix(".preview.png"), path.with_suffix(".png")):
        if candidate.is_file():
            return candidate
    return None


class ModelManagerDialog(QDialog):
    """Browse, add, rescan, hash, download models and pick the default one."""

    hash_computed = Signal(str, str)  # model id, sha256
    download_finished = Signal(str)  # repo id
    message_shown = Signal(str)
    default_changed = Signal(str)

    def __init__(self, service: ModelManagerService, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Model manager")
        self.resize(860, 520)
        self.service = service
        self._models: dict[str, ModelInfo] = {}
        self._workers: list[object] = []
        self._download_cancel: CancelToken | None = None
        self._build()
        self.refresh()

    def _build(self) -> None:
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Name", "Family", "Size", "Source", "SHA-256"])
        self.tree.setColumnWidth(COL_NAME, 260)
        self.tree.setUniformRowHeights(True)
        self.tree.currentItemChanged.connect(self._on_tree_current_changed)
        self.preview = QLabel("No preview")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(220, 220)
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.addWidget(self.preview)
        side_layout.addWidget(self.details, 1)
        split = QSplitter()
        split.addWidget(self.tree)
        split.addWidget(side)
        split.setStretchFactor(0, 3)

        self.add_button = QPushButton("Add folder…")
        self.rescan_button = QPushButton("Rescan")
        self.default_button = QPushButton("Set as default")
        self.hash_button = QPushButton("Compute hash")
        self.show_button = QPushButton("Show in file manager")
        self.add_button.clicked.connect(self._on_add_clicked)
        self.rescan_button.clicked.connect(self.rescan)
        self.default_button.clicked.connect(self.set_default)
        self.hash_button.clicked.connect(self.compute_hash)
        self.show_button.clicked.connect(self.show_in_file_manager)
        buttons = QHBoxLayout()
        for b in (self.add_button, self.rescan_button, self.default_button, self.hash_button,
                  self.show_button):
            buttons.addWidget(b)
        buttons.addStretch(1)

        self.repo_edit = QLineEdit()
        self.repo_edit.setPlaceholderText("Hugging Face repo id, e.g. stabilityai/sd-turbo")
        self.download_button = QPushButton("Download")
        self.download_button.clicked.connect(self._on_download_clicked)
        self.download_button.setEnabled(self.service.download is not None)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        download = QHBoxLayout()
        download.addWidget(QLabel("Download"))
        download.addWidget(self.repo_edit, 1)
        download.addWidget(self.download_button)
        download.addWidget(self.progress)

        self.status = QLabel()
        self.status.setWordWrap(True)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(split, 1)
        layout.addLayout(buttons)
        layout.addLayout(download)
        layout.addWidget(self.status)
        layout.addWidget(close)

    # -- listing -------------------------------------------------------------------------
    def refresh(self) -> None:
        """Rebuild the list from the service (keeps the selection where it can)."""
        selected = self.current_model()
        self.tree.clear()
        self._models.clear()
        default = self.service.get_default()
        groups: dict[str, QTreeWidgetItem] = {}
        for model in sorted(self.service.list_models(),
                            key=lambda m: (list(KIND_TITLES).index(m.kind)
                                           if m.kind in KIND_TITLES else 99,
                                           m.family, m.name.lower())):
            kind = model.kind if model.kind in KIND_TITLES else "unknown"
            group = groups.get(kind)
            if group is None:
                group = QTreeWidgetItem([KIND_TITLES[kind]])
                group.setFlags(Qt.ItemFlag.ItemIsEnabled)
                self.tree.addTopLevelItem(group)
                groups[kind] = group
            name = model.name + ("  ★ default" if model.id == default else "")
            item = QTreeWidgetItem([name, model.family or "-", model.size_text, model.source,
                                    self.service.known_hashes.get(model.id, "")])
            item.setData(COL_NAME, Qt.ItemDataRole.UserRole, model.id)
            item.setToolTip(COL_NAME, model.path)
            group.addChild(item)
            self._models[model.id] = model
        for group in groups.values():
            group.setText(COL_NAME, f"{group.text(COL_NAME)} ({group.childCount()})")
            group.setExpanded(True)
        if selected is not None:
            self.select(selected.id)
        self._update_buttons()

    def item_for(self, model_id: str) -> QTreeWidgetItem | None:
        for i in range(self.tree.topLevelItemCount()):
            group = self.tree.topLevelItem(i)
            for j in range(group.childCount()):
                child = group.child(j)
                if child.data(COL_NAME, Qt.ItemDataRole.UserRole) == model_id:
                    return child
        return None

    def select(self, model_id: str) -> bool:
        item = self.item_for(model_id)
        if item is not None:
            self.tree.setCurrentItem(item)
        return item is not None

    def current_model(self) -> ModelInfo | None:
        item = self.tree.currentItem() if hasattr(self, "tree") else None
        model_id = item.data(COL_NAME, Qt.ItemDataRole.UserRole) if item is not None else None
        return self._models.get(model_id) if model_id else None

    def _update_buttons(self) -> None:
        model = self.current_model()
        for b in (self.hash_button, self.show_button):
            b.setEnabled(model is not None and bool(model.path))
        self.default_button.setEnabled(model is not None and model.kind == "diffusion")

    def _on_tree_current_changed(self, *_args: object) -> None:
        self._update_buttons()
        model = self.current_model()
        if model is None:
            self.preview.setText("No preview")
            self.details.clear()
            return
        self.details.setText(
            f"<b>{model.name}</b><br>{KIND_TITLES.get(model.kind, model.kind)}"
            f" · {model.family or 'family unknown'} · {model.size_text}<br>"
            f"Source: {model.source}<br><small>{model.path}</small>")
        path = preview_path(model)
        pix = QPixmap(str(path)) if path is not None else QPixmap()
        if pix.isNull():
            self.preview.setPixmap(QPixmap())
            self.preview.setText("No preview")
        else:
            self.preview.setPixmap(pix.scaled(220, 220, Qt.AspectRatioMode.KeepAspectRatio,
                                              Qt.TransformationMode.SmoothTransformation))

    def preview_shown(self) -> bool:
        pix = self.preview.pixmap()
        return pix is not None and not pix.isNull()

    # -- actions -------------------------------------------------------------------------
    def show_message(self, text: str) -> None:
        self.status.setText(text)
        self.message_shown.emit(text)

    def _call(self, action: Callable[[], object]) -> bool:
        try:
            action()
        except StudioError as err:
            self.show_message(str(err))
            return False
        return True

    def add_folder(self, folder: str) -> bool:
        if not Path(folder).is_dir():
            self.show_message(f"{folder} is not a folder.")
            return False
        if self._call(lambda: self.service.add_folder(folder)):
            self.refresh()
            self.show_message(f"Added {folder}.")
            return True
        return False

    def _on_add_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a model folder")
        if folder:
            self.add_folder(folder)

    def rescan(self) -> None:
        if self._call(self.service.rescan):
            self.refresh()
            self.show_message(f"Found {len(self._models)} models.")

    def set_default(self) -> None:
        model = self.current_model()
        if model is None or model.kind != "diffusion":
            return
        if self._call(lambda: self.service.set_default(model)):
            self.refresh()
            self.default_changed.emit(model.id)
            self.show_message(f"{model.name} is now the default model.")

    def show_in_file_manager(self) -> None:
        model = self.current_model()
        if model is None or not model.path:
            return
        path = Path(model.path)
        folder = path if path.is_dir() else path.parent
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def compute_hash(self) -> None:
        """Hash the selected model on a worker thread; ``hash_computed`` reports it."""
        model = self.current_model()
        if model is None:
            return
        self.hash_button.setEnabled(False)
        self.show_message(f"Hashing {model.name}…")
        from superqt.utils import create_worker  # not on the start-up path
        worker = create_worker(self.service.compute_hash, model, _ignore_errors=True)
        worker.returned.connect(lambda digest, m=model: self._on_hash_returned(m, digest))
        worker.errored.connect(self._on_worker_errored)
        self._start(worker)

    def _on_hash_returned(self, model: ModelInfo, digest: str) -> None:
        self.service.known_hashes[model.id] = digest
        item = self.item_for(model.id)
        if item is not None:
            item.setText(COL_HASH, digest)
        self._update_buttons()
        self.show_message(f"{model.name}: SHA-256 {digest}")
        self.hash_computed.emit(model.id, digest)

    def download(self, repo_id: str) -> None:
        """Download ``repo_id`` on a worker thread, with the progress bar."""
        if self.service.download is None or not repo_id.strip():
            return
        cancel = CancelToken()
        self._download_cancel = cancel
        self.download_button.setEnabled(False)
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.show_message(f"Downloading {repo_id}…")
        download = self.service.download

        def run():  # a generator: each yield is a progress report on the GUI thread
            reports: list[tuple[int, int]] = []
            import threading

            result: dict[str, object] = {}

            def work() -> None:
                try:
                    result["value"] = download(repo_id, lambda d, t: reports.append((d, t)),
                                               cancel)
                except BaseException as err:  # handed to the GUI thread below
                    result["error"] = err

            thread = threading.Thread(target=work, name="studio-download", daemon=True)
            thread.start()
            while thread.is_alive():
                thread.join(0.05)
                if reports:
                    yield reports[-1]
            if reports:
                yield reports[-1]
            if "error" in result:
                raise result["error"]  # type: ignore[misc]
            return result.get("value")

        from superqt.utils import create_worker  # not on the start-up path
        worker = create_worker(run, _ignore_errors=True)
        worker.yielded.connect(self._on_download_progress)
        worker.returned.connect(lambda _v, r=repo_id: self._on_download_returned(r))
        worker.errored.connect(self._on_worker_errored)
        self._start(worker)

    def _on_download_clicked(self) -> None:
        self.download(self.repo_edit.text())

    def _on_download_progress(self, report: tuple[int, int]) -> None:
        done, total = report
        self.progress.setRange(0, 1000)
        self.progress.setValue(int(1000 * done / max(total, 1)))

    def _on_download_returned(self, repo_id: str) -> None:
        self._download_done()
        self.show_message(f"Downloaded {repo_id}.")
        self._call(self.service.rescan)
        self.refresh()
        self.download_finished.emit(repo_id)

    def _download_done(self) -> None:
        self.progress.setVisible(False)
        self.download_button.setEnabled(self.service.download is not None)
        self._download_cancel = None

    def _on_worker_errored(self, err: BaseException) -> None:
        self._download_done()
        self._update_buttons()
        text = str(err) if isinstance(err, StudioError) else f"Failed: {err}"
        self.show_message(text)

    def _start(self, worker: object) -> None:
        self._workers.append(worker)
        worker.finished.connect(lambda w=worker: self._workers.remove(w)  # type: ignore[attr-defined]
                                if w in self._workers else None)
        worker.start()  # type: ignore[attr-defined]

    def busy(self) -> bool:
        return bool(self._workers)

    def reject(self) -> None:
        if self._download_cancel is not None:
            self._download_cancel.cancel()
        super().reject()
