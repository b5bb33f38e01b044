"""``studio bench-sliders``: SliderBench on the embedded models (prints a table).

``--json FILE`` also writes the figures (``vae_update_p95_ms``, ``diffusion_preview_p95_ms``,
``dit_preview_p95_ms``,
``edit_success``, ``others_kept``, ``monotonicity_min`` and the per-slider rows).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

NAME = "bench-sliders"
HELP = "measure latent sliders: attribute gain, preservation, monotonicity, latency"
MODES = ("vae", "gan", "diffusion", "dit")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write the figures to FILE")
    parser.add_argument("--quick", action="store_true",
                        help="fewer images and prompts (a few minutes)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="comma-separated subset of: vae, gan, diffusion (the UNet "
                             "model's prompt sliders), dit (the same on studio-tiny-dit)")
    parser.add_argument("--images", type=int, default=None,
                        help="portraits per latent slider (default 48, quick 16)")
    parser.add_argument("--prompts", type=int, default=None,
                        help="prompts per diffusion slider (default 16, quick 3)")
    parser.add_argument("--diffusion-model", default="studio-tiny-diffusion", metavar="ID",
                        help="the diffusion model whose prompt sliders are measured")
    parser.add_argument("--dit-model", default="studio-tiny-dit", metavar="ID",
                        help="the diffusion transformer whose prompt sliders are measured "
                             "(mode dit)")
    parser.add_argument("--method", default=None, metavar="METHOD",
                        help="direction of the VAE/GAN attribute sliders: class (hair "
                             "colours step from the image's own class), mean, logistic, svm "
                             "or pca, each optionally with -cond (the other kinds of "
                             "attribute projected out), or flow (GAN: a curved path steered by "
                             "its latent attribute reader), or paired (VAE: renderer-labelled "
                             "pairs); default: the sliders' own (VAE paired, GAN flow)")
    parser.add_argument("--prompt-directions", choices=("in-prompt", "templates"),
                        default="in-prompt",
                        help="diffusion prompt sliders: their words placed in each prompt "
                             "(default) or the direction averaged over the slider's templates "
                             "only (as before)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (default: torch's choice); 1 is far faster "
                             "on a machine that other work keeps busy")


def json_safe(value: Any) -> Any:
    """``value`` with every nan (a figure with nothing to measure) as null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def run_sliderbench(args: argparse.Namespace) -> dict[str, Any]:
    """Run SliderBench as the flags say and return its figures (prints progress)."""
    from studio.bench.sliderbench import SliderBench
    from studio.cli.common import make_engine
    from studio.core.errors import InvalidRequestError
    from studio.core.sliders.directions import CLASS_METHOD, METHODS
    from studio.core.sliders.specs import FLOW_METHOD

    modes = tuple(m.strip() for m in str(getattr(args, "modes", ",".join(MODES))).split(",")
                  if m.strip())
    method = getattr(args, "method", None)
    if method is not None and method != FLOW_METHOD and method.removesuffix(
            "-cond") not in (*METHODS, CLASS_METHOD):
        raise InvalidRequestError(f"Unknown method {method!r}; use one of "
                                  f"{', '.join((*METHODS, CLASS_METHOD))} (optionally with -cond) "
                                  f"or {FLOW_METHOD} (GAN).")
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise InvalidRequestError(f"Unknown mode(s): {', '.join(unknown)}; use "
                                  f"{', '.join(MODES)}.")
    quick = bool(getattr(args, "quick", False))
    if getattr(args, "threads", 0):
        import torch

        torch.set_num_threads(int(args.threads))
    engine = make_engine(args) if hasattr(args, "device") else _cpu_engine()
    if not any(m.id == "studio-tiny-attributes" for m in engine.list_models("classifier")):
        raise InvalidRequestError("SliderBench needs the embedded attribute classifier "
                                  "(resources/models/studio-tiny-attributes).")

    def log(text: str) -> None:
        print(f"sliderbench: {text}", file=sys.stderr, flush=True)

    bench = SliderBench(engine, n_images=getattr(args, "images", None) or (16 if quick else 48),
                        n_prompts=getattr(args, "prompts", None) or (3 if quick else 16),
                        latency_events=20 if quick else 40, log=log,
                        diffusion_model=getattr(args, "diffusion_model", "studio-tiny-diffusion"),
                        dit_model=getattr(args, "dit_model", "studio-tiny-dit"),
                        method=getattr(args, "method", None),
                        in_prompt=getattr(args, "prompt_directions", "in-prompt") == "in-prompt")
    return bench.run(modes)


def _cpu_engine() -> Any:
    from studio.engine.engine import Engine

    return Engine(device="cpu", dtype="float32", hf_cache=False)


def run(args: argparse.Namespace) -> int:
    from studio.bench.sliderbench import format_table
    from studio.core.errors import InvalidRequestError

    if args.json is not None and not args.json.parent.is_dir():
        raise InvalidRequestError(f"The folder {args.json.parent} does not exist.")
    figures = run_sliderbench(args)
    print(format_table(figures))
    if args.json is not None:
        args.json.write_text(json.dumps(json_safe(figures), indent=2) + "\n",
                             encoding="utf-8")
    return 0
