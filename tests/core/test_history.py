"""Generation log: an append-only tree; deleting from the gallery is undoable."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.document.edits import ApplyGeneration, SetGenerationDeleted
from studio.core.document.layers import Document
from studio.core.document.pixels import Pixels
from studio.core.document.undo import UndoStack
from studio.core.jobs.events import GenerationResult
from studio.core.jobs.request import GenerationRequest
from studio.core.project.generation_log import GenerationLog, GenerationRecord


def image(value: int, size: int = 8) -> np.ndarray:
    return np.full((size, size, 3), value, np.uint8)


def test_tree_of_records_with_relations():
    log = GenerationLog()
    root = log.add(GenerationRequest("a cat", seed=1), [image(1), image(2)], duration=1.5)
    init = Pixels.from_array(image(1))
    child = log.add(GenerationRequest("a cat", task="img2img", init_image=init),
                    [image(3)], parent_id=root.id, relation="img2img")
    vary = log.add(GenerationRequest("a cat", seed=2), [image(4)], parent_id=child.id,
                   relation="vary")
    assert len(log) == 3 and log.roots() == [root]
    assert log.children(root.id) == [child]
    assert [r.id for r in log.lineage(vary.id)] == [root.id, child.id, vary.id]
    assert root.relation == "" and child.relation == "img2img" and root.duration == 1.5
    assert root.image_hashes == (Pixels.from_array(image(1)).sha256,
                                 Pixels.from_array(image(2)).sha256)
    np.testing.assert_array_equal(log.image(root.image_hashes[1]), image(2))
    # The init image is the first result: it is held once.
    assert init.sha256 in log.image_hashes() and len(log.image_hashes()) == 4
    with pytest.raises(ValueError):
        log.add(GenerationRequest("x"), [], parent_id=root.id, relation="sideways")
    with pytest.raises(KeyError):
        log.add(GenerationRequest("x"), [], parent_id="missing", relation="vary")


def test_add_result_and_record_round_trip():
    log = GenerationLog()
    req = GenerationRequest("dog", seed=5, batch_size=2, model_hash="abc")
    rec = log.add_result(GenerationResult(req, (image(5), image(6)), seconds=2.0))
    assert rec.model_hash == "abc" and rec.duration == 2.0
    back = GenerationRecord.from_dict(rec.to_dict())
    assert back == rec


def test_stored_images_are_read_only_copies():
    log = GenerationLog()
    src = image(9)
    rec = log.add(GenerationRequest("x"), [src])
    src[:] = 0
    stored = log.image(rec.image_hashes[0])
    assert stored[0, 0, 0] == 9 and not stored.flags.writeable


def test_delete_from_gallery_is_undoable_and_keeps_the_image():
    doc = Document(32, 32)
    stack = UndoStack(doc)
    events = []
    doc.log.add_listener(lambda e, p: events.append(e))
    rec = doc.log.add(GenerationRequest("x"), [image(7)])
    stack.push(ApplyGeneration(image(7), (0, 0, 8, 8), record_id=rec.id))
    stack.push(SetGenerationDeleted(rec.id))
    assert doc.log.gallery() == [] and doc.log.get(rec.id).deleted
    np.testing.assert_array_equal(doc.log.image(rec.image_hashes[0]), image(7))
    stack.undo()
    assert doc.log.gallery() == [doc.log.get(rec.id)]
    stack.undo()  # undoing the layer keeps the record and its image
    assert not doc.layers and len(doc.log) == 1
    assert events == ["record_added", "record_changed", "record_changed"]


def test_snapshot_is_independent():
    log = GenerationLog()
    rec = log.add(GenerationRequest("x"), [image(1)])
    snap = log.snapshot()
    log.set_deleted(rec.id, True)
    log.add(GenerationRequest("y"), [image(2)])
    assert len(snap) == 1 and not snap.get(rec.id).deleted
