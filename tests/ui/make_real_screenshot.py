"""Save docs/screenshot.png: the real app on the embedded model after a few generations.

Run under Xvfb: ``xvfb-run -a -s "-screen 0 1600x1000x24" python -m tests.ui.make_real_screenshot``
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

from studio.ui.launch import StudioSession

PROMPTS = [
    "a smiling person with red hair and round glasses on a blue background",
    "a person with blonde hair on a pink background",
    "a smiling person with black hair and square glasses on a yellow background",
]


def main(out: str = "docs/screenshot.png") -> int:
    # Its own folder for autosaves: the script quits without closing the project, and the
    # user's next start would otherwise offer to restore this "Untitled".
    os.environ.setdefault("STUDIO_DATA_DIR", tempfile.mkdtemp(prefix="studio-screenshot-"))
    app = QApplication(sys.argv)
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "s.ini"), QSettings.Format.IniFormat)

    def services_factory():
        from studio.engine.services import local_services
        from studio.settings import Settings

        return local_services(Settings(hf_cache=False))

    session = StudioSession(services_factory, [], settings)
    window = session.window
    window.resize(1400, 900)
    session.start()
    pending = list(PROMPTS)

    def next_prompt() -> None:
        if not pending:
            QTimer.singleShot(500, shoot)
            return
        window.prompt_panel.prompt_edit.setPlainText(pending.pop())
        window.prompt_panel.set_values({"seed": 7 + len(pending), "seed_locked": True})
        window.actions["generate"].trigger()

    def shoot() -> None:
        window.canvas.fit()
        app.processEvents()
        window.grab().save(out)
        print("saved", out, flush=True)
        app.quit()

    def wait_for_engine() -> None:
        if session.runner is None:
            QTimer.singleShot(200, wait_for_engine)
            return
        window.controller.generation_applied.connect(lambda *_: QTimer.singleShot(100, next_prompt))
        next_prompt()

    QTimer.singleShot(200, wait_for_engine)
    QTimer.singleShot(300_000, app.quit)
    app.exec()
    session.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
