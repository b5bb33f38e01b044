"""Live mode's figures: strokes replayed through the real window and engine thread.

``python -m studio.bench.live_bench`` (``studio bench --only live`` runs it as a child, with
offscreen Qt) opens ``MainWindow`` on the embedded ``studio-tiny-diffusion`` with the engine
thread as the app starts it, puts a portrait (drawn by the procedural renderer) on the canvas,
turns Live on and paints strokes with the mouse (press, a move every 16 ms as a 60 Hz tablet
sends them, release). For each stroke it takes the time from the release to the live view
showing the picture of the canvas with that stroke (``live_update_p50_ms``/``p95``), while a
5 ms timer measures how long the GUI thread is ever kept from its event loop
(``live_ui_stall_max_ms``). A second phase ends strokes faster than the updates run (every
80 ms): the stale updates are cancelled (latest wins) and the brush still never stalls.
Python's full garbage collections meanwhile (on any thread; each holds the GIL while it walks
every object) are counted too (``live_gc_full_count``, the longest ``live_gc_full_max_ms``):
live mode holds them back (``studio.ui.live.defer_full_collections``), as one froze the brush
for 0.3 to 1.3 s.

``--remote URL`` (``studio bench --only live --remote URL``) runs the same strokes with the
window on a ComfyUI server's first checkpoint instead (the remote backend, as the app makes it
for servers in the settings): each update is an image to image workflow on that server. A
thread asks the server's ``/queue`` every 20 ms meanwhile, so the figures say how many live
prompts it ever held at once (latest wins: at most one), and ``live_updates_per_s`` is how
many updates a second the server turns round (1 / the median round trip, upload to pixels).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import studio.engine  # noqa: F401  (its thread policy must be set before torch loads)
from studio.bench.measure import percentile, report_child_result
from studio.session.live import MAX_UPDATE_S

PERIOD_MS = 5  # the stall probe's period
_KEEP_ALIVE: list[Any] = []  # the window and its engine until the figures are reported
MOVE_MS = 16  # a 60 Hz pointer
TARGETS = {"live_update_p50_ms": 150.0, "live_update_p95_ms": 300.0,
           "live_ui_stall_max_ms": 16.0}


class FullCollections:
    """Python's collections of the oldest generation while it is installed, on any thread:
    how long each took (ms)."""

    def __init__(self) -> None:
        import gc

        self.ms: list[float] = []
        self._start = 0.0
        self._gc = gc
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.ms.append((time.perf_counter() - self._start) * 1000.0)

    def stop(self) -> None:
        if self._on_gc in self._gc.callbacks:
            self._gc.callbacks.remove(self._on_gc)


def _stalls(stamps: list[float]) -> list[float]:
    return [max(0.0, (b - a) * 1000.0 - PERIOD_MS) for a, b in zip(stamps, stamps[1:],
                                                                    strict=False)]


class QueueWatch:
    """Asks a ComfyUI server's ``/queue`` every ``period`` seconds on a thread of its own
    (never the GUI thread): the most prompts it held at once, running and waiting (those
    sent by the client ``client_id`` only, when given)."""

    def __init__(self, url: str, period: float = 0.02, client_id: str = "") -> None:
        import threading

        self.url, self.period, self.client_id = url.rstrip("/"), period, client_id
        self.most = self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-queue", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import json
        import urllib.request

        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url + "/queue", timeout=5) as resp:
                    state = json.loads(resp.read())
                items = [*state.get("queue_running", []), *state.get("queue_pending", [])]
                held = sum(1 for item in items if not self.client_id or (
                    len(item) > 3 and isinstance(item[3], dict)
                    and item[3].get("client_id") == self.client_id))
                self.most = max(self.most, held)
                self.samples += 1
            except (OSError, ValueError):
                pass
            self._stop.wait(self.period)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def measure(strokes: int = 30, rapid: int = 10, nice: int | None = None,
            steps: int | None = None, seed: int = 0, remote: str = "") -> dict[str, Any]:
    """Replay ``strokes`` strokes one at a time (each waits for its picture, then the brush
    rests 100-300 ms), then ``rapid`` strokes 80 ms apart; returns the figures. ``remote``:
    a ComfyUI server's address; the window runs on its first checkpoint."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import numpy as np
    from PySide6.QtCore import QEventLoop, QPointF, QSettings, Qt, QTimer  # noqa: TID251
    from PySide6.QtTest import QTest  # noqa: TID251
    from PySide6.QtWidgets import QApplication  # noqa: TID251

    from studio.core.jobs.runner import JobRunner
    from studio.core.portraits.render import render_sample
    from studio.engine.engine import Engine
    from studio.engine.models.loading import quiet_libraries
    from studio.engine.services import engine_services
    from studio.ui import canvas_tools as tools
    from studio.ui.canvas_tools import BrushSettings
    from studio.ui.launch import ENGINE_NICE
    from studio.ui.main_window import MainWindow

    quiet_libraries()
    app = QApplication.instance() or QApplication(["studio-bench-live"])
    if remote:
        from types import SimpleNamespace

        from studio.remote.services import remote_services

        services = remote_services(SimpleNamespace(servers=[remote]))
        engine: Any = services.engine
    else:
        engine = Engine(device="cpu", dtype="auto", model_dirs=[], hf_cache=False)
        services = engine_services(engine)
    model = engine.default_model()
    if model is None:
        raise RuntimeError("the server has no checkpoint" if remote else
                           "the embedded model is not installed")
    nice = ENGINE_NICE if nice is None else nice  # the app's, unless asked otherwise
    runner = JobRunner(engine, nice=nice)
    folder = Path(tempfile.mkdtemp(prefix="studio-bench-live-"))
    window = MainWindow(services, runner,
                        QSettings(str(folder / "s.ini"), QSettings.Format.IniFormat))
    window.resize(1400, 900)
    window.show()
    def wait(ms: float) -> None:
        """Run the event loop for ``ms`` (a loop of its own: no other wait can end it)."""
        loop = QEventLoop()
        QTimer.singleShot(max(0, int(ms)), loop.quit)
        loop.exec()

    shown: list[tuple[float, int]] = []  # (time, seq) of each picture shown
    controller, session, canvas = window.live_controller, window.live, window.canvas
    controller.shown.connect(lambda live: shown.append((time.perf_counter(), live.seq)))
    messages: list[str] = []  # what live mode said (failures, "Live mode is off: ...")
    session.message.connect(messages.append)
    # The app turns live mode off for a model whose updates take over a second; on a loaded
    # machine that happened after the first strokes and every later stroke waited 60 s for a
    # picture that never came (the run printed nothing in time). The bench measures the
    # update path, so it keeps live mode on and reports what the app would have decided.
    session.max_update_s = float("inf")

    def wait_for_picture(seq: int, timeout_s: float) -> float | None:
        """When the picture of update ``seq`` (or a later one) was shown."""
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            for t, s in shown:
                if s >= seq:
                    return t
            if not session.on or (not session.busy and session.last_seq == seq):
                return None  # live mode went off, or this update failed: no picture comes
            wait(1)
        return None

    panel = window.prompt_panel
    if remote:  # the window lists the server's models off the GUI thread
        deadline = time.perf_counter() + 120
        while panel.model_combo.count() == 0 and time.perf_counter() < deadline:
            wait(20)
        index = panel.model_combo.findData(model.id)
        if index >= 0:
            panel.model_combo.setCurrentIndex(index)
    panel.set_values({"prompt": "a portrait of a person", "seed": 3, "guidance": 5.0,
                      "scheduler": "Euler", "width": 64, "height": 64})
    portrait = render_sample(7, 0)[0]
    window.controller.add_image_layer(np.dstack([portrait, np.full((64, 64), 255, np.uint8)]),
                                      "portrait")
    canvas.fit()
    if steps:
        window.live_view.steps_slider.setValue(steps)
    canvas.set_tool(tools.BRUSH)
    rng = random.Random(seed)

    def stroke(moves: int = 8) -> float:
        """Paint one stroke with the mouse; returns the time of the release."""
        colour = tuple(rng.randrange(256) for _ in range(3))
        canvas.set_brush(BrushSettings(rng.choice((6, 10, 14)), 0.8, 1.0, colour))
        x0, y0 = rng.uniform(4, 60), rng.uniform(4, 60)
        x1, y1 = rng.uniform(4, 60), rng.uniform(4, 60)

        def at(t: float) -> Any:
            return canvas.to_widget(QPointF(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t)).toPoint()

        QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                         at(0))
        for i in range(1, moves + 1):
            wait(MOVE_MS)
            QTest.mouseMove(canvas, at(i / moves))
        wait(MOVE_MS)
        released = time.perf_counter()
        QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                           at(1))
        return released

    if not controller.set_live(True):
        raise RuntimeError(f"live mode would not start: {session.reason(panel.values())}")
    if wait_for_picture(1, 600) is None:  # loads the model
        raise RuntimeError("live mode showed no picture")
    for _ in range(3):  # warm up the update path
        stroke()
        wait_for_picture(session.last_seq, 60)
    stamps: list[float] = []
    timer = QTimer(interval=PERIOD_MS)
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.timeout.connect(lambda: stamps.append(time.perf_counter()))
    timer.start()
    wait(200)
    stamps.clear()
    wait(500)
    idle = _stalls(stamps)
    stamps.clear()
    collections = FullCollections()
    latencies: list[float] = []
    engine_ms: list[float] = []
    missed = 0
    for _ in range(strokes):
        released = stroke()
        seq = session.last_seq
        at = wait_for_picture(seq, 60)
        if at is None:
            missed += 1
            continue
        latencies.append((at - released) * 1000)
        if session.latest is not None:
            engine_ms.append(session.latest.result.seconds * 1000)
        wait(rng.uniform(100, 300))  # the brush rests
    paced = _stalls(stamps)
    stamps.clear()
    cancelled: list[int] = []
    window.bridge.job_cancelled.connect(lambda e: cancelled.append(e.job_id))
    watch = QueueWatch(remote, client_id=engine.servers[0].client.client_id) if remote \
        else None
    for _ in range(rapid):  # strokes end faster than updates run: latest wins
        stroke(moves=3)
        wait(80 - 4 * MOVE_MS)
    last = session.last_seq
    rapid_at = wait_for_picture(last, 60)
    rapid_stalls = _stalls(stamps)
    collections.stop()
    if watch is not None:
        watch.stop()
    timer.stop()
    live_step = session.latest.request if session.latest is not None else None
    controller.set_live(False)
    window.detach_engine()
    window.close()
    runner.shutdown(10.0)
    app.processEvents()
    if remote:
        engine.close()
    # Qt's objects stay alive until the figures are out (``main``): a crash while Qt
    # destroys a window must not take the measurement with it (one CI run lost its figures
    # to a SIGSEGV after the strokes, not reproduced in 13 runs since).
    _KEEP_ALIVE.extend((window, runner, services, engine, app))
    stalls = paced + rapid_stalls
    ran = None
    if live_step is not None:  # a server's sampler runs all its steps (studio.ui.live)
        ran = live_step.steps if remote else int(live_step.steps * live_step.strength)
    engine_p50 = percentile(engine_ms, 0.5)
    extra = {} if not remote else {
        "live_remote": remote,
        "live_updates_per_s": (1000.0 / engine_p50) if engine_ms else 0.0,
        "live_server_prompts_max": watch.most if watch is not None else None,
        "live_server_queue_samples": watch.samples if watch is not None else 0,
    }
    return {
        "live_update_p50_ms": percentile(latencies, 0.5),
        "live_update_p95_ms": percentile(latencies, 0.95),
        "live_ui_stall_max_ms": max(stalls, default=0.0),
        "live_ui_stall_p99_ms": percentile(stalls, 0.99),
        "live_idle_stall_max_ms": max(idle, default=0.0),
        "live_gc_full_count": len(collections.ms),
        "live_gc_full_max_ms": max(collections.ms, default=0.0),
        "live_engine_update_p50_ms": engine_p50,
        "live_strokes": len(latencies), "live_missed": missed,
        "live_rapid_strokes": rapid, "live_rapid_cancelled": len(set(cancelled)),
        "live_rapid_last_shown": rapid_at is not None,
        "live_steps": ran,
        "live_strength": live_step.strength if live_step else None,
        "live_size": 64, "live_model": model.id, "engine_nice": nice,
        "live_messages": messages[-3:],
        "live_would_turn_off": min(engine_ms[-3:], default=0.0) > MAX_UPDATE_S * 1000,
        "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        **extra,
    }


