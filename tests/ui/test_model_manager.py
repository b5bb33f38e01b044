"""The model manager dialog over a fake service: list, preview, hash, folders, default,
file manager, downloads (online and offline)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image
from PySide6.QtGui import QDesktopServices

from studio.core.errors import StudioError
from studio.core.models import ModelInfo
from studio.ui.model_manager import ModelManagerDialog, ModelManagerService, preview_path


@pytest.fixture
def models(tmp_path):
    folder = tmp_path / "tiny-diffusion"
    folder.mkdir()
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(folder / "contact_sheet.png")
    lora = tmp_path / "loras" / "ink.safetensors"
    lora.parent.mkdir()
    lora.write_bytes(b"x" * 2048)
    return [
        ModelInfo("tiny", "tiny-diffusion", "diffusion", "sd1", "embedded", str(folder), 5000),
        ModelInfo("big", "big-xl", "diffusion", "sdxl", "single-file", "/m/big.safetensors",
                  7 * 2**30),
        ModelInfo(str(lora), "ink", "lora", "", "single-file", str(lora), 2048),
        ModelInfo("up", "studio-tiny-upscaler", "upscaler", "compact", "embedded", "", 1000),
    ]


class FakeService:
    def __init__(self, models):
        self.models = list(models)
        self.folders: list[str] = []
        self.default = "tiny"
        self.rescans = 0

    def service(self, download=None) -> ModelManagerService:
        return ModelManagerService(
            list_models=lambda: list(self.models), rescan=self._rescan,
            add_folder=self._add, compute_hash=self._hash, download=download,
            get_default=lambda: self.default, set_default=self._set_default)

    def _rescan(self):
        self.rescans += 1

    def _add(self, folder):
        self.folders.append(folder)
        self.models.append(ModelInfo(folder + "/new", "new-model", "diffusion", "sd2",
                                     "diffusers", folder, 10))

    def _hash(self, model):
        time.sleep(0.05)  # slow work happens off the GUI thread
        return "ab" * 32

    def _set_default(self, model):
        self.default = model.id


@pytest.fixture
def dialog(qtbot, models):
    fake = FakeService(models)
    d = ModelManagerDialog(fake.service())
    qtbot.addWidget(d)
    d.fake = fake
    return d


def test_models_are_listed_by_kind_with_size_and_default(dialog):
    groups = [dialog.tree.topLevelItem(i).text(0) for i in range(dialog.tree.topLevelItemCount())]
    assert groups == ["Diffusion models (2)", "LoRAs (1)", "Upscalers (1)"]
    tiny = dialog.item_for("tiny")
    assert "default" in tiny.text(0) and tiny.text(1) == "sd1" and tiny.text(2) == "4.9 KB"
    assert dialog.item_for("big").text(2) == "7.0 GB"


def test_preview_is_the_model_cards_contact_sheet(dialog, models):
    assert preview_path(models[0]).name == "contact_sheet.png"
    dialog.select("tiny")
    assert dialog.preview_shown()
    dialog.select("big")
    assert not dialog.preview_shown() and dialog.preview.text() == "No preview"


def test_hash_is_computed_off_the_gui_thread(qtbot, dialog):
    dialog.select("big")
    with qtbot.waitSignal(dialog.hash_computed, timeout=5000) as blocker:
        dialog.hash_button.click()
    assert blocker.args == ["big", "ab" * 32]
    assert dialog.item_for("big").text(4) == "ab" * 32
    qtbot.waitUntil(lambda: not dialog.busy())


def test_add_folder_rescan_and_set_default(qtbot, dialog, tmp_path):
    assert dialog.add_folder(str(tmp_path))
    assert dialog.fake.folders == [str(tmp_path)] and dialog.item_for(str(tmp_path) + "/new")
    assert not dialog.add_folder(str(tmp_path / "missing"))
    assert "is not a folder" in dialog.status.text()
    dialog.rescan_button.click()
    assert dialog.fake.rescans == 1 and "Found 5 models" in dialog.status.text()
    dialog.select("big")
    with qtbot.waitSignal(dialog.default_changed):
        dialog.default_button.click()
    assert "default" in dialog.item_for("big").text(0)
    assert "default" not in dialog.item_for("tiny").text(0)
    dialog.select(dialog.fake.models[2].id)  # a LoRA cannot be the default
    assert not dialog.default_button.isEnabled()


def test_show_in_file_manager_opens_the_folder(dialog, models, monkeypatch):
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    dialog.select(models[2].id)
    dialog.show_button.click()
    assert opened[0].toLocalFile() == str(models[2].path.rsplit("/", 1)[0])


def test_download_shows_progress_then_lists_the_model(qtbot, models):
    fake = FakeService(models)

    def download(repo_id, progress, cancel):
        for done in (0, 50, 100):
            progress(done, 100)
            time.sleep(0.02)
        fake.models.append(ModelInfo(repo_id, repo_id, "diffusion", "sd1", "hf-cache", "", 1))

    d = ModelManagerDialog(fake.service(download))
    qtbot.addWidget(d)
    values = []
    d.progress.valueChanged.connect(values.append)
    with qtbot.waitSignal(d.download_finished, timeout=5000):
        d.repo_edit.setText("someone/model")
        d.download_button.click()
    assert d.item_for("someone/model") is not None and "Downloaded" in d.status.text()
    assert values and max(values) == 1000
    qtbot.waitUntil(lambda: not d.busy())


def test_offline_download_says_so(qtbot, models, monkeypatch):
    from studio.engine.models.hub import download_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(StudioError, match="You are offline"):
        download_model("someone/model")
    d = ModelManagerDialog(FakeService(models).service(
        lambda repo, progress, cancel: download_model(repo, progress, cancel)))
    qtbot.addWidget(d)
    with qtbot.waitSignal(d.message_shown, timeout=5000,
                          check_params_cb=lambda text: "offline" in text):
        d.download("someone/model")
    assert d.status.text().startswith("You are offline")
    assert d.download_button.isEnabled() and not d.progress.isVisible()
    qtbot.waitUntil(lambda: not d.busy())
