"""``Engine``: turns a ``GenerationRequest`` into images with a diffusers pipeline.

Runs on the engine thread only (the ``JobRunner`` owns it). Each step it checks the cancel
token (a cancelled job stops within one step and never reaches the VAE decode) and reports
progress with a small preview.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from studio.core.jobs.cancel import CancelToken
from studio.core.errors import (
    CancelledError,
    InvalidRequestError,
    NaNOutputError,
    OutOfMemoryError,
    StudioError,
)
from studio.core.jobs.events import GenerationResult, StepProgress
from studio.core.models import DeviceInfo, ModelInfo
from studio.core.jobs.request import GenerationRequest, SliderValue
from studio.core.sliders.specs import LATENT_MODELS, LATENT_SPACES, fill_template, place_in_prompt
from studio.engine.conditioning import (
    Conditioning,
    ConditioningCache,
    encode_prompts,
    supports_embeddings,
)
from studio.engine.device import DeviceChoice, choose_device
from studio.engine.models.discovery import discover, resolve
from studio.engine.models.families import INVERTIBLE_FAMILIES, SDXL_FAMILIES
from studio.engine.latent_models import LatentModels
from studio.engine.models.loading import LoadedModel, load_model
from studio.engine.lora import apply_loras, lora_signature
from studio.engine.schedulers import canonical_name, make_scheduler
from studio.engine.sliders import (
    DirectionCache,
    InversionCache,
    LocalBlend,
    PromptDelta,
    TrajectoryCache,
    add_deltas,
    compute_prompt_delta,
    ddim_invert,
    edit_mask,
    interp_slider,
    interpolated_noise,
    inversion_slider,
    late_delta_callback,
    lerp_conditioning,
    local_sliders,
    prompt_sliders,
    schedule,
    without_sliders,
)
from studio.engine.tuning import prepare_decode, torch_threads
from studio.paths import embedded_models_dir, extra_model_dirs

log = logging.getLogger(__name__)


class Engine:
    """Model discovery, a small cache of loaded pipelines, and generation.

    Parameters
    ----------
    device, dtype
        ``"auto"`` or an explicit choice (see ``studio.engine.device.choose_device``).
    model_dirs
        Extra folders to scan (A1111/ComfyUI layouts are recognised).
    preview_every
        A preview image every this many steps (0: none).
    max_loaded
        How many pipelines stay loaded at once.
    """

    def __init__(self, device: str = "auto", dtype: str = "auto",
                 model_dirs: list[str | Path] | None = None, *, embedded_dir: Path | None = None,
                 hf_cache: bool = True, preview_every: int = 1, max_loaded: int = 1) -> None:
        self.choice: DeviceChoice = choose_device(device, dtype)
        self._model_dirs = [Path(d) for d in (model_dirs or [])] + extra_model_dirs()
        self._embedded_dir = embedded_models_dir() if embedded_dir is None else embedded_dir
        self._hf_cache = hf_cache
        self.preview_every = preview_every
        self._max_loaded = max(1, max_loaded)
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._models: list[ModelInfo] | None = None
        self._lock = threading.Lock()
        self._cond_cache = ConditioningCache()
        self._directions = DirectionCache()
        self._inversions = InversionCache()
        self._trajectories = TrajectoryCache()
        self._latent: LatentModels | None = None

    # -- models --------------------------------------------------------------------------
    def list_models(self, kind: str | None = None, refresh: bool = False) -> list[ModelInfo]:
        with self._lock:
            if self._models is None or refresh:
                self._models = discover(self._embedded_dir, self._model_dirs, self._hf_cache)
            models = list(self._models)
        return [m for m in models if kind is None or m.kind == kind]

    def add_model_dir(self, folder: str | Path) -> None:
        self._model_dirs.append(Path(folder))
        self.list_models(refresh=True)

    def default_model(self) -> ModelInfo | None:
        models = self.list_models("diffusion")
        for m in models:
            if m.id == "studio-tiny-diffusion":
                return m
        return models[0] if models else None

    def resolve_model(self, model_id: str) -> ModelInfo:
        return resolve(model_id, self.list_models())

    def load(self, model_id: str) -> LoadedModel:
        """The loaded pipeline for ``model_id`` (loads it, evicting the oldest, if needed)."""
        info = self.resolve_model(model_id)
        if info.kind not in ("diffusion", "unknown"):
            from studio.core.errors import WrongModelKindError

            raise WrongModelKindError(
                f"{info.name} is a {info.kind} model; it cannot generate from a prompt.",
                hint="Pick a diffusion model (see `studio models`).")
        key = f"{info.path}|{self.choice.device}|{self.choice.weight_dtype}"
        loaded = self._loaded.get(key)
        if loaded is not None:
            self._loaded.move_to_end(key)
            return loaded
        while len(self._loaded) >= self._max_loaded:
            _, old = self._loaded.popitem(last=False)
            del old
            self._free_memory()
        loaded = load_model(info, self.choice)
        self._loaded[key] = loaded
        return loaded

    def unload_all(self) -> None:
        self._loaded.clear()
        self._cond_cache.clear()
        self._directions.clear()
        self._inversions.clear()
        self._trajectories.clear()
        self._free_memory()

    def _free_memory(self) -> None:
        import gc

        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass

    # -- status --------------------------------------------------------------------------
    def device_info(self) -> DeviceInfo:
        return self.choice.info()

    def memory_in_use(self) -> int:
        """Bytes in use: GPU memory allocated on CUDA, else this process's resident memory."""
        if self.choice.device.startswith("cuda"):
            import torch

            return int(torch.cuda.memory_allocated(self.choice.torch_device()))
        try:
            import psutil

            return int(psutil.Process().memory_info().rss)
        except Exception:
            return 0

    # -- generation ----------------------------------------------------------------------
    def generate(self, request: GenerationRequest,
                 on_step: Callable[[StepProgress], None] | None = None,
                 cancel: CancelToken | None = None) -> GenerationResult:
        """Run ``request``; raises ``CancelledError`` or another ``StudioError`` on failure."""
        import torch

        cancel = cancel or CancelToken()
        on_step = on_step or (lambda _p: None)
        start = time.perf_counter()
        cancel.raise_if_cancelled()
        if "<lora:" in request.prompt.lower() or "<lyco:" in request.prompt.lower():
            from studio.core.prompt_syntax import with_prompt_loras  # inline <lora:name:w>

            request = with_prompt_loras(request, self.list_models("lora"))
        scheduler = canonical_name(request.scheduler)
        info = self.resolve_model(request.model)
        if info.kind in ("vae", "gan"):  # latent slider mode: encode/move/decode, no sampler
            return self.latent_models.generate(info, request, on_step, cancel)
        latent = next((s for s in request.sliders if s.space in LATENT_SPACES and s.value), None)
        if latent is not None:
            owner = LATENT_MODELS[latent.space]
            raise InvalidRequestError(
                f"The slider {latent.slider_id} moves the latent of {owner}, not of "
                f"{info.name}.", hint=f"Use --model {owner}, or a prompt slider (smile, "
                "glasses, hair-red ...) on this model.")
        loaded = self.load(request.model)
        apply_loras(loaded.pipe, request.loras)
        validate_for_family(request, loaded.family)
        resolved = request.replace(
            model_hash=loaded.hash, family=loaded.family,
            scheduler=scheduler, device=self.choice.device,
            dtype=self.choice.compute_dtype + ("-autocast" if self.choice.autocast_dtype else ""))
        inverting = inversion_slider(request) is not None
        if inverting and (loaded.family not in INVERTIBLE_FAMILIES
                          or resolved.scheduler != "DDIM"):
            raise InvalidRequestError("Sliders on an imported image need an SD 1.x, 2.x or "
                                      "SDXL model (not an inpainting one) and the DDIM "
                                      "scheduler.")
        pipe = loaded.for_task("txt2img" if inverting else request.task)
        pipe.scheduler = make_scheduler(resolved.scheduler, loaded.scheduler_config)
        prepare_decode(pipe, request.width, request.height, request.batch_size)
        blend: list[LocalBlend] = []  # filled before the run when local sliders are set
        kwargs = self._call_kwargs(pipe, loaded, resolved, on_step, cancel, blend=blend)
        local = local_sliders(resolved) if supports_embeddings(loaded.family) else []
        if local and loaded.family.endswith("-inpaint"):
            # Its 9-channel UNet cannot score plain latents for the mask: the sliders act on
            # the whole image (without first running a base generation for nothing).
            log.info("%s is an inpainting model: its local sliders change the whole image",
                     loaded.info.name)
            local = []
        base_kwargs = (self._call_kwargs(pipe, loaded, without_sliders(resolved, local),
                                         lambda _p: None, cancel, previews=False)
                       if local else None)
        try:
            with torch.inference_mode(), self.choice.autocast(), \
                    torch_threads(loaded.cpu_threads):
                if base_kwargs is not None:
                    blend.extend(self._local_blend(pipe, loaded, resolved, local, base_kwargs))
                output = pipe(**kwargs)
        except CancelledError:
            raise
        except StudioError:
            raise
        except (torch.cuda.OutOfMemoryError, MemoryError) as err:
            self._free_memory()
            raise OutOfMemoryError(
                f"Out of memory at {request.width}x{request.height}, batch {request.batch_size}.",
                hint="Try a smaller size or batch, or close other programs.") from err
        except RuntimeError as err:
            if "out of memory" in str(err).lower():
                self._free_memory()
                raise OutOfMemoryError("Out of memory while generating.",
                                       hint="Try a smaller size or batch.") from err
            raise
        images = self._to_uint8(output.images)
        return GenerationResult(request=resolved, images=images,
                                seconds=time.perf_counter() - start)

    def _call_kwargs(self, pipe: Any, loaded: LoadedModel, req: GenerationRequest,
                     on_step: Callable[[StepProgress], None], cancel: CancelToken,
                     blend: list[LocalBlend] | None = None,
                     previews: bool = True) -> dict[str, Any]:
        """The pipeline's arguments for ``req``. After each step the callback puts back the
        base generation's latents outside a local slider's mask (``blend``, filled in before
        the run)."""
        import torch
        from PIL import Image

        generators = [torch.Generator("cpu").manual_seed(s) for s in req.seeds]
        kwargs: dict[str, Any] = {
            "num_inference_steps": req.steps,
            "guidance_scale": req.guidance,
            "num_images_per_prompt": req.batch_size,
            "generator": generators,
            "output_type": "np",
        }
        late: list[Any] = []
        if supports_embeddings(loaded.family):
            cond = self.conditioning(loaded, req).kwargs
            interp = interp_slider(req)
            prompt_b = dict(interp.payload).get("prompt_b") if interp is not None else None
            if interp is not None and prompt_b is not None and prompt_b != req.prompt:
                other = self.conditioning(loaded, req.replace(prompt=str(prompt_b))).kwargs
                cond = lerp_conditioning(cond, other, float(interp.value))
            deltas = schedule([(self.prompt_delta(loaded, req, s), s.value,
                                float(dict(s.payload).get("start", 0.0)))
                               for s in prompt_sliders(req)], req.steps)
            cond = add_deltas(cond, [d for d in deltas if d.start_step == 0])
            late = [d for d in deltas if d.start_step > 0]
            kwargs.update(cond)
        else:
            kwargs["prompt"] = req.prompt
            if req.negative_prompt:
                kwargs["negative_prompt"] = req.negative_prompt
        if inversion_slider(req) is not None:  # sliders over an imported image
            kwargs.update(height=req.height, width=req.width,
                          latents=self._inverted_latents(pipe, loaded, req))
        elif req.task == "txt2img":
            kwargs.update(height=req.height, width=req.width)
            if req.variation_strength > 0 and req.variation_seed is not None:
                kwargs["latents"] = self._variation_latents(pipe, req)
            interp = interp_slider(req)
            if interp is not None:
                kwargs["latents"] = interpolated_noise(pipe, req, interp, kwargs.get("latents")).to(
                    self.choice.torch_device(), self.choice.torch_dtype())
        else:
            assert req.init_image is not None
            init = Image.fromarray(req.init_image.to_array()).convert("RGB")
            if init.size != (req.width, req.height):
                init = init.resize((req.width, req.height), Image.LANCZOS)
            kwargs.update(image=init, strength=req.strength)
            if req.task == "inpaint":
                assert req.mask is not None
                mask = Image.fromarray(req.mask.to_array()).convert("L")
                if mask.size != (req.width, req.height):
                    mask = mask.resize((req.width, req.height), Image.NEAREST)
                kwargs.update(mask_image=mask, height=req.height, width=req.width)
        every = self.preview_every if previews else 0
        previewer = loaded.previewer
        late_update = late_delta_callback(late) if late else None

        def on_step_end(p: Any, step: int, timestep: Any, cb: dict[str, Any]) -> dict[str, Any]:
            cancel.raise_if_cancelled()
            if late_update is not None:
                late_update(p, step, cb)
            if blend and cb.get("latents") is not None:
                cb["latents"] = blend[0].apply(step, cb["latents"])
            total = int(getattr(p, "num_timesteps", 0) or req.steps)
            preview = None
            latents = cb.get("latents")
            if every and latents is not None and ((step + 1) % every == 0 or step + 1 == total):
                preview = previewer(latents)
            on_step(StepProgress(step + 1, total, preview))
            return cb

        kwargs["callback_on_step_end"] = on_step_end
        kwargs["callback_on_step_end_tensor_inputs"] = ["latents"]
        if late:  # prompt directions that start after the first steps
            extra = ["prompt_embeds"] + (["add_text_embeds"] if loaded.family in SDXL_FAMILIES
                                         else [])
            kwargs["callback_on_step_end_tensor_inputs"] += [
                k for k in extra if k in getattr(pipe, "_callback_tensor_inputs", [])]
        return kwargs

    def _local_blend(self, pipe: Any, loaded: LoadedModel, req: GenerationRequest,
                     local: list[SliderValue], base_kwargs: dict[str, Any]) -> list[LocalBlend]:
        """The base generation's trajectory (run once per base, cached) and the mask of
        where the ``local`` sliders' words act (see ``studio.engine.sliders.edit_mask``)."""
        import torch

        base = without_sliders(req, local)
        key = (loaded.hash, loaded.info.path, base.to_json())

        def run_base() -> tuple[Any, ...]:
            steps: list[Any] = []
            callback = base_kwargs["callback_on_step_end"]

            def capture(p: Any, step: int, timestep: Any, cb: dict[str, Any]) -> dict[str, Any]:
                cb = callback(p, step, timestep, cb)
                steps.append(cb["latents"].clone())
                return cb

            pipe(**{**base_kwargs, "output_type": "latent", "callback_on_step_end": capture})
            return tuple(steps)

        trajectory = self._trajectories.get_or_make(key, run_base)
        if not trajectory or pipe.unet.config.in_channels != trajectory[-1].shape[1]:
            return []  # a UNet that takes more than the latents cannot score them
        deltas = [self.prompt_delta(loaded, req, s) for s in local]
        tokens = sum(s.value * d.tokens for s, d in zip(local, deltas, strict=True))
        pooled = None
        if all(d.pooled is not None for d in deltas):
            pooled = sum(s.value * d.pooled for s, d in zip(local, deltas, strict=True))
        cond = self.conditioning(loaded, req).kwargs
        with torch.inference_mode():
            mask = edit_mask(pipe, trajectory[-1], cond["prompt_embeds"],
                             PromptDelta(tokens, pooled), req.seed,
                             pooled_prompt_embeds=cond.get("pooled_prompt_embeds"),
                             size=(req.height, req.width))
        return [LocalBlend(trajectory, mask)]

    def prompt_delta(self, loaded: LoadedModel, req: GenerationRequest,
                     slider: SliderValue) -> PromptDelta:
        """The embedding direction of a prompt slider (cached per model, LoRAs and texts)."""
        import torch

        p = dict(slider.payload)
        templates = [t for t in str(p.get("templates", "{}")).split("\n") if t.strip()]
        if p.get("context") == "prompt":
            in_prompt = self._in_prompt_delta(loaded, req, p, templates)
            if in_prompt is not None:
                return in_prompt
        key = (loaded.hash, loaded.info.path, str(p.get("positive", "")),
               str(p.get("negative", "")), tuple(templates), req.clip_skip,
               lora_signature(req.loras))

        def make() -> PromptDelta:
            with self.choice.autocast():
                return compute_prompt_delta(loaded.pipe, loaded.family, key[2], key[3],
                                            templates, self.choice.torch_device(),
                                            req.clip_skip)

        with torch.inference_mode():
            return self._directions.get_or_make(key, make)

    def _in_prompt_delta(self, loaded: LoadedModel, req: GenerationRequest,
                         payload: dict[str, Any], templates: list[str]) -> PromptDelta | None:
        """``E(prompt with positive) - E(prompt with negative)``, encoded exactly as the
        prompt is (weights, chunks, clip skip, LoRA tags), or None where the words have no
        place in the prompt (see ``studio.core.sliders.specs.place_in_prompt``)."""
        alternatives = [a for a in str(payload.get("alternatives", "")).split("\n") if a.strip()]
        positive = str(payload.get("positive", ""))
        placed = place_in_prompt(req.prompt, positive, str(payload.get("negative", "")),
                                 alternatives, templates)
        if placed is None:
            return None
        template, negative = placed
        pos = self.conditioning(loaded, req.replace(prompt=fill_template(template, positive)))
        neg = self.conditioning(loaded, req.replace(prompt=fill_template(template, negative)))
        a, b = pos.kwargs, neg.kwargs
        own = self.conditioning(loaded, req).kwargs["prompt_embeds"].shape
        if not a["prompt_embeds"].shape == b["prompt_embeds"].shape == own:
            return None  # the texts fill different numbers of 75-token chunks
        pooled = None
        # The slider reaches the swapped prompt at value ``reach`` (2: the end of its travel).
        scale = 1.0 / max(1e-3, float(payload.get("reach", 1.0)))
        tokens = (a["prompt_embeds"] - b["prompt_embeds"]) * scale
        if "pooled_prompt_embeds" in a and "pooled_prompt_embeds" in b:
            pooled = (a["pooled_prompt_embeds"] - b["pooled_prompt_embeds"]) * scale
        return PromptDelta(tokens, pooled)

    def _inverted_latents(self, pipe: Any, loaded: LoadedModel, req: GenerationRequest) -> Any:
        """The DDIM inversion of the init image under the prompt (cached for drags)."""
        from PIL import Image

        assert req.init_image is not None
        key = (loaded.hash, loaded.info.path, req.init_image.sha256, req.prompt, req.steps,
               req.width, req.height, req.clip_skip, lora_signature(req.loras))

        def make() -> Any:
            image = Image.fromarray(req.init_image.to_array()).convert("RGB")
            if image.size != (req.width, req.height):
                image = image.resize((req.width, req.height), Image.LANCZOS)
            cond = self.conditioning(loaded, req).kwargs
            with self.choice.autocast():
                return ddim_invert(pipe, np.asarray(image), cond["prompt_embeds"], req.steps,
                                   self.choice.torch_device(), self.choice.torch_dtype(),
                                   pooled_prompt_embeds=cond.get("pooled_prompt_embeds"))

        return self._inversions.get_or_make(key, make).repeat(req.batch_size, 1, 1, 1)

    @property
    def latent_models(self) -> LatentModels:
        """The VAE/GAN slider models (loaded on first use)."""
        if self._latent is None:
            self._latent = LatentModels(self)
        return self._latent

    def conditioning(self, loaded: LoadedModel, req: GenerationRequest) -> Conditioning:
        """The prompt embeddings for ``req`` (cached per model and prompt)."""
        import torch

        key = (loaded.hash, loaded.info.path, req.prompt, req.negative_prompt, req.clip_skip,
               lora_signature(req.loras))

        def make() -> Conditioning:
            with torch.inference_mode(), self.choice.autocast():
                return encode_prompts(loaded.pipe, loaded.family, req,
                                      self.choice.torch_device())

        return self._cond_cache.get_or_make(key, make)

    def _variation_latents(self, pipe: Any, req: GenerationRequest) -> Any:
        """A1111-style variation: slerp between the seed's noise and the variation seed's."""
        import torch

        from studio.engine.noise import slerp

        channels = pipe.unet.config.in_channels if hasattr(pipe, "unet") else 4
        factor = getattr(pipe, "vae_scale_factor", 8)
        shape = (1, channels, req.height // factor, req.width // factor)
        out = []
        for i, seed in enumerate(req.seeds):
            a = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))
            vseed = (int(req.variation_seed or 0) + i) % 2**32
            b = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(vseed))
            out.append(slerp(a, b, req.variation_strength))
        return torch.cat(out).to(self.choice.torch_device(), self.choice.torch_dtype())

    @staticmethod
    def _to_uint8(images: Any) -> tuple[np.ndarray, ...]:
        arr = np.asarray(images, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise NaNOutputError(
                "The model produced an empty (NaN) image.",
                hint="This happens with some models in half precision: try --dtype float32, "
                     "or a VAE fixed for fp16.")
        arr = (np.clip(arr, 0.0, 1.0) * 255.0).round().astype(np.uint8)
        return tuple(np.ascontiguousarray(a) for a in arr)


def validate_for_family(request: GenerationRequest, family: str) -> None:
    """Checks a request against what a family can do, before any work starts."""
    if family in ("pixart", "sd3") and request.task != "txt2img":
        raise InvalidRequestError(f"{family} models only do text-to-image here.")
