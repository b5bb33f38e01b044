"""Speed and memory settings of a loaded pipeline: where it lives and how it decodes.

* Large images are decoded in tiles (``TILE_ABOVE_PIXELS``), batches one image at a time:
  the VAE decode is the memory peak of a generation (a 2048x2048 decode in one piece needs
  several GB more than in tiles), and tiles cost little time at these sizes.
* On CUDA, a pipeline that does not fit in free GPU memory runs with model CPU offload
  (each component moves to the GPU only while it runs) instead of failing.
* ``torch.compile`` of the denoiser is an opt-in setting (``STUDIO_TORCH_COMPILE=1``): on
  GPUs, and on a CPU with native bf16 (``compile_cpu_denoiser``: inductor with frozen,
  prepacked weights, kernels cached on disk). It pays back only over many images, and its
  first call takes minutes.
* On the CPU (``cpu_layout``): a large model loaded with bf16 weights (the device policy's
  ``bf16_weights``) gets its UNet and VAE in channels_last, which oneDNN's bf16 kernels run
  1.5-1.7x faster; a small model that the policy keeps in fp32 runs its modules with autocast
  off, even inside the engine's bf16 autocast. There, the convolutions' bf16 weights are also
  packed once at load into oneDNN's AMX layout (``prepack_cpu_convolutions``): eager
  PyTorch re-lays them at every call, about a sixth of an SD 1.5 step.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator
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


CHANNELS_LAST_MODULES = ("unet", "vae", "controlnet")  # convolutional: NHWC pays in bf16


def without_autocast(module: Any, device_type: str = "cpu") -> None:
    """Make ``module`` run in its own dtype even inside an autocast region (idempotent).

    Its ``forward`` and, for autoencoders, ``encode`` and ``decode`` (which pipelines call
    directly) run with autocast off.
    """
    if getattr(module, "_studio_no_autocast", False):
        return
    import torch

    def wrapped(method: Any) -> Any:
        @functools.wraps(method)
        def run(*args: Any, **kwargs: Any) -> Any:
            with torch.autocast(device_type, enabled=False):
                return method(*args, **kwargs)

        return run

    for name in ("forward", "encode", "decode"):
        method = getattr(module, name, None)
        if callable(method):
            setattr(module, name, wrapped(method))
    module._studio_no_autocast = True


def cpu_layout(pipe: Any, engine_choice: DeviceChoice, model_choice: DeviceChoice) -> str:
    """Fit a freshly loaded CPU pipeline to the policy; returns what was done (for logs).

    ``model_choice`` is ``engine_choice.for_model(size)``: where it stores bf16 weights, the
    convolutional modules go channels_last; where it is fp32 inside an engine that autocasts,
    every module runs with autocast off (the small embedded models).
    """
    if model_choice.device != "cpu":
        return "-"
    components = getattr(pipe, "components", {}) or {}
    modules = {name: m for name, m in components.items() if callable(getattr(m, "parameters",
                                                                               None))}
    if model_choice.bf16_weights and model_choice.autocast_dtype is not None:
        import torch

        for name in CHANNELS_LAST_MODULES:
            if name in modules:
                modules[name].to(memory_format=torch.channels_last)
        compiled = compile_cpu_denoiser(pipe, model_choice)  # opt-in: STUDIO_TORCH_COMPILE=1
        packed = sum(prepack_cpu_convolutions(modules[name], model_choice)
                     for name in CHANNELS_LAST_MODULES
                     if name in modules and not (compiled and name == "unet"))
        return f"{model_choice.autocast_dtype} weights, channels_last" + (
            f", {compiled}" if compiled else "") + (
            f", {packed} convolutions prepacked" if packed else "")
    if engine_choice.autocast_dtype is not None and model_choice.autocast_dtype is None:
        for module in modules.values():
            without_autocast(module)
        return "float32, autocast off"
    return model_choice.weight_dtype


def module_layout(module: Any, engine_choice: DeviceChoice, model_choice: DeviceChoice) -> str:
    """``cpu_layout`` for one module loaded beside a pipeline (a ControlNet, an adapter):
    bf16 weights go channels_last; an fp32 module inside an engine that autocasts runs with
    autocast off, as the small pipeline it steers does."""
    if model_choice.device != "cpu":
        return "-"
    if model_choice.bf16_weights and model_choice.autocast_dtype is not None:
        import torch

        module.to(memory_format=torch.channels_last)
        packed = prepack_cpu_convolutions(module, model_choice)
        return f"{model_choice.autocast_dtype} weights, channels_last" + (
            f", {packed} convolutions prepacked" if packed else "")
    if engine_choice.autocast_dtype is not None and model_choice.autocast_dtype is None:
        without_autocast(module)
        return "float32, autocast off"
    return model_choice.weight_dtype


def inductor_cache_dir() -> str:
    """Where inductor keeps its compiled kernels between starts (``TORCHINDUCTOR_CACHE_DIR``
    when set, else ``inductor`` in the studio's user cache); sets the variable."""
    path = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not path:
        from studio.paths import user_cache_dir

        path = str(user_cache_dir() / "inductor")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = path
    return path


def cpu_compile_wanted(model_choice: DeviceChoice) -> bool:
    """The opt-in CPU compile (``STUDIO_TORCH_COMPILE=1``) applies to a model the policy runs
    in bf16 weights on a CPU with native bf16 (AMX / AVX-512 BF16) only: elsewhere it stays
    eager, as before."""
    from studio.engine.device import cpu_has_fast_bf16

    return (compile_enabled() and model_choice.device == "cpu" and model_choice.bf16_weights
            and model_choice.autocast_dtype is not None and cpu_has_fast_bf16())


# Arguments that change what the UNet computes beyond a plain text-to-image step (ControlNet
# residuals, attention options): such calls run eager rather than compiling a second graph.
_EAGER_KWARGS = ("down_block_additional_residuals", "mid_block_additional_residual",
                 "down_intrinsic_block_additional_residuals", "cross_attention_kwargs",
                 "added_cond_kwargs", "timestep_cond", "class_labels")


def compile_cpu_denoiser(pipe: Any, model_choice: DeviceChoice) -> str:
    """Opt-in (``cpu_compile_wanted``): compile the UNet with inductor and frozen weights
    (constant-folded, prepacked for oneDNN's AMX kernels), its kernels cached on disk
    (``inductor_cache_dir``). Returns what was done ("" when nothing).

    Measured on the SD 1.5-sized UNet (docs/benchmarks.md, loaded): 0.87x-1.19x per step,
    while the first start compiles for minutes, every later one spends about 45 s before its
    first step (cache on disk), and the frozen copy holds the weights a second time, so it
    does not pay within one run of the app and stays off by default.

    The module stays the same object (LoRA hooks, attention processors and the pipeline
    find it as before). Frozen weights would not see later changes, so a call runs eager
    whenever the UNet has hooks (LoRA), attention processors other than the ones it was
    compiled with (reference images), extra conditioning (ControlNet residuals), or when
    gradients are on.
    """
    unet = getattr(pipe, "unet", None)
    if unet is None or not cpu_compile_wanted(model_choice):
        return ""
    if getattr(unet, "_studio_compiled", False):
        return "compiled"
    import torch

    inductor_cache_dir()
    eager = type(unet).forward.__get__(unet)  # the class's forward, bound: no recursion
    compiled = torch.compile(eager, dynamic=False,
                             options={"freezing": True, "max_autotune": False})
    processors = {type(m.processor) for m in unet.modules() if hasattr(m, "processor")}

    def plain(kwargs: dict[str, Any]) -> bool:
        if torch.is_grad_enabled() or any(kwargs.get(k) for k in _EAGER_KWARGS):
            return False
        for m in unet.modules():
            if m._forward_hooks or m._forward_pre_hooks:
                return False
            processor = getattr(m, "processor", None)
            if processor is not None and type(processor) not in processors:
                return False
        return True

    @functools.wraps(eager)
    def forward(*args: Any, **kwargs: Any) -> Any:
        return (compiled if plain(kwargs) else eager)(*args, **kwargs)

    unet.forward = forward
    unet._studio_compiled = True
    log.info("UNet compiled (inductor, frozen weights; kernels cached in %s)",
             os.environ.get("TORCHINDUCTOR_CACHE_DIR"))
    return "compiled"


def cpu_prepack_wanted(model_choice: DeviceChoice) -> bool:
    """Convolution weights are prepacked (``prepack_cpu_convolutions``) for a model the policy
    runs in bf16 weights on a CPU with native bf16 (AMX / AVX-512 BF16) only: elsewhere the
    convolutions run as before. ``STUDIO_CPU_PREPACK=0`` turns it off (for A/B figures)."""
    from studio.engine.device import cpu_has_fast_bf16

    if os.environ.get("STUDIO_CPU_PREPACK", "").lower() in ("0", "false", "no", "off"):
        return False
    if not (model_choice.device == "cpu" and model_choice.bf16_weights
            and model_choice.autocast_dtype is not None and cpu_has_fast_bf16()):
        return False
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # oneDNN's bf16 kernels


# The input size the weights are packed for: a 512 px image's latents. oneDNN picks its blocked
# weight layout from it; packed so, the SD 1.5 UNet at 512 px (latents 64 to 8 wide) ran without
# a single weight reorder (oneDNN verbose), where packing for no size left 3.
PREPACK_INPUT_SIDE = 64
# Freed plain weights are given back to the OS every this many bytes (a trim costs up to 0.4 s
# on a loaded machine; after every layer it added seconds to an SD 1.5 load).
PREPACK_TRIM_BYTES = 128 * 2**20


def _prepack_conv(conv: Any) -> None:
    """Pack ``conv``'s bf16 weight once and run it through oneDNN's convolution op; the packed
    tensor replaces the plain weight (no second copy)."""
    import torch
    from torch.nn import functional as F

    plain = conv.forward
    geometry = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
    size = [2, conv.in_channels, PREPACK_INPUT_SIDE, PREPACK_INPUT_SIDE]
    with torch.no_grad():
        conv.weight = torch.nn.Parameter(torch.ops.mkldnn._reorder_convolution_weight(
            conv.weight.detach(), *geometry, size), requires_grad=False)

    def forward(x: Any) -> Any:
        weight = conv.weight
        if weight.layout is not torch._mkldnn:  # a plain weight put back: the plain path
            return plain(x)
        if torch.is_grad_enabled() or x.dim() != 4 or x.device.type != "cpu":
            return F.conv2d(x.to(weight.dtype), weight.to_dense(), conv.bias, conv.stride,
                            conv.padding, conv.dilation, conv.groups)
        if x.dtype != weight.dtype:
            x = x.to(weight.dtype)  # what autocast does for a convolution
        return torch.ops.mkldnn._convolution_pointwise(x, weight, conv.bias, *geometry,
                                                       "none", [], "")

    conv.forward = forward
    conv.register_state_dict_post_hook(_plain_weight_in_state_dict)


def _plain_weight_in_state_dict(conv: Any, state: dict[str, Any], prefix: str,
                                _meta: Any) -> None:
    """``state_dict()`` of a packed layer gives its weight in the plain layout (a copy), as
    code that reads or saves weights expects."""
    import torch

    key = prefix + "weight"
    weight = state.get(key)
    if weight is not None and weight.layout is torch._mkldnn:
        state[key] = weight.to_dense()


def prepack_cpu_convolutions(module: Any, model_choice: DeviceChoice) -> int:
    """Where ``cpu_prepack_wanted``: run ``module``'s ``Conv2d`` layers with their bf16
    weights packed once into oneDNN's blocked (AMX) layout; returns how many (0: untouched).

    Eager PyTorch re-lays every convolution's weight on each call: 98 reorders, about 1 s of
    a 3.7 s SD 1.5 step at 512 px on a 2-core AMX CPU (oneDNN verbose). Packed here, at load
    (``PREPACK_INPUT_SIDE``), the packed tensor replaces the plain one (no second copy) and the
    same kernels run, so the output is the same; other image sizes run with it too (oneDNN
    re-lays a weight only where its kernel wants another layout).

    LoRAs (forward hooks on the layers) still apply: they add to the layer's output. Calls
    with gradients on run a plain convolution. A packed module can no longer change dtype or
    memory format (``module.to``): bf16 weights on the CPU stay as they are.
    """
    if not cpu_prepack_wanted(model_choice) or getattr(module, "_studio_prepacked", False):
        return 0
    import torch
    from torch import nn

    count = freed = 0
    for conv in module.modules():
        if (type(conv) is nn.Conv2d and conv.padding_mode == "zeros"
                and not isinstance(conv.padding, str) and "forward" not in vars(conv)
                and conv.weight.dtype == torch.bfloat16 and conv.weight.device.type == "cpu"
                and conv.weight.layout is torch.strided):
            freed += conv.weight.nbytes
            _prepack_conv(conv)
            count += 1
            if freed > PREPACK_TRIM_BYTES:  # the plain weights' pages go back as we go
                _release_freed_memory()
                freed = 0
    if freed:
        _release_freed_memory()
    module._studio_prepacked = True
    return count


@functools.cache
def _malloc_trim() -> Any:
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to do
        return None


def _release_freed_memory() -> None:
    """Give freed heap pages back to the OS (glibc's ``malloc_trim``): the plain weights
    freed by packing otherwise stay in the process's heap, about 0.5 GB of RSS for SD 1.5."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


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


# Below this many denoiser parameters a CPU step is so short that waking a second OpenMP
# thread for each operation costs more than it saves: the embedded 1M-parameter model ran
# 25 steps in 0.54 s on 1 thread against 1.65 s on 2 (passive waits) on an idle 2-core
# machine. SD-sized models (860M) keep every thread.
SMALL_DENOISER_PARAMS = 50_000_000


def denoiser_parameters(pipe: Any) -> int:
    """Parameters of the pipeline's UNet or transformer (0 when it has neither)."""
    model = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    if model is None:
        return 0
    return sum(p.numel() for p in model.parameters())


def cpu_threads_for(pipe: Any, choice: DeviceChoice) -> int | None:
    """The torch thread count to run ``pipe`` with on the CPU (None: leave it as it is)."""
    if choice.device != "cpu":
        return None
    params = denoiser_parameters(pipe)
    return 1 if 0 < params < SMALL_DENOISER_PARAMS else None


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` intra-op threads, then restore the previous count."""
    if not count:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
