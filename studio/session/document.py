"""``DocumentModel``: the open document, its undo history, and what the Edit menu shows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from psygnal import Signal

from studio.core.document.layers import Document
from studio.core.document.undo import Command, UndoStack
from studio.core.project.generation_log import GenerationLog


@dataclass(frozen=True)
class UndoState:
    """What Undo and Redo say and whether they can run."""

    can_undo: bool = False
    can_redo: bool = False
    undo_text: str = ""
    redo_text: str = ""


class DocumentModel:
    """The document one window edits and its undo stack (both live for the window's life:
    opening a project replaces their contents, never the objects)."""

    undo_changed = Signal(object)  # UndoState
    replacing = Signal()  # another document is about to be shown (a project is opened)
    replaced = Signal()  # it is shown: views that keep their own copy rebuild it

    def __init__(self, doc: Document | None = None, undo: UndoStack | None = None) -> None:
        self.doc = doc if doc is not None else Document()
        self.undo_stack = undo if undo is not None else UndoStack(self.doc)
        self.undo_state = UndoState()
        self.undo_stack.add_listener(self._on_undo_changed)

    # -- actions -------------------------------------------------------------------------
    def push(self, command: Command) -> None:
        self.undo_stack.push(command)

    @contextmanager
    def macro(self, text: str) -> Iterator[None]:
        with self.undo_stack.macro(text):
            yield

    def replace(self, doc: Document, stack: UndoStack | None, log: GenerationLog) -> None:
        """Show ``doc`` (an opened project): the live document and undo stack keep their
        identity and take its contents, and the log's listeners move to ``log``."""
        self.replacing.emit()
        live, undo = self.doc, self.undo_stack
        for name in ("width", "height", "layers", "active_layer_id", "selection", "prompt",
                     "negative_prompt", "sliders"):
            setattr(live, name, getattr(doc, name))
        old_log = live.log
        for fn in list(old_log._listeners):
            log.add_listener(fn)
            old_log.remove_listener(fn)
        live.log = log
        from studio.session.workflows import WORKFLOWS

        WORKFLOWS.remember_records(log.records)  # a server's image exports its workflow again
        undo.commands = list(stack.commands) if stack is not None else []
        undo._index = stack.index if stack is not None else 0
        undo._clean_index = undo._index
        live.emit("canvas_resized", dx=0, dy=0)
        live.emit("selection_changed", rect=live.selection)
        self.replaced.emit()
        undo._changed()

    @property
    def blank(self) -> bool:
        """Nothing made yet: no layer, no edit, no generation."""
        return (not self.doc.layers and not self.undo_stack.commands
                and not len(self.doc.log))

    def resize_blank(self, width: int, height: int) -> bool:
        """Give a blank document (see ``blank``) the size the next image will have, without
        an undo entry; ``False`` (and no change) once anything was made."""
        doc = self.doc
        if not self.blank or (doc.width, doc.height) == (width, height):
            return False
        doc.width, doc.height = int(width), int(height)
        doc.emit("canvas_resized", dx=0, dy=0)
        return True

    def undo(self) -> None:
        self.undo_stack.undo()

    def redo(self) -> None:
        self.undo_stack.redo()

    # -- events --------------------------------------------------------------------------
    def _on_undo_changed(self, _name: str, state: dict[str, Any]) -> None:
        self.undo_state = UndoState(bool(state["can_undo"]), bool(state["can_redo"]),
                                    str(state["undo_text"]), str(state["redo_text"]))
        self.undo_changed.emit(self.undo_state)
