"""Speed and memory settings of a loaded pipeline: where it lives and how it decodes.

* Large images are decoded in tiles (``TILE_ABOVE_PIXELS``), batches one image at a time:
  the VAE decode is the memory peak of a generation (a 2048x2048 decode in one piece needs
  several GB more than in tiles), and tiles cost little time at these sizes.
* On CUDA, a pipeline that does not fit in free GPU memory runs with model CPU offload
  (each component moves to the GPU only while it runs) instead of failing.
* ``torch.compile`` of the denoiser is an opt-in setting (``STUDIO_TORCH_COMPILE=1``), on
  GPUs only: it pays back only over many images, and its first call takes minutes.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from studio.engine.device import DeviceChoice

log = logging.getLogger(__name__)

TILE_ABOVE_PIXELS = 1024 * 1024
OFFLOAD_HEADROOM = 1.25  # weights plus activations: what must be free to keep it all on GPU


def pipeline_bytes(pipe: Any) -> int:
    """Bytes of the weights of every torch module of ``pipe``."""
    total = 0
    for module in getattr(pipe, "components", {}).values():
        params = getattr(module, "parameters", None)
        if callable(params):
            total += sum(p.numel() * p.element_size() for p in params())
    return total


def compile_enabled() -> bool:
    return os.environ.get("STUDIO_TORCH_COMPILE", "").lower() in ("1", "true", "yes", "on")


def place_pipeline(pipe: Any, choice: DeviceChoice) -> str:
    """Put ``pipe`` on the chosen device; returns ``"device"`` or ``"offload"``.

    On CUDA, when free memory is short of the weights (plus headroom), the pipeline runs
    with ``enable_model_cpu_offload`` rather than running out of memory.
    """
    device = choice.torch_device()
    if device.type != "cuda":
        pipe.to(device)
        return "device"
    import torch

    free, _total = torch.cuda.mem_get_info(device)
    need = pipeline_bytes(pipe)
    if need * OFFLOAD_HEADROOM > free and hasattr(pipe, "enable_model_cpu_offload"):
        log.info("model CPU offload: %.1f GB of weights, %.1f GB free on %s",
                 need / 2**30, free / 2**30, device)
        pipe.enable_model_cpu_offload(device=device)
        return "offload"
    pipe.to(device)
    if compile_enabled():
        name = "unet" if getattr(pipe, "unet", None) is not None else "transformer"
        module = getattr(pipe, name, None)
        if module is not None:
            setattr(pipe, name, torch.compile(module, mode="reduce-overhead"))
    return "device"


def prepare_decode(pipe: Any, width: int, height: int, batch: int) -> None:
    """Tiled VAE decode above ``TILE_ABOVE_PIXELS``, one image at a time for batches."""
    vae = getattr(pipe, "vae", None)
    if vae is None:
        return
    tile = width * height > TILE_ABOVE_PIXELS
    if hasattr(vae, "enable_tiling") and bool(getattr(vae, "use_tiling", False)) != tile:
        vae.enable_tiling() if tile else vae.disable_tiling()
    if hasattr(vae, "enable_slicing") and bool(getattr(vae, "use_slicing", False)) != (batch > 1):
        vae.enable_slicing() if batch > 1 else vae.disable_slicing()
