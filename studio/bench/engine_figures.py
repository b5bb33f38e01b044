"""Figures measured in this process on the engine: overhead, dtype policy, previews, decode.

Every comparison runs its candidates interleaved (``measure.interleaved``) on the same
weights, request and seed, and reports medians.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from studio.bench.measure import interleaved, median
from studio.bench.models import BenchModel

PROMPT = "a portrait of a smiling person with red hair and round glasses"
NEGATIVE = "blurry"
SEED = 1234


@dataclass
class Settings:
    """How much to measure: steps per call and repeats per candidate."""

    steps: int
    repeats: int
    decode_repeats: int
    dtype: str = "auto"
    warmup: int = 1


def make_engine(model: BenchModel, dtype: str = "auto", preview_every: int = 1) -> Any:
    from studio.engine.engine import Engine
    from studio.engine.models.loading import quiet_libraries

    quiet_libraries()
    return Engine(device="cpu", dtype=dtype, model_dirs=[model.path],
                  embedded_dir=Path(tempfile.mkdtemp(prefix="studio-bench-none-")),
                  hf_cache=False, preview_every=preview_every)


def request_for(model: BenchModel, steps: int) -> Any:
    from studio.core.jobs.request import GenerationRequest

    return GenerationRequest(PROMPT, negative_prompt=NEGATIVE, model=str(model.path),
                             scheduler="Euler", seed=SEED, steps=steps, guidance=7.0,
                             width=model.size, height=model.size)


def overhead(model: BenchModel, settings: Settings) -> dict[str, Any]:
    """``Engine.generate`` against a bare diffusers call on the same modules.

    The bare call is a new pipeline object over the engine's own modules (no second copy of
    the weights), with the same scheduler, prompts, seed, steps, size and precision.
    """
    import torch

    from studio.engine.joint_context import collapsible, identical_context_once
    from studio.engine.schedulers import make_scheduler
    from studio.engine.tuning import torch_threads

    engine = make_engine(model, settings.dtype)
    request = request_for(model, settings.steps)
    loaded = engine.load(request.model)
    bare = type(loaded.pipe)(**loaded.pipe.components)
    bare.set_progress_bar_config(disable=True)
    bare.scheduler = make_scheduler("Euler", loaded.scheduler_config)
    step_times: list[float] = []
    images: dict[str, np.ndarray] = {}

    def app() -> None:
        marks = [time.perf_counter()]

        def on_step(progress: Any) -> None:
            # Steps only: the engine also reports loading, encoding and decoding as they happen.
            if progress.phase == "sampling":
                marks.append(time.perf_counter())

        images["app"] = engine.generate(request, on_step).images[0]
        # Steps after the first; with one step, the first (it then includes the set-up).
        step_times.extend(np.diff(marks[1:] if len(marks) > 2 else marks).tolist())

    # The bare call runs with the engine's thread count for this model, so the ratio is the
    # app path's own overhead; the thread policy is measured apart ("bare_all_threads").
    threads = loaded.cpu_threads

    # SD3 without T5: the engine runs the zero "T5" tokens as one (studio.engine.
    # joint_context). The overhead is against the bare call with the same collapse; the
    # bare call as diffusers ships it is timed beside it ("shipped").
    collapse = collapsible(bare.transformer) if hasattr(bare, "transformer") else False

    def call_bare(count: int | None, key: str, collapsed: bool = collapse) -> None:
        with torch.inference_mode(), loaded.choice.autocast(), torch_threads(count), \
                identical_context_once(getattr(bare, "transformer", None), enabled=collapsed):
            out = bare(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=settings.steps,
                       guidance_scale=7.0, height=model.size, width=model.size,
                       generator=torch.Generator("cpu").manual_seed(SEED), output_type="np")
        arr = np.clip(np.asarray(out.images[0], np.float32), 0, 1)
        images[key] = (arr * 255).round().astype(np.uint8)

    candidates = {"app": app, "bare": lambda: call_bare(threads, "bare")}
    if threads:
        candidates["bare_all_threads"] = lambda: call_bare(None, "bare_all_threads")
    if collapse:
        candidates["shipped"] = lambda: call_bare(threads, "shipped", collapsed=False)
    times = interleaved(candidates, settings.repeats, settings.warmup)
    t_app, t_bare = median(times["app"]), median(times["bare"])
    diff = np.abs(images["app"].astype(int) - images["bare"].astype(int))
    shipped: dict[str, Any] = {}
    if collapse:
        apart = np.abs(images["app"].astype(int) - images["shipped"].astype(int))
        shipped = {"shipped_s": median(times["shipped"]),
                   "vs_shipped": t_app / median(times["shipped"]),
                   "shipped_max_pixel_diff": int(apart.max()),
                   "shipped_pixels_apart": float((apart > 0).mean())}
    return {
        **shipped, "collapsed_context": collapse,
        "app_s": t_app, "bare_s": t_bare, "ratio": t_app / t_bare,
        "repeats": settings.repeats, "steps": settings.steps, "size": model.size,
        "runs": times,
        "same_pixels": bool(diff.max() == 0), "max_pixel_diff": int(diff.max()),
        "app_threads": threads or torch.get_num_threads(),
        "all_threads_s": median(times["bare_all_threads"]) if threads else None,
        "step_s": median(step_times) if step_times else float("nan"),
        "dtype": engine.device_info().dtype, "autocast": engine.device_info().autocast,
        "_engine": engine, "_loaded": loaded,
    }


def preview_cost(loaded: Any, model: BenchModel, step_s: float, repeats: int = 50
                 ) -> dict[str, Any]:
    """The per-step preview (latent -> RGB) time as a fraction of one denoising step."""
    import torch

    factor = getattr(loaded.pipe, "vae_scale_factor", 8)
    latents = torch.randn(1, 4, model.size // factor, model.size // factor)
    loaded.previewer(latents)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        loaded.previewer(latents)
        times.append(time.perf_counter() - t)
    t_preview = median(times)
    return {"preview_s": t_preview, "step_s": step_s, "fraction": t_preview / step_s}


def unet_dtype(loaded: Any, model: BenchModel, repeats: int, warmup: int = 1
               ) -> dict[str, Any]:
    """One UNet step (CFG batch of 2): fp32 weights in fp32 and under bf16 autocast (the
    policy before), and bf16 weights in channels_last under autocast (the policy now on a
    CPU with native bf16), interleaved.

    The bf16-weights candidate is the engine's own loaded UNet where it holds bf16 weights
    (no second copy); where the engine compiled it (opt-in ``STUDIO_TORCH_COMPILE=1`` on a
    native-bf16 CPU, ``tuning.compile_cpu_denoiser``) a fourth candidate, ``compiled``, is the
    app's own call (its first call, the compile, is timed apart as ``compile_s``), and the
    eager one calls the class's forward on the same weights. ``policy_s`` is the path the app
    runs; each candidate's mean relative difference from fp32 is reported."""
    import copy

    import torch

    app_unet = loaded.pipe.unet
    compiled = bool(getattr(app_unet, "_studio_compiled", False))
    unet = app_unet
    if unet.dtype != torch.float32:  # loaded under the bf16 policy: an fp32 copy to compare
        # Made from the state dict (plain tensors): the engine's convolutions may hold
        # oneDNN-packed weights (``tuning.prepack_cpu_convolutions``), which deepcopy cannot
        # clone. A fresh module also runs its class's own forward, never a compiled call.
        unet = type(unet).from_config(unet.config)
        unet.load_state_dict(app_unet.state_dict())
        unet = unet.float().eval()
    if app_unet.dtype == torch.bfloat16:
        bf16_unet = app_unet
    else:
        bf16_unet = copy.deepcopy(unet).to(torch.bfloat16).to(memory_format=torch.channels_last)
    def eager(net: Any) -> Any:
        """Its class's forward on the same weights: where the engine compiled it, or where the
        policy keeps a small model in fp32 (``tuning.without_autocast`` set a ``forward`` on the
        instance that turns autocast off and that a deepcopy would still point at the original
        module's)."""
        if compiled or getattr(net, "_studio_no_autocast", False):
            return type(net).forward.__get__(net)
        return net

    eager_bf16 = eager(bf16_unet)
    factor = getattr(loaded.pipe, "vae_scale_factor", 8)
    side = model.size // factor
    gen = torch.Generator("cpu").manual_seed(0)
    x = torch.randn(2, unet.config.in_channels, side, side, generator=gen)
    ctx = torch.randn(2, 77, unet.config.cross_attention_dim, generator=gen)
    t = torch.tensor(500)

    def run(net: Any, bf16: bool) -> Any:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return net(x, t, encoder_hidden_states=ctx).sample

    outs: dict[str, Any] = {}

    def fp32() -> None:
        outs["fp32"] = run(eager(unet), False)

    def bf16() -> None:
        outs["bf16"] = run(eager(unet), True)

    def bf16_weights() -> None:
        # Inputs in the weights' dtype, as a pipeline passes them: a layer norm outside
        # autocast's list (an added text embedding's) refuses float32 input to bf16 weights.
        sample = x.to(torch.bfloat16, memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            outs["bf16_weights"] = eager_bf16(sample, t, encoder_hidden_states=ctx.to(
                torch.bfloat16)).sample

    def app() -> None:  # as the pipeline calls it: contiguous latents, the engine's autocast
        with torch.inference_mode(), loaded.choice.autocast():
            outs["compiled"] = app_unet(x, t, encoder_hidden_states=ctx).sample

    candidates = {"fp32": fp32, "bf16": bf16, "bf16_weights": bf16_weights}
    compile_s = None
    if compiled:
        start = time.perf_counter()
        app()  # the compile (or the warm cache's load) and one step
        compile_s = time.perf_counter() - start
        candidates["compiled"] = app
    times = interleaved(candidates, repeats, warmup)
    a = outs["fp32"].float()

    def rel(key: str) -> float:
        return float((a - outs[key].float()).abs().mean() / a.abs().mean())

    fp32_s, bf16_s, weights = (median(times[k]) for k in ("fp32", "bf16", "bf16_weights"))
    # The candidate the device policy runs this model as (the engine's own UNet step).
    choice = loaded.choice
    policy = ("compiled" if compiled
              else "bf16_weights" if choice.bf16_weights and choice.autocast_dtype is not None
              else "bf16" if choice.autocast_dtype is not None else "fp32")
    out = {"policy": policy, "policy_s": median(times[policy]),
           "fp32_s": fp32_s, "bf16_s": bf16_s, "speedup": fp32_s / bf16_s,
           "bf16_weights_s": weights, "bf16_weights_speedup": fp32_s / weights,
           "unet_rel_diff": rel("bf16"), "bf16_weights_rel_diff": rel("bf16_weights"),
           "repeats": repeats, "compiled": compiled}
    if compiled:
        out.update(compiled_s=median(times["compiled"]), compile_s=compile_s,
                   compiled_speedup=weights / median(times["compiled"]),
                   compiled_rel_diff=rel("compiled"))
    return out


def bf16_image_difference(model: BenchModel, steps: int, dtype: str = "bfloat16"
                          ) -> dict[str, Any]:
    """How far an image in ``dtype`` (bf16 weights and autocast; ``"auto"``: the policy's
    choice for this model) is from the fp32 one (same request), in 0..255 units."""
    request = request_for(model, steps)
    a = make_engine(model, "float32").generate(request).images[0].astype(np.int16)
    b = make_engine(model, dtype).generate(request).images[0].astype(np.int16)
    diff = np.abs(a - b)
    return {"mean_abs": float(diff.mean()), "max_abs": int(diff.max()),
            "p99_abs": float(np.percentile(diff, 99))}


def decode_costs(loaded: Any, model: BenchModel, repeats: int, warmup: int = 1
                 ) -> dict[str, Any]:
    """Full VAE decode against a tiny autoencoder (TAESD architecture) and the linear map."""
    import torch
    from diffusers import AutoencoderTiny

    vae = loaded.pipe.vae
    factor = getattr(loaded.pipe, "vae_scale_factor", 8)
    side = model.size // factor
    latents = torch.randn(1, vae.config.latent_channels, side, side,
                          generator=torch.Generator("cpu").manual_seed(0))
    torch.manual_seed(0)
    taesd = AutoencoderTiny(latent_channels=vae.config.latent_channels).eval()

    def full() -> None:  # as the engine runs it (bf16 weights under autocast where chosen)
        with torch.inference_mode(), loaded.choice.autocast():
            vae.decode(latents / vae.config.scaling_factor)

    def tiny() -> None:
        with torch.inference_mode():
            taesd.decode(latents)

    def approx() -> None:
        loaded.previewer(latents)

    approx()
    tiny()  # the small ones are always warmed up; the VAE only if ``warmup``
    times = interleaved({"vae": full, "taesd": tiny, "latent_rgb": approx}, repeats, warmup)
    out = {f"{k}_s": median(v) for k, v in times.items()}
    out["size"] = model.size
    return out


def turbo_step(repeats: int, warmup: int = 1, config: dict[str, Any] | None = None,
               size: int = 512, large: bool = True) -> dict[str, Any]:
    """One SD-Turbo-sized step: the SD 2.1-shaped UNet (``models.turbo_unet_config``,
    random weights) at ``size`` px, batch 1, no CFG (Turbo runs guidance 0), in the
    precision and layout the device policy gives a large model on this CPU."""
    import torch
    from diffusers import UNet2DConditionModel

    from studio.bench.models import turbo_unet_config
    from studio.engine.device import choose_device
    from studio.engine.tuning import module_layout

    config = config or turbo_unet_config()
    engine_choice = choose_device("cpu", "auto")
    # The policy's choice for a model of this size (the smoke stand-in is a small one).
    choice = engine_choice.for_model(2**40 if large else 1)
    previous = torch.get_default_dtype()
    torch.manual_seed(0)
    torch.set_default_dtype(choice.load_dtype())  # built once in the load dtype
    try:
        unet = UNet2DConditionModel(**config).eval()
    finally:
        torch.set_default_dtype(previous)
    layout = module_layout(unet, engine_choice, choice)
    side = size // 8
    gen = torch.Generator("cpu").manual_seed(0)
    x = torch.randn(1, unet.config.in_channels, side, side, generator=gen)
    if choice.bf16_weights:
        x = x.to(memory_format=torch.channels_last)
    ctx = torch.randn(1, 77, unet.config.cross_attention_dim, generator=gen)
    t = torch.tensor(999)

    def step() -> None:
        with torch.inference_mode(), choice.autocast():
            unet(x, t, encoder_hidden_states=ctx)

    times = interleaved({"turbo": step}, repeats, warmup)["turbo"]
    params = sum(p.numel() for p in unet.parameters())
    return {"step_s": median(times), "runs": times, "size": size, "batch": 1,
            "parameters": params, "layout": layout, "policy": choice.reason}
