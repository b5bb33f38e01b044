"""Save docs/screenshot.png: the window after a few (fake) generations.

Run under Xvfb: ``xvfb-run -a -s "-screen 0 1600x1000x24" python -m tests.ui.make_screenshot``
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

from studio.core.jobs.runner import JobRunner
from studio.ui.main_window import MainWindow
from tests.fakes import FakeEngine, fake_services


def landscape(seed: int, width: int, height: int) -> np.ndarray:
    """A procedural dusk landscape, so the screenshot shows something like a picture."""
    rng = np.random.default_rng(seed)
    ys = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    xs = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    top = rng.uniform([20, 20, 60], [60, 50, 120])
    bottom = rng.uniform([230, 120, 80], [255, 190, 140])
    sky = top[None, None, :] * (1 - ys[..., None]) + bottom[None, None, :] * ys[..., None]
    img = np.broadcast_to(sky, (height, width, 3)).copy()
    sx, sy = rng.uniform(0.3, 0.7), rng.uniform(0.35, 0.5)
    d = np.sqrt((xs - sx) ** 2 + (ys - sy) ** 2)
    img += (np.clip(1 - d / 0.09, 0, 1) ** 0.5)[..., None] * np.array([255, 220, 170]) * 0.8
    img += (np.exp(-d * 6))[..., None] * np.array([90, 50, 20])
    for layer, shade in enumerate((0.55, 0.35, 0.18)):
        phase = rng.uniform(0, 6)
        ridge = 0.55 + 0.12 * layer + 0.06 * np.sin(xs * (5 + 3 * layer) + phase) \
            + 0.03 * np.sin(xs * 23 + phase * 2)
        mask = ys > ridge
        color = np.array([70, 50, 90]) * shade + np.array([20, 10, 30])
        img = np.where(mask[..., None], color * (1.2 - 0.4 * ys[..., None]), img)
    return np.clip(img, 0, 255).astype(np.uint8)


class PrettyEngine(FakeEngine):
    def generate(self, request, on_step, cancel):
        import tests.fakes as fake

        original = fake.gradient
        fake.gradient = landscape
        try:
            return super().generate(request, on_step, cancel)
        finally:
            fake.gradient = original


def main(out: str = "docs/screenshot.png", theme: str = "dark") -> int:
    app = QApplication(sys.argv)
    engine = PrettyEngine()
    runner = JobRunner(engine)
    settings = QSettings(str(Path("/tmp/studio-screenshot.ini")), QSettings.Format.IniFormat)
    settings.clear()
    window = MainWindow(fake_services(engine), runner, settings)
    window.set_theme(theme)
    window.resize(1400, 900)
    window.show()
    panel = window.prompt_panel
    panel.model_combo.setCurrentIndex(0)
    panel.set_values({"width": 512, "height": 512, "steps": 6})
    panel.seed_lock_button.setChecked(True)
    prompts = ["misty mountains at dusk, volumetric light, matte painting",
               "lavender hills at sunset, soft haze, concept art",
               "distant peaks under a warm sky, cinematic, 35mm"]
    seeds = [11, 29, 4]
    state = {"i": 0}

    def next_job() -> None:
        i = state["i"]
        if i < len(prompts):
            panel.prompt_edit.setPlainText(prompts[i])
            panel.seed_spin.setValue(seeds[i])
            window.controller.generate()
            state["i"] += 1
        else:
            QTimer.singleShot(300, finish)

    def finish() -> None:
        window.gallery_panel.list.setCurrentRow(0)
        panel.prompt_edit.setPlainText(prompts[-1])
        panel.negative_edit.setPlainText("blurry, low quality, watermark")
        window.canvas.fit()
        window.doc.selection = None
        app.processEvents()
        window.grab().save(out)
        print("saved", out)
        window.close()

    window.controller.generation_applied.connect(lambda _r: QTimer.singleShot(50, next_job))
    QTimer.singleShot(300, next_job)
    app.exec()
    runner.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
