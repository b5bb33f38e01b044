"""Child processes of the benchmark: ``python -m studio.bench.child memory ...``.

A child measures what must not be coloured by the parent: its own peak memory (resource
``ru_maxrss``) for one model loaded and run once.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import studio.engine  # noqa: F401  (its thread policy must be set before torch loads)
from studio.bench.measure import median, peak_rss_mb, report_child_result


def memory(model_path: str, size: int, steps: int, dtype: str) -> dict[str, float]:
    """Load ``model_path`` with the engine, generate one image, report peak RSS."""
    from studio.bench.engine_figures import make_engine, request_for
    from studio.bench.models import BenchModel

    model = BenchModel("m", Path(model_path), model_path, size)
    start_rss = peak_rss_mb()
    engine = make_engine(model, dtype)
    t = time.perf_counter()
    engine.load(str(model.path))
    load_s = time.perf_counter() - t
    loaded_rss = peak_rss_mb()
    t = time.perf_counter()
    engine.generate(request_for(model, steps))
    return {"peak_rss_mb": peak_rss_mb(), "after_load_peak_rss_mb": loaded_rss,
            "start_rss_mb": start_rss, "load_s": load_s,
            "generate_s": time.perf_counter() - t}


def generate_times(model_path: str, size: int, steps: int, repeats: int) -> dict[str, float]:
    """Median seconds of ``repeats`` generations after one warm-up (this process's settings)."""
    import os

    from studio.bench.engine_figures import make_engine, request_for
    from studio.bench.models import BenchModel

    model = BenchModel("m", Path(model_path), model_path, size)
    engine = make_engine(model)
    request = request_for(model, steps)
    engine.generate(request)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        engine.generate(request)
        times.append(time.perf_counter() - t)
    return {"median_s": median(times), "runs": times,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
            "gomp_spincount": os.environ.get("GOMP_SPINCOUNT", "")}


def large_decode(model_path: str, size: int, tiled: bool) -> dict[str, float]:
    """Decode a ``size`` x ``size`` image with the model's VAE, tiled or not; peak RSS."""
    import torch
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(Path(model_path) / "vae").eval()
    if tiled:
        vae.enable_tiling()
    latents = torch.randn(1, vae.config.latent_channels, size // 8, size // 8)
    base = peak_rss_mb()
    t = time.perf_counter()
    with torch.inference_mode():
        image = vae.decode(latents).sample
    return {"peak_rss_mb": peak_rss_mb(), "before_rss_mb": base,
            "seconds": time.perf_counter() - t, "height": int(image.shape[-2]),
            "finite": bool(torch.isfinite(image).all())}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.bench.child")
    sub = parser.add_subparsers(dest="what", required=True)
    mem = sub.add_parser("memory")
    mem.add_argument("model")
    mem.add_argument("--size", type=int, default=512)
    mem.add_argument("--steps", type=int, default=2)
    mem.add_argument("--dtype", default="auto")
    gen = sub.add_parser("generate")
    gen.add_argument("model")
    gen.add_argument("--size", type=int, default=64)
    gen.add_argument("--steps", type=int, default=4)
    gen.add_argument("--repeats", type=int, default=3)
    dec = sub.add_parser("decode")
    dec.add_argument("model")
    dec.add_argument("--size", type=int, default=2048)
    dec.add_argument("--tiled", action="store_true")
    sdxl = sub.add_parser("build-sdxl")
    sdxl.add_argument("out")
    args = parser.parse_args()
    if args.what == "build-sdxl":
        from studio.bench.models import build_sdxl_sized_pipeline

        t = time.perf_counter()
        build_sdxl_sized_pipeline(args.out)
        report_child_result({"build_s": time.perf_counter() - t, "peak_rss_mb": peak_rss_mb()})
        return 0
    if args.what == "memory":
        report_child_result(memory(args.model, args.size, args.steps, args.dtype))
    elif args.what == "generate":
        report_child_result(generate_times(args.model, args.size, args.steps, args.repeats))
    else:
        report_child_result(large_decode(args.model, args.size, args.tiled))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
