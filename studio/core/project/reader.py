"""Reading a ``.studio`` file as far as it can be read.

A project whose file is sound comes back whole. Where parts are damaged (bit rot, a bad
sector, a truncated copy), the rest still opens and ``Project.problems`` says, one line
each, what was lost: a layer whose pixels do not decode becomes a transparent placeholder
named ``"(damaged) NAME"``; a generation whose record or images are damaged is left out of
the gallery; an edit history keeps what replays on the saved document: a damaged entry (a
diff that does not decode, a record pointing nowhere) costs only the edits that cannot be
reached past it, older undos or later redos (the picture stays as last saved). Values no file of ours can hold (a canvas a
million pixels wide, a layer far off the canvas, a NaN opacity) are checked here, at the
boundary, so that nothing crashes at first use. What cannot be read at all raises
``ProjectCorruptError`` with one line.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from studio.core.document.layers import LAYER_KINDS, Document
from studio.core.document.pixels import Pixels
from studio.core.document.undo import Command, UndoStack, command_from_dict
from studio.core.errors import ProjectCorruptError
from studio.core.project.blobs import BlobDamagedError, check_blob, load_blob
from studio.core.project.generation_log import GenerationLog, GenerationRecord, request_image_refs

#: The largest canvas a project may hold: 65536 pixels a side, 268 megapixels in all.
MAX_SIDE = 65536
MAX_PIXELS = 16384 * 16384
#: How far a layer may lie off the canvas (a layer kept while the canvas was cropped).
MAX_OFFSET = 4 * MAX_SIDE
DAMAGED_PREFIX = "(damaged) "

#: What reading a damaged file may raise, besides our own errors.
READ_ERRORS = (sqlite3.DatabaseError, KeyError, ValueError, TypeError, IndexError,
               AttributeError, RecursionError, MemoryError, OverflowError, BlobDamagedError)


@dataclass
class Project:
    """An opened project: the document with its undo history and generation log.

    ``problems`` lists what could not be read, one line each (empty for a sound file); a
    project with problems should be saved under a new name, never over its damaged file.
    """

    document: Document
    undo_stack: UndoStack
    log: GenerationLog
    meta: dict[str, str]
    path: Path
    problems: tuple[str, ...] = field(default=())

    @property
    def damaged(self) -> bool:
        return bool(self.problems)


def _int(value: Any, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} is not a number")
    number = int(value)
    if not low <= number <= high:
        raise ValueError(f"{what} is {number} (it must be between {low} and {high})")
    return number


def _check_canvas(data: Any) -> tuple[int, int]:
    if not isinstance(data, dict):
        raise ValueError("the document is not a record")
    width = _int(data.get("width"), 1, MAX_SIDE, "the canvas width")
    height = _int(data.get("height"), 1, MAX_SIDE, "the canvas height")
    if width * height > MAX_PIXELS:
        raise ValueError(f"the canvas is {width} x {height} pixels (at most "
                         f"{MAX_PIXELS // 10**6} megapixels)")
    if not isinstance(data.get("layers", []), list):
        raise ValueError("the layer list is damaged")
    return width, height


def _check_layer(data: Any, array: np.ndarray, mask: np.ndarray | None) -> None:
    if (not isinstance(data, dict) or not isinstance(data.get("id"), str)
            or not isinstance(data.get("name", ""), str)
            or data.get("kind", "image") not in LAYER_KINDS
            or not isinstance(data.get("record_id") or "", str)):
        raise ValueError("a layer record is damaged")
    _int(data.get("x", 0), -MAX_OFFSET, MAX_OFFSET, "a layer position")
    _int(data.get("y", 0), -MAX_OFFSET, MAX_OFFSET, "a layer position")
    opacity = data.get("opacity", 1.0)
    if not isinstance(opacity, int | float) or not 0.0 <= float(opacity) <= 1.0:
        raise ValueError("a layer opacity is impossible")
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError("a layer's pixels are not an RGBA image")
    if array.shape[0] > MAX_SIDE or array.shape[1] > MAX_SIDE:
        raise ValueError("a layer is impossibly large")
    if mask is not None and (mask.ndim != 2 or mask.shape != array.shape[:2]):
        raise ValueError("a layer mask does not match its layer")


class _Reader:
    """One read of an open connection; collects the problems it meets."""

    def __init__(self, conn: sqlite3.Connection, path: Path,
                 image_source: Callable[[str], np.ndarray],
                 progress: Callable[[float, str], None] | None = None) -> None:
        self.conn = conn
        self.progress = progress or (lambda _fraction, _what: None)
        self.path = path
        self.image_source = image_source
        self.cache: dict[str, np.ndarray] = {}
        self.problems: list[str] = []

    def get(self, key: str) -> np.ndarray:
        if not isinstance(key, str):
            raise BlobDamagedError(str(key), "is not a valid reference")
        if key not in self.cache:
            self.cache[key] = load_blob(self.conn, key)
        return self.cache[key]

    # -- the document ------------------------------------------------------------------------
    def document(self) -> Document:
        row = self.conn.execute("SELECT CAST(json AS BLOB) FROM document WHERE id = 1").fetchone()
        if row is None:
            raise ValueError("the document is missing")
        data = json.loads(row[0])
        width, height = _check_canvas(data)
        layers, damaged = [], []
        records = data.get("layers", [])
        for i, layer in enumerate(records):
            self.progress(0.05 + 0.6 * i / max(1, len(records)), "layers")
            try:
                pixels = self.get(layer["pixels"])
                mask = self.get(layer["mask"]) if layer.get("mask") else None
                _check_layer(layer, pixels, mask)
                layers.append(layer)
            except (BlobDamagedError, KeyError, ValueError, TypeError, AttributeError):
                placeholder = self._placeholder(layer, width, height)
                if placeholder is None:
                    raise ValueError("a layer record is damaged") from None
                layers.append(placeholder)
                damaged.append(str(placeholder["name"])[len(DAMAGED_PREFIX):])
        if damaged:
            names = ", ".join(f"“{n}”" for n in damaged[:3]) + (" ..." if len(damaged) > 3
                                                                  else "")
            self.problems.append(f"{len(damaged)} layer(s) could not be read and are shown "
                                 f"empty, named “(damaged) ...”: {names}.")
        doc = Document.from_dict({**data, "layers": layers, "width": width, "height": height,
                                  "selection": _selection(data.get("selection"))}, self.get)
        if doc.active_layer_id is not None and not doc.has_layer(doc.active_layer_id):
            doc.active_layer_id = None
        return doc

    def _placeholder(self, layer: Any, width: int, height: int) -> dict[str, Any] | None:
        if not isinstance(layer, dict) or not isinstance(layer.get("id"), str):
            return None
        key = f"damaged:{width}x{height}"
        self.cache.setdefault(key, np.zeros((height, width, 4), np.uint8))
        name = layer.get("name") if isinstance(layer.get("name"), str) else "Layer"
        return {"id": layer["id"], "name": DAMAGED_PREFIX + name, "pixels": key, "mask": None,
                "x": 0, "y": 0, "visible": bool(layer.get("visible", True)), "opacity": 1.0,
                "kind": "image", "record_id": None}

    # -- the generation log ------------------------------------------------------------------
    def log(self) -> GenerationLog:
        log = GenerationLog(self.image_source)
        pixels: dict[str, Pixels] = {}
        lost = 0
        for (text,) in self.conn.execute(
                "SELECT CAST(json AS BLOB) FROM generations ORDER BY seq"):
            try:
                data = json.loads(text)
                for ref in request_image_refs(data["request"]):
                    if ref not in pixels:
                        pixels[ref] = Pixels.from_array(self.get(ref))
                record = GenerationRecord.from_dict(data, pixels)
                for key in record.image_hashes:
                    check_blob(self.conn, key)  # now, not when the gallery first shows it
                log.insert(record)
            except sqlite3.DatabaseError:
                raise
            except Exception:  # noqa: BLE001  (a damaged record, whatever it trips on)
                lost += 1
        if lost:
            self.problems.append(f"{lost} generation(s) in the gallery could not be read and "
                                 "were left out.")
        return log

    # -- the edit history --------------------------------------------------------------------
    def undo_stack(self, document: Document) -> UndoStack:
        """The history as far as it replays: one damaged entry costs the edits that cannot
        be reached past it (older undos, later redos), never the rest."""
        try:
            state = self.conn.execute("SELECT idx FROM undo_state WHERE id = 1").fetchone()
            rows = [text for (text,) in self.conn.execute(
                "SELECT CAST(json AS BLOB) FROM undo_commands ORDER BY pos")]
            index = state[0] if state else 0
            if not isinstance(index, int) or isinstance(index, bool):
                raise ValueError("the undo position is damaged")
            if not 0 <= index <= len(rows):
                raise ValueError("the undo position points past the history")
            commands = [_command_data(text) for text in rows]
            low, high = _replayable(document, commands, index, self.get)
            if (low, high) == (0, len(rows)):
                return UndoStack.from_dict(document, {"index": index, "commands": commands},
                                           self.get)
            kept = commands[low:high]
            stack = UndoStack.from_dict(document, {"index": index - low, "commands": kept},
                                        self.get)
        except sqlite3.DatabaseError:
            raise
        except Exception:  # noqa: BLE001  (a damaged or impossible history: any failure)
            self.problems.append("The edit history could not be read and was dropped; the "
                                 "picture is as last saved.")
            return UndoStack(document)
        self.problems.append(_history_problem(commands, index, low, high))
        return stack


def _command_data(text: bytes) -> Any:
    """One history row as JSON data, or ``None`` where it does not parse."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError, MemoryError):
        return None
    return data if isinstance(data, dict) else None


