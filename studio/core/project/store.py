"""``.studio`` project files: one SQLite database per project.

What a file holds: content-addressed image blobs (key = ``Pixels.sha256`` of the array, PNG
compressed, an image used twice is stored once; big images as 512x512 tiles, so a save after
a small stroke re-encodes one tile), the document (canvas, layers as blob refs,
masks, prompts, sliders, selection), the generation log tree, the undo history (commands
with their pixel diffs, and the current index, so the last edits can be undone after a
reopen), thumbnails and a ``meta`` table. ``PRAGMA user_version`` is the schema version
(see ``studio.core.project.migrations``).

Safety: a save is one SQLite transaction in WAL mode, so a crash or ``kill -9`` at any
moment leaves the last saved state readable. A new file is written as ``path.tmp`` and
moved into place with ``os.replace``; a save that fails (a full disk) leaves neither the
``.tmp`` nor journal files behind. Files from a newer version are refused; damaged files
open as far as they can be read (``studio.core.project.reader``: damaged layers marked,
``Project.problems`` says what was lost) or are refused with one line; either way they are
never written to.

Cost: a save hashes and writes what changed. The blobs (``studio.core.project.blobs``)
are content addressed; the undo history's diffs are frozen arrays whose hashes are
remembered (``blobs.HASHES``); history rows that did not change are not rewritten.

Threads: ``ProjectStore.snapshot`` (on the GUI thread) copies what can still change;
``ProjectStore.write`` then works from the snapshot alone, on any thread.
"""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

import studio.core.document.edits  # noqa: F401  (registers the command types the history holds)
from studio.core.document.layers import Document
from studio.core.document.undo import UndoStack
from studio.core.errors import (
    ProjectCorruptError,
    ProjectNotFoundError,
    ProjectSaveError,
    ProjectVersionError,
    StudioError,
)
from studio.core.project.blobs import (
    HASHES,
    PNG_LEVEL,
    BlobDamagedError,
    decode_array,
    encode_array,
    load_blob,
    put_blob,
    tile_refs,
)
from studio.core.project.generation_log import GenerationLog, GenerationRecord
from studio.core.project.migrations import APPLICATION_ID, CURRENT_VERSION, create_schema, migrate
from studio.core.project.reader import READ_ERRORS, Project, read_project, reason

__all__ = ["AUTOSAVE_SUFFIX", "Project", "ProjectSnapshot", "ProjectStore", "SaveReport",
           "autosave_path", "decode_array", "encode_array", "find_autosave",
           "is_newer_than_saved"]

AUTOSAVE_SUFFIX = ".autosave"
SQLITE_MAGIC = b"SQLite format 3\x00"
THUMBNAIL_SIZE = 256
DOCUMENT_THUMBNAIL = "document"
_TOKEN = "\x00array:"  # stands for an array in a snapshot until the writer hashes it


def _thumbnail_png(image: np.ndarray) -> bytes:
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(image))
    img.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=PNG_LEVEL)
    return buf.getvalue()


# A token as json.dumps writes a whole string: inside a user's text it could only appear
# with its quotes escaped (``\"``), which this does not match.
_TOKEN_JSON = re.compile(r'"\\u0000array:(\d+)"')


def _dumps_resolved(value: Any, keys: list[str]) -> str:
    """``value`` as JSON with its array tokens replaced by content hashes, in one pass over
    the text rather than a walk of the tree."""
    return _TOKEN_JSON.sub(lambda m: f'"{keys[int(m[1])]}"', json.dumps(value))


# -- values ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProjectSnapshot:
    """Everything a save writes, detached from the live document (see ``snapshot``)."""

    document: Document
    document_data: dict[str, Any]
    undo_data: dict[str, Any]
    arrays: tuple[np.ndarray, ...] = field(repr=False)
    log: GenerationLog = field(repr=False)
    taken_at: float = 0.0
    undo_index: int = 0


@dataclass(frozen=True)
class SaveReport:
    """What a save wrote."""

    path: Path
    seconds: float
    blobs_written: int
    image_hashes: frozenset[str]


def autosave_path(path: str | os.PathLike[str]) -> Path:
    """The side file autosaves of ``path`` go to: ``P.studio.autosave``."""
    return Path(str(path) + AUTOSAVE_SUFFIX)


