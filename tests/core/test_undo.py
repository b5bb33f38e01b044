"""Undo stack and edit commands: every command undoes exactly, diffs stay small."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.document.edits import (
    AddLayer,
    ApplyGeneration,
    Crop,
    MoveLayer,
    PaintPixels,
    RemoveLayer,
    ResizeCanvas,
    SetLayerProps,
    SetPrompt,
    SetSelection,
    SetSliderValue,
)
from studio.core.document.layers import ArrayBag, Document, Layer
from studio.core.document.undo import Command, MacroCommand, UndoStack, command_from_dict


def make_doc(w: int = 64, h: int = 48, layers: int = 2, seed: int = 0) -> Document:
    rng = np.random.default_rng(seed)
    doc = Document(w, h)
    for i in range(layers):
        mask = rng.integers(0, 256, (h, w), dtype=np.uint8) if i == 1 else None
        doc.layers.append(Layer(name=f"layer {i}", mask=mask,
                                pixels=rng.integers(0, 256, (h, w, 4), dtype=np.uint8)))
    return doc


def state(doc: Document) -> tuple:
    """Everything a user could see of a document, comparable with ==."""
    layers = tuple(
        (lay.id, lay.name, lay.x, lay.y, lay.visible, lay.opacity, lay.kind, lay.record_id,
         lay.pixels.tobytes(), lay.pixels.shape,
         None if lay.mask is None else lay.mask.tobytes())
        for lay in doc.layers)
    return (doc.width, doc.height, layers, doc.active_layer_id, doc.selection, doc.prompt,
            doc.negative_prompt, tuple(sorted(doc.sliders.items())), doc.composite().tobytes())


def stroke(doc: Document, target: str = "pixels") -> PaintPixels:
    patch = np.full((5, 7, 4) if target == "pixels" else (5, 7), 77, np.uint8)
    return PaintPixels.from_patch(doc, doc.layers[0].id, 10, 12, patch, target=target)


COMMANDS = {
    "add": lambda d: AddLayer(Layer.blank(8, 8, name="new"), index=1),
    "remove": lambda d: RemoveLayer(d.layers[0].id),
    "move": lambda d: MoveLayer(d.layers[0].id, 1),
    "props": lambda d: SetLayerProps(d.layers[1].id, name="x", opacity=0.25, visible=False,
                                     x=3, y=-2),
    "paint": stroke,
    "paint_mask_new": lambda d: stroke(d, "mask"),
    "paint_mask": lambda d: PaintPixels.from_patch(d, d.layers[1].id, -3, -3,
                                                   np.zeros((9, 9), np.uint8), target="mask"),
    "resize": lambda d: ResizeCanvas.anchored(d, 96, 64, "center"),
    "shrink": lambda d: ResizeCanvas(20, 20, -5, -5),
    "crop": lambda d: Crop((4, 4, 30, 20)),
    "select": lambda d: SetSelection((8, 8, 32, 16)),
    "generate": lambda d: ApplyGeneration(np.full((16, 16, 3), 9, np.uint8), (8, 8, 32, 16),
                                          record_id="rec1", mask=np.full((16, 16), 128,
                                                                         np.uint8)),
    "slider": lambda d: SetSliderValue("smile", 0.7),
    "prompt": lambda d: SetPrompt("a cat", "blurry"),
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_undoes_and_redoes_exactly(name):
    doc = make_doc()
    doc.selection = (0, 0, 40, 40)
    stack = UndoStack(doc)
    before = state(doc)
    stack.push(COMMANDS[name](doc))
    after = state(doc)
    assert after != before
    stack.undo()
    assert state(doc) == before
    stack.redo()
    assert state(doc) == after
    stack.undo()
    assert state(doc) == before


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_survives_serialisation(name):
    doc = make_doc()
    stack = UndoStack(doc)
    before = state(doc)
    stack.push(COMMANDS[name](doc))
    after = state(doc)
    bag = ArrayBag()
    data = stack.to_dict(bag.put)
    # Reopen: a fresh document in the saved state, with the saved history.
    doc2 = Document.from_dict(doc.to_dict(bag.put), bag.get)
    stack2 = UndoStack.from_dict(doc2, data, bag.get)
    assert state(doc2) == after and stack2.can_undo and stack2.clean
    stack2.undo()
    assert state(doc2) == before
    stack2.redo()
    assert state(doc2) == after
    # ... and also when saved in the undone state.
    stack.undo()
    data = stack.to_dict(bag.put)
    doc3 = Document.from_dict(doc.to_dict(bag.put), bag.get)
    stack3 = UndoStack.from_dict(doc3, data, bag.get)
    assert state(doc3) == before and stack3.can_redo and not stack3.can_undo
    stack3.redo()
    assert state(doc3) == after


def test_paint_stores_only_the_bounding_box():
    doc = Document(2048, 2048, layers=[Layer.blank(2048, 2048)])
    before = doc.layers[0].pixels.copy()
    after = before.copy()
    after[100:110, 200:204] = 255
    cmd = PaintPixels.from_change(doc.layers[0].id, before, after)
    assert cmd is not None and cmd.rect == (200, 100, 4, 10)
    assert cmd.nbytes() == 2 * 10 * 4 * 4
    bag = ArrayBag()
    UndoStack(doc).push(cmd)
    cmd.to_dict(bag.put)
    assert sum(a.nbytes for a in bag.arrays.values()) <= 2 * 10 * 4 * 4
    assert PaintPixels.from_change("x", before, before) is None


def test_paint_events_give_the_canvas_rect():
    doc = Document(64, 64, layers=[Layer.blank(16, 16, x=20, y=30)])
    seen = []
    doc.add_listener(lambda e, p: seen.append((e, p)))
    UndoStack(doc).push(PaintPixels.from_patch(doc, doc.layers[0].id, 2, 3,
                                               np.ones((4, 5, 4), np.uint8)))
    assert seen == [("layer_changed", {"layer_id": doc.layers[0].id,
                                       "rect": (22, 33, 5, 4), "what": "pixels"})]


def test_push_undo_redo_texts_and_redo_tail_dropped():
    doc = make_doc()
    stack = UndoStack(doc)
    assert not stack.can_undo and not stack.can_redo and stack.undo_text == ""
    stack.push(SetSelection((0, 0, 8, 8), text="first"))
    stack.push(SetSelection((0, 0, 9, 9), text="second"))
    assert (stack.index, stack.undo_text) == (2, "second")
    stack.undo()
    assert (stack.index, stack.undo_text, stack.redo_text) == (1, "first", "second")
    stack.push(SetSelection((1, 1, 2, 2), text="third"))
    assert stack.count == 2 and not stack.can_redo and stack.undo_text == "third"
    stack.undo()
    stack.undo()
    stack.undo()  # nothing left: a no-op
    assert doc.selection is None and stack.index == 0


def test_macro_groups_commands_into_one_entry():
    doc = make_doc()
    stack = UndoStack(doc)
    before = state(doc)
    with stack.macro("Stroke"):
        stack.push(stroke(doc))
        stack.push(SetLayerProps(doc.layers[0].id, opacity=0.5))
        with stack.macro("inner"):
            stack.push(SetSelection((1, 2, 3, 4)))
    assert stack.count == 1 and stack.undo_text == "Stroke"
    assert isinstance(stack.commands[0], MacroCommand)
    after = state(doc)
    stack.undo()
    assert state(doc) == before
    stack.redo()
    assert state(doc) == after
    with stack.macro("empty"):
        pass
    assert stack.count == 1


def test_macro_that_raises_is_rolled_back():
    doc = make_doc()
    stack = UndoStack(doc)
    before = state(doc)
    with pytest.raises(RuntimeError), stack.macro("Broken"):
        stack.push(stroke(doc))
        raise RuntimeError("boom")
    assert state(doc) == before and stack.count == 0


def test_slider_drag_merges_into_one_entry():
    doc = make_doc()
    stack = UndoStack(doc)
    for v in (0.1, 0.2, 0.3, 0.4):
        stack.push(SetSliderValue("age", v))
    stack.push(SetSliderValue("smile", 1.0))
    assert stack.count == 2
    assert doc.sliders == {"age": 0.4, "smile": 1.0}
    stack.undo()
    assert doc.sliders == {"age": 0.4}
    stack.undo()
    assert doc.sliders == {}
    # Two drags with their own ids stay two entries.
    stack.redo()
    stack.push(SetSliderValue("age", 0.9, merge_id="drag-2"))
    assert stack.count == 2
    stack.undo()
    assert doc.sliders == {"age": 0.4}


def test_clean_flag():
    doc = make_doc()
    stack = UndoStack(doc)
    events = []
    stack.add_listener(lambda e, p: events.append(p["clean"]))
    assert stack.clean
    stack.push(SetSliderValue("a", 1.0))
    assert not stack.clean
    stack.set_clean()
    assert stack.clean
    stack.push(SetSliderValue("a", 2.0))  # must not merge into the saved entry
    assert stack.count == 2 and not stack.clean
    stack.undo()
    assert stack.clean and doc.sliders == {"a": 1.0}
    stack.undo()
    assert not stack.clean
    stack.push(SetSelection((0, 0, 1, 1)))  # drops the redo tail holding the clean state
    assert stack.clean_index is None
    stack.undo()
    assert not stack.clean
    assert events[:3] == [False, True, False]


def test_memory_limit_drops_oldest_entries():
    doc = Document(64, 64, layers=[Layer.blank(64, 64)])
    one = 2 * 16 * 16 * 4
    stack = UndoStack(doc, memory_limit=3 * one)
    for i in range(6):
        stack.push(PaintPixels.from_patch(doc, doc.layers[0].id, i, i,
                                          np.full((16, 16, 4), i + 1, np.uint8)))
    assert stack.count == 3 and stack.index == 3 and stack.nbytes() <= 3 * one
    stack.set_index(0)
    assert doc.layers[0].pixels[3, 3, 0] == 3  # the three oldest strokes are kept


def test_set_index_walks_the_stack():
    doc = make_doc()
    stack = UndoStack(doc)
    for i in range(5):
        stack.push(SetSliderValue(f"s{i}", i))
    stack.set_index(2)
    assert doc.sliders == {"s0": 0.0, "s1": 1.0}
    stack.set_index(99)
    assert stack.index == 5


def test_remove_active_layer_moves_active_and_undo_restores_it():
    doc = make_doc(layers=3)
    stack = UndoStack(doc)
    doc.set_active_layer(doc.layers[1].id)
    removed = doc.layers[1].id
    stack.push(RemoveLayer(removed))
    assert doc.active_layer_id == doc.layers[0].id
    stack.undo()
    assert doc.active_layer_id == removed


def test_apply_generation_references_its_record_and_fits_the_region():
    doc = make_doc()
    stack = UndoStack(doc)
    cmd = ApplyGeneration(np.zeros((8, 8, 3), np.uint8), (4, 6, 16, 12), record_id="r42")
    stack.push(cmd)
    top = doc.layers[-1]
    assert (top.kind, top.record_id, top.rect) == ("generated", "r42", (4, 6, 16, 12))
    assert doc.active_layer_id == top.id and cmd.record_id == "r42"


def test_unknown_command_type_and_base_class():
    with pytest.raises(ValueError):
        command_from_dict({"type": "nope"}, ArrayBag().get)
    with pytest.raises(NotImplementedError):
        Command().do(Document())
