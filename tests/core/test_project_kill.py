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
