"""kill -9 during saves: the file always opens with a complete, earlier saved state."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from studio.core.project.store import ProjectStore

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
from save_loop import image, layer_pixels  # noqa: E402

KILLS = 20


def read_lines(proc: subprocess.Popen, until: float, wait_for: str = "") -> list[str]:
    """Lines the process printed before ``until`` (monotonic time), or up to the first
    line starting with ``wait_for``."""
    lines = []
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    while True:
        left = until - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
        *done, buf = buf.split(b"\n")
        lines += [line.decode() for line in done]
        if wait_for and any(line.startswith(wait_for.encode()) for line in done):
            break
    return lines


def check_complete(path: Path, confirmed: int) -> int:
    project = ProjectStore.load(path)
    doc, stack, log = project.document, project.undo_stack, project.log
    n = len(doc.layers)
    assert confirmed <= n <= confirmed + 1, (confirmed, n)
    for i, layer in enumerate(doc.layers, start=1):
        assert layer.name == f"L{i}" and layer.x == i % 7
        np.testing.assert_array_equal(layer.pixels, layer_pixels(i))
    assert len(log) == n and stack.count == n and stack.index == n
    for i, record in enumerate(log, start=1):
        assert record.request.prompt == f"step {i}"
        np.testing.assert_array_equal(log.image(record.image_hashes[0]), image(i))
    if n:
        # The last step undoes (the stroke, then the layer) and redoes exactly.
        stack.undo()
        assert len(doc.layers) == n - 1
        stack.redo()
        np.testing.assert_array_equal(doc.layers[-1].pixels, layer_pixels(n))
    return n


def test_kill_during_saves_leaves_a_complete_saved_state(tmp_path):
    path = tmp_path / "killed.studio"
    rng = random.Random(1234)
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(repo))
    confirmed = 0
    deadline = time.monotonic() + 120
    for run in range(KILLS):
        proc = subprocess.Popen([sys.executable, str(FIXTURES / "save_loop.py"), str(path)],
                                stdout=subprocess.PIPE, env=env)
        try:
            lines = read_lines(proc, time.monotonic() + 15, wait_for="ready")
            assert "ready" in lines, lines
            if run % 3 == 0:
                # Make progress whatever the machine's speed: let one save finish first.
                lines += read_lines(proc, time.monotonic() + 15, wait_for="saved")
            lines += read_lines(proc, time.monotonic() + rng.uniform(0.0, 0.2))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            # Anything it managed to print before dying was saved.
            lines += read_lines(proc, time.monotonic() + 0.05)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        saved = [int(line.split()[1]) for line in lines if line.startswith("saved")]
        if saved:
            confirmed = saved[-1]
        if confirmed == 0 and not path.exists():
            continue
        n = check_complete(path, confirmed)
        confirmed = n  # an unconfirmed save that landed is the new baseline
        assert time.monotonic() < deadline
    assert confirmed >= KILLS // 3, "the writer should have completed several saves"


def _damage_first_layer(path: Path) -> bytes:
    """Flip bytes inside the stored pixels of layer L1, as bit rot would."""
    import json
    import sqlite3

    conn = sqlite3.connect(path)
    key = json.loads(conn.execute("SELECT json FROM document").fetchone()[0])["layers"][0][
        "pixels"]
    blob = conn.execute("SELECT data FROM blobs WHERE sha256 = ?", (key,)).fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    at = bytes(data).find(blob[60:100]) + 20
    assert at > 20
    for i in range(at, at + 8):
        data[i] ^= 0xA5
    path.write_bytes(bytes(data))
    return bytes(data)


def test_kill_while_rescuing_a_damaged_project_keeps_both_files_sound(tmp_path):
    """A damaged project opened as far as it can be read and saved as a copy, killed at
    random moments: the damaged file is never touched, the copy always opens whole."""
    source, copy = tmp_path / "damaged.studio", tmp_path / "rescued.studio"
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(repo))
    proc = subprocess.Popen([sys.executable, str(FIXTURES / "save_loop.py"), str(source)],
                            stdout=subprocess.PIPE, env=env)
    try:
        lines = read_lines(proc, time.monotonic() + 30, wait_for="saved 3")
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert any(line.startswith("saved 3") for line in lines), lines
    base = ProjectStore.load(source)
    assert not base.damaged
    damaged = _damage_first_layer(source)
    assert ProjectStore.load(source).damaged
    rng = random.Random(99)
    checked = 0
    for _run in range(6):
        proc = subprocess.Popen([sys.executable, str(FIXTURES / "save_loop.py"), str(copy),
                                 str(source)], stdout=subprocess.PIPE, env=env)
        try:
            assert "ready" in read_lines(proc, time.monotonic() + 15, wait_for="ready")
            if not copy.exists():  # the first run saves once, so there is a copy to check
                read_lines(proc, time.monotonic() + 15, wait_for="saved")
            read_lines(proc, time.monotonic() + rng.uniform(0.0, 0.4))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        assert source.read_bytes() == damaged
        if not copy.exists():
            continue
        rescued = ProjectStore.load(copy)
        assert not rescued.damaged
        layers = rescued.document.layers
        assert layers[0].name == "(damaged) L1"
        for i, layer in enumerate(layers[1:], start=2):
            assert layer.name == f"L{i}"
            np.testing.assert_array_equal(layer.pixels, layer_pixels(i))
        assert len(rescued.log) == len(layers)
        checked += 1
    assert checked >= 2, "the rescue should have saved its copy several times"
