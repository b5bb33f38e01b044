"""Dark and light themes: one style sheet with palette placeholders, and tinted SVG icons."""

from __future__ import annotations

from functools import lru_cache
from string import Template

from PySide6.QtCore import QByteArray, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import QAbstractButton, QApplication, QWidget

from studio.paths import resources_dir

RESOURCES = resources_dir()
ICONS = RESOURCES / "icons"
STYLES = RESOURCES / "styles"

PALETTES: dict[str, dict[str, str]] = {
    "dark": {
        "window": "#1b1d22", "panel": "#23262d", "field": "#16181c", "button": "#30343c",
        "hover": "#353a44", "border": "#363a43", "text": "#dfe3ea", "muted": "#8a909c",
        "accent": "#7c6cf2", "accent_hover": "#8f81f5", "accent_soft": "#3a3566",
        "accent_text": "#ffffff", "danger": "#e0565b", "danger_soft": "#4a2427",
        "canvas": "#141518", "checker_a": "#2a2d33", "checker_b": "#33363d",
    },
    "light": {
        "window": "#eceef2", "panel": "#f7f8fa", "field": "#ffffff", "button": "#e2e5ea",
        "hover": "#dde1e8", "border": "#c9ced6", "text": "#1d2026", "muted": "#6a707c",
        "accent": "#5b4ee0", "accent_hover": "#6d61ea", "accent_soft": "#dcd8fb",
        "accent_text": "#ffffff", "danger": "#c8383e", "danger_soft": "#f8dfe0",
        "canvas": "#d4d7dd", "checker_a": "#e6e6e6", "checker_b": "#ffffff",
    },
}
THEMES = tuple(PALETTES)

_current = "dark"


def current_theme() -> str:
    return _current


def color(name: str) -> QColor:
    """A colour of the current palette ("canvas", "accent", ...)."""
    return QColor(PALETTES[_current][name])


def style_sheet(theme: str) -> str:
    template = Template((STYLES / "studio.qss").read_text(encoding="utf-8"))
    return template.safe_substitute(PALETTES[theme], icons=ICONS.as_posix())


def apply_theme(app: QApplication, theme: str) -> None:
    """Set the palette and style sheet of the whole application."""
    global _current
    if theme not in PALETTES:
        theme = "dark"
    sheet = style_sheet(theme)
    if app.styleSheet() == sheet and _current == theme:
        return  # restyling every widget is slow: only when the theme really changes
    _current = theme
    colors = PALETTES[theme]
    app.setStyle("Fusion")
    pal = QPalette()
    pal.setColor(QPalette.ColorRole.Window, QColor(colors["window"]))
    pal.setColor(QPalette.ColorRole.WindowText, QColor(colors["text"]))
    pal.setColor(QPalette.ColorRole.Base, QColor(colors["field"]))
    pal.setColor(QPalette.ColorRole.AlternateBase, QColor(colors["panel"]))
    pal.setColor(QPalette.ColorRole.Text, QColor(colors["text"]))
    pal.setColor(QPalette.ColorRole.Button, QColor(colors["button"]))
    pal.setColor(QPalette.ColorRole.ButtonText, QColor(colors["text"]))
    pal.setColor(QPalette.ColorRole.Highlight, QColor(colors["accent"]))
    pal.setColor(QPalette.ColorRole.HighlightedText, QColor(colors["accent_text"]))
    # Links in labels ("Use them"): Qt's default dark blue was unreadable on the dark theme.
    for role in (QPalette.ColorRole.Link, QPalette.ColorRole.LinkVisited):
        pal.setColor(role, QColor(colors["accent_hover"]))
    pal.setColor(QPalette.ColorRole.PlaceholderText, QColor(colors["muted"]))
    pal.setColor(QPalette.ColorRole.ToolTipBase, QColor(colors["panel"]))
    pal.setColor(QPalette.ColorRole.ToolTipText, QColor(colors["text"]))
    app.setPalette(pal)
    app.setStyleSheet(sheet)
    _icon.cache_clear()


def icon(name: str, role: str = "text") -> QIcon:
    """An icon from resources/icons, tinted with a colour of the current theme."""
    return _icon(name, _current, role)


def set_icon(widget: QAbstractButton, name: str, role: str = "text") -> None:
    """Give a button an icon that follows theme changes (see ``refresh_icons``)."""
    widget.setProperty("studio_icon", name)
    widget.setProperty("studio_icon_role", role)
    widget.setIcon(icon(name, role))


def refresh_icons(root: QWidget) -> None:
    """Re-tint the icons set with ``set_icon`` under ``root`` after a theme change."""
    for button in root.findChildren(QAbstractButton):
        name = button.property("studio_icon")
        if name:
            button.setIcon(icon(str(name), str(button.property("studio_icon_role") or "text")))


@lru_cache(maxsize=256)
def _icon(name: str, theme: str, role: str = "text") -> QIcon:
    path = ICONS / f"{name}.svg"
    if not path.exists():
        return QIcon()
    svg = path.read_text(encoding="utf-8")
    result = QIcon()
    for mode, key in ((QIcon.Mode.Normal, role), (QIcon.Mode.Disabled, "muted")):
        data = svg.replace("currentColor", PALETTES[theme][key])
        renderer = QSvgRenderer(QByteArray(data.encode()))
        for size in (20, 40):
            image = QImage(QSize(size, size), QImage.Format.Format_ARGB32_Premultiplied)
            image.fill(Qt.GlobalColor.transparent)
            painter = QPainter(image)
            renderer.render(painter, QRectF(0, 0, size, size))
            painter.end()
            result.addPixmap(QPixmap.fromImage(image), mode)
    return result
