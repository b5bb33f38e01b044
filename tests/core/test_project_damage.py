"""Damaged and hostile project files: open as far as they can be read, or say in one line
what is wrong; never a traceback, and the file is never modified (issue 20)."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from test_project import build_project, doc_state  # tests/core is on sys.path (rootdir-relative)

from studio.core.errors import ProjectCorruptError, ProjectSaveError, StudioError
from studio.core.project.store import ProjectStore

SEED = 20


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, bytes]:
    path = tmp_path_factory.mktemp("good") / "good.studio"
    doc, stack, _ = build_project()
    ProjectStore.save(path, doc, stack)
    return path, path.read_bytes()


def _copy(tmp_path: Path, data: bytes, name: str = "copy.studio") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _edit(path: Path, sql: str, *args) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(sql, args)
    conn.close()


def _blob_offsets(data: bytes) -> list[int]:
    """Where PNG image data lies in the file (the bytes bit rot would hit in a blob)."""
    found, at = [], data.find(b"IDAT")
    while at >= 0:
        found.append(at)
        at = data.find(b"IDAT", at + 1)
    return found


def use_fully(project) -> None:
    """What a user does right after opening: look, undo everything, redo, browse the log."""
    doc, stack, log = project.document, project.undo_stack, project.log
    doc.composite()
    stack.set_index(0)
    doc.composite()
    stack.set_index(stack.count)
    doc.composite()
    for record in log:
        for key in record.image_hashes:
            log.image(key)


def test_flipped_bytes_in_a_layer_image_open_with_that_layer_marked(tmp_path, saved):
    good, data = saved
    doc = ProjectStore.load(good).document
    conn = sqlite3.connect(good)
    key = json.loads(conn.execute("SELECT json FROM document").fetchone()[0])["layers"][0][
        "pixels"]
    blob = conn.execute("SELECT data FROM blobs WHERE sha256 = ?", (key,)).fetchone()[0]
    conn.close()
    at = data.find(blob[40:80]) + 20  # inside the PNG's compressed pixels
    damaged = bytearray(data)
    for i in range(at, at + 6):
        damaged[i] ^= 0xFF
    path = _copy(tmp_path, bytes(damaged))
    project = ProjectStore.load(path)
    assert project.damaged and len(project.problems) >= 1
    assert "could not be read" in project.problems[0] and "\n" not in project.problems[0]
    names = [layer.name for layer in project.document.layers]
    broken = next(i for i, lay in enumerate(doc.layers) if lay.pixels is not None
                  and names[i].startswith("(damaged) "))
    assert names[broken] == f"(damaged) {doc.layers[broken].name}"
    for i, layer in enumerate(project.document.layers):  # the rest is intact
        if i != broken:
            np.testing.assert_array_equal(layer.pixels, doc.layers[i].pixels)
    use_fully(project)
    assert path.read_bytes() == bytes(damaged)
    # savable as a copy, which then opens clean
    ProjectStore.save(tmp_path / "rescued.studio", project.document, project.undo_stack)
    again = ProjectStore.load(tmp_path / "rescued.studio")
    assert not again.damaged and doc_state(again.document) == doc_state(project.document)


def _corrupt(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    kind = rng.random()
    if kind < 0.15:
        return bytes(out[: rng.randrange(100, len(out))])  # a truncated copy
    offsets = _blob_offsets(data)
    for _ in range(rng.randint(1, 8)):
        if kind < 0.75 and offsets:  # bit rot in image data
            at = rng.choice(offsets) + rng.randrange(0, 400)
        else:  # anywhere past the header (a bad sector)
            at = rng.randrange(100, len(out))
        at = min(at, len(out) - 1)
        out[at] ^= 1 << rng.randrange(8)
    return bytes(out)


def test_200_corrupted_copies_open_or_say_why_and_stay_untouched(tmp_path, saved):
    _good, data = saved
    rng = random.Random(SEED)
    opened = refused = damaged = 0
    for n in range(200):
        bad = _corrupt(data, rng)
        path = _copy(tmp_path, bad, f"c{n}.studio")
        try:
            project = ProjectStore.load(path)
        except StudioError as err:
            text = str(err)
            assert "\n" not in text and path.name in text, text
            refused += 1
        else:
            opened += 1
            damaged += project.damaged
            use_fully(project)
        assert path.read_bytes() == bad, n
        assert sorted(p.name for p in tmp_path.iterdir()) == [path.name], n
        path.unlink()
    assert opened + refused == 200 and damaged > 10, (opened, refused, damaged)


def test_a_huge_canvas_is_refused_in_one_line(tmp_path, saved):
    path = _copy(tmp_path, saved[1])
    conn = sqlite3.connect(path)
    data = json.loads(conn.execute("SELECT json FROM document").fetchone()[0])
    conn.close()
    data["width"] = 10**6
    _edit(path, "UPDATE document SET json = ?", json.dumps(data))
    before = path.read_bytes()
    with pytest.raises(ProjectCorruptError) as err:
        ProjectStore.load(path)
    assert "canvas width is 1000000" in str(err.value) and "\n" not in str(err.value)
    assert path.read_bytes() == before


def test_impossible_layer_values_make_a_damaged_layer(tmp_path, saved):
    path = _copy(tmp_path, saved[1])
    conn = sqlite3.connect(path)
    data = json.loads(conn.execute("SELECT json FROM document").fetchone()[0])
    conn.close()
    data["layers"][0]["x"] = 10**12
    data["layers"][1]["opacity"] = float("nan")
    _edit(path, "UPDATE document SET json = ?", json.dumps(data))
    project = ProjectStore.load(path)
    names = [layer.name for layer in project.document.layers]
    assert names[0].startswith("(damaged) ") and names[1].startswith("(damaged) ")
    use_fully(project)


def test_undo_records_pointing_nowhere_cost_only_what_lies_past_them(tmp_path, saved):
    path = _copy(tmp_path, saved[1])
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT pos, json FROM undo_commands").fetchall()
    conn.close()
    for pos, text in rows:
        command = json.loads(text)
        if command["type"] == "set_layer_props":
            command["state"]["layer_id"] = "nowhere"
            _edit(path, "UPDATE undo_commands SET json = ? WHERE pos = ?", json.dumps(command),
                  pos)
    _edit(path, "UPDATE undo_state SET idx = 5")
    good = ProjectStore.load(saved[0])
    project = ProjectStore.load(path)
    # the five edits before the broken one still undo; the seven from it on are gone
    assert (project.undo_stack.count, project.undo_stack.index) == (5, 5)
    assert not project.undo_stack.can_redo
    assert project.problems == ("Edit 6 of 12 in its history (“Layer properties”) cannot be "
                                "read: 7 edits undone before saving can no longer be redone. "
                                "The picture is as last saved.",)
    assert doc_state(project.document) == doc_state(good.document)  # the picture as saved
    use_fully(project)


def _damage_blob(path: Path, key: str) -> None:
    """Bit rot in one stored array (an undo diff): a few flipped bytes mid-stream."""
    conn = sqlite3.connect(path)
    blob = bytearray(conn.execute("SELECT data FROM blobs WHERE sha256 = ?", (key,)).fetchone()[0])
    conn.close()
    for i in range(len(blob) // 2, len(blob) // 2 + 8):
        blob[i] ^= 0xA5
    _edit(path, "UPDATE blobs SET data = ? WHERE sha256 = ?", bytes(blob), key)


def _undo_row(path: Path, pos: int) -> dict:
    conn = sqlite3.connect(path)
    text = conn.execute("SELECT json FROM undo_commands WHERE pos = ?", (pos,)).fetchone()[0]
    conn.close()
    return json.loads(text)


def test_one_damaged_undo_diff_keeps_the_history_after_it(tmp_path):
    doc, stack, states = build_project()  # 12 edits, all done; states[i]: after edit i
    texts = [c.text for c in stack.commands]
    path = tmp_path / "p.studio"
    ProjectStore.save(path, doc, stack)
    row = _undo_row(path, 3)  # the fourth edit: a brush stroke on the background
    assert row["type"] == "paint_pixels"
    _damage_blob(path, row["state"]["old"])
    before = path.read_bytes()
    project = ProjectStore.load(path)
    history = project.undo_stack
    assert project.problems == ("Edit 4 of 12 in its history (“Paint”) cannot be read: Undo "
                                "now goes back 8 edits, not 12. The picture is as last saved.",)
    assert [c.text for c in history.commands] == texts[4:]
    assert doc_state(project.document) == states[12]  # the picture, every layer intact
    assert [r.to_dict() for r in project.log] == [r.to_dict() for r in doc.log]
    for steps_back in range(1, 9):  # each undo gives the picture as it was after that edit
        history.undo()
        assert doc_state(project.document) == states[12 - steps_back]
    assert not history.can_undo
    history.set_index(history.count)
    assert doc_state(project.document) == states[12]
    assert path.read_bytes() == before
    # savable as a copy, which then opens clean with the eight edits
    ProjectStore.save(tmp_path / "rescued.studio", project.document, history)
    again = ProjectStore.load(tmp_path / "rescued.studio")
    assert not again.damaged and again.undo_stack.count == 8


def test_a_damaged_diff_among_the_undone_edits_keeps_the_rest(tmp_path):
    doc, stack, states = build_project()
    stack.set_index(6)  # the last six edits undone: the picture as after edit 6
    path = tmp_path / "p.studio"
    ProjectStore.save(path, doc, stack)
    row = _undo_row(path, 9)  # the tenth edit adds a layer: its pixels are damaged
    assert row["type"] == "add_layer"
    _damage_blob(path, row["state"]["layer"]["pixels"])
    project = ProjectStore.load(path)
    history = project.undo_stack
    assert len(project.problems) == 1 and "Edit 10 of 12" in project.problems[0]
    assert "3 edits undone before saving can no longer be redone" in project.problems[0]
    assert (history.count, history.index) == (9, 6)
    assert doc_state(project.document) == states[6]
    history.set_index(9)
    assert doc_state(project.document) == states[9]
    history.set_index(0)
    assert doc_state(project.document) == states[0]


def test_undo_position_past_the_history_is_caught(tmp_path, saved):
    path = _copy(tmp_path, saved[1])
    _edit(path, "UPDATE undo_state SET idx = 999")
    project = ProjectStore.load(path)
    assert project.undo_stack.count == 0 and project.damaged
    use_fully(project)


BOMB = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("where", ["document", "generation", "undo", "blob"])
def test_json_nesting_bombs(tmp_path, saved, where):
    path = _copy(tmp_path, saved[1])
    if where == "document":
        _edit(path, "UPDATE document SET json = ?", BOMB)
    elif where == "generation":
        _edit(path, "UPDATE generations SET json = ? WHERE seq = 0", BOMB)
    elif where == "undo":
        _edit(path, "UPDATE undo_commands SET json = ? WHERE pos = 2", BOMB)
    else:
        _edit(path, "UPDATE blobs SET codec = 'tiles', data = ? WHERE rowid = 1", BOMB.encode())
    before = path.read_bytes()
    try:
        project = ProjectStore.load(path)
    except ProjectCorruptError as err:
        assert where == "document" and "nested too deeply" in str(err)
    else:
        assert project.damaged
        use_fully(project)
    assert path.read_bytes() == before


# -- full disk -------------------------------------------------------------------------------
def _disk_full_after(monkeypatch, pages: int) -> None:
    """Make SQLite run out of room after ``pages`` pages, as on a full disk."""
    from studio.core.project import store

    real = store._connect

    def connect(path, readonly=False):
        conn = real(path, readonly)
        if not readonly:
            conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn

    monkeypatch.setattr(store, "_connect", connect)


def test_a_full_disk_leaves_nothing_beside_a_new_project(tmp_path, monkeypatch):
    doc, stack, _ = build_project()
    _disk_full_after(monkeypatch, 8)
    with pytest.raises(ProjectSaveError) as err:
        ProjectStore.save(tmp_path / "new.studio", doc, stack)
    assert "full" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_leaves_the_saved_project_and_no_journal(tmp_path, monkeypatch, saved):
    path = _copy(tmp_path, saved[1], "p.studio")
    project = ProjectStore.load(path)
    from studio.core.document.edits import AddLayer
    from studio.core.document.layers import Layer

    big = np.random.default_rng(1).integers(0, 256, (600, 600, 4), dtype=np.uint8)
    project.undo_stack.push(AddLayer(Layer(name="big", pixels=big)))
    before = path.read_bytes()
    _disk_full_after(monkeypatch, len(before) // 4096 + 2)
    with pytest.raises(ProjectSaveError):
        ProjectStore.save(path, project.document, project.undo_stack)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.studio"]
    assert doc_state(ProjectStore.load(path).document) == doc_state(
        ProjectStore.load(saved[0]).document)
