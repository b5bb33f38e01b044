"""The wheel is the product: built from the tracked layout, installed away from the checkout,
it lists the embedded models and generates offline from the resources it carries."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# What the build reads; copied so the build neither writes into the checkout (build/,
# *.egg-info) nor sees anything that is not in the repository.
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "studio", "resources")

pytestmark = [pytest.mark.slow, pytest.mark.packaging]


def _git_files(folder: str) -> set[str] | None:
    try:
        out = subprocess.run(["git", "ls-files", "--", folder], cwd=REPO, capture_output=True,
                             text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {line for line in out.splitlines() if line}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in BUILD_INPUTS:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-q", "-w", str(out), str(src)],
                   check=True, timeout=300)
    (whl,) = out.glob("latent_studio-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel installed into its own folder (the dependencies are the test venv's)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile",
                    "--disable-pip-version-check", "-q", "--target", str(target), str(wheel)],
                   check=True, timeout=300)
    return target


def _run(installed: Path, cwd: Path, *args: str, timeout: int = 900):
    """Runs the installed ``studio`` console script, from a folder outside the checkout,
    with the installed package first on the path (before the editable install's finder).
    The limit only catches a hang: a 2-step generation takes ~10 s of CPU, but on a shared
    machine at nice 19 it took over 240 s of wall time (the fresh-machine check, 05:25)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIO_", "PYTHON"))}
    env.update(PYTHONPATH=str(installed), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               STUDIO_CACHE_DIR=str(cwd / "cache"), STUDIO_CONFIG_DIR=str(cwd / "config"),
               HF_HOME=str(cwd / "hf-home"), PYTHONDONTWRITEBYTECODE="1")
    script = installed / "bin" / "studio"
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_the_wheel_carries_every_resource_and_both_entry_points(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    carried = {n.removeprefix("studio/") for n in names if n.startswith("studio/resources/")}
    tracked = _git_files("resources")
    if tracked is not None and tracked:
        assert tracked <= carried, f"missing from the wheel: {sorted(tracked - carried)[:10]}"
    for must in ("resources/models/studio-tiny-diffusion/model_index.json",
                 "resources/configs/sd15", "resources/sliders/smile.json",
                 "resources/icons/app.svg", "resources/styles/studio.qss"):
        assert any(n == must or n.startswith(must + "/") for n in carried), must
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert not any(n.startswith(("tests/", "resources/")) for n in names)
    assert "[console_scripts]\nstudio = studio.cli:main" in entry_points
    assert "[gui_scripts]\nstudio-gui = studio.cli:main" in entry_points


def test_the_installed_wheel_lists_and_generates_from_its_own_resources(installed, tmp_path):
    probe = subprocess.run(
        [sys.executable, "-c", "import studio, studio.paths as p; "
         "print(studio.__file__); print(p.resources_dir())"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**{k: v for k, v in os.environ.items() if not k.startswith(("STUDIO_", "PYTHON"))},
             "PYTHONPATH": str(installed)})
    assert probe.returncode == 0, probe.stderr
    module_file, resources = (Path(line) for line in probe.stdout.split())
    assert module_file.is_relative_to(installed), f"imported the checkout: {module_file}"
    assert resources == (installed / "studio" / "resources").resolve()

    models = _run(installed, tmp_path, "models")
    assert models.returncode == 0, models.stderr
    line = next(ln for ln in models.stdout.splitlines() if ln.startswith("studio-tiny-diffusion"))
    assert "embedded" in line and str(installed) in line

    out = tmp_path / "red.png"
    gen = _run(installed, tmp_path, "generate", "a red circle", "--seed", "3", "--steps", "2",
               "--device", "cpu", "--dtype", "float32", "--no-hf-cache", "--quiet",
               "-o", str(out))
    assert gen.returncode == 0, gen.stderr
    from PIL import Image

    with Image.open(out) as im:
        assert im.size == (64, 64)
        assert "studio-tiny-diffusion" in im.info.get("parameters", "")