def _replayable(document: Document, commands: list[Any], index: int,
                get: Callable[[str], np.ndarray]) -> tuple[int, int]:
    """The stretch ``commands[low:high]`` around ``index`` that undoes from the saved document
    down to ``low`` and redoes from there up to ``high``, tried on copies of the document.

    A damaged entry below ``index`` ends the undo side (the edits before it are out of
    reach); one at or above ``index`` ends the redo side. Commands that point at missing
    layers or records fail here, not at first use.
    """
    low = _undo_reach(document, commands, index, get)
    while True:
        high = _redo_reach(document, commands, index, low, get)
        if high is None:
            return index, index
        if high >= index:
            return low, high
        low = high + 1  # below it the saved state cannot be redone to: keep only above


def _undo_reach(document: Document, commands: list[Any], index: int,
                get: Callable[[str], np.ndarray]) -> int:
    """How far down from ``index`` the history undoes."""
    copy = document.snapshot()
    at = index
    while at > 0:
        command = _build(commands[at - 1], get)
        if command is None or not _step(command.undo, copy):
            break
        at -= 1
    return at


def _redo_reach(document: Document, commands: list[Any], index: int, low: int,
                get: Callable[[str], np.ndarray]) -> int | None:
    """Undo down to ``low`` (known to go through), then how far up the history redoes."""
    copy = document.snapshot()
    built = [_build(data, get) for data in commands]
    for command in reversed(built[low:index]):
        if command is None or not _step(command.undo, copy):
            return None  # not as before: trust none of it
    high = low
    while high < len(built):
        command = built[high]
        if command is None or not _step(command.do, copy):
            break
        high += 1
    return high


