"""Save docs/screenshots/layers-panel.png (the window) and layers-panel-dock.png (the
Layers dock): the real app on the embedded model, with blend modes and a group.

Run under Xvfb: ``xvfb-run -a -s "-screen 0 1600x1000x24" python -m tests.ui.make_layers_screenshot``
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

from studio.core.document import operations as ops
from studio.core.document.edits import AddLayer, SetLayerProps
from studio.core.document.layers import Layer
from studio.ui.launch import StudioSession

PROMPTS = [
    "a smiling person with red hair and round glasses on a blue background",
    "a person with blonde hair on a pink background",
]


def _light(width: int, height: int) -> np.ndarray:
    """A soft warm light from the top left (a paint layer for Screen)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    fall = np.clip(1.0 - np.hypot(xs - width * 0.2, ys - height * 0.15) / (width * 0.8), 0, 1)
    out = np.zeros((height, width, 4), np.uint8)
    out[..., 0], out[..., 1], out[..., 2] = 255, 190, 90
    out[..., 3] = (fall * 255).astype(np.uint8)
    return out


def _shade(width: int, height: int) -> np.ndarray:
    """A blue-violet gradient from the bottom (a paint layer for Multiply)."""
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None].repeat(width, 1)
    out = np.zeros((height, width, 4), np.uint8)
    out[..., 0], out[..., 1], out[..., 2] = 120, 110, 230
    out[..., 3] = (np.clip(ys - 0.35, 0, 1) / 0.65 * 255).astype(np.uint8)
    return out


def main(out_dir: str = "docs/screenshots") -> int:
    os.environ.setdefault("STUDIO_DATA_DIR", tempfile.mkdtemp(prefix="studio-screenshot-"))
    app = QApplication(sys.argv)
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "s.ini"), QSettings.Format.IniFormat)

    def services_factory():
        from studio.engine.services import local_services
        from studio.settings import Settings

        return local_services(Settings(hf_cache=False))

    session = StudioSession(services_factory, [], settings)
    window = session.window
    window.resize(1400, 980)
    session.start()
    pending = list(PROMPTS)

    def next_prompt() -> None:
        if not pending:
            QTimer.singleShot(300, arrange)
            return
        window.prompt_panel.prompt_edit.setPlainText(pending.pop())
        window.prompt_panel.set_values({"seed": 7 + len(pending), "seed_locked": True})
        window.actions["generate"].trigger()

    def arrange() -> None:
        doc, undo = window.doc, window.undo
        w, h = doc.width, doc.height
        top = doc.layers[-1]
        undo.push(SetLayerProps(doc.layers[0].id, visible=False))
        undo.push(AddLayer(Layer(name="warm light", pixels=_light(w, h), kind="paint",
                                 blend="screen")))
        light = doc.active_layer
        group = ops.new_group(undo, light.id, "Lighting")
        undo.push(AddLayer(Layer(name="shadow", pixels=_shade(w, h), kind="paint",
                                 blend="multiply", opacity=0.8, parent=group.id),
                           index=doc.index_of(group.id)))
        undo.push(SetLayerProps(group.id, opacity=0.85))
        doc.set_active_layer(light.id)
        undo.push(SetLayerProps(top.id, lock_alpha=True))
        QTimer.singleShot(500, shoot)

    def shoot() -> None:
        window.canvas.fit()
        app.processEvents()
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        window.grab().save(f"{out_dir}/layers-panel.png")
        window.docks["layers"].grab().save(f"{out_dir}/layers-panel-dock.png")
        print("saved", out_dir, flush=True)
        app.quit()

    def wait_for_engine() -> None:
        if session.runner is None:
            QTimer.singleShot(200, wait_for_engine)
            return
        window.controller.generation_applied.connect(lambda *_: QTimer.singleShot(100, next_prompt))
        next_prompt()

    QTimer.singleShot(200, wait_for_engine)
    QTimer.singleShot(800_000, app.quit)
    app.exec()
    session.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
