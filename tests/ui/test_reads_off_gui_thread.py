"""Files the window opens are read on a worker thread, never on the GUI thread: an image
opened or dropped, a layered file (issue 20: any read stays off the GUI thread)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "data"))


def _watch(monkeypatch, module, name: str) -> list[threading.Thread]:
    """Record the thread each call of ``module.name`` runs on."""
    seen: list[threading.Thread] = []
    real = getattr(module, name)

    def watched(*args, **kwargs):
        seen.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, watched)
    return seen


def test_a_dropped_image_is_decoded_off_the_gui_thread(qtbot, window, tmp_path, monkeypatch):
    from studio.core.formats import imageio

    readers = _watch(monkeypatch, imageio, "open_image")
    pixels = np.zeros((24, 40, 3), np.uint8)
    pixels[:, :20] = (200, 30, 30)
    path = tmp_path / "half red.png"
    Image.fromarray(pixels).save(path)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    window.dropEvent(QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime,
                                Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier))
    assert [layer.name for layer in window.doc.layers] == ["half red"]
    np.testing.assert_array_equal(window.doc.layers[0].pixels[..., :3], pixels)
    assert readers and threading.main_thread() not in readers
    assert window.status.message_label.text() == "Opened half red.png"


def test_a_layered_file_is_read_off_the_gui_thread(qtbot, window, tmp_path, monkeypatch):
    from studio.core.formats import layered

    Image.new("RGB", (24, 16), (90, 90, 90)).save(tmp_path / "grey.png")
    assert window.file_actions.open_path(str(tmp_path / "grey.png"))
    assert window.file_actions.export_canvas(str(tmp_path / "layers.ora"))
    readers = _watch(monkeypatch, layered, "import_ora")
    assert window.file_actions.open_path(str(tmp_path / "layers.ora"))
    assert [layer.name for layer in window.doc.layers] == ["grey", "grey"]
    assert readers and threading.main_thread() not in readers
