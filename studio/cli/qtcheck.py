"""Can Qt open a window here? Asked before Qt is loaded, so a missing system library or a
missing display is answered with the fix instead of Qt's abort ("could not load the Qt
platform plugin xcb ... Aborted").

``ldd`` on PySide6's platform plugin (``libqxcb.so`` for X11) names the shared libraries
the system lacks; a small table turns them into the packages to install on Debian/Ubuntu
(apt) and Fedora (dnf). Pure standard library: no Qt, no torch.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# soname -> (Debian/Ubuntu package, Fedora package): what Qt's platform plugins and the Qt
# libraries they load need from the system. PySide6's wheel carries Qt itself.
PACKAGES: dict[str, tuple[str, str]] = {
    "libxcb.so.1": ("libxcb1", "libxcb"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libxcb-xinput.so.0": ("libxcb-xinput0", "libxcb"),
    "libxcb-glx.so.0": ("libxcb-glx0", "libxcb"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libX11.so.6": ("libx11-6", "libX11"),
    "libXau.so.6": ("libxau6", "libXau"),
    "libXdmcp.so.6": ("libxdmcp6", "libXdmcp"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libwayland-client.so.0": ("libwayland-client0", "libwayland-client"),
    "libwayland-cursor.so.0": ("libwayland-cursor0", "libwayland-cursor"),
    "libwayland-egl.so.1": ("libwayland-egl1", "libwayland-egl"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libGLX.so.0": ("libglx0", "libglvnd-glx"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl"),
    "libGLdispatch.so.0": ("libglvnd0", "libglvnd"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libgthread-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs"),
    "libz.so.1": ("zlib1g", "zlib"),
    "libzstd.so.1": ("libzstd1", "libzstd"),
    "libpng16.so.16": ("libpng16-16", "libpng"),
    "libexpat.so.1": ("libexpat1", "expat"),
    "libbrotlidec.so.1": ("libbrotli1", "brotli"),
    "libsmime3.so": ("libnss3", "nss"),
    "libnss3.so": ("libnss3", "nss"),
}

HEADLESS_HINT = ("Without a display, run the window under a virtual one: `xvfb-run -a studio` "
                 "(Debian/Ubuntu: sudo apt install xvfb; Fedora: sudo dnf install "
                 "xorg-x11-server-Xvfb), or use the headless commands: `studio generate "
                 "\"a prompt\" -o out.png`, `studio models`, `studio --help`.")
SKIP_VARIABLE = "STUDIO_SKIP_QT_CHECK"  # =1: open the window whatever this check says


@dataclass(frozen=True)
class QtPlatformReport:
    """What Qt would need to open a window on ``platform``, and what is missing."""

    platform: str
    plugin: Path | None
    missing: tuple[str, ...] = ()
    display_problem: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.missing and self.display_problem is None and self.plugin is not None

    def install_lines(self) -> list[str]:
        return install_lines(self.missing)

    def message(self) -> str:
        """Every problem, each with its fix; empty when the window can open."""
        lines: list[str] = []
        if self.plugin is None:
            lines += [f"Qt's platform plugin for {self.platform!r} was not found in PySide6.",
                      "Fix: reinstall PySide6 (bash scripts/setup.sh, or "
                      "pip install --force-reinstall PySide6-Essentials)."]
        if self.missing:
            lines += [f"Qt cannot open a window: its {self.platform} platform plugin "
                      f"({self.plugin}) needs system libraries that are missing: "
                      + ", ".join(self.missing) + ".", "Install them with:",
                      *(f"  {line}" for line in self.install_lines())]
        if self.display_problem:
            lines += [self.display_problem, HEADLESS_HINT]
        return "\n".join(lines)


def install_lines(missing: tuple[str, ...] | list[str]) -> list[str]:
    """The apt (Debian/Ubuntu) and dnf (Fedora) commands that install ``missing`` sonames."""
    debian: list[str] = []
    fedora: list[str] = []
    unknown: list[str] = []
    for soname in missing:
        pkgs = PACKAGES.get(soname)
        if pkgs is None:
            unknown.append(soname)
            continue
        if pkgs[0] not in debian:
            debian.append(pkgs[0])
        if pkgs[1] not in fedora:
            fedora.append(pkgs[1])
    lines = []
    if debian:
        lines.append("Debian/Ubuntu: sudo apt install " + " ".join(debian))
        lines.append("Fedora:        sudo dnf install " + " ".join(fedora))
    if unknown:
        lines.append("and the packages that provide: " + ", ".join(unknown)
                     + " (Debian: apt-file search NAME; Fedora: dnf provides '*/NAME')")
    return lines


def pyside_dir() -> Path | None:
    """PySide6's package folder, found without importing it."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def chosen_platform(environ: dict[str, str] | os._Environ[str] | None = None) -> str:
    """The platform plugin Qt would load: ``QT_QPA_PLATFORM``, else wayland in a Wayland
    session, else xcb (X11)."""
    env = os.environ if environ is None else environ
    chosen = env.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    if chosen:
        return chosen
    if env.get("WAYLAND_DISPLAY") and env.get("XDG_SESSION_TYPE") == "wayland":
        return "wayland"
    return "xcb"


