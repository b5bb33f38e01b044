"""Control layers in the local engine: ControlNets and T2I-Adapters with diffusers' pipelines.

``ControlModels`` finds the control models (``studio.engine.control_models``), refuses one
of another family in one line before anything loads, and keeps the loaded ones in the
engine's ``PipelineCache`` (inside the memory budget, evicted with the pipelines).
``ControlModels.plan`` turns a request's controls into a ``ControlPlan``: the models, the
preprocessed maps at the request's size (``studio.core.control.control_map``), and the
pipeline arguments. ``ControlPlan.pipeline`` makes diffusers' ControlNet or adapter pipeline
for the task with ``from_pipe``: the model's own modules, nothing loaded twice.

What each takes from a control layer:

* ControlNet (one, or several as diffusers' ``MultiControlNetModel``): strength is
  ``controlnet_conditioning_scale``, the range ``control_guidance_start``/``end``; text to
  image, image to image and inpainting.
* T2I-Adapter (one, or a ``MultiAdapter``): strength is ``adapter_conditioning_scale``;
  diffusers' adapter pipelines are text to image only, act from the first step, and on SD
  1.x on every step (SDXL: until ``end``, its ``adapter_conditioning_factor``).

A ``depth-estimate`` layer is a photo: the first depth-estimation model found in the user's
depth or annotator folders (transformers' ``AutoModelForDepthEstimation``, run through its
``depth-estimation`` pipeline, min-max scaled, near is light) makes its depth map, read by
a depth control model. Without one the kind is off (``kinds_off``), with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.control import (
    DEPTH_ESTIMATE_OFF,
    MODEL_KIND,
    REFERENCE_KINDS,
    control_map,
    is_empty,
)
from studio.core.errors import InvalidRequestError, ModelNotFoundError
from studio.core.jobs.request import GenerationRequest
from studio.engine import control_dit
from studio.engine.control_models import (
    FAMILY_LABELS,
    ControlModelInfo,
    DepthModelInfo,
    base_family,
    info_for_path,
    load_control_model,
    load_depth_estimator,
    scan,
    scan_depth,
    with_article,
)

log = logging.getLogger(__name__)

_SD_PIPES = {"txt2img": "StableDiffusionControlNetPipeline",
             "img2img": "StableDiffusionControlNetImg2ImgPipeline",
             "inpaint": "StableDiffusionControlNetInpaintPipeline"}
_XL_PIPES = {"txt2img": "StableDiffusionXLControlNetPipeline",
             "img2img": "StableDiffusionXLControlNetImg2ImgPipeline",
             "inpaint": "StableDiffusionXLControlNetInpaintPipeline"}
# Families whose UNet takes ControlNet residuals through diffusers' SD/SDXL pipelines.
CONTROL_FAMILIES = ("sd1", "sd2", "sdxl", "studio-tiny")
CONTROL_WHY_NOT = ("Control layers need an SD 1.x, 2.x, SDXL, SD 3.x or Flux model (or the "
                   "embedded studio-tiny-diffusion); PixArt, Sana and AuraFlow have no "
                   "ControlNets in diffusers.")


@dataclass
class ControlPlan:
    """The controls of one call: models, preprocessed maps, strengths and step ranges."""

    kind: str  # "controlnet" or "t2i-adapter"
    infos: list[ControlModelInfo]
    models: list[Any]
    maps: list[Any]  # PIL RGB images at the request's size
    strengths: list[float]
    starts: list[float]
    ends: list[float]
    family: str
    notes: list[str] = field(default_factory=list)
    control_kinds: list[str] = field(default_factory=list)  # each layer's kind (union modes)
    # The reference images (IP-Adapters, ``studio.engine.reference``); with ``kind``
    # "reference" they are the only controls: the task's own pipeline runs.
    references: Any = None

    @property
    def dit(self) -> bool:
        """SD3, Flux or union ControlNets (``studio.engine.control_dit``)."""
        return bool(self.infos and self.infos[0].arch)

    def pipeline(self, loaded: Any, task: str) -> Any:
        """Diffusers' pipeline for ``task`` with these control models, made from the loaded
        model's modules with ``from_pipe`` and kept for the next call with the same models."""
        import diffusers

        if self.kind == "reference":  # reference images only: the task's own pipeline
            return loaded.for_task(task)
        key = f"control:{task}"
        ids = (self.kind, *(info.id for info in self.infos))
        cached = loaded.variants.get(key)
        if cached is not None and cached[0] == ids:
            return cached[1]
        xl = self.family.startswith("sdxl")
        if self.dit:
            pipe = control_dit.pipeline(self, loaded, task)
        elif self.kind == "controlnet":
            cls = getattr(diffusers, (_XL_PIPES if xl else _SD_PIPES)[task])
            models = self.models[0] if len(self.models) == 1 else list(self.models)
            pipe = cls.from_pipe(loaded.pipe, controlnet=models)
        else:
            name = ("StableDiffusionXLAdapterPipeline" if xl
                    else "StableDiffusionAdapterPipeline")
            models = (self.models[0] if len(self.models) == 1
                      else diffusers.MultiAdapter(list(self.models)))
            pipe = getattr(diffusers, name).from_pipe(loaded.pipe, adapter=models)
        pipe.set_progress_bar_config(disable=True)
        loaded.variants[key] = (ids, pipe)  # one per task: the older one's models can go
        return pipe

    def kwargs(self, task: str) -> dict[str, Any]:
        """The control arguments of the pipeline call (beside the task's own)."""
        if self.references is not None:  # the reference images' beside the ControlNets'
            from dataclasses import replace

            rest = {} if self.kind == "reference" else replace(self, references=None).kwargs(task)
            return {**self.references.kwargs(), **rest}
        one = len(self.maps) == 1
        if self.dit:
            return control_dit.kwargs(self, task)

        def value(items: list[Any]) -> Any:
            return items[0] if one else list(items)

        if self.kind == "controlnet":
            return {"image" if task == "txt2img" else "control_image": value(self.maps),
                    "controlnet_conditioning_scale": value(self.strengths),
                    "control_guidance_start": value(self.starts),
                    "control_guidance_end": value(self.ends)}
        args = {"image": value(self.maps), "adapter_conditioning_scale": value(self.strengths)}
        if self.family.startswith("sdxl"):
            args["adapter_conditioning_factor"] = self.ends[0]
        return args


