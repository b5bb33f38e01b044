"""``studio doctor``: what this machine gives the studio, on one screen, with a fix for each
problem: Python, the torch build and device, the GPU and its driver, the libraries Qt needs
for a window, the model folders and the models found, the servers and whether they answer,
free disk.

Exit status 0 when nothing needs fixing, 1 otherwise (so a script can ask it).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from studio.cli.common import EXIT_ERROR, EXIT_OK, settings_from_args

NAME = "doctor"
HELP = ("check this machine: Python, torch and the device, GPU, Qt libraries, models, "
        "servers, disk")

LOW_DISK_BYTES = 5 * 1024**3  # an SD 1.5 checkpoint is 2-4 GB, SDXL 7 GB
TORCH_INDEX_HELP = ("bash scripts/setup.sh (or pip install torch --index-url "
                    "https://download.pytorch.org/whl/cpu, .../whl/cu128, .../whl/rocm6.4; "
                    "see the README's Install section)")


@dataclass
class Report:
    """Lines to print, and the problems found, each with its fix."""

    lines: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)

    def row(self, label: str, text: str) -> None:
        self.lines.append(f"{label:<10} {text}")

    def problem(self, what: str, fix: str) -> None:
        self.problems.append((what, fix))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Only the engine flags (--device, --dtype, --model-dir ...): the doctor reports what
    they would give."""


def _python(report: Report) -> None:
    venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
    report.row("Python", f"{platform.python_version()} ({sys.executable}"
                         f"{', virtual environment' if venv else ''}); "
                         f"{platform.system()} {platform.release()} {platform.machine()}")
    import studio
    from studio import __version__
    from studio.paths import resources_dir

    report.row("Studio", f"{__version__} from {Path(studio.__file__).parent}")
    resources = resources_dir()
    if not (resources / "models").is_dir():
        report.problem(f"the bundled resources are missing ({resources})",
                       "reinstall Latent Studio (bash scripts/setup.sh, or pip install "
                       "--force-reinstall latent-studio-*.whl); STUDIO_RESOURCES names "
                       "another folder")


def _nvidia_driver() -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=15).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


def _torch(report: Report, settings) -> None:
    try:
        import torch
    except Exception as err:  # not installed, or a broken build
        report.row("torch", f"not importable ({type(err).__name__}: {err})")
        report.problem("torch is not installed (or does not load)", TORCH_INDEX_HELP)
        return
    if torch.version.cuda:
        build = f"CUDA {torch.version.cuda}"
    elif getattr(torch.version, "hip", None):
        build = f"ROCm {torch.version.hip}"
    else:
        build = "CPU" + (" + MPS" if sys.platform == "darwin" else "")
    report.row("torch", f"{torch.__version__} ({build} build)")
    driver = _nvidia_driver()
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        report.row("GPU", f"{name}; " + (f"nvidia-smi: {driver}" if driver else
                                         "driver: (nvidia-smi not found)"))
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        report.row("GPU", "Apple Metal (MPS)")
    else:
        report.row("GPU", f"none in use{'; nvidia-smi sees: ' + driver if driver else ''}")
        if driver:
            report.problem(f"an NVIDIA GPU is present ({driver}) but this torch is a "
                           f"{build} build",
                           "install the CUDA build: STUDIO_TORCH_INDEX=https://download."
                           "pytorch.org/whl/cu128 bash scripts/setup.sh (after removing "
                           ".venv), or pip install torch --index-url .../whl/cu128")
    try:
        from studio.engine.device import choose_device

        info = choose_device(settings.device, settings.dtype).info()
        report.row("Device", f"{info.label} ({info.description})")
    except Exception as err:  # a device named in the settings that this machine lacks
        report.row("Device", f"cannot use {settings.device!r}: {err}")
        report.problem(f"the device {settings.device!r} is not usable here",
                       "choose another: studio doctor --device cpu (or set device in the "
                       "preferences / STUDIO_DEVICE)")


def _qt(report: Report) -> None:
    from importlib.metadata import PackageNotFoundError, version

    from studio.cli.qtcheck import HEADLESS_HINT, check

    try:
        pyside = version("PySide6-Essentials")
    except PackageNotFoundError:
        try:
            pyside = version("PySide6")
        except PackageNotFoundError:
            pyside = None
    if pyside is None:
        report.row("Qt", "PySide6 is not installed")
        report.problem("PySide6 is missing: no window", "bash scripts/setup.sh (or pip "
                       "install PySide6-Essentials)")
        return
    qt = check()
    where = f"plugin {qt.plugin.name}" if qt.plugin and qt.plugin.name else "plugin"
    if not sys.platform.startswith("linux"):
        report.row("Qt", f"PySide6 {pyside}")
        return
    state = ("all libraries found" if not qt.missing else "missing " + ", ".join(qt.missing))
    report.row("Qt", f"PySide6 {pyside}; platform {qt.platform} ({where}): {state}")
    if qt.plugin is None:
        report.problem(f"Qt's {qt.platform} platform plugin is not in PySide6",
                       "pip install --force-reinstall PySide6-Essentials")
    if qt.missing:
        report.problem("the window cannot open: system libraries missing for Qt's "
                       f"{qt.platform} plugin: {', '.join(qt.missing)}",
                       "\n".join(qt.install_lines()))
    display = os.environ.get("WAYLAND_DISPLAY") or os.environ.get("DISPLAY")
    report.row("Display", display or "none (no DISPLAY or WAYLAND_DISPLAY)")
    if qt.display_problem:
        report.problem(qt.display_problem, HEADLESS_HINT)