def _collections(fig: dict[str, Any]) -> str:
    if "live_gc_full_count" not in fig:
        return ""
    count = fig["live_gc_full_count"]
    if not count:
        return "; no full garbage collection"
    return (f"; {count} full garbage collection{'s' if count > 1 else ''} (the longest "
            f"{fig['live_gc_full_max_ms']:.0f} ms)")


def table_rows(fig: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, measured, target, how) rows, as ``studio bench`` prints them."""
    if "live_update_p50_ms" not in fig:
        return []
    if not fig.get("live_strokes"):  # no picture came: say why instead of "nan ms"
        said = "; ".join(fig.get("live_messages") or []) or "no message"
        return [("live: stroke end to picture", "no picture", "< 150 ms",
                 f"{fig.get('live_missed', 0)} strokes got no live picture ({said})")]
    turn_off = (" (the app would turn live mode off: over "
                f"{MAX_UPDATE_S * 1000:.0f} ms an update)" if fig.get("live_would_turn_off")
                else "")
    where = f" on the server {fig['live_remote']}" if fig.get("live_remote") else ""
    how = (f"{fig['live_strokes']} strokes on {fig['live_model']}{where} {fig['live_size']}px, "
           f"{fig['live_steps']} steps at strength {fig['live_strength']}, engine "
           f"{fig['live_engine_update_p50_ms']:.0f} ms an update (p50), nice "
           f"+{fig['engine_nice']}, load avg {(fig.get('load_avg') or [0])[0]:.1f}{turn_off}")
    load = (fig.get("load_avg") or [0])[0]
    server = [] if not fig.get("live_remote") else [
        ("live: updates a second (server)", f"{fig['live_updates_per_s']:.2f}/s",
         "(GPU: >= 5/s)", f"1 / the median round trip, upload to pixels; load avg {load:.1f}; "
         "the GPU target (SD 1.5 LCM, 512 px) needs a GPU server, not measured here"),
        ("live: live prompts on the server", f"max {fig['live_server_prompts_max']}", "<= 1",
         f"/queue asked {fig['live_server_queue_samples']} times during the "
         f"{fig['live_rapid_strokes']} strokes 80 ms apart"),
    ]
    return [
        ("live: stroke end to picture p50", f"{fig['live_update_p50_ms']:.0f}ms", "< 150 ms",
         how),
        ("live: stroke end to picture p95", f"{fig['live_update_p95_ms']:.0f}ms", "< 300 ms",
         f"missed {fig['live_missed']}"),
        ("live: GUI stall while painting", f"max {fig['live_ui_stall_max_ms']:.1f}ms, "
         f"p99 {fig['live_ui_stall_p99_ms']:.1f}ms", "max < 16 ms",
         f"idle max {fig['live_idle_stall_max_ms']:.1f}ms; {fig['live_rapid_strokes']} "
         f"strokes 80 ms apart cancelled {fig['live_rapid_cancelled']} stale updates"
         f"{_collections(fig)}"),
        *server,
    ]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.bench.live_bench")
    parser.add_argument("--strokes", type=int, default=30)
    parser.add_argument("--rapid", type=int, default=10)
    parser.add_argument("--steps", type=int, default=0,
                        help="denoising steps per update (default: live mode's)")
    parser.add_argument("--nice", type=int, default=None,
                        help="engine thread nice increment (default: the app's)")
    parser.add_argument("--remote", default="", metavar="URL",
                        help="paint on a ComfyUI server's first checkpoint instead")
    args = parser.parse_args()
    report_child_result(measure(args.strokes, args.rapid, args.nice, args.steps or None,
                                remote=args.remote))
    sys.stderr.flush()
    os._exit(0)  # the figures are out; no teardown of Qt and the engine thread at exit


if __name__ == "__main__":
    raise SystemExit(main())
