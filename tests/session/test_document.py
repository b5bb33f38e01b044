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


def test_replacing_keeps_the_objects_and_takes_the_contents():
    from studio.core.document.layers import Document
    from studio.core.document.undo import UndoStack
    from studio.core.project.generation_log import GenerationLog

    model = DocumentModel()
    live_doc, live_stack = model.doc, model.undo_stack
    model.push(SetSliderValue("age", 0.5, merge_id=None, text="Age"))
    events: list[str] = []
    model.replacing.connect(lambda: events.append("replacing"))
    model.replaced.connect(lambda: events.append("replaced"))
    opened = Document()
    opened.width, opened.height = 320, 200
    stack = UndoStack(opened)
    stack.push(SetSliderValue("smile", 1.0, merge_id=None, text="Smile"))
    log = GenerationLog()
    model.replace(opened, stack, log)
    assert events == ["replacing", "replaced"]
    assert model.doc is live_doc and model.undo_stack is live_stack
    assert (model.doc.width, model.doc.height) == (320, 200) and model.doc.log is log
    assert model.doc.sliders == {"smile": 1.0}
    assert model.undo_state == UndoState(can_undo=True, undo_text="Smile")
