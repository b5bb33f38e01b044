"""``studio bench --remote URL...``: our client against ComfyUI servers, side by side.

Two figures, in one run:

- **Round trip over the server's own time**: each job is timed by us (from queueing the
  workflow to the pixels decoded here) and by the server (its ``execution_start`` to its
  ``execution_success``, from ``/history``). The difference is what our client adds: the
  upload, the websocket, ``/history``, ``/view`` and the PNG decode. Targets: under 5 % at
  512 px, under 150 ms per job otherwise.
- **One server against two** on the same batch (images per second, and the speed-up).
  On one machine, give each server cores of its own (``taskset -c 0 ... main.py`` and
  ``taskset -c 1 ...``) so that the scaling shows.

Imports no torch: runs on a thin install.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from studio.bench.measure import median
from studio.core.errors import InvalidRequestError
from studio.core.jobs.request import GenerationRequest

OVERHEAD_TARGET_PCT = 5.0  # at 512 px
OVERHEAD_TARGET_MS = 150.0  # per job, other sizes


def _server_times(engine: Any, url: str) -> tuple[float, float]:
    """The server's own ``execution_start`` and ``execution_success`` times of its last
    prompt (``/history``), wall clock in seconds."""
    server = next(s for s in engine.servers if s.url == url)
    history = engine.loop.run(server.client._request("GET", "/history",
                                                     params={"max_items": "1"}), timeout=30)
    (entry,) = history.values()
    stamps = {name: data.get("timestamp") for name, data in entry["status"]["messages"]
              if isinstance(data, dict)}
    if stamps.get("execution_start") is None or stamps.get("execution_success") is None:
        raise InvalidRequestError(f"{url} did not report its execution time.")
    return stamps["execution_start"] / 1000.0, stamps["execution_success"] / 1000.0


def _request(model: str, size: int, steps: int, seed: int, batch: int = 1
             ) -> GenerationRequest:
    return GenerationRequest(prompt="a lighthouse on a cliff at dusk", model=model,
                             width=size, height=size, steps=steps, seed=seed, guidance=5.0,
                             batch_size=batch)


def overhead(engine: Any, model: str, size: int, steps: int, runs: int,
             log: Callable[[str], None]) -> dict[str, Any]:
    """Median round trip, server time and overhead of ``runs`` jobs at ``size`` px.

    The overhead (ours - the server's execution time) is split in two, from wall clocks
    (meaningful when the server runs on this machine): ``client_ms``, our client's own time
    (before the server accepted the prompt: model lists, uploads, ``POST /prompt``; after its
    word that it succeeded reached us: ``/history``, ``/view``, decoding), and ``wait_ms``,
    the server's own waits outside its execution time (the prompt accepted but not started,
    and the word of success not yet sent: ComfyUI collects garbage between prompts, at most
    every 10 s, which holds its event loop).
    """
    url = engine.servers[0].url
    client = engine.servers[0].client
    engine.generate(_request(model, 64, 1, 10_000))  # loads the model there (any size does)
    ours, theirs, mine = [], [], []
    for i in range(runs):  # a new seed each time: the server caches a repeated prompt
        start, wall = time.perf_counter(), time.time()
        engine.generate(_request(model, size, steps, 10_001 + i))
        ours.append(time.perf_counter() - start)
        end = time.time()
        began, succeeded = _server_times(engine, url)
        theirs.append(succeeded - began)
        mine.append((client.prompt_posted - wall) + (end - client.finished_heard))
    extra = [a - b for a, b in zip(ours, theirs, strict=True)]
    waits = [e - m for e, m in zip(extra, mine, strict=True)]
    row = {"size": size, "steps": steps, "runs": runs, "ours_s": median(ours),
           "server_s": median(theirs), "overhead_ms": median(extra) * 1000,
           "overhead_pct": 100 * median(extra) / max(median(theirs), 1e-9),
           "client_ms": median(mine) * 1000, "client_max_ms": max(mine) * 1000,
           "wait_ms": median(waits) * 1000,
           "client_pct": 100 * median(mine) / max(median(theirs), 1e-9)}
    row["target"] = (f"< {OVERHEAD_TARGET_PCT:.0f} %" if size >= 512
                     else f"< {OVERHEAD_TARGET_MS:.0f} ms")
    row["met"] = (row["overhead_pct"] < OVERHEAD_TARGET_PCT if size >= 512
                  else row["overhead_ms"] < OVERHEAD_TARGET_MS)
    row["client_met"] = (row["client_pct"] < OVERHEAD_TARGET_PCT if size >= 512
                         else row["client_ms"] < OVERHEAD_TARGET_MS)
    log(f"overhead at {size} px: {row['overhead_ms']:.0f} ms over {row['server_s']:.2f} s "
        f"(our client {row['client_ms']:.0f} ms, the server's waits {row['wait_ms']:.0f} ms)")
    return row


def throughput(make_engine: Callable[[Sequence[str]], Any], urls: Sequence[str], model: str,
               size: int, steps: int, batch: int, log: Callable[[str], None]
               ) -> list[dict[str, Any]]:
    """The same batch on the first server alone, then on the first two sharing the queue."""
    rows = []
    for count in (1, 2):
        engine = make_engine(urls[:count])
        try:
            engine.generate(_request(model, size, steps, 20_000, batch=count))  # load on each
            start = time.perf_counter()
            result = engine.generate(_request(model, size, steps, 21_000, batch=batch))
            seconds = time.perf_counter() - start
        finally:
            engine.close()
        rows.append({"servers": count, "batch": batch, "size": size, "steps": steps,
                     "seconds": seconds, "images_per_s": len(result.images) / seconds,
                     "used": result.server})
        log(f"{count} server(s): {batch} images in {seconds:.1f} s")
    rows[1]["speedup"] = rows[1]["images_per_s"] / rows[0]["images_per_s"]
    rows[0]["speedup"] = 1.0
    return rows


def run_remote_bench(urls: Sequence[str], *, model: str = "", smoke: bool = False,
                     quick: bool = False, log: Callable[[str], None] = lambda _t: None
                     ) -> dict[str, Any]:
    """Every remote figure against the servers at ``urls`` (two or more for the scaling)."""
    from studio.remote.client import check_url
    from studio.remote.engine import RemoteEngine

    urls = [check_url(u) for u in urls]
    load_before = os.getloadavg()  # the load average beside the figures (1, 5, 15 min)
    if not urls:
        raise InvalidRequestError("Name at least one server: --remote URL [URL ...].")
    first = RemoteEngine(urls[:1])
    try:
        if not model:
            default = first.default_model()
            if default is None:
                raise InvalidRequestError(f"{urls[0]} has no checkpoint to benchmark.")
            model = default.id
        # (size, steps, runs): the tiny test checkpoint on a CPU takes minutes a job at
        # 512 px (its VAE is full-sized), so one step there; a GPU server takes seconds.
        plan = (((64, 1, 2),) if smoke else ((256, 1, 2), (64, 2, 3)) if quick
                else ((512, 1, 2), (64, 2, 5)))
        rows = [overhead(first, model, size, steps, runs, log) for size, steps, runs in plan]
    finally:
        first.close()
    figures: dict[str, Any] = {"servers": urls, "model": model, "overhead": rows}
    load = [load_before, os.getloadavg()]
    if len(urls) >= 2:
        batch, size, steps = (2, 64, 1) if smoke else (4, 64, 2) if quick else (8, 128, 2)
        figures["throughput"] = throughput(RemoteEngine, urls, model, size, steps, batch, log)
    load.append(os.getloadavg())
    figures["load"] = [[round(v, 2) for v in one] for one in load]
    return figures


def format_remote(figures: dict[str, Any]) -> str:
    """The figures as two small tables."""
    out = [f"Remote ComfyUI: {', '.join(figures['servers'])} (model {figures['model']})", "",
           "Round trip over the server's own execution time (medians)",
           f"{'size':>6} {'steps':>5} {'runs':>4} {'server s':>9} {'ours s':>8} {'overhead':>9} "
           f"{'of server':>9} {'= client':>9} {'+ waits':>8}  target"]
    for r in figures["overhead"]:
        out.append(f"{r['size']:>5}px {r['steps']:>5} {r['runs']:>4} {r['server_s']:>9.3f} "
                   f"{r['ours_s']:>8.3f} {r['overhead_ms']:>7.0f}ms {r['overhead_pct']:>8.1f}% "
                   f"{r['client_ms']:>7.0f}ms {r['wait_ms']:>6.0f}ms  {r['target']} "
                   f"({'met' if r['met'] else 'NOT met'}; client alone "
                   f"{'met' if r['client_met'] else 'NOT met'})")
    out.append("  client: our own time before the server accepts the prompt and after its word "
               "of success arrives; waits: the server's, outside its execution time "
               "(ComfyUI's garbage collection between prompts holds its event loop)")
    rows = figures.get("throughput")
    if rows:
        out += ["", f"Throughput, the same batch of {rows[0]['batch']} at {rows[0]['size']} px, "
                    f"{rows[0]['steps']} steps",
                f"{'servers':>7} {'seconds':>8} {'images/s':>9} {'speed-up':>8}"]
        for r in rows:
            out.append(f"{r['servers']:>7} {r['seconds']:>8.2f} {r['images_per_s']:>9.3f} "
                       f"{r['speedup']:>7.2f}x")
    else:
        out += ["", "Throughput: name two servers to compare one with two."]
    if figures.get("load"):
        when = ("at the start", "after the round trips", "at the end")
        out += ["", f"Load average (1/5/15 min) on this machine ({os.cpu_count()} cores): "
                + "; ".join(f"{w} {' '.join(f'{v:.2f}' for v in one)}"
                            for w, one in zip(when, figures["load"], strict=False))]
    return "\n".join(out)
