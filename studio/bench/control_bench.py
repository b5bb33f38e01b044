"""What one ControlNet adds to a denoising step, measured through the engine side by side.

The ControlNet is built from the model's own UNet config (diffusers'
``ControlNetModel.from_config`` of ``studio.engine.control_models.controlnet_config``, the
shape ``ControlNetModel.from_unet`` gives: an SD 1.5-shaped ControlNet for the SD 1.5-sized
model) with random weights, its zero convolutions included (speed does not depend on the
weights; a fresh ControlNet's zero convolutions would leave the image unchanged). It is
kept in the bench cache beside the model.

The same engine, loaded model, request and seed run with and without one line-art control
layer, interleaved (``measure.interleaved``); each call's denoising steps are timed from
the engine's own step reports (steps after the first, so set-up and the prompt's encoding
are not in them). The figure is the ratio of the medians: with control over without.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from studio.bench import engine_figures as ef
from studio.bench.measure import interleaved, median
from studio.bench.models import BenchModel

RECIPE = "controlnet from unet config | seed 0 | zero convs normal(0.02) | fp16 | v1"
TARGET_RATIO = 1.6  # the issue: control adds at most 60 % to a step


def control_image(size: int) -> Any:
    """Line art of a head, hair and glasses (dark strokes on a transparent layer)."""
    from PIL import Image, ImageDraw

    from studio.core.document.pixels import Pixels

    im = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    k = size / 64
    w = max(1, round(1.5 * k))
    d.ellipse([18 * k, 12 * k, 46 * k, 48 * k], outline=(0, 0, 0, 255), width=w)
    d.arc([12 * k, 4 * k, 52 * k, 40 * k], 180, 360, fill=(0, 0, 0, 255), width=w)
    for x in (25, 39):
        d.ellipse([(x - 5) * k, 25 * k, (x + 5) * k, 33 * k], outline=(0, 0, 0, 255), width=w)
    return Pixels.from_array(np.asarray(im))


def controlnet_for(loaded: Any, cache: Path, key: str) -> Path:
    """A random ControlNet folder shaped for ``loaded``'s UNet (built once, kept)."""
    import hashlib

    from studio.engine.control_models import base_family

    config = dict(loaded.pipe.unet.config)
    factor = int(getattr(loaded.pipe, "vae_scale_factor", 8))
    levels = int(math.log2(factor)) + 1  # the conditioning embedding's stride is the VAE's
    embedding = (16, 32, 96, 256)[:levels]
    digest = hashlib.sha256(f"{RECIPE} | {json.dumps(config, sort_keys=True, default=str)} | "
                            f"{embedding}".encode()).hexdigest()[:12]
    folder = cache / f"controlnet-{key}-{digest}" / "ControlNet" / f"bench-lineart-{key}"
    done = folder / ".studio-bench-complete"
    if done.is_file():
        return folder
    import torch
    from diffusers import ControlNetModel

    from studio.engine.control_models import controlnet_config

    torch.manual_seed(0)
    net = ControlNetModel.from_config(controlnet_config(config, embedding))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        zero = [*net.controlnet_down_blocks, net.controlnet_mid_block,
                net.controlnet_cond_embedding.conv_out]
        for module in zero:
            for p in module.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    folder.mkdir(parents=True, exist_ok=True)
    net.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    (folder / "studio.json").write_text(json.dumps(
        {"family": base_family(loaded.family), "control_kinds": ["lineart", "scribble"]}) + "\n",
        encoding="utf-8")
    done.write_text("ok\n", encoding="utf-8")
    return folder


def control_step(model: BenchModel, cache: Path, steps: int, repeats: int, warmup: int = 1,
                 dtype: str = "auto") -> dict[str, Any]:
    """Step time with one ControlNet against without, through ``Engine.generate``."""
    from studio.core.control import ControlLayer

    engine = ef.make_engine(model, dtype)
    plain = ef.request_for(model, steps)
    loaded = engine.load(plain.model)
    net = controlnet_for(loaded, cache, model.key)
    with_control = dataclasses.replace(plain, controls=(
        ControlLayer("lineart", control_image(model.size), 1.0, 0.0, 1.0, str(net)),))
    step_times: dict[str, list[float]] = {"plain": [], "control": []}
    cpu_times: dict[str, list[float]] = {"plain": [], "control": []}
    images: dict[str, np.ndarray] = {}

    def run(name: str, request: Any) -> None:
        marks: list[float] = []
        cpu: list[float] = []

        def on_step(progress: Any) -> None:
            if progress.phase == "sampling":
                marks.append(time.perf_counter())
                cpu.append(time.process_time())

        images[name] = engine.generate(request, on_step).images[0]
        # Steps after the first (the first report follows set-up and the first step).
        step_times[name].extend(np.diff(marks).tolist())
        cpu_times[name].extend(np.diff(cpu).tolist())

    candidates = {"plain": lambda: run("plain", plain),
                  "control": lambda: run("control", with_control)}
    t0 = time.perf_counter()
    times = interleaved(candidates, repeats, warmup)
    if warmup:  # the warm-up calls' steps are not figures
        for name in step_times:
            step_times[name] = step_times[name][warmup * (steps - 1):]
            cpu_times[name] = cpu_times[name][warmup * (steps - 1):]
    s_plain, s_control = median(step_times["plain"]), median(step_times["control"])
    c_plain, c_control = median(cpu_times["plain"]), median(cpu_times["control"])
    diff = np.abs(images["plain"].astype(int) - images["control"].astype(int))
    return {
        "step_s": s_plain, "control_step_s": s_control, "ratio": s_control / s_plain,
        "call_s": median(times["plain"]), "control_call_s": median(times["control"]),
        "call_ratio": median(times["control"]) / median(times["plain"]),
        # CPU seconds of this process a step: the work, less coloured by other processes
        # on a shared machine than the wall time.
        "cpu_step_s": c_plain, "control_cpu_step_s": c_control,
        "cpu_ratio": c_control / c_plain if c_plain > 0 else float("nan"),
        "step_runs": step_times,
        "steps": steps, "repeats": repeats, "size": model.size, "model": model.label,
        "controlnet": str(net), "controlnet_params": sum(
            p.numel() for p in engine.controls.load(
                engine.controls.resolve(str(net), "lineart", loaded.family)).parameters()),
        "unet_params": sum(p.numel() for p in loaded.pipe.unet.parameters()),
        # The control acted: the image differs from the one without it (same seed).
        "image_changed": bool(diff.max() > 0), "mean_pixel_diff": float(diff.mean()),
        "dtype": engine.device_info().dtype, "seconds": time.perf_counter() - t0,
    }


def table_row(fig: dict[str, Any], stand_in: bool) -> tuple[str, str, str, str]:
    c = fig["control_sd15"]
    name = "control step SD1.5-size" + (" (tiny stand-in)" if stand_in else "")
    return (f"{name} {c['size']}px, one ControlNet", f"{c['ratio']:.2f}x",
            f"<= {TARGET_RATIO:.2f}",
            f"step with {c['control_step_s']:.3f}s / without {c['step_s']:.3f}s "
            f"(ControlNet {c['controlnet_params'] / 1e6:.0f}M params, UNet "
            f"{c['unet_params'] / 1e6:.0f}M), CPU time ratio {c.get('cpu_ratio', 0):.2f}x, "
            f"{c['steps']} steps, n={c['repeats']}, {c['dtype']}, image changed: "
            f"{c['image_changed']}")
