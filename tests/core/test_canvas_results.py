"""Issue 29 in the core: what a generated layer and History say about what made them, which
settings describe a flattened canvas, and where a staged result lands when it is kept."""

from __future__ import annotations

import numpy as np

from studio.core.document.layers import Document, Layer
from studio.core.document.operations import composite_request, land_generation
from studio.core.document.undo import UndoStack
from studio.core.jobs.request import GenerationRequest
from studio.core.project.generation_log import GenerationLog, GenerationRecord


def _request(**kw) -> GenerationRequest:
    return GenerationRequest(prompt="a fox", model="m", seed=7, width=8, height=8, **kw)


def test_an_outpaint_record_says_so_and_an_old_record_reads_as_its_task():
    log = GenerationLog()
    init = np.zeros((8, 8, 3), np.uint8)
    from studio.core.document.pixels import Pixels

    req = _request(task="inpaint", init_image=Pixels.from_array(init),
                   mask=Pixels.from_array(np.full((8, 8), 255, np.uint8)))
    record = log.add(req, [init], mode="outpaint")
    assert record.task == "outpaint" and record.request.task == "inpaint"
    data = record.to_dict()
    again = GenerationRecord.from_dict(data, {p.sha256: p for p in req.pixels})
    assert again.task == "outpaint"
    data.pop("mode")  # a project saved before the field existed
    old = GenerationRecord.from_dict(data, {p.sha256: p for p in req.pixels})
    assert old.task == "inpaint" and old.mode == ""
    plain = log.add(_request(), [init], mode="txt2img")  # the task itself: nothing stored
    assert "mode" not in plain.to_dict() and plain.task == "txt2img"


def _doc_with_generation(batch_size: int = 1) -> tuple[Document, UndoStack, str]:
    doc = Document(width=8, height=8)
    undo = UndoStack(doc)
    images = [np.full((8, 8, 3), 50 + i, np.uint8) for i in range(batch_size)]
    record = doc.log.add(_request(batch_size=batch_size), images)
    return doc, undo, record.id


def test_only_a_canvas_that_is_one_generated_image_carries_its_settings():
    doc, undo, record_id = _doc_with_generation()
    with undo.macro("Keep"):
        layer = land_generation(undo, doc.log.image(doc.log.get(record_id).image_hashes[0]),
                                (0, 0, 8, 8), record_id, "txt2img · fox · seed 7")
    assert composite_request(doc).seed == 7
    layer.opacity = 0.5
    assert composite_request(doc) is None  # what is seen is not what the model made
    layer.opacity = 1.0
    doc.layers.append(Layer(name="paint", pixels=np.zeros((8, 8, 4), np.uint8), kind="paint"))
    assert composite_request(doc) is not None  # a fully transparent layer changes nothing
    doc.layers[-1].pixels[2, 2] = (255, 0, 0, 255)
    assert composite_request(doc) is None  # a stroke over it
    doc.layers[-1].visible = False
    assert composite_request(doc).seed == 7


def test_the_second_image_of_a_batch_carries_its_own_seed():
    doc, undo, record_id = _doc_with_generation(batch_size=2)
    image = doc.log.image(doc.log.get(record_id).image_hashes[1])
    land_generation(undo, image, (0, 0, 8, 8), record_id, "txt2img · fox · seed 8")
    request = composite_request(doc)
    assert request.seed == 8 and request.batch_size == 1


def test_a_kept_result_past_the_edge_grows_the_canvas_in_one_undo_entry():
    doc, undo, record_id = _doc_with_generation()
    doc.layers.append(Layer(name="base", pixels=np.full((8, 8, 4), 255, np.uint8)))
    image = np.full((8, 8, 3), 9, np.uint8)
    with undo.macro("Keep"):
        layer = land_generation(undo, image, (-4, 0, 8, 8), record_id, "outpaint · seed 7")
    assert (doc.width, doc.height) == (12, 8) and layer.x == 0
    assert doc.layers[0].x == 4  # the old content moved right
    undo.undo()
    assert (doc.width, doc.height) == (8, 8) and len(doc.layers) == 1


def test_a_result_for_a_large_region_is_resized_whole():
    from studio.core.document.edits import ApplyGeneration

    image = np.zeros((16, 16, 3), np.uint8)
    image[:8] = (200, 40, 10)  # top half red, bottom half black
    pixels, saved = ApplyGeneration.prepare(image, (0, 0, 2100, 2100))
    assert pixels.shape == (2100, 2100, 4) and np.array_equal(pixels, saved)
    assert pixels is not saved  # the command keeps its own copy
    assert tuple(pixels[10, 10]) == (200, 40, 10, 255)
    assert tuple(pixels[2090, 2090]) == (0, 0, 0, 255)
    from PIL import Image

    rgba = np.concatenate([image, np.full((16, 16, 1), 255, np.uint8)], 2)
    whole = np.asarray(Image.fromarray(rgba).resize((2100, 2100), Image.Resampling.LANCZOS))
    rows = [255, 256, 511, 512, 1023, 1024, 1050, 1279, 1280]  # across the row strips
    np.testing.assert_array_equal(pixels[rows], whole[rows])  # no seam


def test_a_large_result_has_the_same_pixels_whether_its_strips_are_pasted_or_copied(
        monkeypatch):
    """A result for a large region is resized a strip at a time and each strip pasted into
    the layer's memory (off the GIL); where the layer could not share its memory with
    Pillow the strips are copied instead: the layer (and its inpaint mask) is the same."""
    from studio.core.document import edits

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
    mask = rng.integers(0, 256, (24, 20), dtype=np.uint8)
    pasted = edits.generated_pixels(image, 2100, 2300, mask)
    monkeypatch.setattr(edits, "_pillow_view", lambda _array: None)
    copied = edits.generated_pixels(image, 2100, 2300, mask)
    assert pasted.shape == (2300, 2100, 4)
    np.testing.assert_array_equal(pasted, copied)
