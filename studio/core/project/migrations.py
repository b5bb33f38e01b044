"""Schema of ``.studio`` project files and the migration chain between its versions.

The schema version is ``PRAGMA user_version``. Each step ``MIGRATIONS[v]`` turns a version
``v`` database into version ``v + 1``; steps run inside the caller's transaction, so a file
is either fully migrated or untouched.

Version history
---------------
1. meta, blobs, document, generations (id, seq, json) and the whole undo history as one
   JSON row in ``history``.
2. generations get ``parent_id``, ``relation``, ``deleted`` and ``created`` columns (the
   gallery and the tree are queried without parsing JSON); the undo history becomes one
   row per command (``undo_commands``) plus ``undo_state``; ``thumbnails`` added; big
   images may be stored as tiles (blob codec ``"tiles"``: a JSON manifest of tile keys).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

CURRENT_VERSION = 2
APPLICATION_ID = 0x4C53544F  # "LSTO": tells our files from other SQLite databases

SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (sha256 TEXT PRIMARY KEY, codec TEXT NOT NULL,
                                  data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS thumbnails (key TEXT PRIMARY KEY, png BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS document (id INTEGER PRIMARY KEY CHECK (id = 1),
                                     json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS generations (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, parent_id TEXT,
    relation TEXT NOT NULL DEFAULT '', deleted INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL DEFAULT 0, json TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS generations_parent ON generations (parent_id);
CREATE TABLE IF NOT EXISTS undo_commands (pos INTEGER PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS undo_state (id INTEGER PRIMARY KEY CHECK (id = 1),
                                       idx INTEGER NOT NULL);
"""

SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE blobs (sha256 TEXT PRIMARY KEY, codec TEXT NOT NULL, data BLOB NOT NULL);
CREATE TABLE document (id INTEGER PRIMARY KEY CHECK (id = 1), json TEXT NOT NULL);
CREATE TABLE generations (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, json TEXT NOT NULL);
CREATE TABLE history (id INTEGER PRIMARY KEY CHECK (id = 1), json TEXT NOT NULL);
"""
"""The version 1 schema, kept to build test fixtures and to document the chain."""


def _execute_script(conn: sqlite3.Connection, script: str) -> None:
    # ``executescript`` would COMMIT the caller's transaction; run statement by statement.
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the current schema in an empty database (inside the caller's transaction)."""
    _execute_script(conn, SCHEMA_V2)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {CURRENT_VERSION}")


def _v1_to_v2(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE thumbnails (key TEXT PRIMARY KEY, png BLOB NOT NULL)")
    for column in ("parent_id TEXT", "relation TEXT NOT NULL DEFAULT ''",
                   "deleted INTEGER NOT NULL DEFAULT 0", "created REAL NOT NULL DEFAULT 0"):
        conn.execute(f"ALTER TABLE generations ADD COLUMN {column}")
    rows = conn.execute("SELECT id, json FROM generations").fetchall()
    for record_id, text in rows:
        data = json.loads(text)
        conn.execute(
            "UPDATE generations SET parent_id = ?, relation = ?, deleted = ?, created = ?"
            " WHERE id = ?",
            (data.get("parent_id"), data.get("relation", ""), int(bool(data.get("deleted"))),
             float(data.get("created", 0.0)), record_id))
    conn.execute("CREATE INDEX generations_parent ON generations (parent_id)")
    conn.execute("CREATE TABLE undo_commands (pos INTEGER PRIMARY KEY, json TEXT NOT NULL)")
    conn.execute("CREATE TABLE undo_state (id INTEGER PRIMARY KEY CHECK (id = 1),"
                 " idx INTEGER NOT NULL)")
    row = conn.execute("SELECT json FROM history WHERE id = 1").fetchone()
    history: dict[str, Any] = json.loads(row[0]) if row else {"index": 0, "commands": []}
    for pos, command in enumerate(history.get("commands", [])):
        conn.execute("INSERT INTO undo_commands (pos, json) VALUES (?, ?)",
                     (pos, json.dumps(command)))
    conn.execute("INSERT INTO undo_state (id, idx) VALUES (1, ?)",
                 (int(history.get("index", 0)),))
    conn.execute("DROP TABLE history")


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _v1_to_v2}
"""``MIGRATIONS[v]`` upgrades a version ``v`` database to ``v + 1``."""


def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Upgrade a database from ``version`` to ``CURRENT_VERSION`` in the open transaction."""
    while version < CURRENT_VERSION:
        MIGRATIONS[version](conn)
        version += 1
        conn.execute(f"PRAGMA user_version = {version}")
