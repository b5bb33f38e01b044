"""A project whose edit history has one damaged entry opens in the window with the rest of
its history, says so in one line, and loses nothing else (issue 20)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from studio.core.document.edits import AddLayer, PaintPixels
from studio.core.document.layers import Document, Layer
from studio.core.document.undo import UndoStack
from studio.core.project.store import ProjectStore


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "data"))


def damaged_project(path: Path) -> list[np.ndarray]:
    """A layer and four strokes, saved; the first stroke's undo diff then rots. Returns the
    layer's pixels after each edit."""
    doc = Document(64, 48)
    stack = UndoStack(doc)
    stack.push(AddLayer(Layer(name="paper", pixels=np.full((48, 64, 4), 200, np.uint8))))
    layer = doc.layers[0].id
    states = [doc.layers[0].pixels.copy()]
    rng = np.random.default_rng(3)
    for i in range(4):
        patch = rng.integers(0, 255, (12, 16, 4), dtype=np.uint8)
        stack.push(PaintPixels.from_patch(doc, layer, 8 + 10 * i, 6 + 8 * i, patch))
        states.append(doc.layers[0].pixels.copy())
    ProjectStore.save(path, doc, stack)
    conn = sqlite3.connect(path)
    key = json.loads(conn.execute("SELECT json FROM undo_commands WHERE pos = 1")
                     .fetchone()[0])["state"]["old"]
    blob = bytearray(conn.execute("SELECT data FROM blobs WHERE sha256 = ?", (key,)).fetchone()[0])
    for i in range(len(blob) // 2, len(blob) // 2 + 8):
        blob[i] ^= 0xA5
    with conn:
        conn.execute("UPDATE blobs SET data = ? WHERE sha256 = ?", (bytes(blob), key))
    conn.close()
    return states


def test_one_damaged_undo_diff_opens_with_the_rest_of_the_history(qtbot, window, tmp_path):
    path = tmp_path / "strokes.studio"
    states = damaged_project(path)
    before = path.read_bytes()
    assert window.projects.open_project(path)
    banner = window.banner.text
    assert "\n" not in banner and "strokes.studio is damaged" in banner
    assert "Edit 2 of 5 in its history (“Paint”) cannot be read" in banner
    assert "Undo now goes back 3 edits, not 5" in banner
    np.testing.assert_array_equal(window.doc.layers[0].pixels, states[4])  # the picture
    for back in (3, 2, 1):  # the three strokes after the damaged one still undo
        assert window.actions["undo"].isEnabled()
        window.actions["undo"].trigger()
        np.testing.assert_array_equal(window.doc.layers[0].pixels, states[back])
    assert not window.actions["undo"].isEnabled()
    for forward in (2, 3, 4):
        window.actions["redo"].trigger()
        np.testing.assert_array_equal(window.doc.layers[0].pixels, states[forward])
    assert window.isWindowModified() and window.projects.path is None  # an unsaved copy
    assert path.read_bytes() == before
