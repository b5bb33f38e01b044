"""The layer rules of ARCHITECTURE.md, checked rather than hoped for."""

from __future__ import annotations

import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import studio

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "diffusers", "transformers")


def _modules(package: str) -> list[str]:
    pkg = __import__(package, fromlist=["_"])
    return [m.name for m in pkgutil.walk_packages(pkg.__path__, package + ".")]


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is part of the test dependencies"
    proc = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("entry", ["studio.app", "studio.cli", "studio.core", "studio.ui",
                                   "studio.session", "studio.settings"])
def test_startup_modules_do_not_import_heavy_libraries(entry):
    """The window must appear before torch and diffusers load: nothing on the start-up path
    imports them at module level."""
    modules = [entry]
    if entry in ("studio.core", "studio.ui", "studio.session", "studio.cli"):
        modules += _modules(entry)
    code = (
        "import sys, importlib\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        f"bad = [h for h in {HEAVY!r} if h in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"{entry} imported {proc.stdout.strip()} at start-up"


def test_package_version_is_exposed():
    assert studio.__version__
