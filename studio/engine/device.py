"""Device policy: CUDA (fp16 or bf16) > Apple MPS > CPU (bf16 where native, else fp32).

Overridable by setting and CLI flag (``device="cpu"``, ``dtype="float32"``, or
``STUDIO_DTYPE=float32``); the choice and its reason are reported to the user through
``DeviceInfo``.

On a CPU with native bf16 (AMX or AVX-512 BF16), ``auto`` runs a large model (SD 1.5-sized:
``LARGE_MODEL_BYTES`` on disk and more) with its weights *stored* in bf16 (loaded once in
bf16, no fp32 copy beside them; UNet and VAE in channels_last) under bf16 autocast, which
keeps the engine's own tensors (latents, noise) in fp32 and casts them at each layer. A
small model (the embedded ones) stays in fp32 with autocast off for its modules: bf16 is
slower there and changes its pixels (measured: docs/benchmarks.md). Without native bf16 the
CPU runs fp32: oneDNN emulates bf16 there, 2.8x slower than fp32.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from typing import Any

from studio.core.errors import InvalidRequestError
from studio.core.models import DeviceInfo

DTYPES = ("auto", "float16", "bfloat16", "float32")
DEVICES = ("auto", "cuda", "mps", "cpu")
# A model this large on disk counts as large (SD 1.5 in fp16 is 2 GB; the embedded models
# are a few MB; a checkpoint with a full-size text encoder and VAE but a tiny UNet, 450 MB).
LARGE_MODEL_BYTES = 500 * 2**20


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True where the CPU computes bf16 natively (AMX or AVX-512 BF16).

    oneDNN also *supports* bf16 on plain AVX-512 by converting to fp32, which is slower
    than fp32 itself (2.4x slower on a VAE training step measured on such a CPU), so
    ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` is not the question to ask.
    """
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), None)
    except OSError:
        flags = None
    if flags is not None:  # Linux: the kernel's word
        return bool({"amx_bf16", "avx512_bf16"} & set(flags.split()))
    try:  # elsewhere: torch's cpuinfo-based probes
        import torch

        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except Exception:
        return False


@dataclass(frozen=True)
class DeviceChoice:
    """The resolved device: where weights live and how the computation runs."""

    device: str
    weight_dtype: str  # dtype the weights are loaded in
    autocast_dtype: str | None  # CPU autocast dtype, or None
    reason: str
    # CPU: weights stored in the autocast dtype (bf16 once, no fp32 copy) and channels_last
    bf16_weights: bool = False
    # CPU auto: models under LARGE_MODEL_BYTES keep fp32 weights and run without autocast
    small_models_fp32: bool = False

    def for_model(self, size_bytes: int) -> DeviceChoice:
        """The choice for one model of ``size_bytes`` on disk (0: unknown, taken as large)."""
        if self.small_models_fp32 and 0 < size_bytes < LARGE_MODEL_BYTES:
            return DeviceChoice(self.device, "float32", None,
                                "CPU (float32: a small model, where bf16 does not pay)")
        return self

    def load_dtype(self) -> Any:
        """The torch dtype to load the weights in (bf16 where they are stored in bf16)."""
        import torch

        if self.bf16_weights and self.autocast_dtype is not None:
            return getattr(torch, self.autocast_dtype)
        return self.torch_dtype()

    @property
    def compute_dtype(self) -> str:
        return self.autocast_dtype or self.weight_dtype

    def torch_device(self) -> Any:
        import torch

        return torch.device(self.device)

    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.weight_dtype)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The autocast context for a forward pass (a no-op where none is used)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self.device.split(":")[0], dtype=getattr(torch, self.autocast_dtype))

    def info(self) -> DeviceInfo:
        return DeviceInfo(device=self.device, dtype=self.compute_dtype,
                          autocast=self.autocast_dtype is not None, description=self.reason)


def choose_device(device: str = "auto", dtype: str = "auto") -> DeviceChoice:
    """Pick the device and precision. ``STUDIO_DEVICE``/``STUDIO_DTYPE`` override ``auto``."""
    import torch

    device = (device or "auto").lower()
    dtype = (dtype or "auto").lower()
    if device == "auto":
        device = os.environ.get("STUDIO_DEVICE", "auto").lower()
    if dtype == "auto":
        dtype = os.environ.get("STUDIO_DTYPE", "auto").lower()
    aliases = {"fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp32": "float32",
               "float": "float32"}
    dtype = aliases.get(dtype, dtype)
    if dtype not in DTYPES:
        raise InvalidRequestError(f"Unknown precision {dtype!r}; use one of {', '.join(DTYPES)}.")
    if device.split(":")[0] not in DEVICES:
        raise InvalidRequestError(f"Unknown device {device!r}; use one of {', '.join(DEVICES)}.")

    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    kind = device.split(":")[0]
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise InvalidRequestError("CUDA was asked for, but no CUDA GPU is available.")
        if device == "cuda":
            device = "cuda:0"
        name = torch.cuda.get_device_name(torch.device(device))
        if dtype == "auto":
            dtype = "float16"
        return DeviceChoice(device, dtype, None, f"GPU {name} ({dtype})")
    if kind == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InvalidRequestError("Apple MPS was asked for, but it is not available.")
        if dtype in ("auto", "bfloat16"):
            dtype = "float16"
        return DeviceChoice("mps", dtype, None, f"Apple GPU (MPS, {dtype})")
    # CPU: bf16 weights under bf16 autocast where the CPU has native bf16 (large models).
    if dtype == "auto":
        if cpu_has_fast_bf16():
            return DeviceChoice("cpu", "float32", "bfloat16",
                                "CPU (bf16 weights and autocast: native bf16; small models "
                                "float32)", bf16_weights=True, small_models_fp32=True)
        return DeviceChoice("cpu", "float32", None, "CPU (float32: no native bf16)")
    if dtype == "bfloat16":
        return DeviceChoice("cpu", "float32", "bfloat16",
                            "CPU (bf16 weights and autocast, as asked)", bf16_weights=True)
    if dtype == "float16":
        raise InvalidRequestError("float16 is not supported on the CPU; use bfloat16 or float32.")
    return DeviceChoice("cpu", "float32", None, "CPU (float32, as asked)")
