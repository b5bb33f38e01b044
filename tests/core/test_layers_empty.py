"""Issue 29, point 4: asking whether an empty large layer has pixels (the sliders ask at
every document change) scans it once, not at every change (40 ms on an 8000x8000 layer,
on the GUI thread); an edit through the document makes it look again."""

from __future__ import annotations

import numpy as np

from studio.core.document import layers as layers_module
from studio.core.document.edits import AddLayer, PaintPixels
from studio.core.document.layers import EMPTY_KEPT_PIXELS, Document, Layer
from studio.core.document.undo import UndoStack

SIDE = 2100  # SIDE * SIDE >= EMPTY_KEPT_PIXELS


def counted_scans(monkeypatch) -> list[int]:
    scans: list[int] = []
    first_set = layers_module.first_set
    monkeypatch.setattr(layers_module, "first_set",
                        lambda array: (scans.append(1), first_set(array))[1])
    return scans


def empty_doc() -> tuple[Document, UndoStack, Layer]:
    doc = Document()
    doc.width = doc.height = SIDE
    undo = UndoStack(doc)
    layer = Layer.blank(SIDE, SIDE, "empty", kind="paint")
    undo.push(AddLayer(layer))
    return doc, undo, layer


def dab(layer: Layer, x: int, y: int, alpha: int) -> PaintPixels:
    old = layer.pixels[y:y + 3, x:x + 3].copy()
    new = old.copy()
    new[..., 3] = alpha
    return PaintPixels(layer.id, x, y, old, new, "pixels", "dab")


def test_an_empty_large_layer_is_scanned_once_until_it_is_painted(monkeypatch):
    assert SIDE * SIDE >= EMPTY_KEPT_PIXELS
    doc, undo, layer = empty_doc()
    scans = counted_scans(monkeypatch)
    assert not layer.has_pixels()
    assert len(scans) == 1
    for _ in range(5):  # asked again at each change elsewhere: answered from memory
        assert not layer.has_pixels()
    assert len(scans) == 1
    undo.push(dab(layer, 2001, 1999, 90))  # off the sparse grid: a scan must find it
    assert layer.has_pixels()
    undo.undo()  # erased again through the document: it looks again, and remembers
    assert not layer.has_pixels()
    scans.clear()
    assert not layer.has_pixels()
    assert not scans
    undo.redo()
    assert layer.has_pixels()


def test_a_layer_given_new_pixels_or_touched_is_looked_at_again(monkeypatch):
    _doc, _undo, layer = empty_doc()
    assert not layer.has_pixels()
    copy = layer.copy()
    copy.pixels[7, 1000, 3] = 1  # a copy has its own pixels: not taken for the empty one
    assert copy.has_pixels()
    layer.pixels = np.zeros((SIDE, SIDE, 4), np.uint8)
    layer.pixels[SIDE - 1, SIDE - 1, 3] = 5  # replaced: the old answer does not hold
    assert layer.has_pixels()
    layer.pixels[SIDE - 1, SIDE - 1, 3] = 0
    assert not layer.has_pixels()
    layer.pixels[1, 2, 3] = 3  # changed in place outside the document: said with touch()
    layer.touch()
    assert layer.has_pixels()


def test_a_small_layer_follows_changes_made_in_place(monkeypatch):
    layer = Layer(pixels=np.zeros((300, 200, 4), np.uint8))
    scans = counted_scans(monkeypatch)
    assert not layer.has_pixels()
    layer.pixels[299, 199, 3] = 1  # no document, no touch: a small layer is scanned anew
    assert layer.has_pixels()
    assert len(scans) == 2


def test_an_edit_hands_the_undone_branch_it_drops_to_release_later():
    """Freeing an undone 8000x8000 result (1-2 ms) is left to the window's next event-loop
    turn, not done inside the edit that drops it; without ``release_later``, at once."""
    import gc
    import weakref

    for later in (True, False):
        doc = Document()
        doc.width = doc.height = 64
        undo = UndoStack(doc)
        pending: list = []
        if later:
            undo.release_later = pending.append
        first = AddLayer(Layer.blank(64, 64, "undone"))
        ref = weakref.ref(first)
        undo.push(first)
        undo.undo()
        del first
        undo.push(AddLayer(Layer.blank(64, 64, "new")))  # the redo entry is dropped
        gc.collect()
        assert (ref() is not None) == later
        assert len(undo.commands) == 1 and undo.commands[0] is not ref()
        assert len(pending) == (1 if later else 0)
        for release in pending:
            release()
        gc.collect()
        assert ref() is None
