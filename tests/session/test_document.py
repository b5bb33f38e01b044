"""The document model: its undo state is what the Edit menu shows."""

from __future__ import annotations

from studio.core.document.edits import SetSliderValue
from studio.session.document import DocumentModel, UndoState


def test_undo_state_follows_edits_undo_and_redo():
    model = DocumentModel()
    states: list[UndoState] = []
    model.undo_changed.connect(states.append)
    model.push(SetSliderValue("age", 0.5, merge_id=None, text="Age"))
    assert states[-1] == UndoState(can_undo=True, can_redo=False, undo_text="Age")
    model.undo()
    assert model.doc.sliders.get("age", 0.0) == 0.0
    assert states[-1] == UndoState(can_undo=False, can_redo=True, redo_text="Age")
    model.redo()
    assert model.doc.sliders["age"] == 0.5 and model.undo_state.can_undo


def test_a_macro_is_one_undo_step():
    model = DocumentModel()
    with model.macro("Two sliders"):
        model.push(SetSliderValue("age", 1.0, merge_id=None))
        model.push(SetSliderValue("smile", 1.0, merge_id=None))
    assert model.undo_state.undo_text == "Two sliders"
    model.undo()
    assert not model.doc.sliders.get("age") and not model.doc.sliders.get("smile")