def _models(report: Report, settings) -> None:
    from studio.cli.common import model_registry
    from studio.paths import embedded_models_dir

    folders = [("embedded", embedded_models_dir())]
    folders += [("folder", Path(p).expanduser()) for p in settings.model_dirs]
    for label, folder in folders:
        exists = folder.is_dir()
        report.row("Models" if label == "embedded" else "", f"{label}: {folder}"
                   + ("" if exists else "  (missing)"))
        if not exists:
            report.problem(f"the model folder {folder} does not exist",
                           "create it, or remove it from the settings / STUDIO_MODEL_DIRS")
    report.row("", f"Hugging Face cache: {'scanned' if settings.hf_cache else 'not scanned'}")
    try:
        # The local folders (the servers' models are the servers' own: see Servers).
        models = model_registry(settings.replace(servers=())).models(None)
    except Exception as err:
        report.row("", f"the models could not be listed: {type(err).__name__}: {err}")
        report.problem("the model folders could not be read", str(err))
        return
    by_kind: dict[str, list[str]] = {}
    for m in models:
        by_kind.setdefault(m.kind, []).append(m.name)
    if not by_kind:
        report.problem("no model found", "reinstall (the embedded studio-tiny models come "
                       "with it), or add a folder: studio --model-dir DIR")
    for kind, names in sorted(by_kind.items()):
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        report.row("", f"{kind}: {len(names)} ({shown})")
    if "diffusion" not in by_kind and by_kind:
        report.problem("no diffusion model: nothing to generate with",
                       "add a folder with diffusers models or .safetensors checkpoints: "
                       "studio --model-dir DIR")


def _disk(report: Report) -> None:
    from studio.paths import user_cache_dir

    places = {"cache": user_cache_dir(), "home": Path.home()}
    seen: set[int] = set()
    for label, path in places.items():
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            usage = shutil.disk_usage(probe)
            device = probe.stat().st_dev
        except OSError:
            continue
        if device in seen:
            continue
        seen.add(device)
        free = usage.free / 1024**3
        report.row("Disk" if len(seen) == 1 else "", f"{label} {path}: {free:.1f} GB free")
        if usage.free < LOW_DISK_BYTES:
            report.problem(f"little free disk for models and caches at {path} "
                           f"({free:.1f} GB)", "free some space, or point STUDIO_CACHE_DIR "
                           "and HF_HOME at a larger disk")


def _server_answers(url: str, timeout: float = 3.0) -> str | None:
    """None when the ComfyUI server answers ``/system_stats``, else why not (stdlib only)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url.rstrip("/") + "/system_stats", timeout=timeout) as r:
            return None if r.status == 200 else f"HTTP {r.status}"
    except urllib.error.HTTPError as err:
        return f"HTTP {err.code}"
    except (urllib.error.URLError, OSError, ValueError) as err:
        return str(getattr(err, "reason", err))


def _servers(report: Report, settings) -> None:
    servers = list(settings.servers)
    if not servers:
        report.row("Servers", "none configured (STUDIO_SERVERS or --server URL adds one)")
        return
    for i, url in enumerate(servers):
        why = _server_answers(url)
        report.row("Servers" if i == 0 else "", f"{url}: {'answers' if why is None else why}")
        if why is not None:
            report.problem(f"the server {url} does not answer ({why})",
                           "start ComfyUI there (python main.py --listen), or fix the "
                           f"address; details: studio servers --check {url}")


def diagnose(args: argparse.Namespace) -> Report:
    settings = settings_from_args(args)
    report = Report()
    _python(report)
    _torch(report, settings)
    _qt(report)
    _models(report, settings)
    _servers(report, settings)
    _disk(report)
    return report


def run(args: argparse.Namespace) -> int:
    report = diagnose(args)
    print("\n".join(report.lines))
    if not report.problems:
        print("\nNo problems found.")
        return EXIT_OK
    print(f"\n{len(report.problems)} problem{'s' if len(report.problems) > 1 else ''}:")
    for what, fix in report.problems:
        print(f"- {what}")
        for i, line in enumerate(fix.splitlines()):
            print(f"    {'fix: ' if i == 0 else '     '}{line}")
    return EXIT_ERROR