def _build(data: Any, get: Callable[[str], np.ndarray]) -> Command | None:
    if data is None:
        return None
    try:
        return command_from_dict(data, get)
    except Exception:  # noqa: BLE001  (a damaged entry or a damaged diff it names)
        return None


def _step(action: Callable[[Document], None], copy: Document) -> bool:
    try:
        action(copy)
    except Exception:  # noqa: BLE001  (an entry that does not apply: it ends the replay)
        return False
    return (copy.width, copy.height) != (0, 0)


def _history_problem(commands: list[Any], index: int, low: int, high: int) -> str:
    """One line: which entry is damaged and what can no longer be undone or redone."""
    count = len(commands)
    bad = low - 1 if low > 0 else high
    lost = []
    if low:
        lost.append(f"Undo now goes back {_edits(index - low)}, not {index}")
    if high < count:
        lost.append(f"{_edits(count - high)} undone before saving can no longer be redone")
    data = commands[bad] if 0 <= bad < count else None
    text = data.get("text") if isinstance(data, dict) else None
    named = (f" (“{''.join(c if c.isprintable() else '?' for c in text[:40])}”)"
             if isinstance(text, str) and text else "")
    return (f"Edit {bad + 1} of {count} in its history{named} cannot be read: "
            + "; ".join(lost) + ". The picture is as last saved.")


def _edits(n: int) -> str:
    return f"{n} edit" if n == 1 else f"{n} edits"


def _selection(value: Any) -> list[int] | None:
    if not value:
        return None
    if (not isinstance(value, list | tuple) or len(value) != 4
            or not all(isinstance(v, int | float) and math.isfinite(v) for v in value)):
        return None  # a damaged selection means "the whole canvas"
    x, y, w, h = (int(v) for v in value)
    return [x, y, w, h] if w > 0 and h > 0 and max(abs(x), abs(y), w, h) <= MAX_OFFSET else None


def read_project(conn: sqlite3.Connection, path: Path,
                 image_source: Callable[[str], np.ndarray],
                 progress: Callable[[float, str], None] | None = None) -> Project:
    """Read the project in ``conn`` (inside a transaction) as far as it can be read;
    ``progress(fraction, what)`` hears how far along (see ``ProjectStore.load``).

    Raises
    ------
    ProjectCorruptError
        The document itself cannot be read (one line says why).
    """
    reader = _Reader(conn, path, image_source, progress)
    meta: dict[str, str] = {}
    try:
        meta = {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}
    except sqlite3.DatabaseError:
        reader.problems.append("The project's details (dates, save count) could not be read.")
    try:
        document = reader.document()
    except RecursionError:
        raise ProjectCorruptError(f"“{path.name}” is damaged and cannot be opened (its "
                                  "document is nested too deeply to be read).") from None
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, MemoryError,
            BlobDamagedError) as exc:
        raise ProjectCorruptError(f"“{path.name}” is damaged and cannot be opened "
                                  f"({_reason(exc)}).") from None
    reader.progress(0.65, "gallery")
    log = reader.log()
    document.log = log
    reader.progress(0.75, "history")
    stack = reader.undo_stack(document)
    reader.progress(1.0, "history")
    return Project(document, stack, log, meta, path, tuple(reader.problems))


def _reason(exc: BaseException) -> str:
    """A short, printable reason for one line of message (never the file's raw bytes)."""
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
        return "its document is not valid JSON"
    if isinstance(exc, MemoryError):
        return "it claims more memory than there is"
    if isinstance(exc, RecursionError):
        return "its contents are nested too deeply"
    if isinstance(exc, sqlite3.DatabaseError):
        return "its database structure is damaged"
    text = str(exc).splitlines()[0].strip("'\" ") if str(exc).strip() else ""
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if text and len(text) < 120 else type(exc).__name__


reason = _reason
