"""A reduced document (a thumbnail's worth of pixels, read without touching the rest of an
8000x8000 canvas) draws exactly every step-th pixel of the full one; the quick "has it any
pixels" checks give the same answers as a full scan."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.document.layers import Document, Layer, any_set


def _doc() -> tuple[Document, Layer, Layer]:
    rng = np.random.default_rng(3)
    doc = Document(width=203, height=151)
    group = Layer(name="g", pixels=np.zeros((1, 1, 4), np.uint8), kind="group",
                  blend="multiply", opacity=0.7)
    inner = Layer(name="g2", pixels=np.zeros((1, 1, 4), np.uint8), kind="group",
                  parent=group.id, blend="screen")
    doc.layers += [
        Layer(name="bg", pixels=rng.integers(0, 256, (151, 203, 4), dtype=np.uint8)),
        group,
        Layer(name="a", pixels=rng.integers(0, 256, (90, 77, 4), dtype=np.uint8), x=-13,
              y=21, parent=group.id, blend="overlay", opacity=0.6),
        inner,
        Layer(name="b", pixels=rng.integers(0, 256, (60, 50, 4), dtype=np.uint8), x=150,
              y=120, parent=inner.id, blend="difference"),
        Layer(name="c", pixels=rng.integers(0, 256, (40, 40, 4), dtype=np.uint8), x=37,
              y=-5, blend="darken"),
        Layer(name="tiny", pixels=np.full((1, 1, 4), 255, np.uint8), x=201, y=149),
    ]
    return doc, group, inner


@pytest.mark.parametrize("step", [1, 2, 3, 7, 10, 64])
def test_a_reduced_document_draws_every_step_th_pixel_exactly(step):
    doc, group, inner = _doc()
    small = doc.reduced(step)
    np.testing.assert_array_equal(small.composite(), doc.composite()[::step, ::step])
    for g in (group, inner):
        np.testing.assert_array_equal(small.render_group(g.id),
                                      doc.render_group(g.id)[::step, ::step])


def test_quick_pixel_checks_agree_with_a_full_scan():
    alpha = np.zeros((1000, 700), np.uint8)
    assert not any_set(alpha) and not any_set(alpha[:0])
    alpha[999, 1] = 3  # off the sparse grid, in the last band
    assert any_set(alpha)
    layer = Layer(pixels=np.zeros((1000, 700, 4), np.uint8))
    assert not layer.has_pixels() and not layer.has_mask()
    layer.pixels[500, 333, 3] = 1
    layer.mask = np.zeros((1000, 700), np.uint8)
    assert layer.has_pixels() and not layer.has_mask()
    layer.mask[998, 699] = 255
    assert layer.has_mask()


def test_a_save_shares_an_unchanged_layer_and_copies_a_painted_one(tmp_path):
    """A snapshot for a save (autosave every two minutes) of a layer just added shares the
    undo command's read-only copy instead of copying the layer on the GUI thread; once the
    layer is painted, the save has the paint, and reopening shows exactly what was there."""
    from studio.core.document.edits import AddLayer, PaintPixels
    from studio.core.document.undo import UndoStack
    from studio.core.project.store import ProjectStore

    doc = Document(width=300, height=200)
    undo = UndoStack(doc)
    pixels = np.zeros((200, 300, 4), np.uint8)
    pixels[..., 0], pixels[..., 3] = 90, 255
    cmd = AddLayer(Layer(name="big", pixels=pixels))
    undo.push(cmd)
    layer = doc.layers[0]
    snap = doc.snapshot()
    assert snap.layers[0].pixels is cmd.initial.pixels  # shared: nothing copied
    old = layer.pixels[10:20, 10:20].copy()
    new = old.copy()
    new[..., 1] = 250
    undo.push(PaintPixels(layer.id, 10, 10, old, new))
    snap = doc.snapshot()
    assert snap.layers[0].pixels is not cmd.initial.pixels
    np.testing.assert_array_equal(snap.layers[0].pixels, layer.pixels)
    assert snap.layers[0].pixels[15, 15, 1] == 250
    path = tmp_path / "p.studio"
    ProjectStore.save(path, doc, undo, doc.log)
    np.testing.assert_array_equal(ProjectStore.load(path).document.layers[0].pixels,
                                  layer.pixels)
    undo.undo()  # the paint undone: what the next save holds follows
    np.testing.assert_array_equal(doc.snapshot().layers[0].pixels, pixels)


def test_a_layer_says_whether_it_has_pixels_as_it_is_painted_and_erased():
    """The pixel found last time is looked at first: the answer follows every change,
    also when that pixel is erased, the layer replaced by a smaller one, or copied."""
    from studio.core.document.layers import first_set

    layer = Layer(pixels=np.zeros((900, 800, 4), np.uint8))
    assert not layer.has_pixels()
    layer.pixels[850, 790, 3] = 40  # off the sparse grid, in the last band
    assert layer.has_pixels() and first_set(layer.pixels[..., 3]) == (850, 790)
    layer.pixels[3, 5, 3] = 9
    layer.pixels[850, 790, 3] = 0  # the pixel found before is erased: the other one counts
    assert layer.has_pixels()
    copy = layer.copy()
    layer.pixels[3, 5, 3] = 0
    assert not layer.has_pixels() and copy.has_pixels()
    layer.pixels[700, 700, 3] = 1
    assert layer.has_pixels()
    layer.pixels = np.zeros((100, 100, 4), np.uint8)  # smaller: the old place is outside it
    assert not layer.has_pixels()
    assert first_set(np.zeros((0, 5), np.uint8)) is None
