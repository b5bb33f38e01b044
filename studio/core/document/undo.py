"""A pure-Python undo stack of commands, with macros, merging and a clean flag.

Modelled on ``QUndoStack``: ``push`` runs a command, ``undo``/``redo`` walk the stack,
``macro(text)`` groups the commands pushed inside it into one entry, and a command with a
``merge_id`` may absorb the next command with the same id (a slider drag becomes one
entry). A memory limit drops the oldest entries when their stored pixels grow too big.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from studio.core.document.layers import Document, GetArray, PutArray

StackListener = Callable[[str, dict[str, Any]], None]

DEFAULT_MEMORY_LIMIT = 1024 * 1024 * 1024  # bytes of pixel data the stack may hold

_log = logging.getLogger(__name__)

_REGISTRY: dict[str, type[Command]] = {}


def register(cls: type[Command]) -> type[Command]:
    """Class decorator: make a command type known to ``command_from_dict``."""
    _REGISTRY[cls.type_name] = cls
    return cls


class Command:
    """One undoable edit.

    Subclasses set ``type_name`` (the name saved in project files), implement ``do`` and
    ``undo`` (``do`` also serves as redo and must give the same result each time), and
    ``state_to_dict`` / ``state_from_dict`` to survive a save and reopen.
    """

    type_name: ClassVar[str] = "command"

    def __init__(self, text: str = "", merge_id: str | None = None) -> None:
        self.text = text
        self.merge_id = merge_id

    def do(self, doc: Document) -> None:
        raise NotImplementedError

    def undo(self, doc: Document) -> None:
        raise NotImplementedError

    def merge_with(self, other: Command) -> bool:
        """Absorb ``other`` (already done) into this command; return whether it did."""
        return False

    def nbytes(self) -> int:
        """Bytes of array data this command holds (for the stack's memory limit)."""
        return 0

    # -- serialisation -------------------------------------------------------------------
    def state_to_dict(self, put: PutArray) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} cannot be saved")

    @classmethod
    def state_from_dict(cls, data: dict[str, Any], get: GetArray) -> Command:
        raise NotImplementedError(f"{cls.__name__} cannot be loaded")

    def to_dict(self, put: PutArray) -> dict[str, Any]:
        """A JSON-ready dict; arrays (pixel diffs, layers) are stored with ``put``."""
        return {"type": self.type_name, "text": self.text, "merge_id": self.merge_id,
                "state": self.state_to_dict(put)}


def command_from_dict(data: dict[str, Any], get: GetArray) -> Command:
    """Rebuild a command saved with ``Command.to_dict``."""
    cls = _REGISTRY.get(data["type"])
    if cls is None:
        raise ValueError(f"unknown command type {data['type']!r}")
    cmd = cls.state_from_dict(data.get("state") or {}, get)
    cmd.text = data.get("text", cmd.text)
    cmd.merge_id = data.get("merge_id")
    return cmd


@register
class MacroCommand(Command):
    """Commands grouped into one undo entry (see ``UndoStack.macro``)."""

    type_name = "macro"

    def __init__(self, text: str = "", children: list[Command] | None = None) -> None:
        super().__init__(text)
        self.children: list[Command] = list(children or [])

    def do(self, doc: Document) -> None:
        for cmd in self.children:
            cmd.do(doc)

    def undo(self, doc: Document) -> None:
        for cmd in reversed(self.children):
            cmd.undo(doc)

    def nbytes(self) -> int:
        return sum(c.nbytes() for c in self.children)

    def state_to_dict(self, put: PutArray) -> dict[str, Any]:
        return {"children": [c.to_dict(put) for c in self.children]}

    @classmethod
    def state_from_dict(cls, data: dict[str, Any], get: GetArray) -> MacroCommand:
        return cls(children=[command_from_dict(c, get) for c in data.get("children", [])])


