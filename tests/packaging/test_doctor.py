"""The window starts or says exactly why not (studio.cli.qtcheck), `studio doctor`, and the
lock files scripts/setup.sh installs with."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from studio.cli import main, qtcheck

REPO = Path(__file__).resolve().parents[2]
LOCKS = REPO / "packaging" / "locks"
TORCH = "2.13.0"


# -- the Qt platform check ---------------------------------------------------------------------
def test_missing_sonames_become_the_apt_and_dnf_lines():
    lines = qtcheck.install_lines(["libxcb-icccm.so.4", "libxcb-keysyms.so.1",
                                   "libxcb-randr.so.0", "libxcb-shape.so.0"])
    assert lines == [
        "Debian/Ubuntu: sudo apt install libxcb-icccm4 libxcb-keysyms1 libxcb-randr0 "
        "libxcb-shape0",
        "Fedora:        sudo dnf install xcb-util-wm xcb-util-keysyms libxcb"]
    assert "apt-file search" in qtcheck.install_lines(["libunheard.so.9"])[-1]


@pytest.mark.parametrize(("env", "platform"), [
    ({}, "xcb"),
    ({"DISPLAY": ":0"}, "xcb"),
    ({"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"}, "wayland"),
    ({"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":0"}, "offscreen"),
    ({"QT_QPA_PLATFORM": "wayland;xcb"}, "wayland"),
])
def test_the_platform_qt_would_load(env, platform):
    assert qtcheck.chosen_platform(env) == platform


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Qt's xcb check is Linux's")
def test_the_report_names_what_ldd_misses_and_the_missing_display(tmp_path, monkeypatch):
    plugin = tmp_path / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    plugin.parent.mkdir(parents=True)
    plugin.write_bytes(b"")
    monkeypatch.setattr(qtcheck, "missing_libraries",
                        lambda lib: ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"])
    report = qtcheck.check({}, root=tmp_path)
    assert not report.ok and report.platform == "xcb"
    message = report.message()
    assert "libxcb-icccm.so.4, libxcb-keysyms.so.1" in message
    assert "sudo apt install libxcb-icccm4 libxcb-keysyms1" in message
    assert "sudo dnf install xcb-util-wm xcb-util-keysyms" in message
    assert "DISPLAY is not set" in message and "xvfb-run -a studio" in message
    assert qtcheck.check({"DISPLAY": ":1"}, root=tmp_path).display_problem is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Qt's xcb check is Linux's")
def test_the_offscreen_plugin_has_its_libraries_here():
    report = qtcheck.check({"QT_QPA_PLATFORM": "offscreen"})
    assert report.plugin is not None and report.plugin.name == "libqoffscreen.so"
    assert report.ok, report.message()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Qt's xcb check is Linux's")
def test_the_window_without_a_display_says_why_instead_of_aborting(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", "STUDIO_SKIP_QT_CHECK")}
    run = subprocess.run([sys.executable, "-m", "studio"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "DISPLAY is not set" in run.stderr and "xvfb-run -a studio" in run.stderr
    assert "Aborted" not in run.stderr and "qt.qpa" not in run.stderr


# -- studio doctor -------------------------------------------------------------------------------
def test_doctor_reports_on_one_screen_with_a_fix_for_each_problem(tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    missing = tmp_path / "no-such-folder"
    rc = main(["doctor", "--device", "cpu", "--model-dir", str(missing), "--no-hf-cache"])
    out = capsys.readouterr().out
    assert rc == 1
    for label in ("Python", "Studio", "torch", "GPU", "Device", "Qt", "Display", "Models",
                  "Disk"):
        assert re.search(rf"^{label}\s", out, re.MULTILINE), f"{label} missing:\n{out}"
    assert "diffusion: 2 (studio-tiny-diffusion, studio-tiny-dit)" in out
    assert f"{missing}  (missing)" in out
    problems = out.split("problem")[-1]
    assert f"the model folder {missing} does not exist" in problems
    if sys.platform.startswith("linux"):
        assert "DISPLAY is not set" in problems and "xvfb-run -a studio" in problems
    assert len(out.splitlines()) < 50  # one screen


# -- the lock files --------------------------------------------------------------------------------
def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (LOCKS / f"{name}.txt").read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            pkg, version = line.split("==", 1)
            pins[pkg.strip().lower().replace("_", "-")] = version.split(";")[0].strip()
    return pins


@pytest.mark.parametrize("name", ["linux-cpu", "linux-cuda", "macos", "windows"])
def test_each_lock_pins_the_tested_torch_within_the_declared_bounds(name):
    from packaging.requirements import Requirement

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        pytest.skip("tomllib is Python 3.11+")
    pins = _pins(name)
    assert pins["torch"].split("+")[0] == TORCH
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    # the locks are compiled with the test extra: its tools are pinned as well
    declared = project["dependencies"] + project["optional-dependencies"]["test"]
    for text in declared:
        req = Requirement(text)
        key = req.name.lower().replace("_", "-")
        assert key in pins, f"{name} lock lacks {key}"
        assert req.specifier.contains(pins[key], prereleases=True), (name, text, pins[key])


def test_the_linux_cpu_lock_is_the_cpu_build_without_cuda_packages():
    pins = _pins("linux-cpu")
    assert pins["torch"] == f"{TORCH}+cpu"
    assert not [p for p in pins if p.startswith("nvidia-")]
    assert [p for p in _pins("linux-cuda") if p.startswith("nvidia-")]


def test_the_locked_torch_resolves_from_the_local_wheel_when_there_is_one(tmp_path):
    """CI: pip's find-links holds the CPU wheel; setup.sh's offline try must find it."""
    links = [p for p in os.environ.get("PIP_FIND_LINKS", "/opt/wheels").split()
             if list(Path(p).glob(f"torch-{TORCH}+cpu-*.whl"))]
    if not links:
        pytest.skip(f"no local torch-{TORCH}+cpu wheel on pip's find-links here")
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index",
                    "--no-deps", "--ignore-installed", "-q", "--report", str(report),
                    "--find-links", links[0], f"torch=={TORCH}"], check=True, timeout=120)
    (item,) = json.loads(report.read_text())["install"]
    assert item["metadata"]["version"] == f"{TORCH}+cpu"
    assert item["download_info"]["url"].startswith("file://")


def test_setup_names_the_locks_when_asked_for_one_that_does_not_exist():
    run = subprocess.run(["bash", str(REPO / "scripts" / "setup.sh")], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "STUDIO_LOCK": "nowhere"})
    assert run.returncode == 2
    assert "linux-cpu" in run.stderr and "windows" in run.stderr


def test_doctor_says_which_server_does_not_answer(capsys):
    import socket

    with socket.socket() as s:  # a loopback port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    rc = main(["doctor", "--device", "cpu", "--no-hf-cache", "--server", url])
    out = capsys.readouterr().out
    assert rc == 1
    assert re.search(rf"^Servers\s+{re.escape(url)}: ", out, re.MULTILINE), out
    assert f"the server {url} does not answer" in out
    assert f"studio servers --check {url}" in out
    assert "diffusion: 2 (studio-tiny-diffusion, studio-tiny-dit)" in out  # the local models still listed
