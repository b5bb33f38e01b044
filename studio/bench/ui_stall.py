"""GUI responsiveness while a generation runs: the real window, the real engine thread.

A 5 ms ``QTimer`` pings the GUI thread's event loop; a stall is the time between two pings
beyond the period. Run as a child (``python -m studio.bench.ui_stall MODEL``) with offscreen
Qt; reports the stalls during an idle second and during one generation.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import studio.engine  # noqa: F401  (its thread policy must be set before torch loads)
from studio.bench.measure import percentile, report_child_result

PERIOD_MS = 5


def _stalls(stamps: list[float]) -> list[float]:
    return [max(0.0, (b - a) * 1000.0 - PERIOD_MS) for a, b in zip(stamps, stamps[1:], strict=False)]


def _summary(stamps: list[float]) -> dict[str, float]:
    stalls = _stalls(stamps)
    return {"max_ms": max(stalls, default=0.0), "p99_ms": percentile(stalls, 0.99),
            "p50_ms": percentile(stalls, 0.5), "pings": len(stamps)}


def measure(model_path: str, size: int, steps: int, threads: int | None = None,
            idle_s: float = 1.0, dtype: str = "auto", nice: int | None = None) -> dict[str, Any]:
    """Run one generation through ``MainWindow`` and report the GUI thread's stalls."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import torch

    # The benchmark wires the real window to the real engine, as app.py does.
    from PySide6.QtCore import QEventLoop, QSettings, Qt, QTimer  # noqa: TID251
    from PySide6.QtWidgets import QApplication  # noqa: TID251

    from studio.bench.engine_figures import PROMPT, SEED, make_engine, request_for
    from studio.bench.models import BenchModel
    from studio.core.jobs.runner import JobRunner
    from studio.engine.services import engine_services
    from studio.ui.launch import ENGINE_NICE
    from studio.ui.main_window import MainWindow

    if threads:
        torch.set_num_threads(threads)
    app = QApplication.instance() or QApplication(["studio-bench"])
    model = BenchModel("m", Path(model_path), model_path, size)
    engine = make_engine(model, dtype)
    engine.generate(request_for(model, 1))  # load and warm up outside the measurement
    nice = ENGINE_NICE if nice is None else nice  # the app's, unless asked otherwise
    runner = JobRunner(engine, nice=nice)
    settings = QSettings(str(Path(tempfile.mkdtemp(prefix="studio-bench-ui-")) / "s.ini"),
                         QSettings.Format.IniFormat)
    window = MainWindow(engine_services(engine), runner, settings)
    window.show()
    panel = window.prompt_panel
    panel.set_values({"prompt": PROMPT, "seed": SEED, "seed_locked": True, "steps": steps,
                      "width": size, "height": size, "batch_count": 1})
    stamps: list[float] = []
    timer = QTimer(interval=PERIOD_MS)
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.timeout.connect(lambda: stamps.append(time.perf_counter()))
    loop = QEventLoop()

    def wait(seconds: float) -> None:
        QTimer.singleShot(int(seconds * 1000), loop.quit)
        loop.exec()

    previews: list[int] = []
    window.bridge.job_progressed.connect(
        lambda e: previews.append(0 if e.preview is None else int(e.preview.nbytes)))
    timer.start()
    wait(0.2)
    stamps.clear()
    wait(idle_s)
    idle = _summary(stamps)
    done: list[float] = []
    window.controller.generation_applied.connect(lambda _rid: (done.append(time.perf_counter()),
                                                               loop.quit()))
    stamps.clear()
    start = time.perf_counter()
    ids = window.controller.generate()
    if not ids:
        raise RuntimeError("the window did not submit a job")
    guard = QTimer(singleShot=True)
    guard.timeout.connect(loop.quit)
    guard.start(600_000)
    loop.exec()
    guard.stop()
    timer.stop()
    if not done:
        raise RuntimeError("the generation did not finish")
    busy = _summary([s for s in stamps if s <= done[0]])
    applied = (done[0] - start)
    window.close()
    runner.shutdown(10.0)
    app.processEvents()
    return {"idle": idle, "busy": busy, "generation_s": applied, "steps": steps,
            "size": size, "torch_threads": torch.get_num_threads(), "engine_nice": nice,
            "preview_bytes": max(previews, default=0), "progress_events": len(previews)}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.bench.ui_stall")
    parser.add_argument("model")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--nice", type=int, default=None,
                        help="engine thread nice increment (default: the app's)")
    args = parser.parse_args()
    report_child_result(measure(args.model, args.size, args.steps, args.threads or None,
                                dtype=args.dtype, nice=args.nice))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
