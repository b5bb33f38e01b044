"""``Engine``: the local backend. Turns a ``GenerationRequest`` into images with diffusers.

Runs on the engine thread only (the ``JobRunner`` owns it). Its parts, each testable alone:
``ModelRegistry`` (which models), ``PipelineCache`` (which are loaded, within a memory budget
in bytes), the call builders of ``studio.engine.calls`` (a pipeline's arguments per task),
``SliderEdits`` (the conditioning with slider edits, and their caches) and ``StepCallback``
(cancel, late directions, local blend, previews at each step). A request changes nothing
of the cached pipeline that the next request could see: its LoRAs and its scheduler are set
for the call and undone after it (``for_this_call``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from studio.core.engines import EngineFeatures
from studio.core.errors import (
    InvalidRequestError,
    NaNOutputError,
    OutOfMemoryError,
    StudioError,
    WrongModelKindError,
)
from studio.core.jobs.cancel import CancelToken
from studio.core.jobs.events import GenerationResult, StepProgress
from studio.core.jobs.request import GenerationRequest, LoraWeight, SliderValue
from studio.core.models import DeviceInfo, ModelInfo
from studio.core.samplers import steps_refusal
from studio.core.sliders.specs import LATENT_MODELS, LATENT_SPACES
from studio.engine import calls
from studio.engine.conditioning import (
    Conditioning,
    encodes_dit,
    per_image,
    supports_embeddings,
)
from studio.engine.control import ControlModels, ControlPlan
from studio.engine.device import DeviceChoice, choose_device
from studio.engine.joint_context import identical_context_once
from studio.engine.known_device import known_device
from studio.engine.latent_models import LatentModels
from studio.engine.lora import apply_loras
from studio.engine.models.cache import PipelineCache, memory_budget, pipeline_bytes
from studio.engine.models.families import (
    INVERTIBLE_FAMILIES,
    REGION_FAMILIES,
    REGIONS_OFF,
    REGIONS_TXT2IMG_ONLY,
    REGIONS_WHY_NOT,
    SPECS,
    check_request,
    spec_for,
)
from studio.engine.models.loading import LoadedModel, load_model
from studio.engine.models.registry import ModelRegistry
from studio.engine.regions import (
    SELF_ENCODED,
    RegionPlan,
    encode_with_pipeline,
    model_contrast,
    region_plan,
    regions_for,
)
from studio.engine.schedulers import SCHEDULERS, canonical_name, make_scheduler
from studio.engine.slider_edits import SliderEdits
from studio.engine.sliders import (
    LOCAL_FLOW_FAMILIES,
    PromptDelta,
    ScheduledDelta,
    add_deltas,
    interp_slider,
    inversion_slider,
    late_fits,
    local_sliders,
    without_sliders,
)
from studio.engine.step_callback import StepCallback
from studio.engine.tuning import prepare_decode, torch_threads

log = logging.getLogger(__name__)

FAMILIES = tuple(SPECS)  # declared; any other text-to-image pipeline of diffusers runs too


class Engine:
    """The local backend (implements ``studio.core.engines.Engine``).

    Parameters
    ----------
    device, dtype
        ``"auto"`` or an explicit choice (see ``studio.engine.device.choose_device``).
    model_dirs
        Extra folders to scan (A1111/ComfyUI layouts are recognised).
    embedded_dir, hf_cache
        See ``ModelRegistry``.
    preview_every
        A preview image every this many steps (0: none).
    cache_bytes
        Memory the loaded pipelines may take together (``None``: from the device's memory,
        see ``studio.engine.models.cache.memory_budget``).
    """

    def __init__(self, device: str = "auto", dtype: str = "auto",
                 model_dirs: list[str | Path] | None = None, *, embedded_dir: Path | None = None,
                 hf_cache: bool = True, preview_every: int = 1,
                 cache_bytes: int | None = None) -> None:
        self.choice: DeviceChoice = choose_device(device, dtype)
        self.registry = ModelRegistry(model_dirs, embedded_dir=embedded_dir, hf_cache=hf_cache)
        budget = memory_budget(self.choice.device) if cache_bytes is None else cache_bytes
        self.pipelines: PipelineCache[LoadedModel] = PipelineCache(
            budget, lambda loaded: pipeline_bytes(loaded.pipe), on_evict=self._free_memory)
        self.slider_edits = SliderEdits(self.choice)
        self.controls = ControlModels(self.registry, self.pipelines, self.choice)
        self.preview_every = preview_every
        self._latent: LatentModels | None = None

    @property
    def features(self) -> EngineFeatures:
        """What the local backend can do."""
        return EngineFeatures(
            backend="local", families=FAMILIES, schedulers=tuple(SCHEDULERS),
            inpainting=True, img2img=True, control=True, lora=True, prompt_sliders=True,
            latent_sliders=True, example_directions=True, upscaling=True,
            model_management=True, live_mode=True, regions=True,
            regions_families=REGION_FAMILIES,
            why_not=(("regions_families", "Regional prompts: " + REGIONS_WHY_NOT),
                     *((f"regions_families:{f}", "Regional prompts: " + why)
                       for f, why in REGIONS_OFF.items()),
                     *self.controls.kinds_off()))  # control kinds off (no depth model ...)

    # -- models --------------------------------------------------------------------------
    def list_models(self, kind: str | None = None, refresh: bool = False) -> list[ModelInfo]:
        return self.registry.models(kind, refresh)

    def add_model_dir(self, folder: str | Path) -> None:
        self.registry.add_dir(folder)

    def default_model(self) -> ModelInfo | None:
        return self.registry.default()

    def resolve_model(self, model_id: str) -> ModelInfo:
        return self.registry.resolve(model_id)

    def load(self, model_id: str) -> LoadedModel:
        """The loaded pipeline for ``model_id`` (loads it, evicting the least recently used
        pipelines until it fits the memory budget)."""
        info = self.resolve_model(model_id)
        if info.kind not in ("diffusion", "unknown"):
            raise WrongModelKindError(
                f"{info.name} is a {info.kind} model; it cannot generate from a prompt.",
                hint="Pick a diffusion model (see `studio models`).")
        key = (info.path, self.choice.device, self.choice.weight_dtype)
        return self.pipelines.get_or_load(key, lambda: load_model(info, self.choice),
                                          expected=info.size_bytes)

    def unload_all(self) -> None:
        self.pipelines.clear()
        self.slider_edits.clear()
        self._free_memory()

    @staticmethod
    def _free_memory() -> None:
        import gc

        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass

    @property
    def latent_models(self) -> LatentModels:
        """The VAE/GAN slider models (loaded on first use)."""
        if self._latent is None:
            self._latent = LatentModels(self)
        return self._latent

    def conditioning(self, loaded: LoadedModel, req: GenerationRequest) -> Conditioning:
        """The prompt embeddings for ``req`` (cached per model and prompt)."""
        return self.slider_edits.conditioning(loaded, req)

    def prompt_delta(self, loaded: LoadedModel, req: GenerationRequest,
                     slider: SliderValue) -> PromptDelta:
        """The embedding direction of a prompt slider (cached per model, LoRAs and texts)."""
        return self.slider_edits.prompt_delta(loaded, req, slider)

    # -- status --------------------------------------------------------------------------
    def device_info(self) -> DeviceInfo:
        return self.choice.info()

    def model_device_info(self, model_id: str) -> DeviceInfo:
        """Where and in which precision ``model_id`` runs once loaded: the device's, except
        that a small model stays float32 where the device autocasts large ones (the choice
        ``load_model`` makes, known before the load)."""
        info = self.resolve_model(model_id)
        return self.choice.for_model(info.size_bytes).info()

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
            if request.regions:
                raise InvalidRequestError(f"{info.name} draws from a latent, not a prompt: "
                                          "it takes no regional prompts.")
            if request.controls:
                raise InvalidRequestError(f"{info.name} draws from a latent: it takes no "
                                          "control layers.")
            return self.latent_models.generate(info, request, on_step, cancel)
        check_sliders_fit(request, info)
        check_request(request, info.family or "sd1", scheduler)  # before loading
        if request.controls:  # a control model of another family: refused before loading
            self.controls.check_before_load(request, info)
        on_step(StepProgress(0, request.steps, phase="loading"))
        loaded = self.load(request.model)
        cancel.raise_if_cancelled()  # cancelled while the model loaded: no step is run
        with for_this_call(loaded, request.loras) as set_scheduler:
            validate_for_family(request, loaded.family, scheduler)
            resolved = request.replace(
                model_hash=loaded.hash, family=loaded.family, scheduler=scheduler,
                device=self.choice.device,
                dtype=loaded.choice.compute_dtype + ("-autocast" if loaded.choice.autocast_dtype
                                                     else ""))  # the model's own (small: fp32)
            inverting = check_inversion(resolved)
            task = "txt2img" if inverting else request.task
            pipe = loaded.for_task(task)
            control = self.controls.plan(loaded, resolved, task)  # None: no control layers
            if control is not None:
                pipe = control.pipeline(loaded, task)
            set_scheduler(pipe, make_scheduler(resolved.scheduler, loaded.scheduler_config))
            prepare_decode(pipe, request.width, request.height, request.batch_size)
            cancel.raise_if_cancelled()
            on_step(StepProgress(0, request.steps, phase="encoding"))
            kwargs, callback = self._call(pipe, loaded, resolved, on_step, cancel,
                                          control=control)
            local = self._local_sliders(loaded, resolved)
            base_kwargs = (self._call(pipe, loaded, without_sliders(resolved, local),
                                      lambda _p: None, cancel, previews=False,
                                      control=control)[0]
                           if local else None)
            regions = self._region_plan(pipe, loaded, resolved)
            with out_of_memory_as_error(request, self._free_memory), torch.inference_mode(), \
                    loaded.choice.autocast(), torch_threads(loaded.cpu_threads), \
                    self.controls.applied(pipe, control), \
                    regions_for(getattr(pipe, "unet", None)
                                or getattr(pipe, "transformer", None), regions), \
                    identical_context_once(getattr(pipe, "transformer", None)), \
                    known_device(pipe, loaded.choice.torch_device()):  # not searched per call
                if base_kwargs is not None:
                    callback.blend = self.slider_edits.local_blend(pipe, loaded, resolved,
                                                                   local, base_kwargs)
                output = pipe(**kwargs)
        return GenerationResult(request=resolved, images=to_uint8_images(output.images),
                                seconds=time.perf_counter() - start)

    def _region_plan(self, pipe: Any, loaded: LoadedModel, req: GenerationRequest
                     ) -> RegionPlan | None:
        """The regions' prompt embeddings and masks for the call (``None`` without regions);
        each region prompt is encoded as the main prompt is (weights, clip skip, cache)."""
        if not req.regions:
            return None
        if loaded.family in SELF_ENCODED:  # Flux 2, Z-Image: the pipeline's own encode_prompt
            return self._self_encoded_plan(pipe, loaded, req)
        conds = [self.conditioning(loaded, req.replace(prompt=r.prompt, regions=())).kwargs
                 for r in req.regions]  # PixArt, Sana: each prompt's padding mask too
        return region_plan(req, [c["prompt_embeds"] for c in conds],
                           int(getattr(pipe, "vae_scale_factor", 8)),
                           [c.get("prompt_attention_mask") for c in conds],
                           model_contrast(loaded.info.path))

    def _self_encoded_plan(self, pipe: Any, loaded: LoadedModel, req: GenerationRequest
                           ) -> RegionPlan:
        """The regions' plan where the pipeline encodes the words itself: the region prompts
        and the main prompt (as plain words, as the call gets them) by its ``encode_prompt``."""
        import torch

        words = [plain_prompt_args(req.replace(prompt=p, regions=()), loaded.family)["prompt"]
                 for p in (req.prompt, *(r.prompt for r in req.regions))]
        with torch.inference_mode(), loaded.choice.autocast():
            main, *embeds = encode_with_pipeline(pipe, words, loaded.choice.torch_device())
        plan = region_plan(req, embeds, int(getattr(pipe, "vae_scale_factor", 8)),
                           contrast=model_contrast(loaded.info.path))
        plan.main_embeds = main
        return plan

    def _local_sliders(self, loaded: LoadedModel, req: GenerationRequest) -> list[SliderValue]:
        masks = supports_embeddings(loaded.family) or loaded.family in LOCAL_FLOW_FAMILIES
        local = local_sliders(req) if masks else []
        if local and loaded.family.endswith("-inpaint"):
            # Its 9-channel UNet cannot score plain latents for the mask: the sliders act on
            # the whole image (without first running a base generation for nothing).
            log.info("%s is an inpainting model: its local sliders change the whole image",
                     loaded.info.name)
            return []
        return local

    def _call(self, pipe: Any, loaded: LoadedModel, req: GenerationRequest,
              on_step: Callable[[StepProgress], None], cancel: CancelToken,
              previews: bool = True, control: ControlPlan | None = None
              ) -> tuple[dict[str, Any], StepCallback]:
        """The pipeline's arguments for ``req`` and its step callback (with ``control``'s
        maps, strengths and step ranges where it has control layers)."""
        kwargs = calls.sampling_args(req)
        late: list[ScheduledDelta] = []
        if supports_embeddings(loaded.family):
            text, late = self.slider_edits.text_args(loaded, req)
            kwargs.update(text)
        elif encodes_dit(loaded.family):  # SD3, Flux, PixArt, Sana, AuraFlow: cached, shaped
            text, late = self.slider_edits.text_args(loaded, req)
            if late and not late_fits(pipe, late):  # no callback that could take them late
                text, late = add_deltas(text, late), []
            kwargs.update(text)
            kwargs = per_image(kwargs, loaded.family, req.batch_size)
            kwargs.update(pipeline_extras(pipe, req))
        else:  # the pipeline encodes the text itself (T5, Gemma ...): words, no weights
            kwargs.update(plain_prompt_args(req, loaded.family))
            kwargs.update(pipeline_extras(pipe, req))
            kwargs.update(true_cfg_args(pipe, req, loaded.family))
        if inversion_slider(req) is not None:  # sliders over an imported image
            inverted = self.slider_edits.inverted_latents(pipe, loaded, req)
            kwargs.update(calls.inversion_args(req, inverted))
        elif req.task == "txt2img":
            latents = calls.latent_slider_latents(pipe, req, interp_slider(req),
                                                  self.choice.torch_device(),
                                                  self.choice.torch_dtype())
            kwargs.update(calls.txt2img_args(req, latents))
        else:
            kwargs.update(calls.task_args(req, req.task))
        if control is not None:
            kwargs.update(control.kwargs("txt2img" if inversion_slider(req) is not None
                                         else req.task))
        callback = StepCallback(on_step, cancel, req.steps, loaded.previewer,
                                self.preview_every if previews else 0, late)
        kwargs.update(callback.kwargs(pipe, loaded.family))
        return kwargs, callback


@contextmanager
def for_this_call(loaded: LoadedModel, loras: tuple[LoraWeight, ...]
                  ) -> Iterator[Callable[[Any, Any], None]]:
    """The request's LoRAs on ``loaded`` for the call, and a setter of the scheduler of one of
    its pipelines; both undone afterwards, so the cached pipeline is as it was loaded."""
    schedulers: list[tuple[Any, Any]] = []

    def set_scheduler(pipe: Any, scheduler: Any) -> None:
        schedulers.append((pipe, pipe.scheduler))
        pipe.scheduler = scheduler

    apply_loras(loaded.pipe, loras)
    try:
        yield set_scheduler
    finally:
        for pipe, previous in reversed(schedulers):
            pipe.scheduler = previous
        apply_loras(loaded.pipe, ())


@contextmanager
def out_of_memory_as_error(request: GenerationRequest, free: Callable[[], None]
                           ) -> Iterator[None]:
    """Out-of-memory errors of a generation as one clear ``OutOfMemoryError``."""
    import torch

    try:
        yield
    except StudioError:  # cancelled, or a clear error already
        raise
    except (torch.cuda.OutOfMemoryError, MemoryError) as err:
        free()
        raise OutOfMemoryError(
            f"Out of memory at {request.width}x{request.height}, batch {request.batch_size}.",
            hint="Try a smaller size or batch, or close other programs.") from err
    except RuntimeError as err:
        if "out of memory" in str(err).lower():
            free()
            raise OutOfMemoryError("Out of memory while generating.",
                                   hint="Try a smaller size or batch.") from err
        raise


def to_uint8_images(images: Any) -> tuple[np.ndarray, ...]:
    """A pipeline's float images in [0, 1] as uint8 arrays; NaNs are a clear error."""
    arr = np.asarray(images, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise NaNOutputError(
            "The model produced an empty (NaN) image.",
            hint="This happens with some models in half precision: try --dtype float32, "
                 "or a VAE fixed for fp16.")
    arr = (np.clip(arr, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return tuple(np.ascontiguousarray(a) for a in arr)


def check_sliders_fit(request: GenerationRequest, info: ModelInfo) -> None:
    """A VAE/GAN latent slider on a diffusion model is refused, saying which model it needs."""
    latent = next((s for s in request.sliders if s.space in LATENT_SPACES and s.value), None)
    if latent is not None:
        owner = LATENT_MODELS[latent.space]
        raise InvalidRequestError(
            f"The slider {latent.slider_id} moves the latent of {owner}, not of "
            f"{info.name}.", hint=f"Use --model {owner}, or a prompt slider (smile, "
            "glasses, hair-red ...) on this model.")


def check_inversion(request: GenerationRequest) -> bool:
    """Whether ``request`` (family and scheduler resolved) starts from the DDIM inversion of
    its init image; refused where the model or the scheduler cannot invert."""
    if inversion_slider(request) is None:
        return False
    if request.family not in INVERTIBLE_FAMILIES or request.scheduler != "DDIM":
        raise InvalidRequestError("Sliders on an imported image need an SD 1.x, 2.x or "
                                  "SDXL model (not an inpainting one) and the DDIM "
                                  "scheduler.")
    return True


def validate_for_family(request: GenerationRequest, family: str,
                        scheduler: str | None = None) -> None:
    """Checks a request against what a family can do (``families.check_request``), before
    the pipeline runs: the family of a loaded model can differ from the one discovery read."""
    check_request(request, family, scheduler)
    name = scheduler or request.scheduler
    refusal = steps_refusal(canonical_name(name), request.steps) if name else ""
    if refusal:
        raise InvalidRequestError(refusal)
    if request.regions and family not in REGION_FAMILIES:
        raise InvalidRequestError(f"Regional prompts need an SD 1.x, 2.x, SDXL, SD3, Flux, "
                                  f"PixArt or Sana model (or Flux 2, Z-Image), not {family}: "
                                  f"{REGIONS_OFF.get(family, REGIONS_WHY_NOT)}")
    if request.regions and family in REGIONS_TXT2IMG_ONLY and request.task != "txt2img":
        raise InvalidRequestError(
            f"Regional prompts on {spec_for(family).label} work in text to image only: its "
            f"{request.task} reads the image as a reference beside the picture, where a "
            "region's mask does not apply.",
            hint="Remove the regions, or generate from text.")


_told_weights: set[str] = set()  # families already told that weights are read as plain words


def plain_prompt_args(req: GenerationRequest, family: str) -> dict[str, Any]:
    """The prompt strings for a pipeline that encodes them itself: A1111 weighting syntax
    stripped (T5 and Gemma would read the brackets as words), said once per family."""
    from studio.core.prompt_syntax import has_syntax, parse_prompt

    def plain(text: str) -> str:
        if not has_syntax(text):
            return text
        if family not in _told_weights:
            _told_weights.add(family)
            log.warning("%s models read prompt weights as plain words: the (word:1.2) syntax "
                        "is removed, the words are kept", spec_for(family).label)
        return " ".join(parse_prompt(text).plain_text.replace(" BREAK ", " ").split())

    args: dict[str, Any] = {"prompt": plain(req.prompt)}
    if req.negative_prompt and spec_for(family).negative_prompt:
        args["negative_prompt"] = plain(req.negative_prompt)
    return args


def true_cfg_args(pipe: Any, req: GenerationRequest, family: str) -> dict[str, Any]:
    """The guidance of a pipeline whose classifier-free guidance is its ``true_cfg_scale``
    (Qwen-Image, Qwen-Image-Edit): the request's guidance goes there, not to
    ``guidance_scale`` (which only a guidance-distilled transformer reads, and which they
    otherwise ignore), and an empty negative prompt is " " as Qwen's own examples give it,
    for the guidance runs only beside a negative prompt. Flux's guidance, an input of its
    transformer, is left as it is."""
    import inspect

    spec = spec_for(family)
    if (spec.guidance_embedding or not spec.negative_prompt
            or "true_cfg_scale" not in inspect.signature(type(pipe).__call__).parameters):
        return {}
    config = getattr(getattr(pipe, "transformer", None), "config", None)
    if getattr(config, "guidance_embeds", False):  # guidance-distilled: guidance_scale
        return {}
    args: dict[str, Any] = {"true_cfg_scale": req.guidance, "guidance_scale": None}
    if req.guidance > 1 and not req.negative_prompt.strip():
        args["negative_prompt"] = " "
    return args


def pipeline_extras(pipe: Any, req: GenerationRequest) -> dict[str, Any]:
    """Arguments that keep a pipeline from changing the request behind the user's back:
    no resolution binning (PixArt, Sana would generate at another size and resize), and the
    size where an img2img pipeline would take another (SD3 and Flux img2img take one)."""
    import inspect

    params = inspect.signature(type(pipe).__call__).parameters
    extras: dict[str, Any] = {}
    if "use_resolution_binning" in params:
        extras["use_resolution_binning"] = False
    if "height" in params and "width" in params:
        extras.update(height=req.height, width=req.width)
    return extras
