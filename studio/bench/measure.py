"""Timing helpers: interleaved repeats, medians, and children that report JSON."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

RESULT_PREFIX = "STUDIO-BENCH-RESULT "


def interleaved(candidates: dict[str, Callable[[], Any]], repeats: int,
                warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each candidate, run A B A B ... so drift hits all alike.

    The order alternates between rounds (A B, then B A) so that neither candidate always
    runs right after the other one's caches were filled.
    """
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeats):
        for name in names if i % 2 == 0 else reversed(names):
            t = time.perf_counter()
            candidates[name]()
            times[name].append(time.perf_counter() - t)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by the nearest-rank rule."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q * len(ordered) + 0.5)) - 1))
    return float(ordered[rank])


def report_child_result(result: dict[str, Any]) -> None:
    """Called by a child process: print its figures where ``run_child`` finds them."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_child(module: str, args: Sequence[str], *, env: dict[str, str] | None = None,
              timeout: float = 1800.0) -> dict[str, Any]:
    """Run ``python -m module args`` and return the JSON it reports.

    A child is used where a figure must not be coloured by this process: peak memory,
    start-up time, a Qt event loop.
    """
    # a child that crashes (a signal, not an exception) prints its threads' Python stacks
    full_env = {**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", module, *args], env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return dict(json.loads(line[len(RESULT_PREFIX):]))
    tail = (proc.stderr or proc.stdout)[-2000:]
    raise RuntimeError(f"{module} {' '.join(args)} reported nothing (exit {proc.returncode}):"
                       f"\n{tail}")


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB.

    On Linux from ``VmHWM``: ``ru_maxrss`` survives ``execve``, so a child started by a
    parent that holds a large model would report the parent's size (it did: 5.7 GB for the
    1M-parameter model, the SD1.5-sized model's figure).
    """
    import resource

    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / 2**20
