"""GUI responsiveness while a generation runs, and while a large project opens.

A 5 ms ``QTimer`` pings the GUI thread's event loop; a stall is the time between two pings
beyond the period. Run as a child (``python -m studio.bench.ui_stall MODEL``) with offscreen
Qt; reports the stalls during an idle second and during one generation, through the real
window and the real engine thread. ``python -m studio.bench.ui_stall --open-project 200``
reports them while the window opens a 200-layer project (no engine needed).
``python -m studio.bench.ui_stall MODEL --large 8000 [--region 1024] [--runs 10]`` reports
them for each of ten generations on an 8000x8000 canvas, with the resident memory after each.
``python -m studio.bench.ui_stall --canvas 8000 [--runs 3]`` measures the canvas alone (no
model): a result layer landing on an 8000x8000 canvas, drawn with level of detail and at full
size in turns, side by side.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import studio.engine  # noqa: F401  (its thread policy must be set before torch loads)
from studio.bench.measure import percentile, report_child_result

PERIOD_MS = 5

#: At each ping: the GUI thread's CPU time and its time spent waiting for a CPU (Linux's
#: schedstat run delay; 0 elsewhere), in seconds, by the ping's stamp. A stall is the GUI
#: thread's own work, or waiting for a CPU (the machine's load), or waiting for a lock
#: (the GIL): ``_summary`` says which for the worst one.
_ACCOUNTS: dict[float, tuple[float, float]] = {}


def _run_delay() -> Callable[[], float]:
    path = f"/proc/self/task/{threading.get_native_id()}/schedstat"
    try:
        with open(path) as f:
            f.read()
    except OSError:
        return lambda: 0.0

    def read() -> float:
        with open(path) as f:
            return int(f.read().split()[1]) / 1e9
    return read


def pings() -> tuple[list[float], Any, Any, Callable[[float], None]]:
    """What every measurement here shares: a precise timer stamping the GUI thread's pings
    every ``PERIOD_MS`` into a list (started by the caller), an event loop, and ``wait(s)``,
    which runs that loop for ``s`` seconds."""
    from PySide6.QtCore import QEventLoop, Qt, QTimer  # noqa: TID251

    stamps: list[float] = []
    timer = QTimer(interval=PERIOD_MS)
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    run_delay = _run_delay()
    _ACCOUNTS.clear()

    def ping() -> None:
        now = time.perf_counter()
        stamps.append(now)
        _ACCOUNTS[now] = (time.thread_time(), run_delay())
        if len(_ACCOUNTS) > 2 * len(stamps) + 1000:  # the caller cleared its list
            for key in [k for k in _ACCOUNTS if k < stamps[0]]:
                del _ACCOUNTS[key]

    timer.timeout.connect(ping)
    loop = QEventLoop()

    def wait(seconds: float) -> None:
        QTimer.singleShot(int(seconds * 1000), loop.quit)
        loop.exec()

    return stamps, timer, loop, wait


def _stalls(stamps: list[float]) -> list[float]:
    return [max(0.0, (b - a) * 1000.0 - PERIOD_MS) for a, b in zip(stamps, stamps[1:], strict=False)]


def _summary(stamps: list[float]) -> dict[str, float]:
    """The stalls' max, p99 and p50; and what the GUI thread did between two pings: its
    CPU time at most and at p99 (``gui_cpu_*``: the work this code does on it, whatever
    the load), and for the worst stall its own CPU time and its wait for a CPU."""
    stalls = _stalls(stamps)
    out = {"max_ms": max(stalls, default=0.0), "p99_ms": percentile(stalls, 0.99),
           "p50_ms": percentile(stalls, 0.5), "pings": len(stamps)}
    pairs = [(_ACCOUNTS.get(a), _ACCOUNTS.get(b)) for a, b in zip(stamps, stamps[1:],
                                                                    strict=False)]
    if stalls and all(a is not None and b is not None for a, b in pairs):
        cpu = [(b[0] - a[0]) * 1000.0 for a, b in pairs]  # type: ignore[index]
        queued = [(b[1] - a[1]) * 1000.0 for a, b in pairs]  # type: ignore[index]
        worst = max(range(len(stalls)), key=stalls.__getitem__)
        out.update({"gui_cpu_max_ms": max(cpu), "gui_cpu_p99_ms": percentile(cpu, 0.99),
                    "worst_gui_cpu_ms": cpu[worst], "worst_cpu_wait_ms": queued[worst]})
    return out


def measure(model_path: str, size: int, steps: int, threads: int | None = None,
            idle_s: float = 1.0, dtype: str = "auto", nice: int | None = None) -> dict[str, Any]:
    """Run one generation through ``MainWindow`` and report the GUI thread's stalls."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import torch

    # The benchmark wires the real window to the real engine, as app.py does.
    from PySide6.QtCore import QSettings, QTimer  # noqa: TID251
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
    stamps, timer, loop, wait = pings()

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


