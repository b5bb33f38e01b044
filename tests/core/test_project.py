"""Project files: round trips, content addressing, refusal of bad files, autosave."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from studio.core.document.edits import (
    AddLayer,
    ApplyGeneration,
    MoveLayer,
    PaintPixels,
    RemoveLayer,
    ResizeCanvas,
    SetGenerationDeleted,
    SetLayerProps,
    SetSelection,
    SetSliderValue,
)
from studio.core.document.layers import Document, Layer, array_key
from studio.core.document.pixels import Pixels
from studio.core.document.undo import UndoStack
from studio.core.errors import (
    ProjectCorruptError,
    ProjectNotFoundError,
    ProjectVersionError,
    StudioError,
)
from studio.core.jobs.request import GenerationRequest
from studio.core.project.store import (
    ProjectStore,
    autosave_path,
    decode_array,
    encode_array,
)


def rand(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def doc_state(doc: Document) -> tuple:
    layers = tuple(
        (lay.id, lay.name, lay.x, lay.y, lay.visible, lay.opacity, lay.kind, lay.record_id,
         lay.pixels.shape, lay.pixels.tobytes(),
         None if lay.mask is None else lay.mask.tobytes())
        for lay in doc.layers)
    return (doc.width, doc.height, layers, doc.active_layer_id, doc.selection, doc.prompt,
            doc.negative_prompt, sorted(doc.sliders.items()))


def build_project() -> tuple[Document, UndoStack, list[tuple]]:
    """A document with a generation tree and an edit history; returns states per step."""
    doc = Document(96, 64, prompt="a lighthouse", negative_prompt="fog")
    stack = UndoStack(doc)
    states = [doc_state(doc)]

    def push(cmd):
        stack.push(cmd)
        states.append(doc_state(doc))

    push(AddLayer(Layer(name="bg", pixels=rand((64, 96, 4), 1))))
    root = doc.log.add(GenerationRequest("a lighthouse", seed=3, model_hash="m1"),
                       [rand((32, 32, 3), 2), rand((32, 32, 3), 3)], duration=0.5)
    init = Pixels.from_array(doc.log.image(root.image_hashes[0]))
    mask = Pixels.from_array(np.full((32, 32), 255, np.uint8))
    child = doc.log.add(GenerationRequest("a lighthouse at night", task="inpaint",
                                          init_image=init, mask=mask),
                        [rand((32, 32, 3), 4)], parent_id=root.id, relation="inpaint")
    push(SetSelection((8, 8, 32, 32)))
    push(ApplyGeneration(doc.log.image(child.image_hashes[0]), (8, 8, 32, 32), child.id,
                         mask=np.full((32, 32), 200, np.uint8)))
    push(PaintPixels.from_patch(doc, doc.layers[0].id, 10, 10, rand((6, 9, 4), 5)))
    push(PaintPixels.from_patch(doc, doc.layers[1].id, 0, 0, np.full((4, 4), 255, np.uint8),
                                target="mask"))
    push(SetLayerProps(doc.layers[1].id, opacity=0.5, name="night"))
    push(SetSliderValue("age", 0.3))
    push(ResizeCanvas.anchored(doc, 128, 96, "center"))
    push(MoveLayer(doc.layers[1].id, 0))
    push(AddLayer(Layer.blank(16, 16, name="scratch")))
    push(RemoveLayer(doc.layers[-1].id))
    push(SetGenerationDeleted(root.id))
    return doc, stack, states


def test_round_trip_restores_document_log_and_history(tmp_path):
    doc, stack, states = build_project()
    path = tmp_path / "p.studio"
    ProjectStore.save(path, doc, stack)
    assert stack.clean
    project = ProjectStore.load(path)
    assert doc_state(project.document) == states[-1]
    np.testing.assert_array_equal(project.document.composite(), doc.composite())
    # Generation log: same records, same tree, images readable.
    assert [r.to_dict() for r in project.log] == [r.to_dict() for r in doc.log]
    child = project.log.records[1]
    assert child.request.init_image == doc.log.records[1].request.init_image
    assert child.parent_id == project.log.records[0].id and child.relation == "inpaint"
    assert project.log.records[0].deleted
    for record in doc.log:
        for key in record.image_hashes:
            np.testing.assert_array_equal(project.log.image(key), doc.log.image(key))
    # Undo history: every step back restores the earlier state exactly, then redo.
    new = project.undo_stack
    assert new.index == stack.index and new.clean and new.undo_text == stack.undo_text
    for i in range(len(states) - 2, -1, -1):
        new.undo()
        assert doc_state(project.document) == states[i], f"undo to step {i}"
    assert not project.log.records[0].deleted  # the gallery delete was undone too
    for i in range(1, len(states)):
        new.redo()
        assert doc_state(project.document) == states[i], f"redo to step {i}"


def test_undo_position_and_redo_tail_are_saved(tmp_path):
    doc, stack, states = build_project()
    stack.set_index(5)
    path = tmp_path / "p.studio"
    ProjectStore.save(path, doc, stack)
    project = ProjectStore.load(path)
    assert project.undo_stack.index == 5 and project.undo_stack.count == stack.count
    assert doc_state(project.document) == states[5]
    project.undo_stack.set_index(stack.count)
    assert doc_state(project.document) == states[-1]


def test_save_in_place_then_reopen_and_save_again(tmp_path):
    doc, stack, states = build_project()
    path = tmp_path / "p.studio"
    ProjectStore.save(path, doc, stack)
    project = ProjectStore.load(path)
    project.undo_stack.push(PaintPixels.from_patch(
        project.document, project.document.layers[0].id, 0, 0, rand((3, 3, 4), 9)))
    edited = doc_state(project.document)
    report = ProjectStore.save(path, project.document, project.undo_stack, project.log)
    assert report.blobs_written <= 3  # old + new of the stroke, and the changed layer
    again = ProjectStore.load(path)
    assert doc_state(again.document) == edited
    again.undo_stack.undo()
    assert doc_state(again.document) == states[-1]
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("*-wal"))


def blob_rows(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return {k: len(d) for k, d in conn.execute("SELECT sha256, data FROM blobs")}


def test_same_image_is_stored_once(tmp_path):
    image = rand((64, 64, 4), 7)
    doc = Document(64, 64)
    stack = UndoStack(doc)
    stack.push(AddLayer(Layer(name="a", pixels=image)))
    stack.push(AddLayer(Layer(name="b", pixels=image.copy())))
    rec = doc.log.add(GenerationRequest("x"), [image[..., :3], image[..., :3].copy()])
    assert rec.image_hashes[0] == rec.image_hashes[1]
    path = tmp_path / "p.studio"
    ProjectStore.save(path, doc, stack)
    rows = blob_rows(path)
    # Two layers + two AddLayer snapshots share one RGBA blob; two results share one RGB.
    assert set(rows) == {array_key(image), array_key(image[..., :3])}


def test_small_stroke_on_big_layer_stores_a_small_diff(tmp_path):
    doc = Document(2048, 2048)
    stack = UndoStack(doc)
    stack.push(AddLayer(Layer.blank(2048, 2048)))
    path = tmp_path / "p.studio"
    ProjectStore.save(path, doc, stack)
    before = blob_rows(path)
    stroke = PaintPixels.from_patch(doc, doc.layers[0].id, 1000, 1000, rand((8, 8, 4), 1))
    stack.push(stroke)
    ProjectStore.save(path, doc, stack)
    after = blob_rows(path)
    diff_keys = {array_key(stroke.old), array_key(stroke.new)}
    assert diff_keys <= set(after)
    assert sum(after[k] for k in diff_keys) < 2048  # the two 8x8 boxes, PNG-compressed
    assert stroke.nbytes() == 2 * 8 * 8 * 4
    # The history holds the diff only: no full-layer snapshot was added for the stroke,
    # and the layer itself is stored as tiles: only the tile the stroke touched is new.
    added = set(after) - set(before)
    layer_key = array_key(doc.layers[0].pixels)
    tile_key = array_key(np.ascontiguousarray(doc.layers[0].pixels[512:1024, 512:1024]))
    assert added == diff_keys | {layer_key, tile_key}
    assert sum(after[k] for k in added) < 16 * 1024
    project = ProjectStore.load(path)
    np.testing.assert_array_equal(project.document.layers[0].pixels, doc.layers[0].pixels)
    project.undo_stack.undo()
    assert not project.document.layers[0].pixels.any()


def test_big_images_round_trip_through_tiles(tmp_path):
    doc = Document(1300, 1100)
    stack = UndoStack(doc)
    big = rand((1100, 1300, 4), 3)
    mask = rand((1100, 1300), 4)
    stack.push(AddLayer(Layer(pixels=big, mask=mask)))
    rec = doc.log.add(GenerationRequest("big"), [rand((1024, 1536, 3), 5)])
    path = tmp_path / "big.studio"
    ProjectStore.save(path, doc, stack)
    project = ProjectStore.load(path)
    np.testing.assert_array_equal(project.document.layers[0].pixels, big)
    np.testing.assert_array_equal(project.document.layers[0].mask, mask)
    key = rec.image_hashes[0]
    np.testing.assert_array_equal(project.log.image(key), doc.log.image(key))
    np.testing.assert_array_equal(ProjectStore.read_image(path, key), doc.log.image(key))
    # Dropping the layer and its history drops its tiles too.
    stack.clear()
    stack.push(RemoveLayer(doc.layers[0].id))
    stack.clear()
    ProjectStore.save(path, doc, stack)
    with sqlite3.connect(path) as conn:
        codecs = conn.execute("SELECT codec, COUNT(*) FROM blobs GROUP BY codec").fetchall()
    conn.close()
    assert dict(codecs) == {"tiles": 1, "png": 6}  # the 1024x1536 result: 2x3 tiles


def test_unused_blobs_are_dropped(tmp_path):
    doc = Document(32, 32)
    stack = UndoStack(doc)
    stack.push(AddLayer(Layer(pixels=rand((32, 32, 4), 1))))
    path = tmp_path / "p.studio"
    ProjectStore.save(path, doc, stack)
    stack.clear()
    stack.push(PaintPixels.from_patch(doc, doc.layers[0].id, 0, 0, rand((32, 32, 4), 2)))
    stack.clear()
    ProjectStore.save(path, doc, stack)
    assert set(blob_rows(path)) == {array_key(doc.layers[0].pixels)}


def test_blob_codecs_are_exact():
    for arr in (rand((5, 7, 4), 1), rand((5, 7, 3), 2), rand((5, 7), 3),
                np.zeros((3, 3, 4), np.uint8), np.arange(12, dtype=np.float32).reshape(3, 4)):
        back = decode_array(*encode_array(arr))
        assert back.dtype == arr.dtype
        np.testing.assert_array_equal(back, arr)


def test_thumbnails(tmp_path):
    doc, stack, _ = build_project()
    path = tmp_path / "p.studio"
    ProjectStore.save(path, doc, stack)
    thumb = ProjectStore.read_thumbnail(path)
    assert thumb is not None and max(thumb.shape[:2]) <= 256
    key = doc.log.records[0].image_hashes[0]
    assert ProjectStore.read_thumbnail(path, key).shape == (32, 32, 3)


def file_fingerprint(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def test_newer_version_is_refused_and_untouched(tmp_path):
    doc, stack, _ = build_project()
    path = tmp_path / "future.studio"
    ProjectStore.save(path, doc, stack)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    before = file_fingerprint(path)
    with pytest.raises(ProjectVersionError) as err:
        ProjectStore.load(path)
    assert "newer version" in str(err.value) and "Update Latent Studio" in str(err.value)
    with pytest.raises(ProjectVersionError):
        ProjectStore.save(path, doc, stack)
    assert file_fingerprint(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["future.studio"]


def corrupt_variants(tmp_path: Path) -> dict[str, Path]:
    doc, stack, _ = build_project()
    good = tmp_path / "good.studio"
    ProjectStore.save(good, doc, stack)
    data = good.read_bytes()
    out: dict[str, Path] = {}

    def write(name: str, content: bytes) -> None:
        out[name] = tmp_path / f"{name}.studio"
        out[name].write_bytes(content)

    write("truncated", data[: len(data) // 2])
    write("header-only", data[:100])
    write("empty", b"")
    write("text", b"hello, I am not a database\n" * 10)
    mangled = bytearray(data)
    page = int.from_bytes(data[16:18], "big")
    for i in range(page * 2, min(len(data), page * 6), 7):
        mangled[i] ^= 0x5A
    write("mangled", bytes(mangled))
    other = tmp_path / "other.studio"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    out["other-db"] = other
    return out


def test_corrupt_files_are_refused_and_untouched(tmp_path):
    doc = Document(8, 8)
    for name, path in corrupt_variants(tmp_path).items():
        before = file_fingerprint(path)
        with pytest.raises(ProjectCorruptError) as err:
            ProjectStore.load(path)
        assert path.name in str(err.value), name
        with pytest.raises(StudioError):
            ProjectStore.save(path, doc, UndoStack(doc))
        assert file_fingerprint(path) == before, name


def test_missing_file():
    with pytest.raises(ProjectNotFoundError):
        ProjectStore.load("/nonexistent/dir/x.studio")


def test_autosave_side_file(tmp_path):
    doc, stack, states = build_project()
    path = tmp_path / "p.studio"
    ProjectStore.save(path, doc, stack)
    assert ProjectStore.find_autosave(path) is None
    stack.push(SetSliderValue("age", 0.9))
    ProjectStore.autosave(path, ProjectStore.snapshot(doc, stack))
    assert autosave_path(path).name == "p.studio.autosave"
    assert ProjectStore.is_newer_than_saved(path)
    found = ProjectStore.find_autosave(path)
    assert found == autosave_path(path)
    recovered = ProjectStore.load(found)
    assert recovered.document.sliders["age"] == 0.9
    recovered.undo_stack.undo()
    assert recovered.document.sliders["age"] == 0.3
    ProjectStore.save(path, doc, stack)
    assert ProjectStore.find_autosave(path) is None
    ProjectStore.discard_autosave(path)
    assert not autosave_path(path).exists()


def test_autosave_of_a_never_saved_project_is_newer(tmp_path):
    doc, stack, _ = build_project()
    path = tmp_path / "new.studio"
    ProjectStore.autosave(path, ProjectStore.snapshot(doc, stack))
    assert ProjectStore.find_autosave(path) == autosave_path(path)


def test_save_off_the_gui_thread_writes_the_snapshot(tmp_path):
    doc, stack, states = build_project()
    path = tmp_path / "p.studio"
    snap = ProjectStore.snapshot(doc, stack)
    errors: list[BaseException] = []

    def worker():
        try:
            ProjectStore.write(path, snap)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    # Keep editing while it saves: the file must hold the state at snapshot time.
    for i in range(20):
        stack.push(PaintPixels.from_patch(doc, doc.layers[0].id, i, i, rand((5, 5, 4), i)))
    thread.join()
    assert not errors
    project = ProjectStore.load(path)
    assert doc_state(project.document) == states[-1]
    assert project.undo_stack.count == len(states) - 1


def test_save_as_copies_images_held_only_by_the_old_file(tmp_path):
    doc, stack, _ = build_project()
    first = tmp_path / "first.studio"
    ProjectStore.save(first, doc, stack)
    project = ProjectStore.load(first)
    second = tmp_path / "second.studio"
    ProjectStore.save(second, project.document, project.undo_stack, project.log)
    shutil.move(first, tmp_path / "gone.studio")
    reopened = ProjectStore.load(second)
    for record in doc.log:
        for key in record.image_hashes:
            np.testing.assert_array_equal(reopened.log.image(key), doc.log.image(key))


def test_new_file_appears_atomically(tmp_path, monkeypatch):
    doc, stack, _ = build_project()
    path = tmp_path / "p.studio"
    calls = []
    real_replace = os.replace

    def spy(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        assert not Path(dst).exists()
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    ProjectStore.save(path, doc, stack)
    assert calls == [("p.studio.tmp", "p.studio")]


def test_off_thread_save_marks_the_snapshot_state_clean(tmp_path):
    doc, stack, _ = build_project()
    snap = ProjectStore.snapshot(doc, stack)
    stack.push(SetSliderValue("age", 0.99))  # an edit made while the save runs
    ProjectStore.write(tmp_path / "p.studio", snap)
    stack.set_clean(snap.undo_index)
    assert not stack.clean
    stack.undo()
    assert stack.clean


def test_replace_overwrites_a_file_the_user_chose_to_replace(tmp_path):
    doc, stack, states = build_project()
    path = tmp_path / "x.studio"
    path.write_bytes(b"some other file")
    with pytest.raises(ProjectCorruptError):
        ProjectStore.write(path, ProjectStore.snapshot(doc, stack))
    assert path.read_bytes() == b"some other file"
    ProjectStore.write(path, ProjectStore.snapshot(doc, stack), replace=True)
    assert doc_state(ProjectStore.load(path).document) == states[-1]


def test_saving_another_project_over_a_project_keeps_only_the_new_one(tmp_path):
    doc, stack, states = build_project()
    path = tmp_path / "x.studio"
    ProjectStore.save(path, doc, stack)
    other = Document(16, 16)
    other_stack = UndoStack(other)
    other_stack.push(AddLayer(Layer(pixels=rand((16, 16, 4), 99))))
    ProjectStore.save(path, other, other_stack)
    project = ProjectStore.load(path)
    assert doc_state(project.document) == doc_state(other)
    assert len(project.log) == 0 and project.undo_stack.count == 1
    assert set(blob_rows(path)) == {array_key(other.layers[0].pixels)}


def test_log_images_can_be_released_after_a_save(tmp_path):
    doc, stack, _ = build_project()
    path = tmp_path / "p.studio"
    report = ProjectStore.save(path, doc, stack)
    expected = {key: doc.log.image(key).copy() for key in report.image_hashes}
    doc.log.forget_images(set(report.image_hashes),
                          lambda key: ProjectStore.read_image(path, key))
    assert not doc.log.pending_images()
    for key, image in expected.items():
        np.testing.assert_array_equal(doc.log.image(key), image)
    ProjectStore.save(path, doc, stack)  # saving again needs nothing from memory
    assert len(ProjectStore.load(path).log) == len(doc.log)
