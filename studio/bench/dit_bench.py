"""The embedded diffusion transformer in ``studio bench``: its step beside the tiny UNet's,
and the engine's overhead against a bare diffusers call on the same modules (issue 24 point 5).

``studio-tiny-dit`` (SD3 format, 64 px) and ``studio-tiny-diffusion`` (UNet, 64 px) draw the
same portraits; the step ratio says what the transformer costs per step here. The overhead
is ``engine_figures.overhead`` (the same request, seed, scheduler and precision through
``Engine.generate`` and through the pipeline class called bare), whose target is 1.03. The
engine runs the pipeline's 256 zero "T5" tokens as one (``studio.engine.joint_context``):
the overhead is against the bare call with the same collapse, and a row says what that
gives against the bare call as diffusers ships it.
"""

from __future__ import annotations

from typing import Any

from studio.bench import engine_figures as ef
from studio.bench.models import BenchModel

DIT_ID = "studio-tiny-dit"


def dit_model() -> BenchModel | None:
    """The embedded ``studio-tiny-dit`` (None where it is not installed)."""
    from studio.paths import embedded_models_dir

    folder = embedded_models_dir() / DIT_ID
    if not (folder / "model_index.json").is_file():
        return None
    return BenchModel("dit", folder, f"embedded {DIT_ID}", 64)


def dit_step(settings: ef.Settings, tiny_step_s: float | None) -> dict[str, Any] | None:
    """The DiT's overhead figures, with its step against ``tiny_step_s`` (the UNet's)."""
    model = dit_model()
    if model is None:
        return None
    o = ef.overhead(model, settings)
    o.pop("_loaded")
    o.pop("_engine")
    o["tiny_step_s"] = tiny_step_s
    o["step_ratio_vs_tiny"] = (o["step_s"] / tiny_step_s) if tiny_step_s else None
    return o


def table_rows(fig: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The DiT rows of the ``studio bench`` table."""
    o = fig.get("overhead_dit")
    if not o:
        return []
    ratio = o.get("step_ratio_vs_tiny")
    return [
        (f"overhead tiny DiT {o['size']}px", f"{o['ratio']:.3f}x", "<= 1.03",
         f"app {o['app_s']:.3f}s / bare {o['bare_s']:.3f}s, {o['steps']} steps, "
         f"same pixels {o['same_pixels']}"),
        *([("tiny DiT vs diffusers as shipped", f"{o['vs_shipped']:.2f}x", "-",
            f"app {o['app_s']:.3f}s / diffusers' own {o['shipped_s']:.3f}s (the zero T5 tokens "
            f"run as one: at most {o['shipped_max_pixel_diff']} level apart on "
            f"{o['shipped_pixels_apart'] * 100:.2f} % of the values)")]
          if o.get("shipped_s") else []),
        ("tiny DiT step vs tiny UNet step", "-" if ratio is None else f"{ratio:.2f}x", "-",
         f"DiT {o['step_s'] * 1e3:.1f}ms / UNet "
         + ("-" if not o.get("tiny_step_s") else f"{o['tiny_step_s'] * 1e3:.1f}ms")
         + f" per step at {o['size']}px"),
    ]
