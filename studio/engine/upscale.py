"""Super-resolution: upscaler models, a Lanczos fallback, and a tiled diffusion refine.

Upscaler files are loaded safely: ``.safetensors``, or ``.pth`` through
``torch.load(weights_only=True)`` (never a plain unpickle). The architecture is detected
from the state dict by spandrel when it is installed (ESRGAN, Real-ESRGAN, SwinIR, HAT, ...);
without spandrel, the compact Real-ESRGAN architecture (``SRVGGNetCompact``, which the
embedded ``studio-tiny-upscaler`` uses) is still recognised by our own small loader.

Everything here is a plain function that reports progress and checks a cancel token, so the
GUI runs it through ``JobRunner.submit(work=...)`` and the CLI calls it directly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from studio.core.errors import CorruptModelError, InvalidRequestError, UnsafeModelFileError
from studio.core.jobs.cancel import CancelToken
from studio.core.jobs.events import StepProgress
from studio.engine.nets.upscaler import CompactSR

log = logging.getLogger(__name__)

LANCZOS = "lanczos"
EMBEDDED_UPSCALER = "studio-tiny-upscaler"
MAX_OUTPUT_SIDE = 16384

OnStep = Callable[[StepProgress], None]


@dataclass
class Upscaler:
    """A loaded super-resolution network and its scale factor."""

    name: str
    scale: int
    module: nn.Module
    tile: int = 256  # input tile size that keeps memory bounded

    def __call__(self, image: np.ndarray, cancel: CancelToken | None = None,
                 on_step: OnStep | None = None) -> np.ndarray:
        """Upscale an ``HxWx3`` uint8 image by ``scale`` (tiled with overlap)."""
        return run_tiled(self, image, cancel or CancelToken(), on_step or (lambda _p: None))


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` or ``.pth`` file, never unpickling code."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path), device="cpu"))
        if suffix in (".pth", ".pt", ".ckpt", ".bin"):
            try:
                state = torch.load(str(path), map_location="cpu", weights_only=True)
            except Exception as err:
                if "weights_only" in str(err) or "Unsupported global" in str(err):
                    raise UnsafeModelFileError(
                        f"{path.name} contains code, not just weights; it was not loaded.",
                        hint="Use a .safetensors version of this upscaler.") from err
                raise
            for key in ("params_ema", "params", "state_dict", "model"):
                if isinstance(state, dict) and isinstance(state.get(key), dict):
                    state = state[key]
                    break
            return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    except (UnsafeModelFileError, InvalidRequestError):
        raise
    except Exception as err:
        raise CorruptModelError(f"Cannot read the upscaler {path.name}: {err}") from err
    raise InvalidRequestError(f"{path.name} is not an upscaler file (.safetensors or .pth).")


def load_upscaler(path: str | Path) -> Upscaler:
    """Load an upscaler model file or embedded model folder.

    Raises
    ------
    UnsafeModelFileError, CorruptModelError, InvalidRequestError
        The file holds code, is damaged, or is not a super-resolution model we know.
    """
    path = Path(path)
    name = path.stem if path.is_file() else path.name
    if path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.pth"))
        if not files:
            raise CorruptModelError(f"The upscaler folder {path} holds no weights.")
        path = files[0]
    if not path.is_file():
        raise InvalidRequestError(f"No upscaler file at {path}.")
    state = read_state_dict(path)
    module, scale = _build(state, name)
    module.eval().requires_grad_(False)
    return Upscaler(name=name, scale=scale, module=module)


class _SpandrelModule(nn.Module):
    """A spandrel model, called through its descriptor (which pads to the sizes it needs)."""

    def __init__(self, descriptor: Any) -> None:
        super().__init__()
        self.descriptor = descriptor
        self.inner = descriptor.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.descriptor(x)


def _is_compact(state: dict[str, torch.Tensor]) -> bool:
    return ("body.0.weight" in state and "body.1.weight" in state
            and state["body.1.weight"].ndim == 1 and not any("conv_first" in k for k in state))


def _build(state: dict[str, torch.Tensor], name: str) -> tuple[nn.Module, int]:
    spandrel_error: Exception | None = None
    try:
        from spandrel import ModelLoader

        descriptor = ModelLoader().load_from_state_dict(state)
        if getattr(descriptor, "purpose", "SR") != "SR" or int(descriptor.scale) < 2:
            raise InvalidRequestError(
                f"{name} is a {descriptor.purpose} model at {descriptor.scale}x, not an upscaler.")
        return _SpandrelModule(descriptor), int(descriptor.scale)
    except InvalidRequestError:
        raise
    except Exception as err:  # not installed, its deps missing, or an unknown architecture
        spandrel_error = err
    if _is_compact(state):
        model = CompactSR.from_state_dict(state)
        return model, model.upscale
    if isinstance(spandrel_error, ImportError):
        raise InvalidRequestError(
            f"{name}: this upscaler architecture needs the spandrel package.",
            hint="Install it with `pip install spandrel` (and a torchvision matching torch).")
    raise InvalidRequestError(f"{name} is not a super-resolution model this version knows.")


# -- running ------------------------------------------------------------------------------
def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].float() / 255.0


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    arr = t[0].clamp(0, 1).permute(1, 2, 0).numpy()
    return (arr * 255.0).round().astype(np.uint8)


def _tiles(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return starts


def _ramp(length: int, fade: int, at_start: bool, at_end: bool) -> np.ndarray:
    """Weights 1 in the middle, ramping linearly over ``fade`` pixels at inner edges."""
    w = np.ones(length, np.float32)
    fade = min(fade, length // 2)
    if fade > 0:
        ramp = (np.arange(fade, dtype=np.float32) + 0.5) / fade
        if not at_start:
            w[:fade] = ramp
        if not at_end:
            w[-fade:] = ramp[::-1]
    return w


def blend_tiles(height: int, width: int, tiles: list[tuple[int, int, np.ndarray]],
                overlap: int) -> np.ndarray:
    """Paste float ``HxWxC`` tiles at ``(top, left)`` with linear feathering in the overlaps."""
    channels = tiles[0][2].shape[2]
    acc = np.zeros((height, width, channels), np.float32)
    weight = np.zeros((height, width, 1), np.float32)
    for top, left, tile in tiles:
        h, w = tile.shape[:2]
        wy = _ramp(h, overlap, top == 0, top + h >= height)
        wx = _ramp(w, overlap, left == 0, left + w >= width)
        mask = (wy[:, None] * wx[None, :])[..., None]
        acc[top:top + h, left:left + w] += tile.astype(np.float32) * mask
        weight[top:top + h, left:left + w] += mask
    return acc / np.maximum(weight, 1e-6)


def run_tiled(upscaler: Upscaler, image: np.ndarray, cancel: CancelToken,
              on_step: OnStep, overlap: int = 16) -> np.ndarray:
    """The upscaler over overlapping tiles, feathered together (bounded memory, no seams)."""
    image = np.asarray(image)[..., :3]
    h, w = image.shape[:2]
    s = upscaler.scale
    tile = upscaler.tile
    ys, xs = _tiles(h, tile, overlap), _tiles(w, tile, overlap)
    total = len(ys) * len(xs)
    outs: list[tuple[int, int, np.ndarray]] = []
    param = next(upscaler.module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    with torch.inference_mode():
        for y in ys:
            for x in xs:
                cancel.raise_if_cancelled()
                patch = image[y:y + tile, x:x + tile]
                out = upscaler.module(_to_tensor(patch).to(device, dtype)).float().cpu()
                outs.append((y * s, x * s, out[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255))
                on_step(StepProgress(len(outs), total))
    if len(outs) == 1:
        return outs[0][2].round().astype(np.uint8)
    blended = blend_tiles(h * s, w * s, outs, overlap * s)
    return np.clip(blended.round(), 0, 255).astype(np.uint8)


def lanczos_resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    im = Image.fromarray(np.asarray(image)[..., :3])
    return np.asarray(im.resize((width, height), Image.Resampling.LANCZOS))


@dataclass(frozen=True)
class UpscaleSettings:
    """What to do: the factor, the model (a path, a name, or ``"lanczos"``) and the refine."""

    scale: float = 2.0
    model: str = ""  # "" = the best available (embedded tiny upscaler), "lanczos" = none
    refine: bool = False
    strength: float = 0.3
    prompt: str = ""
    negative_prompt: str = ""
    refine_model: str = ""  # diffusion model for the refine ("" = the engine's default)
    steps: int = 20
    seed: int = 0
    tile: int = 0  # refine tile size (0: the model's native size)
    overlap: int = 0  # refine overlap (0: a quarter of the tile)

    def __post_init__(self) -> None:
        if not 1.0 <= self.scale <= 8.0:
            raise InvalidRequestError("The upscale factor must be between 1 and 8.")
        if not 0.0 <= self.strength <= 1.0:
            raise InvalidRequestError("The refine strength must be between 0 and 1.")


def upscale_image(image: np.ndarray, scale: float, upscaler: Upscaler | None,
                  cancel: CancelToken | None = None, on_step: OnStep | None = None) -> np.ndarray:
    """``image`` enlarged ``scale`` times: the model (repeated as needed), then Lanczos to size.

    ``upscaler=None`` uses Lanczos only.
    """
    cancel = cancel or CancelToken()
    on_step = on_step or (lambda _p: None)
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    arr = arr[..., :3]
    h, w = arr.shape[:2]
    tw, th = max(1, round(w * scale)), max(1, round(h * scale))
    if max(tw, th) > MAX_OUTPUT_SIDE:
        raise InvalidRequestError(
            f"{tw}x{th} is too large (at most {MAX_OUTPUT_SIDE} pixels a side).")
    out = arr
    if upscaler is not None and scale > 1.0:
        while out.shape[1] < tw or out.shape[0] < th:
            out = upscaler(out, cancel, on_step)
    if out.shape[:2] != (th, tw):
        out = lanczos_resize(out, tw, th)
    return out


# -- tiled diffusion refine ---------------------------------------------------------------
def refine_tiles(image: np.ndarray, img2img: Callable[[np.ndarray, int], np.ndarray],
                 tile: int, overlap: int, cancel: CancelToken | None = None,
                 on_step: OnStep | None = None) -> np.ndarray:
    """Run ``img2img(tile_pixels, index)`` on overlapping tiles and feather the results.

    ``img2img`` returns a tile of the same size (a diffusion img2img at low strength in the
    engine; any function in tests). Tiles overlap by ``overlap`` pixels and are blended with
    linear ramps there, so seams do not show.
    """
    cancel = cancel or CancelToken()
    on_step = on_step or (lambda _p: None)
    h, w = image.shape[:2]
    if overlap >= tile:
        raise InvalidRequestError("The refine overlap must be smaller than the tile.")
    ys, xs = _tiles(h, tile, overlap), _tiles(w, tile, overlap)
    total = len(ys) * len(xs)
    outs: list[tuple[int, int, np.ndarray]] = []
    for y in ys:
        for x in xs:
            cancel.raise_if_cancelled()
            patch = np.ascontiguousarray(image[y:y + tile, x:x + tile])
            outs.append((y, x, np.asarray(img2img(patch, len(outs)))))
            on_step(StepProgress(len(outs), total))
    return np.clip(blend_tiles(h, w, outs, overlap).round(), 0, 255).astype(np.uint8)


def find_upscaler(engine: Any, name: str) -> Upscaler | None:
    """The upscaler ``name`` (id, name or path) known to ``engine``; ``None`` for Lanczos.

    ``""`` picks the first available upscaler, preferring the embedded one; if there is
    none, Lanczos.
    """
    if name.lower() == LANCZOS:
        return None
    models = engine.list_models("upscaler")
    if not name:
        if not models:
            return None
        models.sort(key=lambda m: m.id != EMBEDDED_UPSCALER)
        return load_upscaler(models[0].path)
    for m in models:
        if name in (m.id, m.name, m.path):
            return load_upscaler(m.path)
    if Path(name).expanduser().exists():
        return load_upscaler(Path(name).expanduser())
    from studio.core.errors import ModelNotFoundError

    known = ", ".join(m.name for m in models) or "none found"
    raise ModelNotFoundError(f"No upscaler named {name!r} (upscalers: {known}; or 'lanczos').")


def upscale_with_engine(engine: Any, image: np.ndarray, settings: UpscaleSettings,
                        cancel: CancelToken | None = None,
                        on_step: OnStep | None = None) -> np.ndarray:
    """The whole upscale as the GUI and CLI run it: SR model (or Lanczos), then the refine.

    Usable as ``JobRunner.submit(work=lambda on_step, cancel: upscale_with_engine(...))``.
    """
    cancel = cancel or CancelToken()
    on_step = on_step or (lambda _p: None)
    upscaler = find_upscaler(engine, settings.model)
    big = upscale_image(image, settings.scale, upscaler, cancel, on_step)
    if not settings.refine or settings.strength <= 0:
        return big
    return refine_with_engine(engine, big, settings, cancel, on_step)


def refine_with_engine(engine: Any, image: np.ndarray, settings: UpscaleSettings,
                       cancel: CancelToken, on_step: OnStep) -> np.ndarray:
    """Img2img over tiles of the model's native size, with overlap, blended."""
    from studio.core.document.pixels import Pixels
    from studio.core.jobs.request import GenerationRequest

    model = (engine.resolve_model(settings.refine_model) if settings.refine_model
             else engine.default_model())
    if model is None:
        raise InvalidRequestError("The refine needs a diffusion model; none was found.")
    native = int(model.recommended_value("width", 512) or 512)
    tile = settings.tile or native
    tile = max(64, tile // 8 * 8)
    overlap = settings.overlap or max(8, tile // 4 // 8 * 8)
    h, w = image.shape[:2]
    tile = min(tile, h // 8 * 8, w // 8 * 8) if min(h, w) >= 64 else tile
    if min(h, w) < tile:
        raise InvalidRequestError(f"The image is too small to refine in {tile}px tiles.")
    overlap = min(overlap, tile // 2)

    # img2img runs int(steps * strength) steps: never let that round down to none.
    steps = max(settings.steps, math.ceil(1.0 / max(settings.strength, 1e-3)))

    def img2img(patch: np.ndarray, index: int) -> np.ndarray:
        ph, pw = patch.shape[:2]
        req = GenerationRequest(
            prompt=settings.prompt, negative_prompt=settings.negative_prompt, model=model.id,
            seed=settings.seed, steps=steps, width=pw // 8 * 8, height=ph // 8 * 8,
            task="img2img", strength=settings.strength,
            init_image=Pixels.from_array(np.ascontiguousarray(patch)),
            scheduler=str(model.recommended_value("scheduler", "Euler")),
            guidance=float(str(model.recommended_value("guidance", 7.0))))
        result = engine.generate(req, None, cancel)
        out = result.images[0]
        if out.shape[:2] != (ph, pw):
            out = lanczos_resize(out, pw, ph)
        return out

    return refine_tiles(image, img2img, tile, overlap, cancel, on_step)
