"""Runs the real app entry (``python -m studio``) with two timestamps added.

``python -m studio.bench.startup_probe [--first-image] [-- studio args]`` patches
``StudioSession`` so that it prints the wall-clock time when the window has been shown and
the event loop turns (and, with ``--first-image``, when the first generated image has been
applied to the document), then exits. The parent measures from before it spawned us, so
interpreter start and every import are counted. Nothing here runs in a normal app start.
"""

from __future__ import annotations

import os
import runpy
import sys
import time

from studio.bench.measure import report_child_result

_marks: dict[str, float] = {}


def _cpu_s() -> float:
    """This process's CPU time so far (all threads, user + system): on a shared machine a
    steadier figure than the wall clock for what the start-up itself costs."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _finish() -> None:
    _marks.setdefault("cpu_s", _cpu_s())
    _marks.setdefault("modules", len(sys.modules))  # imported by then: load-independent
    report_child_result(_marks)
    sys.stdout.flush()
    os._exit(0)  # the loader thread may still be importing; the figures are taken


def _install(first_image: bool, steps: int, size: int, model_path: str) -> None:
    from PySide6.QtCore import QTimer  # noqa: TID251 (a probe around the GUI entry)

    from studio.ui import launch

    original_start = launch.StudioSession.start
    original_loaded = launch.StudioSession._on_loader_loaded

    def start(self) -> None:
        original_start(self)

        def shown() -> None:
            _marks["window_shown"] = time.time()
            if not first_image:
                _finish()

        QTimer.singleShot(0, shown)

    def loaded(self, engine) -> None:
        original_loaded(self, engine)
        _marks["engine_ready"] = time.time()
        _marks["engine_ready_cpu_s"] = _cpu_s()
        panel = self.window.prompt_panel
        values: dict[str, object] = {"prompt": "a lighthouse at dusk", "seed": 1,
                                     "seed_locked": True, "batch_count": 1}
        for info in self.window.connection.services.engine.list_models("diffusion"):
            if model_path and os.path.samefile(str(info.path), model_path):
                values["model"] = info.id
        if steps:
            values["steps"] = steps
        if size:
            values.update(width=size, height=size)
        panel.set_values(values)
        self.window.controller.generation_applied.connect(
            lambda _rid: (_marks.__setitem__("first_image", time.time()), _finish()))
        self.window.jobs.add_listener(_on_event)
        if not self.window.controller.generate():
            _marks["error"] = "no job was submitted"  # type: ignore[assignment]
            _finish()

    def failed(self, message: str) -> None:
        _marks["error"] = message  # type: ignore[assignment]
        _finish()

    launch.StudioSession.start = start
    launch.StudioSession._on_loader_loaded = loaded
    launch.StudioSession._on_loader_failed = failed


def _on_event(event) -> None:
    from studio.core.jobs.events import JobFailed

    if isinstance(event, JobFailed):
        _marks["error"] = event.message  # type: ignore[assignment]
        _finish()


def main() -> None:
    args = sys.argv[1:]
    first_image = "--first-image" in args
    steps = int(os.environ.get("STUDIO_BENCH_STEPS", "0") or 0)
    size = int(os.environ.get("STUDIO_BENCH_SIZE", "0") or 0)
    model_path = os.environ.get("STUDIO_BENCH_MODEL", "")
    rest = args[args.index("--") + 1:] if "--" in args else []
    _install(first_image, steps, size, model_path)
    sys.argv = ["studio", *rest]
    runpy.run_module("studio", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