class ControlModels:
    """The control models an engine can use, and the loaded ones (in the engine's cache).

    Parameters
    ----------
    registry
        The engine's ``ModelRegistry`` (its folders and embedded models are scanned).
    cache
        The engine's ``PipelineCache``: loaded control models count in its budget.
    choice
        The engine's ``DeviceChoice``.
    """

    def __init__(self, registry: Any, cache: Any, choice: Any) -> None:
        self._registry = registry
        self._cache = cache
        self._choice = choice
        self._found: list[ControlModelInfo] | None = None
        self._dirs: tuple[Path, ...] = ()
        self._depth: list[DepthModelInfo] | None = None
        self._depth_dirs: tuple[Path, ...] = ()

    def list(self, refresh: bool = False) -> list[ControlModelInfo]:
        """Every control model found (embedded first, then the user's folders)."""
        from studio.paths import embedded_models_dir

        dirs = tuple(self._registry.model_dirs)
        if self._found is None or refresh or dirs != self._dirs:  # a folder was added
            self._dirs = dirs
            self._found = scan(list(dirs), getattr(self._registry, "_embedded_dir", None)
                               or embedded_models_dir())
        return list(self._found)

    def fitting(self, model: Any) -> list[ControlModelInfo]:
        """The ControlNets and T2I-Adapters made for the family of diffusion ``model`` (a
        ``ModelInfo``): what the window's control model picker offers for it."""
        family = str(getattr(model, "family", "") or "")
        if not family:
            return []
        try:
            found = self.list()
        except (OSError, ValueError):  # a folder that cannot be read: nothing to offer
            return []
        want = base_family(family)
        return [i for i in found if i.family == want and i.kind in ("controlnet",
                                                                      "t2i-adapter")]

    def depth_models(self, refresh: bool = False) -> list[DepthModelInfo]:
        """The depth-estimation models in the user's depth and annotator folders."""
        dirs = tuple(self._registry.model_dirs)
        if self._depth is None or refresh or dirs != self._depth_dirs:
            self._depth_dirs = dirs
            self._depth = scan_depth(list(dirs))
        return list(self._depth)

    def kinds_off(self) -> tuple[tuple[str, str], ...]:
        """(control kind, why it is off) for the kinds this engine cannot run now."""
        off = () if self.depth_models() else (("depth-estimate", DEPTH_ESTIMATE_OFF),)
        return off + self.references.kinds_off()  # no IP-Adapter: reference images off

    @property
    def references(self) -> Any:
        """The IP-Adapters for reference images (``studio.engine.reference``)."""
        if getattr(self, "_references", None) is None:
            from studio.engine.reference import ReferenceModels

            self._references = ReferenceModels(self._registry, self._cache, self._choice)
        return self._references

    @contextmanager
    def applied(self, pipe: Any, plan: ControlPlan | None) -> Iterator[None]:
        """``plan``'s reference images (IP-Adapters) in ``pipe`` for the call, taken out
        again after it; nothing to do without them."""
        if plan is None or plan.references is None:
            yield
            return
        with plan.references.applied(pipe):
            yield

    def _with_references(self, loaded: Any, req: GenerationRequest, task: str
                         ) -> ControlPlan | None:
        """The plan of a request with reference layers: its other controls planned as
        without them, and the references (IP-Adapters) beside them."""
        from dataclasses import replace

        refs = []
        for i, control in enumerate(req.controls, 1):
            if control.kind not in REFERENCE_KINDS:
                continue
            if is_empty(control.image):
                log.info("Control layer %d (%s) is empty: skipped.", i, control.kind)
                continue
            refs.append(control)
        rest = self.plan(loaded, req.replace(controls=tuple(
            c for c in req.controls if c.kind not in REFERENCE_KINDS)), task)
        if not refs:
            return rest
        if req.regions:
            raise InvalidRequestError("Regional prompts and reference images cannot be used "
                                      "in one generation yet: leave one of them out.")
        if base_family(loaded.family) not in ("sd1", "sd2", "sdxl", "studio-tiny"):
            raise InvalidRequestError(f"{loaded.info.name}: reference images (IP-Adapter) "
                                      "need an SD 1.x, 2.x or SDXL model.")
        references = self.references.plan(loaded, refs, req.width, req.height)
        if rest is None:
            return ControlPlan(kind="reference", infos=[], models=[], maps=[], strengths=[],
                               starts=[], ends=[], family=loaded.family,
                               references=references)
        return replace(rest, references=references)

    def estimate_depth(self, rgb: Any) -> Any:
        """A depth map (uint8 (H, W), near is light, min-max scaled) of an RGB photo (uint8
        (H, W, 3)) by the first depth-estimation model found (loaded once, in the budget)."""
        import numpy as np
        import torch
        from PIL import Image

        found = self.depth_models()
        if not found:
            raise InvalidRequestError(DEPTH_ESTIMATE_OFF)
        info = found[0]
        key = ("depth-estimator", info.path, self._choice.device)

        def loader() -> Any:
            model, run = load_depth_estimator(info, self._choice.torch_device())
            return _Loaded(model, run)

        loaded = self._cache.get_or_load(key, loader)
        with torch.inference_mode():
            out = loaded.run(Image.fromarray(np.ascontiguousarray(rgb[..., :3]), "RGB"))
        return np.asarray(out["depth"].convert("L"), np.uint8)

    def resolve(self, name: str, kind: str, family: str, model_name: str = "") -> ControlModelInfo:
        """The control model ``name`` names (id, name or path), or the first that fits
        ``family`` and is made for ``kind`` where ``name`` is empty."""
        found = self.list()
        if name:
            for info in found:
                if name in (info.id, info.name, info.path):
                    return info
            path = Path(name).expanduser()
            if path.exists():
                return info_for_path(path)
            names = ", ".join(i.name for i in found) or "none found"
            raise ModelNotFoundError(f"No control model named {name!r}.",
                                     hint=f"Control models found: {names}.")
        fits = [i for i in found if i.family == base_family(family)]
        for info in fits:
            if not info.kinds or kind in info.kinds:
                return info
        label = FAMILY_LABELS.get(base_family(family), family)
        raise ModelNotFoundError(
            f"No {kind} control model for {label} models{' like ' + model_name if model_name else ''}"
            " was found.", hint="Put a ControlNet or T2I-Adapter for this family in "
                                "models/ControlNet of a model folder, or pick one with "
                                "--control-model.")

    def check_before_load(self, req: GenerationRequest, model: Any) -> None:
        """Refuse in one line, before the diffusion model ``model`` (a ``ModelInfo``)
        loads, a control model of another family or one that cannot do the request (an SD
        1.x ControlNet on a Flux model, SD 3.x ControlNets in image to image ...)."""
        if any(c.kind in REFERENCE_KINDS for c in req.controls):  # IP-Adapters: their own
            self.references.check_before_load(
                [c for c in req.controls if c.kind in REFERENCE_KINDS], model)
            req = req.replace(controls=tuple(c for c in req.controls
                                             if c.kind not in REFERENCE_KINDS))
        family = getattr(model, "family", "") or ""
        active = control_dit.drop_idle([c for c in req.controls if not is_empty(c.image)],
                                       base_family(family))
        if not active or family in ("", "unknown"):  # read again once it loads
            return
        if base_family(family) not in CONTROL_FAMILIES + control_dit.DIT_CONTROL_FAMILIES:
            raise InvalidRequestError(f"{model.name}: {CONTROL_WHY_NOT}")
        infos = [self.resolve(c.model, MODEL_KIND.get(c.kind, c.kind), family, model.name)
                 for c in active]
        for info in infos:
            check_fits(info, family, model.name)
        control_dit.check(infos, active, req.task, control_dit.transformer_width(
            folder=str(getattr(model, "path", "") or "")), model.name)

    def load(self, info: ControlModelInfo) -> Any:
        """The loaded module of ``info`` on the engine's device (cached in the budget)."""
        from studio.engine.tuning import module_layout

        path = Path(info.path)
        size = path.stat().st_size if path.is_file() else \
            sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        # As the pipelines it steers: bf16 weights (channels_last) where the CPU policy stores
        # large models in bf16, fp32 without autocast for the small ones.
        choice = self._choice.for_model(size)
        key = ("control", info.path, choice.device, str(choice.load_dtype()))

        def loader() -> Any:
            model = load_control_model(info, choice.load_dtype()).to(choice.torch_device())
            module_layout(model, self._choice, choice)
            return _Loaded(model)

        return self._cache.get_or_load(key, loader, expected=size).pipe

    def plan(self, loaded: Any, req: GenerationRequest, task: str) -> ControlPlan | None:
        """The controls of ``req`` for the loaded model, or ``None`` where it has none to
        follow. Everything that can be refused is refused before a control model loads."""
        if not req.controls:
            return None
        if any(c.kind in REFERENCE_KINDS for c in req.controls):  # IP-Adapters beside
            return self._with_references(loaded, req, task)
        family = loaded.family
        active = []
        for i, control in enumerate(req.controls, 1):
            if is_empty(control.image):
                log.info("Control layer %d (%s) is empty: skipped.", i, control.kind)
                continue
            active.append(control)
        active = control_dit.drop_idle(active, base_family(family))
        if not active:
            return None
        if base_family(family) not in CONTROL_FAMILIES + control_dit.DIT_CONTROL_FAMILIES:
            raise InvalidRequestError(f"{loaded.info.name}: {CONTROL_WHY_NOT}")
        if any(c.kind == "depth-estimate" for c in active) and not self.depth_models():
            raise InvalidRequestError(DEPTH_ESTIMATE_OFF)
        infos = [self.resolve(c.model, MODEL_KIND.get(c.kind, c.kind), family,
                              loaded.info.name) for c in active]
        for info in infos:
            check_fits(info, family, loaded.info.name)
        control_dit.check(infos, active, task, control_dit.transformer_width(loaded.pipe),
                          loaded.info.name)
        kinds = {info.kind for info in infos}
        if len(kinds) > 1:
            raise InvalidRequestError("ControlNets and T2I-Adapters cannot run in one "
                                      "generation (diffusers has no pipeline for both); "
                                      "use one kind of control model.")
        kind = kinds.pop()
        if kind == "t2i-adapter":
            _check_adapter(active, task, family)
        models = [self.load(info) for info in infos]
        from PIL import Image

        maps, notes = [], []
        for control in active:
            depth = self.estimate_depth if control.kind == "depth-estimate" else None
            arr, note = control_map(control.kind, control.image, req.width, req.height,
                                    depth=depth)
            maps.append(Image.fromarray(arr, "RGB"))
            if note:
                notes.append(note)
                log.info("Note: %s.", note)  # the CLI and the window say it
        return ControlPlan(kind=kind, infos=infos, models=models, maps=maps,
                           strengths=[c.strength for c in active],
                           starts=[c.start for c in active], ends=[c.end for c in active],
                           family=family, notes=notes,
                           control_kinds=[c.kind for c in active])


