"""The benchmark run: which figures, on which models, with how many repeats; the table.

``run_bench`` measures everything in one run and returns the figures (the JSON keys of
``studio bench --json``); ``format_table`` prints them with their targets.
"""

from __future__ import annotations

import math
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import studio.engine  # noqa: F401  (its thread policy must be set before torch loads)
from studio.bench import engine_figures as ef
from studio.bench.measure import median, run_child
from studio.bench.models import BenchModel, bench_cache_dir, sd15_model, tiny_model


@dataclass(frozen=True)
class Plan:
    """How much each section measures; ``smoke`` runs on the tiny model only."""

    name: str
    tiny_steps: int
    tiny_repeats: int
    sd15_steps: int
    sd15_repeats: int
    dtype_repeats: int
    decode_repeats: int
    ui_steps: int
    startup_repeats: int
    first_image_steps: int  # 0: the model's recommended steps
    large_decode: bool
    omp_rounds: int  # child-process pairs comparing OpenMP wait policies (0: none)
    smoke: bool = False
    big_warmup: int = 1  # warm-up calls before the SD1.5-sized dtype and decode timings
    turbo_repeats: int = 2  # SD-Turbo-sized single steps timed (after one warm-up)
    image_steps: int = 0  # a real SD 1.5-sized image of this many steps (0: derived, below)
    sdxl_steps: int = 1  # steps of the SDXL 1024 px generation whose peak RSS is taken
    peer_steps: int = 2  # steps per image of the ComfyUI side-by-side (0: not run)


PLANS = {
    # smoke: the peer run is left out (it needs the 2 GB checkpoint and a ComfyUI server:
    # `studio bench --peer comfyui --smoke` checks that path).
    "smoke": Plan("smoke", 2, 2, 1, 1, 1, 1, 4, 0, 1, False, 0, smoke=True, turbo_repeats=1,
                  image_steps=2, peer_steps=0),
    # quick: one call per candidate for the SD1.5-sized dtype and decode figures, no
    # warm-up (a call takes minutes on 2 cores; first-call set-up is a second of that).
    "quick": Plan("quick", 4, 7, 1, 2, 1, 1, 20, 3, 0, False, 2, big_warmup=0),
    "full": Plan("full", 10, 11, 4, 3, 3, 4, 30, 5, 0, True, 3, turbo_repeats=3,
                 image_steps=20, sdxl_steps=2, peer_steps=20),
}

SECTIONS = ("overhead", "dtype", "preview", "decode", "threads", "ui", "startup", "memory",
            "sliders", "control", "dit", "image", "turbo", "sdxl", "peer")
# Sections a flag can leave out of a run because they are big (`--no-sdxl`, `--no-peer`).
BIG_SECTIONS = ("sdxl", "peer")
# The figures issue #26 asks `studio bench --json` for (point 6), always written: a figure
# not measured in a run is null, with the reason under "issue_sources".
ISSUE_KEYS = ("peer_comfyui_ratio_sd15", "peer_comfyui_memory_ratio", "sd15_unet_step_s",
              "sd15_image_20_steps_s", "sd15_vae_decode_s", "sd15_peak_rss_gb",
              "sdxl_peak_rss_gb", "turbo_step_s", "first_image_tiny_s", "startup_window_s")