def plugin_path(platform: str, root: Path | None = None) -> Path | None:
    root = root if root is not None else pyside_dir()
    if root is None:
        return None
    path = root / "Qt" / "plugins" / "platforms" / f"libq{platform}.so"
    return path if path.is_file() else None


def missing_libraries(library: Path) -> list[str]:
    """The sonames ``ldd`` reports "not found" for ``library`` (transitively), in order."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    try:
        out = subprocess.run([ldd, str(library)], capture_output=True, text=True,
                             timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    missing: list[str] = []
    for match in re.finditer(r"^\s*(\S+)\s+=>\s+not found", out, re.MULTILINE):
        if match.group(1) not in missing:
            missing.append(match.group(1))
    return missing


def display_problem(platform: str, environ: dict[str, str] | os._Environ[str] | None = None
                    ) -> str | None:
    env = os.environ if environ is None else environ
    if platform == "xcb" and not env.get("DISPLAY"):
        return "There is no display: DISPLAY is not set (no X11 session here)."
    if platform == "wayland" and not env.get("WAYLAND_DISPLAY"):
        return "There is no display: WAYLAND_DISPLAY is not set (no Wayland session here)."
    return None


def check(environ: dict[str, str] | os._Environ[str] | None = None,
          root: Path | None = None) -> QtPlatformReport:
    """What Qt needs here to open a window. Linux only; elsewhere it reports nothing."""
    platform = chosen_platform(environ)
    if not sys.platform.startswith("linux"):
        return QtPlatformReport(platform, Path(), notes=("checked on Linux only",))
    plugin = plugin_path(platform, root)
    if plugin is None:
        if (root or pyside_dir()) is None:
            return QtPlatformReport(platform, None, notes=("PySide6 is not installed",))
        return QtPlatformReport(platform, None)
    return QtPlatformReport(platform, plugin, tuple(missing_libraries(plugin)),
                            display_problem(platform, environ))


def gui_problem() -> str | None:
    """The message to print instead of letting Qt abort, or None when the window can open
    (or ``STUDIO_SKIP_QT_CHECK=1`` says not to ask)."""
    if os.environ.get(SKIP_VARIABLE) == "1" or not sys.platform.startswith("linux"):
        return None
    report = check()
    if report.ok:
        return None
    return report.message() + f"\n(To try anyway: {SKIP_VARIABLE}=1 studio)"


if __name__ == "__main__":  # scripts/start.sh: python -m studio.cli.qtcheck
    problem = gui_problem()
    if problem:
        print(problem, file=sys.stderr)
    sys.exit(1 if problem else 0)