def _sidecars(path: Path) -> list[Path]:
    return [Path(str(path) + suffix) for suffix in ("-wal", "-shm", "-journal")]


def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        # Opened read-write but with writes refused: a read-only SQLite connection could
        # not remove the WAL side files it creates, and would leave them behind.
        uri = f"file:{quote(str(path.resolve()))}?mode=rw"
        conn = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
        return conn
    return sqlite3.connect(str(path), timeout=30, isolation_level=None,
                           check_same_thread=False)


def _fold_wal(path: Path) -> None:
    """Best effort: move committed WAL content of ``path`` into the file itself."""
    wal = Path(str(path) + "-wal")
    if not wal.exists() or wal.stat().st_size == 0:
        return
    try:
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=rw", uri=True)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        pass


def _describe(path: Path) -> str:
    return f"“{path.name}”"


def _newer_version_error(path: Path, version: int) -> ProjectVersionError:
    return ProjectVersionError(
        f"{_describe(path)} was saved by a newer version of Latent Studio (project "
        f"format {version}; this version reads up to {CURRENT_VERSION}).",
        hint="Update Latent Studio to open it.")


class ProjectStore:
    """Reads and writes ``.studio`` project files. Stateless: safe from any thread."""

    # -- saving ------------------------------------------------------------------------
    @staticmethod
    def snapshot(document: Document, undo_stack: UndoStack | None = None,
                 log: GenerationLog | None = None) -> ProjectSnapshot:
        """Copy what a save needs; call on the thread that edits the document.

        Layer arrays are copied (they change as the user paints); the arrays held by
        commands and the log are never changed in place, so they are shared.
        """
        log = log if log is not None else document.log
        doc = document.snapshot()
        doc.log = log.snapshot()
        live: dict[int, np.ndarray] = {}
        for old, new in zip(document.layers, doc.layers, strict=True):
            live[id(old.pixels)] = new.pixels
            if old.mask is not None and new.mask is not None:
                live[id(old.mask)] = new.mask
        arrays: list[np.ndarray] = []
        slots: dict[int, int] = {}

        def put(array: np.ndarray) -> str:
            array = live.get(id(array), array)
            slot = slots.get(id(array))
            if slot is None:
                slot = slots[id(array)] = len(arrays)
                arrays.append(array)
            return f"{_TOKEN}{slot}"

        document_data = doc.to_dict(put)
        undo_data = (undo_stack.to_dict(put) if undo_stack is not None
                     else {"index": 0, "commands": []})
        return ProjectSnapshot(doc, document_data, undo_data, tuple(arrays), doc.log,
                               time.time(), undo_stack.index if undo_stack is not None else 0)

    @classmethod
    def save(cls, path: str | os.PathLike[str], document: Document,
             undo_stack: UndoStack | None = None,
             log: GenerationLog | None = None) -> SaveReport:
        """Snapshot and write in one call (on the calling thread); marks the stack clean."""
        report = cls.write(path, cls.snapshot(document, undo_stack, log))
        if undo_stack is not None:
            undo_stack.set_clean()
        return report

    @classmethod
    def autosave(cls, path: str | os.PathLike[str], snapshot: ProjectSnapshot) -> SaveReport:
        """Write ``snapshot`` to the autosave side file of ``path`` (any thread)."""
        return cls.write(autosave_path(path), snapshot, thumbnails=False,
                         extra_meta={"autosave_of": Path(path).name})

    @classmethod
    def write(cls, path: str | os.PathLike[str], snapshot: ProjectSnapshot, *,
              thumbnails: bool = True, extra_meta: dict[str, str] | None = None,
              replace: bool = False) -> SaveReport:
        """Write a snapshot to ``path`` in one transaction (any thread).

        An existing project is updated in place (only new images are encoded). With
        ``replace=True`` (a "Save As" the user confirmed over another file) a new file is
        written next to it and moved over it instead, whatever the old file was.

        Raises
        ------
        ProjectVersionError, ProjectCorruptError
            ``path`` exists but is from a newer version or damaged (and ``replace`` is
            false); it is not touched.
        ProjectSaveError
            The disk refused the write; the last saved state is intact.
        """
        path = Path(path)
        start = time.perf_counter()
        keys = [HASHES.key(a) for a in snapshot.arrays]
        job = _SaveJob(path, snapshot, keys, thumbnails, extra_meta or {})
        try:
            if path.exists() and not replace:
                cls._check_file(path)
                written = cls._write_in_place(path, job)
            else:
                written = cls._write_new(path, job)
        except StudioError:
            raise
        except sqlite3.DatabaseError as exc:
            if "malformed" in str(exc) or "not a database" in str(exc):
                raise ProjectCorruptError(
                    f"Cannot save to {_describe(path)}: the file is damaged.",
                    hint="Save the project under another name.") from exc
            raise ProjectSaveError(f"Could not save {_describe(path)}: {exc}.",
                                   hint="The last saved version is intact.") from exc
        except OSError as exc:
            raise ProjectSaveError(f"Could not save {_describe(path)}: {exc.strerror or exc}.",
                                   hint="The last saved version is intact.") from exc
        return SaveReport(path, time.perf_counter() - start, written,
                          frozenset(snapshot.log.image_hashes()))

    @staticmethod
    def _write_in_place(path: Path, job: _SaveJob) -> int:
        conn = _connect(path)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            written = job.run(conn)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError:
                pass  # a reader holds the WAL; the data is safe in it and is folded in later
            return written
        except BaseException:
            conn.close()
            _fold_wal(path)  # a failed save (disk full) leaves no -wal/-shm beside the file
            raise
        finally:
            conn.close()

    @staticmethod
    def _write_new(path: Path, job: _SaveJob) -> int:
        tmp = Path(str(path) + ".tmp")
        if path.exists():
            _fold_wal(path)  # replacing a file: its side files must not outlive it
        # Side files of ``path`` without ``path`` are leftovers; SQLite would apply a
        # stale WAL to the new file, so they go before it moves in.
        for stale in [tmp, *_sidecars(tmp), *_sidecars(path)]:
            stale.unlink(missing_ok=True)
        try:
            conn = _connect(tmp)
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
                written = job.run(conn)
            finally:
                conn.close()  # the last connection folds the WAL into the file, deletes it
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            # A failed save (disk full, a crash in the writer) leaves nothing beside the
            # project: not the half-written file, nor its journal.
            for part in [tmp, *_sidecars(tmp)]:
                try:
                    part.unlink(missing_ok=True)
                except OSError:
                    pass
            raise
        try:
            dir_fd = os.open(path.parent, os.O_RDONLY)
        except OSError:
            return written
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)
        return written

    # -- checking --------------------------------------------------------------------------
    @staticmethod
    def _check_file(path: Path) -> int:
        """The schema version of an existing project file; raises if it cannot be used."""
        try:
            with open(path, "rb") as fh:
                head = fh.read(100)
        except OSError as exc:
            raise ProjectCorruptError(
                f"Cannot read {_describe(path)}: {exc.strerror or exc}.") from exc
        if len(head) < 100 or not head.startswith(SQLITE_MAGIC):
            raise ProjectCorruptError(
                f"{_describe(path)} is not a Latent Studio project, or it is damaged.")
        app_id = int.from_bytes(head[68:72], "big")
        version = int.from_bytes(head[60:64], "big")
        if app_id != APPLICATION_ID:
            raise ProjectCorruptError(
                f"{_describe(path)} is a database but not a Latent Studio project.")
        if version > CURRENT_VERSION:
            raise _newer_version_error(path, version)
        return version

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike[str],
             progress: Callable[[float, str], None] | None = None) -> Project:
        """Open a project.

        Parameters
        ----------
        progress
            Called on the reading thread as the read goes on: the fraction done (0..1) and
            what is being read (``"checking"``, ``"layers"``, ``"gallery"``, ``"history"``),
            once per layer while the layers are read.

        Raises
        ------
        ProjectNotFoundError, ProjectVersionError, ProjectCorruptError
            With one clear message; the file is never written to.
        """
        path = Path(path)
        if not path.is_file():
            raise ProjectNotFoundError(f"There is no project at {path}.")
        cls._check_file(path)

        def image_source(sha256: str) -> np.ndarray:
            return ProjectStore.read_image(path, sha256)

        conn: sqlite3.Connection | None = None
        try:
            conn = _connect(path, readonly=True)
            conn.execute("BEGIN")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > CURRENT_VERSION:  # the header may be stale while a WAL is pending
                raise _newer_version_error(path, version)
            if progress is not None:
                progress(0.0, "checking")
            if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise ProjectCorruptError(f"{_describe(path)} is damaged and cannot be opened.")
            source = conn
            if version < CURRENT_VERSION:
                # Migrate a copy in memory: the file itself changes only at the next save.
                source = sqlite3.connect(":memory:", isolation_level=None)
                conn.backup(source)
                source.execute("BEGIN")
                migrate(source, version)
                source.execute("COMMIT")
                source.execute("BEGIN")
            project = read_project(source, path, image_source, progress)
            if source is not conn:
                source.close()
            return project
        except StudioError:
            raise
        except READ_ERRORS as exc:
            raise ProjectCorruptError(
                f"{_describe(path)} is damaged and cannot be opened ({reason(exc)}).") from None
        finally:
            if conn is not None:
                conn.close()

    # -- single reads ----------------------------------------------------------------------
    @staticmethod
    def read_image(path: str | os.PathLike[str], sha256: str) -> np.ndarray:
        """One stored image (or any array) by content hash; ``KeyError`` if absent or damaged."""
        conn = _connect(Path(path), readonly=True)
        try:
            conn.execute("BEGIN")
            return load_blob(conn, sha256)
        except BlobDamagedError as exc:
            raise KeyError(str(exc)) from None
        finally:
            conn.close()

    @staticmethod
    def read_thumbnail(path: str | os.PathLike[str],
                       key: str = DOCUMENT_THUMBNAIL) -> np.ndarray | None:
        """A thumbnail: of the document (default) or of a generated image by its hash."""
        conn = _connect(Path(path), readonly=True)
        try:
            row = conn.execute("SELECT png FROM thumbnails WHERE key = ?", (key,)).fetchone()
        finally:
            conn.close()
        return decode_array("png", row[0]) if row else None

    @staticmethod
    def read_meta(path: str | os.PathLike[str]) -> dict[str, str]:
        """The ``meta`` table (``saved_at``, ``created_at``, ``save_count``, ...)."""
        conn = _connect(Path(path), readonly=True)
        try:
            return dict(conn.execute("SELECT key, value FROM meta").fetchall())
        finally:
            conn.close()

    # -- autosave --------------------------------------------------------------------------
    @classmethod
    def is_newer_than_saved(cls, path: str | os.PathLike[str]) -> bool:
        """Whether the autosave of ``path`` holds work saved after ``path`` itself."""
        side = autosave_path(path)
        if not side.is_file():
            return False
        try:
            auto = float(cls.read_meta(side).get("saved_at", "0"))
        except (sqlite3.DatabaseError, ValueError):
            return False
        if not Path(path).is_file():
            return True
        try:
            saved = float(cls.read_meta(path).get("saved_at", "0"))
        except (sqlite3.DatabaseError, ValueError):
            return True
        return auto > saved

    @classmethod
    def find_autosave(cls, path: str | os.PathLike[str]) -> Path | None:
        """The autosave file to offer for recovery, or ``None`` when it is not newer."""
        return autosave_path(path) if cls.is_newer_than_saved(path) else None

    @staticmethod
    def discard_autosave(path: str | os.PathLike[str]) -> None:
        """Delete the autosave side file of ``path`` (after a save, or when declined)."""
        side = autosave_path(path)
        for p in [side, *_sidecars(side)]:
            p.unlink(missing_ok=True)