@dataclass
class _Loaded:
    """A loaded control model as the pipeline cache holds it (``pipe``: what it weighs;
    ``run``: a depth estimator's transformers pipeline)."""

    pipe: Any
    run: Any = None


def check_fits(info: ControlModelInfo, family: str, model_name: str) -> None:
    """Refuse in one line a control model made for another family than the model's."""
    want = base_family(family)
    if info.family != want:
        raise InvalidRequestError(
            f"{info.label} is for {FAMILY_LABELS.get(info.family, info.family)} models; "
            f"{model_name} is {with_article(FAMILY_LABELS.get(want, want))} model: nothing was loaded.",
            hint="Pick a control model made for this model's family.")



def _check_adapter(controls: list[Any], task: str, family: str) -> None:
    if task != "txt2img":
        raise InvalidRequestError(
            f"T2I-Adapters work in text to image only (diffusers has no {task} adapter "
            "pipeline); use a ControlNet for image to image and inpainting.")
    xl = family.startswith("sdxl")
    for control in controls:
        if control.start > 0 or (not xl and control.end < 1):
            raise InvalidRequestError(
                "T2I-Adapters act from the first step" + ("" if xl else " to the last")
                + " in diffusers' pipeline: set the control's range to "
                + ("0 to its end" if xl else "0-1") + ", or use a ControlNet.")
    if xl and len({c.end for c in controls}) > 1:
        raise InvalidRequestError("Several T2I-Adapters on SDXL share one step range: give "
                                  "them the same end.")
