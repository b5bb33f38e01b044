"""How long the command line takes to answer, side by side with ``studio --version``.

Each command runs as a user runs it (a fresh ``python -m studio`` process, wall time, the
median of a few runs) in an empty folder, offline: the argument mistakes that must be
answered in under a second, ``studio models`` (under 2 s) and ``studio device`` (under 5 s).
Run it as ``studio bench --only cli`` or ``python -m studio.bench.cli_latency``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

# (what, argv, target in seconds or None for the baseline)
COMMANDS: tuple[tuple[str, tuple[str, ...], float | None], ...] = (
    ("studio --version (baseline)", ("--version",), None),
    ("unknown scheduler", ("generate", "x", "--scheduler", "Eulr"), 1.0),
    ("size not a multiple of 8", ("generate", "x", "--size", "100x64"), 1.0),
    ("missing init image", ("generate", "x", "--init-image", "missing.png"), 1.0),
    ("-o x.gif", ("generate", "x", "-o", "x.gif"), 1.0),
    ("missing model file", ("generate", "x", "--model", "missing.safetensors"), 1.0),
    ("--guidance inf", ("generate", "x", "--guidance", "inf"), 1.0),
    ("studio models", ("models",), 2.0),
    ("studio device", ("device",), 5.0),
)


def time_command(argv: tuple[str, ...], runs: int, cwd: str) -> tuple[float, int]:
    """Median wall seconds of ``python -m studio ARGV`` over ``runs`` runs, and its exit code."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    times, code = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "studio", *argv], cwd=cwd, env=env,
                              capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        code = proc.returncode
    return statistics.median(times), code


def measure(runs: int = 3, log: Callable[[str], None] | None = None) -> list[dict]:
    """One row per command: what, seconds (median), ratio to --version, target, exit code."""
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as cwd:
        for what, argv, target in COMMANDS:
            seconds, code = time_command(argv, runs, cwd)
            if log is not None:
                log(f"{what}: {seconds:.2f} s")
            rows.append({"what": what, "argv": " ".join(argv), "seconds": seconds,
                         "target": target, "exit": code})
    base = rows[0]["seconds"] or 1e-9
    for row in rows:
        row["ratio"] = row["seconds"] / base
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = [f"{'command':<30} {'median s':>9} {'x --version':>12} {'target':>8}  exit  ok",
             "-" * 72]
    for r in rows:
        target = f"< {r['target']:g} s" if r["target"] else "-"
        ok = "-" if r["target"] is None else ("yes" if r["seconds"] < r["target"] else "NO")
        lines.append(f"{r['what']:<30} {r['seconds']:>9.2f} {r['ratio']:>12.1f} "
                     f"{target:>8}  {r['exit']:>4}  {ok}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per command (default: 3)")
    args = parser.parse_args(argv)
    print(format_rows(measure(max(1, args.runs))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
