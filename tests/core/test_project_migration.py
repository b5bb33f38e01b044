"""Opening and saving a project written in the version 1 file format."""

from __future__ import annotations

import shutil
import sqlite3
import sys
from pathlib import Path

import numpy as np

from studio.core.project.migrations import CURRENT_VERSION
from studio.core.project.store import ProjectStore

FIXTURES = Path(__file__).parent / "fixtures"
V1 = FIXTURES / "project_v1.studio"

sys.path.insert(0, str(FIXTURES))
from make_v1_project import fixture_arrays  # noqa: E402


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def check_v1_content(project) -> None:
    a = fixture_arrays()
    doc = project.document
    assert (doc.width, doc.height, doc.selection) == (32, 24, (8, 4, 16, 16))
    assert (doc.prompt, doc.negative_prompt, doc.sliders) == ("a green square", "blurry",
                                                               {"smile": 0.25})
    bg, gen = doc.layers
    assert (bg.name, gen.name, gen.kind, gen.record_id, gen.opacity) == (
        "Background", "Generated", "generated", "r2", 0.75)
    np.testing.assert_array_equal(bg.pixels, a["bg_painted"])
    np.testing.assert_array_equal(gen.pixels, a["gen_layer"])
    np.testing.assert_array_equal(gen.mask, a["mask"])
    r1, r2 = project.log.records
    assert (r2.parent_id, r2.relation, r2.deleted, r1.deleted) == ("r1", "vary", True, False)
    assert r1.request.seed == 1 and r2.request.model_hash == "feedbeef"
    np.testing.assert_array_equal(project.log.image(r1.image_hashes[0]), a["gen"])


def test_v1_fixture_opens_migrated_without_touching_the_file():
    before = V1.read_bytes()
    assert user_version(V1) == 1
    project = ProjectStore.load(V1)
    check_v1_content(project)
    # The history came along: undo the stroke, then the generated layer.
    stack = project.undo_stack
    assert (stack.index, stack.count, stack.undo_text) == (2, 2, "Paint")
    stack.undo()
    np.testing.assert_array_equal(project.document.layers[0].pixels,
                                  fixture_arrays()["bg_original"])
    stack.undo()
    assert [lay.name for lay in project.document.layers] == ["Background"]
    stack.redo()
    stack.redo()
    check_v1_content(project)
    assert V1.read_bytes() == before
    assert sorted(p.name for p in FIXTURES.iterdir() if p.name.startswith("project_v1")) == [
        "project_v1.studio"]


def test_saving_a_v1_project_upgrades_the_file(tmp_path):
    path = tmp_path / "old.studio"
    shutil.copy(V1, path)
    project = ProjectStore.load(path)
    ProjectStore.save(path, project.document, project.undo_stack, project.log)
    assert user_version(path) == CURRENT_VERSION
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert {"undo_commands", "undo_state", "thumbnails"} <= tables and "history" not in tables
    again = ProjectStore.load(path)
    check_v1_content(again)
    again.undo_stack.undo()
    np.testing.assert_array_equal(again.document.layers[0].pixels,
                                  fixture_arrays()["bg_original"])
    assert again.meta["created_at"] == "1700000000.0"  # kept from the v1 file


def test_fixture_script_rebuilds_the_same_content(tmp_path):
    from make_v1_project import build

    path = tmp_path / "rebuilt.studio"
    build(path)
    check_v1_content(ProjectStore.load(path))
