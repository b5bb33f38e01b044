"""``studio bench --peer comfyui``: the same request through the studio and a real ComfyUI.

Both sides run the same single-file checkpoint (``studio.bench.models.sd15_checkpoint``: the
SD 1.5 architecture, fp16, random weights), prompt, seed, size, steps, sampler (Euler) and
CFG, each from a **cold process** and each in its best mode on this device: the studio in
its device policy's (``--dtype``), ComfyUI 0.8.0 from the cached venv
(``scripts/comfyui-venv.sh``) with ``--cpu --use-pytorch-cross-attention`` (fp32: ComfyUI
has no bf16 compute on the CPU). The sides alternate over the rounds (S C, then C S ...), so
a load that drifts hits both alike. In each process two images are made, the second with a
new seed (what an artist does next).

Figures per side (medians over the rounds):

- ``step_s``: seconds per sampling step (CFG batch of 2), from the step progress of both
  images (steps after each image's first).
- ``fixed_s``: the first image's time once the process is ready, less its steps: model
  load, prompt encoding, VAE decode and the rest.
- ``first_image_s``: from starting the process to the first image in hand.
- ``image_s``: the second image (the model loaded), and ``image_20_steps_s``:
  ``fixed_s - load_s + 20 * step_s`` where fewer steps were run (said so in the table).
- ``peak_rss_mb``: the process's peak resident memory (``VmHWM``; ComfyUI's server process).

The studio side runs in ``python -m studio.bench.peer_comfyui studio ...`` children.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.bench.measure import median, peak_rss_mb, report_child_result, run_child

PROMPT = "a lighthouse on a cliff at dusk, oil painting"
NEGATIVE = "blurry"
SEED = 1234
CFG = 7.0
COMFY_ARGS = ("--cpu", "--use-pytorch-cross-attention")
START_TIMEOUT_S = 600.0
CHECKPOINT_NAME = "studio-bench-sd15.safetensors"


# -- the ComfyUI side ----------------------------------------------------------------------
def comfyui_root() -> Path:
    """The cached ComfyUI venv and source (``scripts/comfyui-venv.sh``), or a clear error."""
    from studio.core.errors import InvalidRequestError

    named = os.environ.get("STUDIO_COMFYUI_ROOT", "")
    candidates = [Path(named)] if named else []
    script = Path(__file__).resolve().parents[2] / "scripts" / "comfyui-venv.sh"
    if script.is_file():
        try:
            out = subprocess.run(["bash", str(script), "--print"], capture_output=True,
                                 text=True, check=True, timeout=30)
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    cache = Path(os.environ.get("STUDIO_COMFYUI_CACHE", Path.home() / ".cache" / "latent-studio"))
    candidates += sorted(cache.glob("comfyui-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for root in candidates:
        if (root / "ready").is_file() and (root / "venv" / "bin" / "python").exists():
            return root
    raise InvalidRequestError(
        "No ComfyUI to compare with: its venv is not built.",
        hint="Run `bash scripts/comfyui-venv.sh` once (several minutes, about 7.5 GB), or set "
             "STUDIO_COMFYUI_ROOT to a folder holding venv/ and comfyui/.")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def vm_hwm_mb(pid: int) -> float:
    """Peak resident memory of process ``pid`` in MiB (Linux ``VmHWM``; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


class ComfyProcess:
    """One ComfyUI server on a free loopback port, its folders in a temporary directory."""

    def __init__(self, root: Path, checkpoint: Path, extra: tuple[str, ...] = COMFY_ARGS
                 ) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="studio-bench-comfyui-"))
        for sub in ("models/checkpoints", "input", "output", "temp", "user", "custom_nodes"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        link = self.base / "models" / "checkpoints" / CHECKPOINT_NAME
        try:
            os.link(checkpoint, link)
        except OSError:
            os.symlink(checkpoint, link)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.base / "server.log"
        command = [str(root / "venv" / "bin" / "python"), "main.py", "--listen", "127.0.0.1",
                   "--port", str(self.port), "--base-directory", str(self.base),
                   "--disable-all-custom-nodes", "--disable-auto-launch",
                   "--database-url", f"sqlite:///{self.base / 'user' / 'db.sqlite'}", *extra]
        self.started = time.perf_counter()
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(command, cwd=root / "comfyui", stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def wait_ready(self) -> float:
        """Seconds from start to the server answering ``/system_stats``."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited at start:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/system_stats", timeout=2) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - self.started
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"ComfyUI did not answer in {START_TIMEOUT_S:.0f} s:\n"
                           f"{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        shutil.rmtree(self.base, ignore_errors=True)


def _marks() -> tuple[dict[str, float], Callable[[Any], None]]:
    """A step callback that notes when each phase starts and each step ends."""
    marks: dict[str, Any] = {"steps": []}
    seen: set[int] = set()

    def on_step(progress: Any) -> None:
        now = time.perf_counter()
        # The first report of each step only (a remote server's previews repeat the step).
        if progress.phase == "sampling" and progress.step > 0 and progress.step not in seen:
            seen.add(progress.step)
            marks["steps"].append(now)
        elif progress.phase in ("encoding", "decoding"):
            marks.setdefault(progress.phase, now)

    return marks, on_step


def _image_figures(start: float, end: float, marks: dict[str, Any]) -> dict[str, Any]:
    steps = marks["steps"]
    gaps = [b - a for a, b in zip(steps, steps[1:], strict=False)]
    decode = end - marks["decoding"] if "decoding" in marks else float("nan")
    return {"seconds": end - start, "step_gaps": gaps, "decode_s": decode,
            "first_step_at": (steps[0] - start) if steps else float("nan")}


def comfy_side(root: Path, checkpoint: Path, size: int, steps: int,
               extra: tuple[str, ...] = COMFY_ARGS) -> dict[str, Any]:
    """A cold ComfyUI server: start, two images (seeds ``SEED``, ``SEED + 1``), stop."""
    from studio.remote.engine import RemoteEngine

    server = ComfyProcess(root, checkpoint, extra)
    engine = None
    try:
        ready_s = server.wait_ready()
        engine = RemoteEngine([server.url], timeout=START_TIMEOUT_S)
        images, _ = _two_images(engine, CHECKPOINT_NAME, size, steps)
        first_image_s = ready_s + images[0]["seconds"]
        peak = vm_hwm_mb(server.process.pid)
    finally:
        if engine is not None:
            engine.close()
        server.stop()
    return {"ready_s": ready_s, "first_image_s": first_image_s, "images": images,
            "peak_rss_mb": peak, "args": list(extra)}


def _two_images(engine: Any, model: str, size: int, steps: int
                ) -> tuple[list[dict[str, Any]], float]:
    """The bench's request at seeds SEED and SEED + 1 through ``engine`` (ours, local or
    remote): each image's figures, and the wall-clock time (``time.time()``) the first ended."""
    from studio.core.jobs.request import GenerationRequest

    images = []
    first_image_at = float("nan")
    for seed in (SEED, SEED + 1):
        request = GenerationRequest(PROMPT, negative_prompt=NEGATIVE, model=model,
                                    scheduler="Euler", seed=seed, steps=steps, guidance=CFG,
                                    width=size, height=size)
        marks, on_step = _marks()
        start = time.perf_counter()
        engine.generate(request, on_step)
        images.append(_image_figures(start, time.perf_counter(), marks))
        if seed == SEED:
            first_image_at = time.time()
    return images, first_image_at


# -- the studio side (in a child process) --------------------------------------------------
def studio_child(checkpoint: str, size: int, steps: int, dtype: str, spawned: float
                 ) -> dict[str, Any]:
    """In a fresh process: import, load, two images; every mark relative to ``spawned``
    (the parent's ``time.time()`` just before it started this process)."""
    import_start = time.time()
    import studio.engine  # noqa: F401  (thread policy before torch)
    from studio.bench.engine_figures import make_engine
    from studio.bench.models import BenchModel

    model = BenchModel("sd15", Path(checkpoint), checkpoint, size)
    engine = make_engine(model, dtype)
    ready = time.time()
    load_start = time.perf_counter()
    loaded = engine.load(str(model.path))
    load_s = time.perf_counter() - load_start
    images, first_image_at = _two_images(engine, str(model.path), size, steps)
    images[0]["seconds"] += load_s  # the first image's fixed time includes the load
    return {"ready_s": ready - spawned, "imports_s": ready - import_start, "load_s": load_s,
            "first_image_s": first_image_at - spawned, "images": images,
            "peak_rss_mb": peak_rss_mb(), "policy": loaded.choice.reason,
            "device": engine.device_info().description}


def studio_side(checkpoint: Path, size: int, steps: int, dtype: str) -> dict[str, Any]:
    spawned = time.time()
    return run_child("studio.bench.peer_comfyui",
                     ["studio", str(checkpoint), "--size", str(size), "--steps", str(steps),
                      "--dtype", dtype, "--spawned", repr(spawned)], timeout=3600)


# -- the comparison ------------------------------------------------------------------------
def summarise(runs: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    """Medians over the rounds of one side's figures."""
    gaps = [g for r in runs for image in r["images"] for g in image["step_gaps"]]
    step_s = median(gaps)
    # The first image, once the process was ready: everything but its steps.
    fixed = [r["images"][0]["seconds"] - steps * step_s for r in runs]
    second = [r["images"][1]["seconds"] for r in runs]
    decode = [r["images"][1]["decode_s"] for r in runs]
    out = {"step_s": step_s, "fixed_s": median(fixed), "first_image_s":
           median([r["first_image_s"] for r in runs]), "image_s": median(second),
           "decode_s": median(decode), "peak_rss_mb": median([r["peak_rss_mb"] for r in runs]),
           "ready_s": median([r["ready_s"] for r in runs]), "steps": steps,
           "rounds": len(runs)}
    per_image_fixed = median([s - steps * step_s for s in second])
    out["image_20_steps_s"] = (median(second) if steps == 20
                               else per_image_fixed + 20 * step_s)
    return out


def run_peer_bench(*, size: int = 512, steps: int = 20, rounds: int = 2, dtype: str = "auto",
                   cache: str | Path | None = None, log: Callable[[str], None] = print
                   ) -> dict[str, Any]:
    """Both sides, interleaved over ``rounds``; returns the figures (JSON-ready)."""
    from studio.bench.models import bench_cache_dir, sd15_checkpoint
    from studio.bench.suite import machine

    root = comfyui_root()
    log("building/locating the SD 1.5-sized single-file checkpoint (first run: minutes)…")
    checkpoint = sd15_checkpoint(bench_cache_dir(cache)).path
    runs: dict[str, list[dict[str, Any]]] = {"studio": [], "comfyui": []}
    load = [os.getloadavg()[0]] if hasattr(os, "getloadavg") else []
    for i in range(rounds):
        for side in ("studio", "comfyui") if i % 2 == 0 else ("comfyui", "studio"):
            log(f"round {i + 1}/{rounds}: {side}, {size}px, {steps} steps, two images from a "
                "cold process…")
            if side == "studio":
                runs[side].append(studio_side(checkpoint, size, steps, dtype))
            else:
                runs[side].append(comfy_side(root, checkpoint, size, steps))
            if hasattr(os, "getloadavg"):
                load.append(os.getloadavg()[0])
    s, c = summarise(runs["studio"], steps), summarise(runs["comfyui"], steps)
    s["policy"] = runs["studio"][0]["policy"]
    s["load_s"] = median([r["load_s"] for r in runs["studio"]])
    s["imports_s"] = median([r["imports_s"] for r in runs["studio"]])
    figures: dict[str, Any] = {
        "machine": machine(), "checkpoint": str(checkpoint), "size": size, "steps": steps,
        "rounds": rounds, "dtype": dtype, "comfyui_args": list(COMFY_ARGS),
        "load_avg_during": load, "studio": s, "comfyui": c,
        "runs": runs,
    }
    ratios = {key: s[key] / c[key] for key in ("step_s", "fixed_s", "first_image_s", "image_s",
                                                "image_20_steps_s", "peak_rss_mb", "decode_s")
              if c.get(key)}
    figures["ratios"] = ratios
    # The names (point 6); "sd15" figures are the studio's at this size.
    figures.update({
        "peer_comfyui_ratio_sd15": ratios.get("image_20_steps_s"),
        "peer_comfyui_first_image_ratio": ratios.get("first_image_s"),
        "peer_comfyui_memory_ratio": ratios.get("peak_rss_mb"),
        "peer_comfyui_step_ratio": ratios.get("step_s"),
        "sd15_unet_step_s": s["step_s"], "sd15_image_20_steps_s": s["image_20_steps_s"],
        "sd15_vae_decode_s": s["decode_s"], "sd15_peak_rss_gb": s["peak_rss_mb"] / 1024,
        "sd15_first_image_s": s["first_image_s"],
    })
    return figures


TARGETS = {"image_20_steps_s": "<= 0.25 (bf16) / 0.8 (fp32)", "first_image_s": "<= 0.5",
           "peak_rss_mb": "<= 0.6"}


def format_peer(fig: dict[str, Any]) -> str:
    """The side-by-side table."""
    s, c, r = fig["studio"], fig["comfyui"], fig["ratios"]
    m = fig["machine"]
    loads = ", ".join(f"{x:.1f}" for x in fig["load_avg_during"])
    derived = "" if fig["steps"] == 20 else f" (derived: {fig['steps']}-step runs)"
    rows = [
        ("seconds per step (CFG batch 2)", "step_s", "{:.2f}s"),
        ("fixed: load + encode + decode", "fixed_s", "{:.1f}s"),
        ("  VAE decode", "decode_s", "{:.2f}s"),
        ("first image from a cold process", "first_image_s", "{:.1f}s"),
        (f"next image ({fig['steps']} steps, new seed)", "image_s", "{:.1f}s"),
        ("20-step image, model loaded" + derived, "image_20_steps_s", "{:.1f}s"),
        ("peak memory (RSS)", "peak_rss_mb", "{:.0f} MB"),
    ]
    head = (f"Latent Studio against ComfyUI ({' '.join(fig['comfyui_args'])}) on "
            f"{Path(fig['checkpoint']).name}, {fig['size']}x{fig['size']}, Euler, CFG {CFG:g}, "
            f"{fig['rounds']} interleaved rounds\n{m['cpu']}, {m['cores']} cores, torch "
            f"{m['torch']} ({m['cpu_capability']}); studio: {s['policy']}; load avg {loads}")
    width = max(len(name) for name, _, _ in rows)
    lines = [head, "", f"{'figure'.ljust(width)}  {'studio':>10}  {'ComfyUI':>10}  "
             f"{'ratio':>6}  target", "-" * (width + 50)]
    for name, key, fmt in rows:
        ratio = r.get(key)
        lines.append(f"{name.ljust(width)}  {fmt.format(s[key]):>10}  {fmt.format(c[key]):>10}"
                     f"  {'-' if ratio is None else f'{ratio:.2f}':>6}  {TARGETS.get(key, '')}")
    lines.append(f"\n(studio: imports {s['imports_s']:.1f}s, load {s['load_s']:.1f}s; "
                 f"ComfyUI: server ready after {c['ready_s']:.1f}s; medians over the rounds)")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.bench.peer_comfyui")
    sub = parser.add_subparsers(dest="what", required=True)
    child = sub.add_parser("studio")
    child.add_argument("checkpoint")
    child.add_argument("--size", type=int, default=512)
    child.add_argument("--steps", type=int, default=20)
    child.add_argument("--dtype", default="auto")
    child.add_argument("--spawned", type=float, required=True)
    args = parser.parse_args()
    report_child_result(studio_child(args.checkpoint, args.size, args.steps, args.dtype,
                                     args.spawned))
    return 0


if __name__ == "__main__":
    sys.exit(main())