def make_project(path: Path, layers: int, size: int, seed: int = 0) -> Path:
    """A ``size``-px project of ``layers`` opaque-ish layers, each added as its own edit."""
    import numpy as np

    from studio.core.document.edits import AddLayer
    from studio.core.document.layers import Document, Layer
    from studio.core.document.undo import UndoStack
    from studio.core.project.store import ProjectStore

    doc = Document()
    doc.width = doc.height = size
    undo = UndoStack(doc)
    rng = np.random.default_rng(seed)
    for i in range(layers):
        w, h = (int(v) for v in rng.integers(size // 8, size * 3 // 8, 2))
        pixels = np.zeros((h, w, 4), np.uint8)
        pixels[..., :3] = rng.integers(0, 255, 3, dtype=np.uint8)
        pixels[4:-4, 4:-4, 3] = 200
        layer = Layer(name=f"Layer {i + 1}", pixels=pixels, x=int(rng.integers(0, size - w)),
                      y=int(rng.integers(0, size - h)))
        undo.push(AddLayer(layer))
    ProjectStore.save(path, doc, undo, doc.log)
    return path


def measure_open(layers: int = 200, size: int = 1024, idle_s: float = 0.5) -> dict[str, Any]:
    """Open a ``layers``-layer project in ``MainWindow`` and report the GUI thread's stalls
    from the Open command until the opened project has been painted."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings, QTimer  # noqa: TID251
    from PySide6.QtWidgets import QApplication  # noqa: TID251

    from studio.settings import Settings
    from studio.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(["studio-bench"])
    folder = Path(tempfile.mkdtemp(prefix="studio-bench-open-"))
    made = time.perf_counter()
    path = make_project(folder / f"{layers}-layers.studio", layers, size)
    made = time.perf_counter() - made
    settings = QSettings(str(folder / "s.ini"), QSettings.Format.IniFormat)
    window = MainWindow(None, None, settings, Settings(autosave_minutes=0))
    window.show()
    stamps, timer, loop, wait = pings()

    progress: list[str] = []
    window.projects.open_progressed.connect(lambda text, _f: progress.append(text))
    timer.start()
    wait(0.2)
    stamps.clear()
    wait(idle_s)
    idle = _summary(stamps)
    opened: list[float] = []

    def open_it() -> None:
        if window.projects.open_project(path):
            opened.append(time.perf_counter())
        QTimer.singleShot(100, loop.quit)  # the opened project's first paints

    stamps.clear()
    start = time.perf_counter()
    QTimer.singleShot(0, open_it)
    loop.exec()
    timer.stop()
    if not opened:
        raise RuntimeError("the window did not open the project")
    busy = _summary(stamps)
    shown = len(window.doc.layers)
    window.close()
    app.processEvents()
    return {"idle": idle, "open": busy, "open_s": opened[0] - start, "layers": shown,
            "size": size, "file_mb": path.stat().st_size / 2**20, "make_s": made,
            "progress": progress, "load": os.getloadavg()}


def _rss_mb() -> float:
    """This process's resident memory, in MB (Linux: /proc; elsewhere the peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_large(model_path: str, canvas: int = 8000, region: int = 0, runs: int = 10,
                  steps: int = 4, size: int = 64, keep: bool = False,
                  idle_s: float = 0.5) -> dict[str, Any]:
    """Generate ``runs`` times on a ``canvas``-px document (one opaque image layer) through
    ``MainWindow`` and report, for each run, the GUI thread's stalls from Generate until the
    result is drawn (canvas composite, layer and History thumbnails), and the memory.

    ``region``: a square selection of that side in the middle (0: the whole canvas). Each
    result is undone before the next run (``keep``: left on the canvas), so the document is
    the same at every start and the resident memory must stay flat."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import gc

    import numpy as np
    from PySide6.QtCore import QSettings, QTimer  # noqa: TID251
    from PySide6.QtWidgets import QApplication  # noqa: TID251

    from studio.bench.engine_figures import PROMPT, SEED, make_engine, request_for
    from studio.bench.models import BenchModel
    from studio.core.jobs.runner import JobRunner
    from studio.engine.services import engine_services
    from studio.ui.launch import ENGINE_NICE
    from studio.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(["studio-bench"])
    model = BenchModel("m", Path(model_path), model_path, size)
    engine = make_engine(model, "auto")
    engine.generate(request_for(model, 1))  # load and warm up outside the measurement
    runner = JobRunner(engine, nice=ENGINE_NICE)
    settings = QSettings(str(Path(tempfile.mkdtemp(prefix="studio-bench-big-")) / "s.ini"),
                         QSettings.Format.IniFormat)
    window = MainWindow(engine_services(engine), runner, settings)
    window.resize(1400, 900)
    window.show()
    ys = np.linspace(0, 255, canvas, dtype=np.float32)
    base = np.empty((canvas, canvas, 3), np.uint8)
    base[..., 0] = ys[:, None].astype(np.uint8)
    base[..., 1] = ys[None, :].astype(np.uint8)
    base[..., 2] = 128
    window.controller.add_image_layer(base, "big")
    del base
    if region:
        x = (canvas - region) // 2
        window.canvas.set_selection((x, x, region, region))
    panel = window.prompt_panel
    panel.set_values({"prompt": PROMPT, "seed": SEED, "seed_locked": True, "steps": steps,
                      "width": size, "height": size, "batch_count": 1})
    stamps, timer, loop, wait = pings()

    done: list[float] = []
    window.controller.generation_applied.connect(
        lambda _rid: (done.append(time.perf_counter()), QTimer.singleShot(300, loop.quit)))
    timer.start()
    wait(1.0)  # the first composite and thumbnails of the opened image
    stamps.clear()
    wait(idle_s)
    idle = _summary(stamps)
    per_run: list[dict[str, float]] = []
    rss: list[float] = []
    before = _rss_mb()  # the canvas drawn, no generation yet
    warm: dict[str, float] = {}
    for i in range(runs + 1):
        done.clear()
        stamps.clear()
        start = time.perf_counter()
        if not window.controller.generate():
            raise RuntimeError("the window did not submit a job")
        guard = QTimer(singleShot=True)
        guard.timeout.connect(loop.quit)
        guard.start(600_000)
        loop.exec()  # until 300 ms after the result landed: its drawing is measured too
        guard.stop()
        if not done:
            raise RuntimeError("the generation did not finish")
        while window.canvas.drawing:  # the result drawn in full (tiles between events)
            wait(0.1)
        run = _summary(stamps)
        run["seconds"] = done[0] - start
        if not keep:
            window.document.undo()
            while window.canvas.drawing:
                wait(0.1)
        gc.collect()
        run["rss_mb"] = _rss_mb()
        if i == 0:  # the first run fills the undo stack's redo entry: not counted
            warm = run
        else:
            per_run.append(run)
            rss.append(run["rss_mb"])
        print(f"run {i}{' (warm-up)' if i == 0 else ''}: {run['seconds']:.1f} s, stalls max "
              f"{run['max_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms, RSS {run['rss_mb']:.0f} MB, "
              f"load {os.getloadavg()[0]:.1f}; GUI thread CPU between pings max "
              f"{run.get('gui_cpu_max_ms', 0):.1f} ms, p99 {run.get('gui_cpu_p99_ms', 0):.1f} "
              f"ms; worst stall: {run.get('worst_gui_cpu_ms', 0):.1f} ms CPU, "
              f"{run.get('worst_cpu_wait_ms', 0):.1f} ms waiting for a CPU",
              file=sys.stderr, flush=True)
    timer.stop()
    window.close()
    runner.shutdown(10.0)
    app.processEvents()
    stalls = [r["max_ms"] for r in per_run]
    p99s = [r["p99_ms"] for r in per_run]
    return {"canvas": canvas, "region": region or canvas, "runs": runs, "keep": keep,
            "idle": idle, "warm_up": warm, "rss_before_mb": before,
            "per_run": per_run, "max_ms": max(stalls),
            "p99_ms": max(p99s),
            "gui_cpu_max_ms": max(r.get("gui_cpu_max_ms", 0.0) for r in per_run),
            "gui_cpu_p99_ms": max(r.get("gui_cpu_p99_ms", 0.0) for r in per_run),
            "rss_mb": rss,
            "rss_growth": (rss[-1] - rss[0]) / rss[0] if rss else 0.0,
            "load": os.getloadavg()}


def measure_canvas(canvas: int = 8000, runs: int = 3, idle_s: float = 0.5) -> dict[str, Any]:
    """The canvas alone (no engine): the GUI thread's stalls while a ``canvas``-px result
    layer is added to a ``canvas``-px document fitted to a 1400x900 window and drawn, with
    level of detail and without it (every tile at full size, as before), run by run in
    turns so both see the same load; then the resident memory over ``runs`` more adds and
    undos with level of detail."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import gc

    import numpy as np
    from PySide6.QtCore import QSettings  # noqa: TID251
    from PySide6.QtWidgets import QApplication  # noqa: TID251

    from studio.core.document.edits import AddLayer
    from studio.core.document.layers import Layer
    from studio.settings import Settings
    from studio.ui.canvas import CanvasView
    from studio.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(["studio-bench"])
    folder = Path(tempfile.mkdtemp(prefix="studio-bench-canvas-"))
    settings = QSettings(str(folder / "s.ini"), QSettings.Format.IniFormat)
    window = MainWindow(None, None, settings, Settings(autosave_minutes=0))
    window.resize(1400, 900)
    window.show()
    ys = np.linspace(0, 255, canvas, dtype=np.float32)
    base = np.empty((canvas, canvas, 3), np.uint8)
    base[..., 0] = ys[:, None].astype(np.uint8)
    base[..., 1] = ys[None, :].astype(np.uint8)
    base[..., 2] = 128
    window.controller.add_image_layer(base, "big")
    result = np.empty((canvas, canvas, 4), np.uint8)  # a result: smooth, opaque
    result[..., 0] = 200
    result[..., 1] = ys[None, :].astype(np.uint8)
    result[..., 2] = ys[:, None].astype(np.uint8)
    result[..., 3] = 255
    del base
    stamps, timer, loop, wait = pings()

    def drawn() -> None:
        wait(0.05)
        while window.canvas.drawing:
            wait(0.02)

    timer.start()
    window.canvas.fit()
    wait(0.5)
    drawn()
    stamps.clear()
    wait(idle_s)
    idle = _summary(stamps)
    modes: dict[str, list[dict[str, float]]] = {"lod": [], "full": []}
    rss: list[float] = []
    for i in range(runs * 2 + runs):
        mode = ("lod", "full")[i % 2] if i < runs * 2 else "lod"
        CanvasView.level_of_detail = mode == "lod"
        add = AddLayer(Layer(name="result", pixels=result, kind="generated"))
        stamps.clear()
        start = time.perf_counter()
        window.undo.push(add)  # the layer lands (as a generation's does) and is drawn
        drawn()
        run = _summary(stamps)
        run["seconds"] = time.perf_counter() - start
        window.undo.undo()
        drawn()
        del add
        gc.collect()
        run["rss_mb"] = _rss_mb()
        if i < runs * 2:
            modes[mode].append(run)
        else:
            rss.append(run["rss_mb"])
        print(f"{mode} {i}: drawn in {run['seconds']:.2f} s, stalls max {run['max_ms']:.1f} ms, "
              f"p99 {run['p99_ms']:.1f} ms, RSS {run['rss_mb']:.0f} MB, "
              f"load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    CanvasView.level_of_detail = True
    timer.stop()
    # A repaint of the whole view that changes nothing drawn (a preview step): from the
    # canvas kept scaled to the zoom, and scaling the reduced copy each time (as before).
    import studio.ui.canvas as canvas_module

    repaint_ms: dict[str, float] = {}
    kept = canvas_module.SCALED_MAX_PIXELS
    for name, limit in (("scaled", kept), ("direct", 0), ("scaled_again", kept)):
        canvas_module.SCALED_MAX_PIXELS = limit
        window.canvas.repaint()
        times = []
        for _ in range(40):
            t0 = time.perf_counter()
            window.canvas.repaint()
            times.append((time.perf_counter() - t0) * 1000.0)
        repaint_ms[name] = percentile(times, 0.5)
    canvas_module.SCALED_MAX_PIXELS = kept
    window.close()
    app.processEvents()

    def worst(key: str, mode: str) -> float:
        return max(r[key] for r in modes[mode])

    return {"canvas": canvas, "runs": runs, "idle": idle, "lod": modes["lod"],
            "full": modes["full"],
            "max_ms": {"lod": worst("max_ms", "lod"), "full": worst("max_ms", "full")},
            "p99_ms": {"lod": worst("p99_ms", "lod"), "full": worst("p99_ms", "full")},
            "max_ratio_full_over_lod": worst("max_ms", "full") / max(worst("max_ms", "lod"), 1e-3),
            "p99_ratio_full_over_lod": worst("p99_ms", "full") / max(worst("p99_ms", "lod"), 1e-3),
            "rss_mb": rss, "rss_growth": (rss[-1] - rss[0]) / rss[0] if rss else 0.0,
            "repaint_p50_ms": repaint_ms,
            "repaint_ratio_direct_over_scaled": repaint_ms["direct"] / max(
                min(repaint_ms["scaled"], repaint_ms["scaled_again"]), 1e-3),
            "load": os.getloadavg()}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.bench.ui_stall")
    parser.add_argument("model", nargs="?", help="the model of the generation measured")
    parser.add_argument("--open-project", type=int, default=0, metavar="LAYERS",
                        help="measure opening a project of LAYERS layers instead")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--nice", type=int, default=None,
                        help="engine thread nice increment (default: the app's)")
    parser.add_argument("--idle-s", type=float, default=0.5,
                        help="with --open-project: seconds of idle stalls measured first "
                             "(the baseline at this machine's load)")
    parser.add_argument("--large", type=int, default=0, metavar="SIDE",
                        help="measure generations on a SIDE x SIDE canvas (e.g. 8000)")
    parser.add_argument("--canvas", type=int, default=0, metavar="SIDE",
                        help="the canvas alone (no model): stalls while a SIDE x SIDE "
                             "result is drawn, with level of detail and at full size")
    parser.add_argument("--region", type=int, default=0,
                        help="with --large: a square selection of this side (0: all of it)")
    parser.add_argument("--runs", type=int, default=0,
                        help="with --large: how many runs (10); with --canvas: of each (3)")
    parser.add_argument("--keep", action="store_true",
                        help="with --large: leave each result on the canvas (no undo)")
    args = parser.parse_args()
    if args.canvas:
        report_child_result(measure_canvas(args.canvas, args.runs or 3))
        return 0
    if args.large:
        if not args.model:
            parser.error("name the model for --large")
        report_child_result(measure_large(args.model, args.large, args.region, args.runs or 10,
                                          args.steps, args.size, args.keep))
        return 0
    if args.open_project:
        report_child_result(measure_open(args.open_project, idle_s=args.idle_s))
        return 0
    if not args.model:
        parser.error("name the model (or --open-project LAYERS)")
    report_child_result(measure(args.model, args.size, args.steps, args.threads or None,
                                dtype=args.dtype, nice=args.nice))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
