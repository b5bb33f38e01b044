"""The layers panel lists a change of the stack once per event-loop turn (issue 29: a result
landing on a large canvas must not do every panel's work in the slice that lands it), and
what reads the panel sees the document as it is now."""

from __future__ import annotations

from studio.core.document.edits import AddLayer, RemoveLayer
from studio.core.document.layers import Document, Layer
from studio.core.document.undo import UndoStack
from studio.ui.layers_panel import LayersPanel


def make_panel(qtbot, names=("bottom",)):
    doc = Document(64, 64)
    undo = UndoStack(doc)
    for name in names:
        undo.push(AddLayer(Layer.blank(64, 64, name)))
    panel = LayersPanel(doc, undo)
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitUntil(lambda: not panel.pending())
    return doc, undo, panel


def test_three_layers_added_in_one_turn_are_listed_by_one_rebuild(qtbot):
    doc, undo, panel = make_panel(qtbot)
    before = panel.refreshes
    for name in ("one", "two", "three"):
        undo.push(AddLayer(Layer.blank(64, 64, name)))
    assert panel.pending()  # nothing listed yet in the slice that pushed them
    assert panel.refreshes == before
    qtbot.waitUntil(lambda: not panel.pending())
    assert panel.refreshes == before + 1
    # what the user sees after that turn: all four, top first, the last one selected
    rows = [panel.model.data(panel.model.index(r)) for r in range(panel.model.rowCount())]
    assert rows == ["three", "two", "one", "bottom"]
    assert panel.list.currentIndex().row() == 0
    assert panel.current_layer_id() == doc.layers[-1].id
    assert panel.refreshes == before + 1  # nothing was pending: no second rebuild


def test_the_panel_read_right_after_a_push_shows_the_new_layer(qtbot):
    doc, undo, panel = make_panel(qtbot)
    new = Layer.blank(64, 64, "landed", opacity=0.3)
    undo.push(AddLayer(new))
    # no event-loop turn in between: the accessors bring the list up to date first
    assert panel.count() == 2
    assert panel.row_text(0).startswith("landed")
    assert panel.current_layer_id() == new.id
    assert not panel.pending()
    # the active layer's controls follow at once
    assert abs(panel.opacity_slider.value() - 0.3) < 1e-6
    undo.undo()
    assert panel.count() == 1 and panel.current_layer_id() == doc.layers[0].id


def test_picking_a_row_of_a_layer_removed_in_the_same_turn_keeps_the_document_sound(qtbot):
    doc, undo, panel = make_panel(qtbot, names=("bottom", "top"))
    bottom, top = doc.layers
    doc.set_active_layer(bottom.id)
    assert panel.current_layer_id() == bottom.id  # the second row
    undo.push(RemoveLayer(top.id))
    # the list still holds the removed layer's row until the turn ends; a click on it
    # activates nothing that is gone, and the list is brought up to date
    panel.list.setCurrentIndex(panel.model.index(0))
    assert doc.layers == [bottom] and doc.active_layer is bottom
    assert not panel.pending()
    assert panel.count() == 1 and panel.row_text(0).startswith("bottom")
