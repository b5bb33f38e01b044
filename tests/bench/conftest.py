"""The one ``studio bench --smoke`` run the bench tests share (a minute and more on 2 cores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """One ``studio bench --smoke --json`` run, as a user would start it: (its printed
    table, the figures it wrote)."""
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "figures.json"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HF_HUB_OFFLINE": "1",
           "XDG_CONFIG_HOME": str(tmp / "config")}
    proc = subprocess.run(
        [sys.executable, "-m", "studio", "bench", "--smoke", "--json", str(out),
         "--cache-dir", str(tmp / "cache")],
        env=env, capture_output=True, text=True, timeout=900,
        cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text(encoding="utf-8"))