# libgomp's default (3 ms of spinning before sleeping): how the engine ran before it asked
# for passive waits. GOMP_SPINCOUNT takes precedence over OMP_WAIT_POLICY.
SPIN_ENV = {"GOMP_SPINCOUNT": "300000"}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import torch

    cpu = ""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name") and not cpu:
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    from studio.engine.device import choose_device

    choice = choose_device("cpu", "auto")
    return {
        "cpu": cpu or platform.machine(), "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_flags": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "avx512f"}),
        "cpu_policy": choice.reason, "python": platform.python_version(),
        "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def run_bench(plan: Plan, *, cache: str | Path | None = None,
              sections: tuple[str, ...] = SECTIONS,
              log: Callable[[str], None] = print,
              checkpoint: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Measure ``sections`` under ``plan``; returns the figures (JSON-ready).

    ``checkpoint`` is called with the figures so far after each section (long runs on a
    busy machine keep what they measured if they are stopped).
    """
    t_start = time.perf_counter()
    root = bench_cache_dir(cache)
    tiny = tiny_model(root)
    sd15 = tiny if plan.smoke else None
    figures: dict[str, Any] = {"plan": plan.name, "machine": machine(),
                               "models": {"tiny": str(tiny.path)}}
    figures["sd15_stand_in"] = plan.smoke  # smoke: the "sd15" figures come from the tiny model

    def big() -> BenchModel:
        nonlocal sd15
        if sd15 is None:
            log("building/locating the SD 1.5-sized model (first run: a few minutes)…")
            sd15 = sd15_model(root)
            figures["models"]["sd15"] = str(sd15.path)
        return sd15

    loaded: dict[str, Any] = {}
    if "overhead" in sections or "preview" in sections:
        log(f"overhead: tiny model, {plan.tiny_steps} steps x {plan.tiny_repeats}…")
        o = ef.overhead(tiny, ef.Settings(plan.tiny_steps, plan.tiny_repeats, 0))
        loaded["tiny"] = o.pop("_loaded")
        o.pop("_engine")
        figures["overhead_tiny"] = o
        figures["overhead_ratio_tiny"] = o["ratio"]
        m = big()
        log(f"overhead: {m.label} {m.size}px, {plan.sd15_steps} steps x {plan.sd15_repeats}…")
        o = ef.overhead(m, ef.Settings(plan.sd15_steps, plan.sd15_repeats, 0,
                                       warmup=plan.big_warmup))
        loaded["sd15"] = o.pop("_loaded")
        o.pop("_engine")
        figures["overhead_sd15"] = o
        figures["overhead_ratio_sd15"] = o["ratio"]
    _save(checkpoint, figures)
    if "preview" in sections:
        p_tiny = ef.preview_cost(loaded["tiny"], tiny, figures["overhead_tiny"]["step_s"])
        p_big = ef.preview_cost(loaded["sd15"], big(), figures["overhead_sd15"]["step_s"])
        figures["preview_tiny"], figures["preview_sd15"] = p_tiny, p_big
        # The larger of the two: the tiny model's steps are short, so its share is larger.
        figures["preview_fraction"] = max(p_tiny["fraction"], p_big["fraction"])
    _save(checkpoint, figures)
    if "dtype" in sections:
        m = big()
        if "sd15" not in loaded:
            loaded["sd15"] = ef.make_engine(m).load(str(m.path))
        log(f"dtype: UNet step fp32 vs bf16 autocast, x {plan.dtype_repeats}…")
        d = ef.unet_dtype(loaded["sd15"], m, plan.dtype_repeats, plan.big_warmup)
        d["image_diff_tiny"] = ef.bf16_image_difference(tiny, max(2, plan.tiny_steps))
        figures["dtype"] = d
        figures["cpu_bf16_speedup"] = d["speedup"]
        figures["bf16_image_mean_abs_diff"] = d["image_diff_tiny"]["mean_abs"]
    _save(checkpoint, figures)
    if "decode" in sections:
        m = big()
        if "sd15" not in loaded:
            loaded["sd15"] = ef.make_engine(m).load(str(m.path))
        log(f"decode: VAE vs tiny autoencoder vs latent->RGB at {m.size}px…")
        figures["decode"] = ef.decode_costs(loaded["sd15"], m, plan.decode_repeats,
                                            plan.big_warmup)
        if plan.large_decode:
            log("decode: 2048x2048 with VAE tiling (child process)…")
            figures["decode_2048_tiled"] = run_child(
                "studio.bench.child", ["decode", str(m.path), "--size", "2048", "--tiled"])
    loaded.clear()
    _save(checkpoint, figures)
    if "threads" in sections and plan.omp_rounds:
        log(f"threads: OpenMP spinning vs passive waits, {plan.omp_rounds} child pairs…")
        figures["omp_wait"] = omp_policy(tiny, plan)
        figures["omp_passive_speedup_tiny"] = figures["omp_wait"]["speedup"]
    _save(checkpoint, figures)
    if "ui" in sections:
        log(f"ui: GUI stalls during a {plan.ui_steps}-step generation…")
        ui_args = [str(tiny.path), "--size", str(tiny.size), "--steps", str(plan.ui_steps)]
        if plan.smoke:  # in this process: one interpreter start less
            from studio.bench.ui_stall import measure

            u = measure(str(tiny.path), tiny.size, plan.ui_steps, idle_s=0.3)
        else:
            qt = {"QT_QPA_PLATFORM": "offscreen"}
            if plan.omp_rounds:
                log("ui: the same with spinning OpenMP waits (the engine before), child…")
                figures["ui_spin"] = run_child("studio.bench.ui_stall", ui_args,
                                               env={**qt, **SPIN_ENV})
            log("ui: the same with the engine thread at the window's priority (before)…")
            figures["ui_same_priority"] = run_child("studio.bench.ui_stall",
                                                    [*ui_args, "--nice", "0"], env=qt)
            u = run_child("studio.bench.ui_stall", ui_args, env=qt)
        figures["ui"] = u
        figures["ui_stall_max_ms"] = u["busy"]["max_ms"]
        figures["ui_stall_p99_ms"] = u["busy"]["p99_ms"]
        layers = 40 if plan.smoke else 200
        log(f"ui: GUI stalls while a {layers}-layer project opens…")
        if plan.smoke:
            from studio.bench.ui_stall import measure_open

            figures["ui_open"] = measure_open(layers, size=512, idle_s=0.2)
        else:
            figures["ui_open"] = run_child("studio.bench.ui_stall",
                                           ["--open-project", str(layers)],
                                           env={"QT_QPA_PLATFORM": "offscreen"})
    _save(checkpoint, figures)
    if "startup" in sections:
        log(f"startup: `python -m studio` to window shown x {plan.startup_repeats}, "
            "then to the first image…")
        figures.update(startup(tiny, plan))
    _save(checkpoint, figures)
    if "memory" in sections:
        log("memory: peak RSS, one child process per model…")
        if plan.smoke:  # this process's peak: an upper bound, but the figure is produced
            from studio.bench.child import memory

            mt = memory(str(tiny.path), tiny.size, plan.tiny_steps, "auto")
        else:
            mt = run_child("studio.bench.child", ["memory", str(tiny.path), "--size",
                                                  str(tiny.size), "--steps", str(plan.tiny_steps)])
        figures["memory_tiny"] = mt
        figures["peak_rss_mb_tiny"] = mt["peak_rss_mb"]
        m = big()
        ms = mt if m is tiny else run_child(
            "studio.bench.child",
            ["memory", str(m.path), "--size", str(m.size), "--steps", str(plan.sd15_steps)])
        figures["memory_sd15"] = ms
        figures["peak_rss_mb_sd15"] = ms["peak_rss_mb"]
    _save(checkpoint, figures)
    if "dit" in sections:  # studio.bench.dit_bench: the tiny DiT beside the tiny UNet
        from studio.bench.dit_bench import dit_step

        settings = ef.Settings(plan.tiny_steps, plan.tiny_repeats, 0)
        tiny_o = figures.get("overhead_tiny")
        if tiny_o is None:
            log(f"overhead: tiny model, {plan.tiny_steps} steps x {plan.tiny_repeats}…")
            tiny_o = ef.overhead(tiny, settings)
            tiny_o.pop("_loaded")
            tiny_o.pop("_engine")
        log(f"overhead: embedded studio-tiny-dit, {plan.tiny_steps} steps x "
            f"{plan.tiny_repeats}…")
        d = dit_step(settings, tiny_o["step_s"])
        if d is not None:
            figures["overhead_dit"] = d
            figures["overhead_ratio_dit"] = d["ratio"]
    _save(checkpoint, figures)
    if "sliders" in sections:
        figures["slider_latency_ms"] = slider_latency(log)
    _save(checkpoint, figures)
    if "control" in sections:  # studio.bench.control_bench: one ControlNet's cost per step
        from studio.bench.control_bench import control_step

        m = big()
        steps = max(3, plan.sd15_steps)
        log(f"control: {m.label} {m.size}px with and without one ControlNet, {steps} steps "
            f"x {plan.sd15_repeats}…")
        c = control_step(m, root, steps, plan.sd15_repeats, plan.big_warmup)
        figures["control_sd15"] = c
        figures["control_step_ratio_sd15"] = c["ratio"]
    _save(checkpoint, figures)
    if "image" in sections:
        figures["image_sd15"] = sd15_image(big, figures, plan, log)
    _save(checkpoint, figures)
    if "turbo" in sections:
        if plan.smoke:  # the tiny UNet's shape at its size: the path, not the figure
            from studio.bench.models import _native_size

            log("turbo: one step of the tiny UNet (stand-in), batch 1, no CFG…")
            config = _unet_config(tiny.path)
            figures["turbo"] = ef.turbo_step(plan.turbo_repeats, 1, config,
                                             _native_size(tiny.path), large=False)
        else:
            log(f"turbo: SD-Turbo-sized step (SD 2.1 UNet, 512px, batch 1, no CFG) x "
                f"{plan.turbo_repeats}…")
            figures["turbo"] = ef.turbo_step(plan.turbo_repeats, 1)
    _save(checkpoint, figures)
    if "sdxl" in sections:
        figures["memory_sdxl"] = sdxl_memory(root, plan, log)
    _save(checkpoint, figures)
    if "peer" in sections:
        figures["peer_comfyui"] = peer(plan, cache, log)
    figures.update(issue_figures(figures))
    figures["machine"]["load_avg_end"] = (list(os.getloadavg()) if hasattr(os, "getloadavg")
                                          else None)
    figures["bench_seconds"] = time.perf_counter() - t_start
    _save(checkpoint, figures)
    return figures


def _unet_config(folder: Path) -> dict[str, Any]:
    import json

    config = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
    return {k: v for k, v in config.items() if not k.startswith("_")}


def sd15_image(big: Callable[[], BenchModel], figures: dict[str, Any], plan: Plan,
               log: Callable[[str], None]) -> dict[str, Any]:
    """A 20-step SD 1.5-sized image with the model loaded: run for real where the plan
    says 20 steps; else a real ``image_steps``-step image (or the overhead section's) with
    the UNet steps it did not run added from the measured step, and said so."""
    m = big()
    steps = plan.image_steps
    if steps:
        log(f"image: {m.label} {m.size}px, {steps} steps, the model loaded…")
        engine = ef.make_engine(m)
        compiled = bool(getattr(engine.load(str(m.path)).pipe.unet, "_studio_compiled", False))
        marks: dict[int, float] = {}

        def on_step(progress: Any) -> None:  # when each step ended (its first report)
            if progress.phase == "sampling" and progress.step > 0:
                marks.setdefault(progress.step, time.perf_counter())

        t = time.perf_counter()
        engine.generate(ef.request_for(m, steps), on_step)
        seconds = time.perf_counter() - t
        ends = [marks[k] for k in sorted(marks)]
        gaps = [b - a for a, b in zip(ends, ends[1:], strict=False)]
        step_s = median(gaps) if gaps else float("nan")
    else:
        o = figures.get("overhead_sd15")
        if o is None:
            return {"skipped": "needs the overhead section (or a plan with image steps)"}
        seconds, steps = o["app_s"], o["steps"]
        # One step in the overhead run: its "step" includes the set-up; the UNet step of
        # the dtype section (the policy's candidate) is the cleaner figure where measured.
        d = figures.get("dtype")
        step_s = d["policy_s"] if d else o["step_s"]
        compiled = bool(d and d.get("compiled"))
    derived = steps != 20
    image_20 = seconds + (20 - steps) * step_s if derived else seconds
    # compiled (opt-in): a real 20-step image includes the first call's compile
    return {"steps_run": steps, "seconds": seconds, "step_s": step_s, "size": m.size,
            "image_20_steps_s": image_20, "derived": derived, "compiled": compiled}


def sdxl_memory(root: Path, plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    """Peak RSS of an SDXL generation at 1024 px (the real-size architecture, random
    weights, bf16 files) in a child; smoke: the tiny SDXL pipeline at 64 px, this process."""
    if plan.smoke:
        from studio.bench.child import memory
        from studio.bench.models import _built

        def build(folder: Path) -> None:
            from studio.engine.models.tiny import build_tiny_pipeline

            build_tiny_pipeline("sdxl", folder / "pipe", work_dir=folder / "work")

        folder = _built(root / "tiny-sdxl", build) / "pipe"
        log("sdxl: tiny SDXL pipeline (stand-in), 64px, this process…")
        out = memory(str(folder), 64, plan.sdxl_steps, "auto")
        return {**out, "size": 64, "stand_in": True, "model": str(folder)}
    from studio.bench.models import sdxl_model

    log("sdxl: building/locating the SDXL-sized model (first run: ~7 GB, many minutes)…")
    m = sdxl_model(root)
    log(f"sdxl: peak RSS of a {m.size}px generation, {plan.sdxl_steps} step(s), child…")
    out = run_child("studio.bench.child", ["memory", str(m.path), "--size", str(m.size),
                                           "--steps", str(plan.sdxl_steps)], timeout=7200)
    return {**out, "size": m.size, "stand_in": False, "model": str(m.path)}


def peer(plan: Plan, cache: str | Path | None, log: Callable[[str], None]) -> dict[str, Any]:
    """``studio bench --peer comfyui``'s run inside this one (512 px, 2 rounds); skipped,
    with the reason, where the plan leaves it out or no ComfyUI venv is built."""
    if not plan.peer_steps:
        return {"skipped": "the smoke plan leaves the ComfyUI run out (`studio bench --peer "
                           "comfyui --smoke` checks it)"}
    from studio.bench.peer_comfyui import comfyui_root, run_peer_bench
    from studio.core.errors import StudioError

    try:
        comfyui_root()
    except StudioError as err:
        log(f"peer: skipped: {err}")
        return {"skipped": str(err)}
    log(f"peer: the same request through the studio and ComfyUI, 512px, {plan.peer_steps} "
        "steps, 2 rounds (tens of minutes)…")
    return run_peer_bench(size=512, steps=plan.peer_steps, rounds=2, cache=cache, log=log)


def issue_figures(fig: dict[str, Any]) -> dict[str, Any]:
    """Issue #26's keys from the sections that ran (None where none did) and, under
    ``issue_sources``, where each came from or why it is missing."""
    out: dict[str, Any] = {}
    src: dict[str, str] = {}
    stand_in = " (tiny stand-in: smoke plan)" if fig.get("sd15_stand_in") else ""

    def put(key: str, value: Any, source: str) -> None:
        if key not in out or out[key] is None:
            out[key], src[key] = value, source

    p = fig.get("peer_comfyui") or {}
    if "skipped" in p:
        put("peer_comfyui_ratio_sd15", None, "peer skipped: " + p["skipped"])
        put("peer_comfyui_memory_ratio", None, "peer skipped: " + p["skipped"])
    elif p:
        derived = "" if p["steps"] == 20 else f" (derived from {p['steps']}-step images)"
        put("peer_comfyui_ratio_sd15", p["peer_comfyui_ratio_sd15"],
            "peer: 20-step image studio / ComfyUI" + derived)
        put("peer_comfyui_memory_ratio", p["peer_comfyui_memory_ratio"],
            "peer: peak RSS studio / ComfyUI")
    if "dtype" in fig:
        d = fig["dtype"]
        put("sd15_unet_step_s", d["policy_s"],
            f"dtype: UNet step, CFG batch 2, policy candidate {d['policy']}" + stand_in)
    i = fig.get("image_sd15") or {}
    if "image_20_steps_s" in i:
        how = (f"image: {i['steps_run']}-step image + {20 - i['steps_run']} x step "
               "(derived)" if i["derived"] else "image: a 20-step image, model loaded")
        put("sd15_image_20_steps_s", i["image_20_steps_s"], how + stand_in)
    if "decode" in fig:
        put("sd15_vae_decode_s", fig["decode"]["vae_s"], "decode: VAE at 512px" + stand_in)
    if "memory_sd15" in fig:
        put("sd15_peak_rss_gb", fig["memory_sd15"]["peak_rss_mb"] / 1024,
            "memory: child process, load + one image" + stand_in)
    if "memory_sdxl" in fig:
        mx = fig["memory_sdxl"]
        put("sdxl_peak_rss_gb", mx["peak_rss_mb"] / 1024,
            f"sdxl: {mx['size']}px generation" + (" (tiny stand-in)" if mx["stand_in"]
                                                   else ", child process"))
    if "turbo" in fig:
        put("turbo_step_s", fig["turbo"]["step_s"],
            f"turbo: {fig['turbo']['parameters'] / 1e6:.0f}M-parameter UNet, "
            f"{fig['turbo']['size']}px, batch 1" + stand_in)
    if "startup_first_image_s" in fig:
        put("first_image_tiny_s", fig["startup_first_image_s"],
            "startup: `python -m studio` to the first image on the embedded model")
    if "startup_window_s" in fig:
        put("startup_window_s", fig["startup_window_s"], "startup: window shown, median")
    if p and "skipped" not in p:  # the peer's studio side fills what the sections did not
        for key in ("sd15_unet_step_s", "sd15_image_20_steps_s", "sd15_vae_decode_s",
                    "sd15_peak_rss_gb"):
            put(key, p[key], "peer: the studio side, cold process")
    for key in ISSUE_KEYS:
        if key not in out:
            out[key], src[key] = None, "not measured: its section was not run"
    out["issue_sources"] = src
    return out


def _save(checkpoint: Callable[[dict[str, Any]], None] | None, figures: dict[str, Any]) -> None:
    if checkpoint is not None:
        checkpoint(figures)


def omp_policy(tiny: BenchModel, plan: Plan) -> dict[str, Any]:
    """Tiny-model generation time with spinning against passive OpenMP waits (children)."""
    args = ["generate", str(tiny.path), "--size", str(tiny.size), "--steps",
            str(plan.tiny_steps), "--repeats", "3"]
    times: dict[str, list[float]] = {"spin": [], "passive": []}
    for i in range(plan.omp_rounds):
        for name in ("spin", "passive") if i % 2 == 0 else ("passive", "spin"):
            env = SPIN_ENV if name == "spin" else {}
            times[name].append(run_child("studio.bench.child", args, env=env)["median_s"])
    spin, passive = median(times["spin"]), median(times["passive"])
    return {"spin_s": spin, "passive_s": passive, "speedup": spin / passive,
            "runs": times, "steps": plan.tiny_steps}


def startup(tiny: BenchModel, plan: Plan) -> dict[str, Any]:
    """Process start to window shown (median of repeats), and to the first image."""
    home = Path(tempfile.mkdtemp(prefix="studio-bench-home-"))
    env = {"QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(home / "config"),
           "HF_HOME": str(home / "hf"), "STUDIO_MODEL_DIRS": str(tiny.path),
           "STUDIO_BENCH_MODEL": str(tiny.path),
           "STUDIO_BENCH_STEPS": str(plan.first_image_steps),
           "STUDIO_BENCH_SIZE": str(tiny.size)}
    windows = []
    for _ in range(plan.startup_repeats):
        t0 = time.time()
        marks = run_child("studio.bench.startup_probe", [], env=env, timeout=300)
        windows.append(marks["window_shown"] - t0)
    t0 = time.time()
    marks = run_child("studio.bench.startup_probe", ["--first-image"], env=env, timeout=900)
    if "error" in marks:
        raise RuntimeError(f"start-up to first image failed: {marks['error']}")
    if not windows:  # smoke: the first-image run's window time is the figure
        windows.append(marks["window_shown"] - t0)
    return {"startup_window_s": median(windows), "startup_window_runs": windows,
            "startup_engine_ready_s": marks["engine_ready"] - t0,
            "startup_first_image_s": marks["first_image"] - t0,
            # the child's CPU time to its first image (all threads): steadier under load
            "startup_first_image_cpu_s": marks.get("cpu_s"),
            "startup_first_image_window_s": marks["window_shown"] - t0}


def slider_latency(log: Callable[[str], None]) -> float | None:
    """SliderBench's figure, where ``studio.bench.sliderbench`` offers one."""
    try:
        from studio.bench import sliderbench  # another engineer's module
    except ImportError:
        return None
    fn = getattr(sliderbench, "slider_latency_ms", None)
    if not callable(fn):
        return None
    try:
        value = fn(quick=True)
    except Exception as err:  # their figure must not sink ours
        log(f"sliders: SliderBench failed: {type(err).__name__}: {err}")
        return None
    return float(value) if isinstance(value, (int, float)) else None


# -- the table ---------------------------------------------------------------------------
def _f(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


def table_rows(fig: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, measured, target, how) rows for the figures present."""
    rows: list[tuple[str, str, str, str]] = []
    stand_in = " (tiny stand-in)" if fig.get("sd15_stand_in") else ""
    if "overhead_tiny" in fig:
        for key, name in (("tiny", "tiny"), ("sd15", "SD1.5-size" + stand_in)):
            o = fig[f"overhead_{key}"]
            rows.append((f"overhead {name} {o['size']}px", f"{o['ratio']:.3f}x", "<= 1.03",
                         f"app {o['app_s']:.3f}s / bare {o['bare_s']:.3f}s, {o['steps']} "
                         f"steps, n={o['repeats']}, same pixels: {o['same_pixels']}, "
                         f"{o.get('app_threads', '?')} thread(s)"))
        o = fig["overhead_tiny"]
        if o.get("all_threads_s"):
            rows.append(("small model on 1 CPU thread", f"{o['all_threads_s'] / o['bare_s']:.2f}x",
                         "-", f"bare call, all threads {o['all_threads_s']:.3f}s / 1 thread "
                         f"{o['bare_s']:.3f}s (the engine's choice below 50M parameters)"))
    if "dtype" in fig:
        d = fig["dtype"]
        img = d["image_diff_tiny"]
        rows.append(("CPU bf16 autocast speed-up" + stand_in, f"{d['speedup']:.2f}x",
                     "app picks faster",
                     f"UNet step fp32 {d['fp32_s']:.2f}s / bf16 {d['bf16_s']:.2f}s; "
                     f"policy: {fig['machine']['cpu_policy']}"))
        rows.append(("bf16 vs fp32 image diff (tiny)", f"{img['mean_abs']:.2f}",
                     "mean <= 3/255", f"max {img['max_abs']}, p99 {img['p99_abs']:.0f} "
                     f"(0-255 units)"))
        rel = d.get("compiled_rel_diff", d["bf16_weights_rel_diff"])
        rows.append(("UNet step SD1.5-size, app path" + stand_in, f"{d['policy_s']:.2f}s",
                     "<= 1.6 s", f"{d['policy']}, CFG batch 2; mean relative diff from fp32 "
                     f"{rel:.4f}"))
        if d.get("compiled"):
            rows.append(("CPU compile (opt-in) speed-up" + stand_in,
                         f"{d['compiled_speedup']:.2f}x", "pays within one run",
                         f"eager bf16 {d['bf16_weights_s']:.2f}s / compiled "
                         f"{d['compiled_s']:.2f}s; first call (compile) {d['compile_s']:.0f}s"))
    if "preview_fraction" in fig:
        pt, pb = fig["preview_tiny"], fig["preview_sd15"]
        rows.append(("preview / step", f"{fig['preview_fraction'] * 100:.2f}%", "< 2%",
                     f"tiny {pt['preview_s'] * 1e3:.2f}ms/{pt['step_s'] * 1e3:.1f}ms, "
                     f"SD1.5-size {pb['preview_s'] * 1e3:.2f}ms/{pb['step_s']:.2f}s"))
    if "decode" in fig:
        d = fig["decode"]
        rows.append((f"decode {d['size']}px: VAE / TAESD / latent-RGB",
                     f"{d['vae_s']:.2f}s / {d['taesd_s'] * 1e3:.0f}ms / "
                     f"{d['latent_rgb_s'] * 1e3:.2f}ms", "-",
                     f"TAESD {d['vae_s'] / d['taesd_s']:.0f}x faster than the VAE"))
    if "decode_2048_tiled" in fig:
        d = fig["decode_2048_tiled"]
        rows.append(("decode 2048px, VAE tiled", f"{d['seconds']:.0f}s",
                     "no OOM", f"peak RSS {d['peak_rss_mb']:.0f} MB, finite: {d['finite']}"))
    if "omp_wait" in fig:
        o = fig["omp_wait"]
        rows.append(("passive vs spinning OpenMP waits", f"{o['speedup']:.2f}x", "-",
                     f"tiny {o['steps']}-step generation: spin {o['spin_s']:.2f}s / passive "
                     f"{o['passive_s']:.2f}s (child processes, interleaved)"))
    if "ui_spin" in fig:
        u = fig["ui_spin"]
        rows.append(("UI stall, spinning waits (before)", f"max {u['busy']['max_ms']:.1f}ms, "
                     f"p99 {u['busy']['p99_ms']:.1f}ms", "max < 50, p99 < 20",
                     f"generation {u['generation_s']:.1f}s"))
    if "ui_same_priority" in fig:
        u = fig["ui_same_priority"]
        rows.append(("UI stall, engine not niced (before)", f"max {u['busy']['max_ms']:.1f}ms, "
                     f"p99 {u['busy']['p99_ms']:.1f}ms", "max < 50, p99 < 20",
                     f"generation {u['generation_s']:.1f}s"))
    if "ui" in fig:
        u = fig["ui"]
        rows.append(("UI stall during generation", f"max {u['busy']['max_ms']:.1f}ms, "
                     f"p99 {u['busy']['p99_ms']:.1f}ms", "max < 50, p99 < 20",
                     f"idle: max {u['idle']['max_ms']:.1f}ms p99 {u['idle']['p99_ms']:.1f}ms;"
                     f" {u['steps']} steps in {u['generation_s']:.1f}s, torch threads "
                     f"{u['torch_threads']}, engine nice +{u.get('engine_nice', 0)}"))
    if "ui_open" in fig:
        u = fig["ui_open"]
        rows.append((f"UI stall opening a {u['layers']}-layer project",
                     f"max {u['open']['max_ms']:.1f}ms, p99 {u['open']['p99_ms']:.1f}ms",
                     "max < 16, p99 < 5",
                     f"idle: max {u['idle']['max_ms']:.1f}ms p99 {u['idle']['p99_ms']:.1f}ms;"
                     f" {u['size']} px, {u['file_mb']:.1f} MB, open in {u['open_s']:.1f}s"))
    if "startup_window_runs" in fig:
        rows.append(("start-up to window shown", f"{fig['startup_window_s']:.2f}s", "< 1.0 s",
                     "runs: " + ", ".join(f"{t:.2f}" for t in fig["startup_window_runs"])))
        rows.append(("start-up to first image", f"{fig['startup_first_image_s']:.1f}s", "-",
                     f"engine ready at {fig['startup_engine_ready_s']:.1f}s"))
    if "peak_rss_mb_tiny" in fig:
        rows.append(("peak RSS tiny", f"{fig['peak_rss_mb_tiny']:.0f} MB", "-",
                     f"load {fig['memory_tiny']['load_s']:.1f}s"))
        rows.append(("peak RSS SD1.5-size" + stand_in, f"{fig['peak_rss_mb_sd15']:.0f} MB",
                     "-", f"load {fig['memory_sd15']['load_s']:.1f}s"))
    if "overhead_dit" in fig:
        from studio.bench.dit_bench import table_rows as dit_rows

        rows += dit_rows(fig)
    if "control_sd15" in fig:
        from studio.bench.control_bench import table_row

        rows.append(table_row(fig, bool(fig.get("sd15_stand_in"))))
    if "image_sd15" in fig and "image_20_steps_s" in fig["image_sd15"]:
        i = fig["image_sd15"]
        how = (f"{i['steps_run']}-step image {i['seconds']:.1f}s + {20 - i['steps_run']} x "
               f"{i['step_s']:.2f}s step (derived)" if i["derived"]
               else f"20 steps run, step {i['step_s']:.2f}s")
        rows.append(("20-step image SD1.5-size, loaded" + stand_in,
                     f"{i['image_20_steps_s']:.1f}s", "< 40 s", how))
    if "turbo" in fig:
        t = fig["turbo"]
        rows.append(("SD-Turbo-size step" + stand_in, f"{t['step_s']:.2f}s", "< 3.4 s",
                     f"{t['parameters'] / 1e6:.0f}M UNet, {t['size']}px, batch 1, no CFG, "
                     f"{t['layout']}, n={len(t['runs'])}"))
    if "memory_sdxl" in fig:
        mx = fig["memory_sdxl"]
        rows.append(("peak RSS SDXL-size" + (" (tiny stand-in)" if mx["stand_in"] else ""),
                     f"{mx['peak_rss_mb']:.0f} MB", "< 10 GB",
                     f"{mx['size']}px, load {mx['load_s']:.1f}s, after load "
                     f"{mx['after_load_peak_rss_mb']:.0f} MB, generate {mx['generate_s']:.0f}s"))
    if "peer_comfyui" in fig:
        p = fig["peer_comfyui"]
        if "skipped" in p:
            rows.append(("studio / ComfyUI", "-", "-", "skipped: " + p["skipped"][:80]))
        else:
            r = p["ratios"]
            rows.append(("studio / ComfyUI, 20-step image", _f(r.get("image_20_steps_s"), ".2f"),
                         "<= 0.25 (bf16)", f"{p['steps']}-step runs, {p['rounds']} rounds; "
                         f"first image {_f(r.get('first_image_s'), '.2f')} (<= 0.5)"))
            rows.append(("studio / ComfyUI, peak memory", _f(r.get("peak_rss_mb"), ".2f"),
                         "<= 0.6", f"studio {p['studio']['peak_rss_mb']:.0f} MB, ComfyUI "
                         f"{p['comfyui']['peak_rss_mb']:.0f} MB"))
    if "slider_latency_ms" in fig:
        v = fig["slider_latency_ms"]
        rows.append(("slider event to preview", "-" if v is None else f"{v:.0f}ms", "-",
                     "see studio bench-sliders" if v is None else "from SliderBench"))
    return rows


def format_table(fig: dict[str, Any]) -> str:
    m = fig["machine"]
    head = (f"Latent Studio bench ({fig['plan']}): {m['cpu']}, {m['cores']} cores, "
            f"torch {m['torch']} ({m['cpu_capability']}, {m['torch_threads']} threads), "
            f"load avg {_f((m.get('load_avg') or [None])[0], '.1f')}"
            + (f" -> {_f(m['load_avg_end'][0], '.1f')}" if m.get("load_avg_end") else "")
            + f"; bf16 flags: {', '.join(m.get('bf16_flags') or []) or 'none'}")
    rows = [("figure", "measured", "target", "how")] + table_rows(fig)
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [head, ""]
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 20)
    if "issue_sources" in fig:  # issue #26's keys as `--json` writes them
        lines.append("\nissue #26 figures (--json keys):")
        for key in ISSUE_KEYS:
            lines.append(f"  {key} = {_f(fig.get(key), '.3f')}  ({fig['issue_sources'][key]})")
    took = fig.get("bench_seconds")
    lines.append(f"\n({_f(took, '.0f')} s in all; medians of interleaved runs)" if took
                 else "\n(partial run: the sections measured so far)")
    return "\n".join(lines)
