"""Build the embedded VAE's ``paired`` slider directions and ship them.

``python -m studio.training latent-directions`` draws the renderer's pairs (the same
portrait with and without an attribute, a colour drawn in every colour of its kind),
encodes them, and writes ``resources/sliders/latent/studio-tiny-vae-paired.json`` for the
weights' hash (the app rebuilds nothing for those weights), in about a minute. No model
judges them here: the oracle grades them elsewhere (the sliders' tests, SliderBench). The
GAN has no encoder; see ``LatentModels.paired_directions`` for why it has none.
"""

from __future__ import annotations

import time
from pathlib import Path

MODELS = {"vae": "studio-tiny-vae"}


def build(models_dir: Path, out_dir: Path | None = None,
          only: list[str] | None = None) -> list[Path]:
    """Write the shipped direction file of each model in ``only`` (default: all)."""
    from studio.engine.engine import Engine
    from studio.engine.latent_models import _write_directions
    from studio.paths import resources_dir

    out_dir = out_dir or resources_dir() / "sliders" / "latent"
    engine = Engine(device="cpu", dtype="float32", model_dirs=[], embedded_dir=models_dir,
                    hf_cache=False)
    lm = engine.latent_models
    written = []
    for kind in only or list(MODELS):
        info = engine.resolve_model(MODELS[kind])
        model = lm.model(info)
        start = time.perf_counter()
        found = lm.paired_directions(model)
        path = out_dir / f"{info.name}-paired.json"
        _write_directions(path, model.hash, found)
        print(f"{info.name}: {', '.join(sorted(found))} in {time.perf_counter() - start:.0f} s"
              f" -> {path}", flush=True)
        written.append(path)
    return written
