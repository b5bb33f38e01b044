"""Fuzzing project open: damaged bytes, damaged rows and hostile JSON in a real project.

Property: ``ProjectStore.load`` gives a project that can be used (looked at, undone, redone,
its gallery browsed), or raises a ``StudioError`` with a one-line message; never another
exception, and the file is never modified.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
from functools import cache
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from studio.core.errors import StudioError
from studio.core.project.store import ProjectStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
from test_project import build_project  # noqa: E402

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)


@cache
def project_bytes() -> bytes:
    folder = Path(tempfile.mkdtemp(prefix="fuzz-project-"))
    doc, stack, _ = build_project()
    ProjectStore.save(folder / "seed.studio", doc, stack)
    return (folder / "seed.studio").read_bytes()


def check_open(path: Path) -> None:
    before = path.read_bytes()
    try:
        project = ProjectStore.load(path)
    except StudioError as err:
        assert "\n" not in str(err), str(err)
    else:
        doc, stack, log = project.document, project.undo_stack, project.log
        doc.composite()
        stack.set_index(0)
        stack.set_index(stack.count)
        doc.composite()
        for record in log:
            for key in record.image_hashes:
                log.image(key)
    assert path.read_bytes() == before


@given(flips=st.lists(st.tuples(st.integers(100, 10**9), st.integers(1, 255)),
                      min_size=1, max_size=12),
       cut=st.none() | st.integers(100, 10**9))
def test_flipped_bytes_and_truncations(flips, cut):
    data = bytearray(project_bytes())
    for at, xor in flips:
        data[at % len(data)] ^= xor
    if cut is not None:
        data = data[: cut % len(data)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "f.studio"
        path.write_bytes(bytes(data))
        check_open(path)


TABLES = {"document": "json", "generations": "json", "undo_commands": "json",
          "undo_state": "idx", "meta": "value", "blobs": "data", "thumbnails": "png"}


@given(table=st.sampled_from(sorted(TABLES)), row=st.integers(0, 30),
       value=JSON.map(lambda v: ("json", v)) | st.binary(max_size=64)
       | st.integers(-(2**63), 2**63 - 1) | st.text(),
       path_in_json=st.lists(st.integers(0, 10) | st.text(max_size=6), max_size=4))
def test_hostile_values_in_rows(table, row, value, path_in_json):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "h.studio"
        path.write_bytes(project_bytes())
        conn = sqlite3.connect(path)
        column = TABLES[table]
        rowids = [r[0] for r in conn.execute(f"SELECT rowid FROM {table}")]
        if rowids:
            rowid = rowids[row % len(rowids)]
            if isinstance(value, tuple) and column == "json" and path_in_json:
                # put the value somewhere inside the stored JSON rather than over all of it
                data = json.loads(conn.execute(f"SELECT json FROM {table} WHERE rowid = ?",
                                               (rowid,)).fetchone()[0])
                node = data
                for step in path_in_json[:-1]:
                    nxt = (node.get(step) if isinstance(node, dict) and isinstance(step, str)
                           else node[step % len(node)] if isinstance(node, list) and node
                           else None)
                    if not isinstance(nxt, dict | list):
                        break
                    node = nxt
                last = path_in_json[-1]
                if isinstance(node, dict):
                    node[str(last)] = value[1]
                elif isinstance(node, list) and node:
                    node[int(last) % len(node) if isinstance(last, int) else 0] = value[1]
                value = json.dumps(data)
            elif isinstance(value, tuple):
                value = json.dumps(value[1])
            with conn:
                conn.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?", (value, rowid))
        conn.close()
        check_open(path)