class UndoStack:
    """The edit history of one document.

    Parameters
    ----------
    doc : Document
        The document the commands act on.
    memory_limit : int
        Bytes of array data the stack may hold; past it the oldest entries are dropped
        (the newest entry is always kept). ``0`` means no limit.

    Listeners added with ``add_listener`` are called as ``fn("changed", payload)`` after
    every push, undo, redo or clean change; ``payload`` has ``index``, ``can_undo``,
    ``can_redo``, ``clean``, ``undo_text`` and ``redo_text``.
    """

    def __init__(self, doc: Document, memory_limit: int = DEFAULT_MEMORY_LIMIT) -> None:
        self.doc = doc
        self.memory_limit = memory_limit
        self.commands: list[Command] = []
        self._index = 0
        self._clean_index: int | None = 0
        self._macros: list[MacroCommand] = []
        self._listeners: list[StackListener] = []
        #: How the commands dropped from the stack (a redo branch replaced by a new edit,
        #: the oldest past the memory limit) are let go: ``None``, at once; a window gives
        #: a function that runs its argument once the edit is drawn, so that
        #: freeing an undone 8000x8000 result (1-2 ms) is not part of the next edit's slice.
        self.release_later: Callable[[Callable[[], None]], None] | None = None

    # -- state ---------------------------------------------------------------------------
    @property
    def index(self) -> int:
        """Number of commands currently done (``0`` = nothing to undo)."""
        return self._index

    @property
    def clean_index(self) -> int | None:
        """The index that matches the saved file, or ``None`` if it can't be reached."""
        return self._clean_index

    @property
    def count(self) -> int:
        return len(self.commands)

    @property
    def can_undo(self) -> bool:
        return self._index > 0 and not self._macros

    @property
    def can_redo(self) -> bool:
        return self._index < len(self.commands) and not self._macros

    @property
    def undo_text(self) -> str:
        return self.commands[self._index - 1].text if self._index > 0 else ""

    @property
    def redo_text(self) -> str:
        return self.commands[self._index].text if self._index < len(self.commands) else ""

    @property
    def clean(self) -> bool:
        """True when the document is as it was at the last ``set_clean`` (the last save)."""
        return self._clean_index == self._index and not self._macros

    def set_clean(self, index: int | None = None) -> None:
        """Mark the current state (or the state at ``index``) as saved.

        A save made off the GUI thread passes the index its snapshot was taken at
        (``ProjectSnapshot.undo_index``), since edits may have been made meanwhile.
        """
        self._clean_index = self._index if index is None else index
        self._changed()

    def nbytes(self) -> int:
        return sum(c.nbytes() for c in self.commands)

    # -- editing -------------------------------------------------------------------------
    def push(self, cmd: Command) -> None:
        """Run ``cmd`` and record it (inside a macro: add it to the macro)."""
        cmd.do(self.doc)
        if self._macros:
            self._macros[-1].children.append(cmd)
            return
        self._record(cmd)

    def _record(self, cmd: Command) -> None:
        self._drop(self.commands[self._index:])
        del self.commands[self._index:]
        if self._clean_index is not None and self._clean_index > self._index:
            self._clean_index = None
        top = self.commands[-1] if self.commands else None
        if (top is not None and cmd.merge_id is not None and top.merge_id == cmd.merge_id
                and type(top) is type(cmd) and self._clean_index != self._index
                and top.merge_with(cmd)):
            self._changed()
            return
        self.commands.append(cmd)
        self._index += 1
        self._enforce_limit()
        self._changed()

    @contextmanager
    def macro(self, text: str) -> Iterator[MacroCommand]:
        """Group every command pushed inside the block into one undo entry.

        If the block raises, the commands it ran are undone and nothing is recorded.
        Nested macros join the outermost one.
        """
        group = MacroCommand(text)
        self._macros.append(group)
        try:
            yield group
        except BaseException:
            self._macros.pop()
            group.undo(self.doc)
            raise
        self._macros.pop()
        if not group.children:
            return
        if self._macros:
            self._macros[-1].children.append(group)
        else:
            self._record(group)

    def undo(self) -> None:
        """Undo the last done command (nothing happens when there is none)."""
        if not self.can_undo:
            return
        self._index -= 1
        self.commands[self._index].undo(self.doc)
        self._changed()

    def redo(self) -> None:
        """Redo the next undone command (nothing happens when there is none)."""
        if not self.can_redo:
            return
        self.commands[self._index].do(self.doc)
        self._index += 1
        self._changed()

    def set_index(self, index: int) -> None:
        """Undo or redo until ``index`` commands are done (for a history panel)."""
        index = max(0, min(index, len(self.commands)))
        while self._index > index:
            self.undo()
        while self._index < index:
            self.redo()

    def clear(self) -> None:
        """Forget the history (the document keeps its current state)."""
        self.commands.clear()
        self._index = 0
        self._clean_index = 0
        self._changed()

    def _enforce_limit(self) -> None:
        if self.memory_limit <= 0:
            return
        total = self.nbytes()
        drop = 0
        while total > self.memory_limit and drop < self._index - 1:
            total -= self.commands[drop].nbytes()
            drop += 1
        if drop:
            self._drop(self.commands[:drop])
            del self.commands[:drop]
            self._index -= drop
            if self._clean_index is not None:
                self._clean_index = self._clean_index - drop if self._clean_index >= drop \
                    else None

    def _drop(self, commands: list[Command]) -> None:
        """Hand ``commands`` (about to leave the stack) to ``release_later``, if set."""
        if commands and self.release_later is not None:
            self.release_later(commands.clear)

    # -- listeners -----------------------------------------------------------------------
    def add_listener(self, fn: StackListener) -> None:
        if fn not in self._listeners:
            self._listeners.append(fn)

    def remove_listener(self, fn: StackListener) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def _changed(self) -> None:
        payload = {"index": self._index, "can_undo": self.can_undo, "can_redo": self.can_redo,
                   "clean": self.clean, "undo_text": self.undo_text,
                   "redo_text": self.redo_text}
        for fn in list(self._listeners):
            try:
                fn("changed", payload)
            except Exception:
                _log.exception("undo stack listener failed")

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self, put: PutArray) -> dict[str, Any]:
        """The history as a JSON-ready dict; arrays are stored with ``put``."""
        return {"index": self._index, "clean_index": self._clean_index,
                "commands": [c.to_dict(put) for c in self.commands]}

    @classmethod
    def from_dict(cls, doc: Document, data: dict[str, Any], get: GetArray,
                  memory_limit: int = DEFAULT_MEMORY_LIMIT) -> UndoStack:
        """Rebuild a history for ``doc``, which must be in the state the history was saved in.

        The clean index becomes the current index: a freshly opened project is clean.
        """
        stack = cls(doc, memory_limit=memory_limit)
        stack.commands = [command_from_dict(c, get) for c in data.get("commands", [])]
        stack._index = max(0, min(int(data.get("index", 0)), len(stack.commands)))
        stack._clean_index = stack._index
        return stack
