"""Recently opened files: a list in QSettings (newest first) and the File ▸ Open Recent menu."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSettings, QThreadPool
from PySide6.QtWidgets import QMenu

MAX_RECENT = 10
KEY = "files/recent"


class RecentFiles:
    """The recent-files list of ``settings``; missing files are dropped when read."""

    def __init__(self, settings: QSettings, limit: int = MAX_RECENT) -> None:
        self.settings = settings
        self.limit = limit
        self.menu: QMenu | None = None
        self._open: Callable[[str], object] | None = None

    def _stored(self) -> list[str]:
        value = self.settings.value(KEY, [])
        if isinstance(value, str):
            value = [value] if value else []
        return [str(v) for v in (value or []) if v]

    def paths(self) -> list[str]:
        """Existing files, newest first (the stored list is pruned)."""
        return self.prune()

    def prune(self) -> list[str]:
        kept = [p for p in self._stored() if Path(p).is_file()]
        if kept != self._stored():
            self._write(kept)
        return kept

    def add(self, path: str | os.PathLike[str]) -> None:
        text = str(Path(path).resolve())
        items = [text, *[p for p in self._stored() if p != text]]
        self._write(items[:self.limit])

    def clear(self) -> None:
        self._write([])

    def _write(self, items: list[str]) -> None:
        self.settings.setValue(KEY, items)
        self._flush()
        self.refresh_menu()

    def _flush(self) -> None:
        """Write the settings file on a worker thread: its fsync takes 2 to 30 ms (a frame or
        more, on a busy disk). Another QSettings on the same file flushes the pending change
        as it opens (Qt shares one cache per file, safe across threads)."""
        name, fmt = self.settings.fileName(), self.settings.format()
        QThreadPool.globalInstance().start(lambda: QSettings(name, fmt).sync())

    # -- the menu ----------------------------------------------------------------------------
    def attach_menu(self, menu: QMenu, open_path: Callable[[str], object]) -> None:
        """Fill ``menu`` now and whenever it is about to show; a click calls ``open_path``."""
        self.menu = menu
        self._open = open_path
        menu.aboutToShow.connect(self.refresh_menu)
        self.refresh_menu()

    def refresh_menu(self) -> None:
        menu = self.menu
        if menu is None:
            return
        menu.clear()
        paths = [p for p in self._stored() if Path(p).is_file()]
        for i, path in enumerate(paths, start=1):
            action = menu.addAction(f"&{i % 10} {Path(path).name}")
            action.setToolTip(path)
            action.setStatusTip(path)
            action.setData(path)
            action.triggered.connect(lambda _c=False, p=path: self._trigger(p))
        if paths:
            menu.addSeparator()
        clear = menu.addAction("&Clear List", self.clear)
        clear.setEnabled(bool(paths))
        menu.setEnabled(True)

    def _trigger(self, path: str) -> None:
        if self._open is not None:
            self._open(path)