# -- the writer --------------------------------------------------------------------------
class _SaveJob:
    """One save of a snapshot into an open connection, as a single transaction."""

    def __init__(self, path: Path, snapshot: ProjectSnapshot, keys: list[str],
                 thumbnails: bool, extra_meta: dict[str, str]) -> None:
        self.path = path
        self.snap = snapshot
        self.keys = keys
        self.thumbnails = thumbnails
        self.extra_meta = extra_meta

    def run(self, conn: sqlite3.Connection) -> int:
        snap, keys = self.snap, self.keys
        document_json = _dumps_resolved(snap.document_data, keys)
        undo_rows = [_dumps_resolved(c, keys) for c in snap.undo_data["commands"]]
        undo_index = int(snap.undo_data["index"])
        records = snap.log.records
        log_images = snap.log.image_hashes()
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > CURRENT_VERSION:
                raise _newer_version_error(self.path, version)
            if version == 0:
                create_schema(conn)
            elif version < CURRENT_VERSION:
                migrate(conn, version)
            existing = {row[0] for row in conn.execute("SELECT sha256 FROM blobs")}
            written = 0
            for key, array in zip(keys, snap.arrays, strict=True):
                written += put_blob(conn, key, array, existing)
            for key in sorted(log_images - existing):
                written += put_blob(conn, key, snap.log.image(key), existing)
            used = set(keys) | log_images
            used |= tile_refs(conn, used)
            conn.executemany("DELETE FROM blobs WHERE sha256 = ?",
                             ((k,) for k in existing - used))
            conn.execute("INSERT OR REPLACE INTO document (id, json) VALUES (1, ?)",
                         (document_json,))
            self._write_log(conn, records)
            self._write_undo(conn, undo_rows, undo_index)
            if self.thumbnails:
                self._write_thumbnails(conn, records)
            self._write_meta(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return written

    @staticmethod
    def _write_log(conn: sqlite3.Connection, records: Iterable[GenerationRecord]) -> None:
        conn.execute("DELETE FROM generations")
        conn.executemany(
            "INSERT INTO generations (id, seq, parent_id, relation, deleted, created, json)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((r.id, seq, r.parent_id, r.relation, int(r.deleted), r.created,
              json.dumps(r.to_dict())) for seq, r in enumerate(records)))

    @staticmethod
    def _write_undo(conn: sqlite3.Connection, rows: list[str], index: int) -> None:
        """Write the history rows that changed since the last save (most are as they were:
        a save costs what changed, not the length of the history)."""
        stored = dict(conn.execute("SELECT pos, json FROM undo_commands"))
        conn.executemany("INSERT OR REPLACE INTO undo_commands (pos, json) VALUES (?, ?)",
                         ((pos, text) for pos, text in enumerate(rows)
                          if stored.get(pos) != text))
        conn.execute("DELETE FROM undo_commands WHERE pos >= ?", (len(rows),))
        conn.execute("INSERT OR REPLACE INTO undo_state (id, idx) VALUES (1, ?)", (index,))

    def _write_thumbnails(self, conn: sqlite3.Connection,
                          records: list[GenerationRecord]) -> None:
        have = {row[0] for row in conn.execute("SELECT key FROM thumbnails")}
        wanted = {key for r in records for key in r.image_hashes}
        for key in sorted(wanted - have):
            conn.execute("INSERT INTO thumbnails (key, png) VALUES (?, ?)",
                         (key, _thumbnail_png(self.snap.log.image(key))))
        conn.executemany("DELETE FROM thumbnails WHERE key = ?",
                         ((k,) for k in have - wanted - {DOCUMENT_THUMBNAIL}))
        doc = self.snap.document
        if doc.layers:
            conn.execute("INSERT OR REPLACE INTO thumbnails (key, png) VALUES (?, ?)",
                         (DOCUMENT_THUMBNAIL, _thumbnail_png(doc.composite())))

    def _write_meta(self, conn: sqlite3.Connection) -> None:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        now = repr(time.time())
        meta.setdefault("created_at", now)
        meta.update(self.extra_meta)
        meta.update({"app": "Latent Studio", "format": str(CURRENT_VERSION), "saved_at": now,
                     "save_count": str(int(meta.get("save_count", "0")) + 1)})
        conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                         meta.items())


def find_autosave(path: str | os.PathLike[str]) -> Path | None:
    """Module-level shortcut for ``ProjectStore.find_autosave``."""
    return ProjectStore.find_autosave(path)


def is_newer_than_saved(path: str | os.PathLike[str]) -> bool:
    """Module-level shortcut for ``ProjectStore.is_newer_than_saved``."""
    return ProjectStore.is_newer_than_saved(path)
