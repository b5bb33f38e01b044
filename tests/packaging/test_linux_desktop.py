"""packaging/linux: the desktop entry, AppStream metainfo, icons and the .studio MIME type,
checked by the freedesktop tools themselves where they are installed."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINUX = REPO / "packaging" / "linux"
APP_ID = "org.latentstudio.Studio"
MIME = "application/x-latent-studio"
SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)


def tool(name: str, package: str) -> str:
    """The tool's path; a clear skip where it is missing (set STUDIO_REQUIRE_DESKTOP_TOOLS=1
    to fail instead)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian: apt-get install {package})"
        if os.environ.get("STUDIO_REQUIRE_DESKTOP_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_the_desktop_entry_is_valid_and_opens_projects():
    entry = LINUX / f"{APP_ID}.desktop"
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(entry, encoding="utf-8")
    group = parser["Desktop Entry"]
    assert group["Exec"] == "studio-gui %F" and group["Icon"] == APP_ID
    assert MIME in group["MimeType"].split(";")
    run = subprocess.run([tool("desktop-file-validate", "desktop-file-utils"), str(entry)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and not run.stdout.strip(), run.stdout + run.stderr


def test_the_appstream_metainfo_is_valid():
    metainfo = LINUX / f"{APP_ID}.metainfo.xml"
    root = ET.parse(metainfo).getroot()
    assert root.findtext("id") == APP_ID
    assert root.find("launchable").text == f"{APP_ID}.desktop"
    assert MIME in [m.text for m in root.iter("mediatype")]
    run = subprocess.run([tool("appstreamcli", "appstream"), "validate", "--no-net",
                          str(metainfo)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_studio_files_get_the_project_mime_type(tmp_path):
    xml = LINUX / f"{APP_ID}.mime.xml"
    ns = {"m": "http://www.freedesktop.org/standards/shared-mime-info"}
    mime_type = ET.parse(xml).getroot().find("m:mime-type", ns)
    assert mime_type.get("type") == MIME
    assert [g.get("pattern") for g in mime_type.findall("m:glob", ns)] == ["*.studio"]
    update = tool("update-mime-database", "shared-mime-info")
    (tmp_path / "mime" / "packages").mkdir(parents=True)
    shutil.copy(xml, tmp_path / "mime" / "packages" / f"{APP_ID}.xml")
    run = subprocess.run([update, str(tmp_path / "mime")], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    globs = (tmp_path / "mime" / "globs2").read_text()
    assert f"{MIME}:*.studio" in globs


def test_the_hicolor_icons_are_rendered_from_the_app_svg():
    from PIL import Image

    for size in SIZES:
        png = LINUX / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        with Image.open(png) as im:
            assert im.size == (size, size) and im.mode == "RGBA", png
            assert im.getchannel("A").getextrema()[1] == 255  # drawn, not blank
    make_icons = _load_make_icons()
    scalable = LINUX / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"
    assert scalable.read_bytes() == make_icons.app_svg(), \
        "the icons are older than resources/icons/app.svg: run packaging/linux/make-icons.py"


def _load_make_icons():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_icons", LINUX / "make-icons.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
