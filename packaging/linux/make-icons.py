"""Render the app icon (resources/icons/app.svg) to the hicolor PNG sizes, with Qt's SVG
renderer (PySide6, which the studio installs anyway). The PNGs are committed; run this again
when the SVG changes:

    .venv/bin/python packaging/linux/make-icons.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QByteArray, Qt  # noqa: E402, TID251 (a build script: Qt renders the SVG)
from PySide6.QtGui import QGuiApplication, QImage, QPainter  # noqa: E402, TID251 (a build script: Qt renders the SVG)
from PySide6.QtSvg import QSvgRenderer  # noqa: E402, TID251 (a build script: Qt renders the SVG)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
APP_ID = "org.latentstudio.Studio"
SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
# The SVG draws in "currentColor" (the UI tints it with the theme); the desktop icon has one
# colour of its own.
COLOUR = "#7c5cff"


def app_svg() -> bytes:
    svg = (REPO / "resources" / "icons" / "app.svg").read_text(encoding="utf-8")
    return svg.replace("currentColor", COLOUR).encode("utf-8")


def render(svg: bytes, size: int) -> QImage:
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    QSvgRenderer(QByteArray(svg)).render(painter)
    painter.end()
    return image


def main(out: Path = HERE / "icons" / "hicolor") -> int:
    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    svg = app_svg()
    for size in SIZES:
        path = out / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not render(svg, size).save(str(path), "PNG"):
            print(f"could not write {path}", file=sys.stderr)
            return 1
        print(path.relative_to(REPO))
    scalable = out / "scalable" / "apps" / f"{APP_ID}.svg"
    scalable.parent.mkdir(parents=True, exist_ok=True)
    scalable.write_bytes(svg)
    print(scalable.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
