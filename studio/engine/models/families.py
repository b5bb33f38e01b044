"""Model families, detected from configs (never from file names): defaults and abilities.

A family is read from a folder's ``model_index.json`` (its pipeline ``_class_name``) and its
component configs. SD 1.x/2.x/SDXL and the DiT families artists use (PixArt, SD 3.x, Flux,
Sana, AuraFlow) are declared in ``SPECS``: their defaults and what each can do (negative
prompt, guidance as a model input, img2img/inpaint, prompt sliders, LoRA, schedulers). Any
other text-to-image pipeline of the installed diffusers runs as a ``generic`` family whose
abilities are read from the pipeline class (``spec_for_class``); anything else is
``UNKNOWN`` and refused in one line, never read as SD 1.x.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

UNKNOWN = "unknown"


@dataclass(frozen=True)
class FamilyDefaults:
    width: int
    height: int
    steps: int
    guidance: float
    scheduler: str


# The scheduler names that fit a flow-matching model: the same solvers configured for flow
# matching ("Euler" is "Flow Euler"; DPM++ 2M and UniPC run with flow sigmas).
FLOW_SCHEDULERS = ("Flow Euler", "Euler", "Heun", "DPM++ 2M", "UniPC")
# Those that can also start from an image (img2img/inpaint noise the image with the
# scheduler's own ``scale_noise``, which only the FlowMatch schedulers have).
FLOW_IMAGE_SCHEDULERS = ("Flow Euler", "Euler")


@dataclass(frozen=True)
class FamilySpec:
    """What a family is and can do, declared before anything is loaded.

    ``schedulers`` empty means every diffusion scheduler (not the flow-matching ones).
    ``size_multiple``: width and height must be multiples of it (the pipeline would
    otherwise resize silently). ``pipelines``: the diffusers pipeline classes of the family.
    """

    name: str
    label: str
    defaults: FamilyDefaults
    flow: bool = False
    negative_prompt: bool = True
    guidance_embedding: bool = False  # guidance is an input of the model (Flux), not CFG
    img2img: bool = True
    inpaint: bool = True
    prompt_sliders: bool = True
    seed_sliders: bool = True
    lora: bool = True
    text_encoders: str = "CLIP"
    size_multiple: int = 8
    schedulers: tuple[str, ...] = ()
    pipelines: tuple[str, ...] = ()
    # Edit with words (instruction editing: Flux Kontext): its image-to-image is an edit,
    # the init image changed as the prompt says (no strength); ``txt2img``: it can also
    # draw from the words alone.
    edit: bool = False
    txt2img: bool = True

    def fits(self, scheduler: str, task: str = "txt2img") -> bool:
        """Whether ``scheduler`` (our name) runs this family's ``task``."""
        if not self.flow:
            return scheduler not in ("Flow Euler",)
        names = FLOW_IMAGE_SCHEDULERS if task != "txt2img" else (self.schedulers or FLOW_SCHEDULERS)
        return scheduler in names

    def scheduler_names(self, all_names: tuple[str, ...]) -> tuple[str, ...]:
        """The names of ``all_names`` that fit this family (for text to image)."""
        return tuple(n for n in all_names if self.fits(n))


# Edit with words: the init image (the selected layer, the selection's area, --init-image)
# changed as the instruction says ("make the hair red"), by the pipeline itself (studio.
# engine.edit). No negative prompt (but Qwen's) and no sliders; LoRAs through each pipeline's
# own diffusers loader (studio.engine.lora); inpainting is refused (an edit changes what the
# words name). Flux Kontext takes guidance as a model input.
EDIT_SPECS = (
    FamilySpec("flux-kontext", "Flux Kontext", FamilyDefaults(1024, 1024, 28, 2.5, "Flow Euler"),
               flow=True, negative_prompt=False, guidance_embedding=True, inpaint=False,
               prompt_sliders=False, seed_sliders=False,
               text_encoders="CLIP-L and T5", size_multiple=16,
               schedulers=("Flow Euler", "Euler"), pipelines=("FluxKontextPipeline",),
               edit=True),
    # Flux 2 Klein: true CFG (the distilled ones ignore it), a Qwen3 text encoder, no
    # negative prompt argument; it edits its reference image, or draws from words alone.
    FamilySpec("flux2-klein", "Flux 2 Klein", FamilyDefaults(1024, 1024, 28, 4.0, "Flow Euler"),
               flow=True, negative_prompt=False, inpaint=False, prompt_sliders=False,
               seed_sliders=False, text_encoders="Qwen3", size_multiple=16,
               schedulers=("Flow Euler", "Euler"), pipelines=("Flux2KleinPipeline",),
               edit=True),
    # Qwen-Image-Edit (and its 2509/2511 "Plus" releases): Qwen2.5-VL reads the image and the
    # instruction; true CFG over a negative prompt (guidance is its ``true_cfg_scale``); it
    # needs an image (no text to image: that is Qwen-Image, the generic "qwenimage").
    FamilySpec("qwen-image-edit", "Qwen-Image-Edit",
               FamilyDefaults(1024, 1024, 50, 4.0, "Flow Euler"), flow=True, inpaint=False,
               prompt_sliders=False, seed_sliders=False, text_encoders="Qwen2.5-VL", size_multiple=16, schedulers=("Flow Euler", "Euler"),
               pipelines=("QwenImageEditPipeline", "QwenImageEditPlusPipeline"), edit=True,
               txt2img=False),
)

_SD = FamilySpec("sd1", "SD 1.x", FamilyDefaults(512, 512, 25, 7.0, "DPM++ 2M Karras"))
_XL = replace(_SD, name="sdxl", label="SDXL", defaults=FamilyDefaults(1024, 1024, 30, 6.0,
                                                                       "DPM++ 2M Karras"))
_DIT = dict(prompt_sliders=False, seed_sliders=False, size_multiple=16)
# The declared DiT families take prompt sliders (embedding directions through their own
# ``encode_prompt``: ``studio.engine.conditioning.encode_dit``) and the seed sliders.
_DIT_SLIDERS = {**_DIT, "prompt_sliders": True, "seed_sliders": True}

SPECS: dict[str, FamilySpec] = {s.name: s for s in (
    _SD,
    replace(_SD, name="sd2", label="SD 2.x"),
    replace(_SD, name="sd2-v", label="SD 2.x (v)",
            defaults=FamilyDefaults(768, 768, 25, 7.0, "DPM++ 2M Karras")),
    _XL,
    replace(_SD, name="sd1-lcm", label="SD 1.x LCM",
            defaults=FamilyDefaults(512, 512, 4, 1.5, "LCM")),
    replace(_XL, name="sdxl-lcm", label="SDXL LCM",
            defaults=FamilyDefaults(1024, 1024, 4, 1.5, "LCM")),
    replace(_XL, name="sdxl-turbo", label="SDXL Turbo",
            defaults=FamilyDefaults(512, 512, 2, 0.0, "Euler a")),
    replace(_SD, name="sd1-turbo", label="SD Turbo",
            defaults=FamilyDefaults(512, 512, 2, 0.0, "Euler a")),
    replace(_SD, name="studio-tiny", label="studio-tiny",
            defaults=FamilyDefaults(64, 64, 20, 5.0, "Euler")),
    replace(_SD, name="sd1-inpaint", label="SD 1.x inpainting"),
    replace(_SD, name="sd2-inpaint", label="SD 2.x inpainting"),
    replace(_XL, name="sdxl-inpaint", label="SDXL inpainting"),
    FamilySpec("pixart", "PixArt-α/Σ", FamilyDefaults(1024, 1024, 20, 4.5, "DPM++ 2M"),
               img2img=False, inpaint=False, lora=False, text_encoders="T5",
               pipelines=("PixArtAlphaPipeline", "PixArtSigmaPipeline"), **_DIT_SLIDERS),
    FamilySpec("sd3", "SD 3.x", FamilyDefaults(1024, 1024, 28, 7.0, "Flow Euler"), flow=True,
               text_encoders="CLIP-L, CLIP-G and T5",
               pipelines=("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline",
                          "StableDiffusion3InpaintPipeline"), **_DIT_SLIDERS),
    FamilySpec("flux", "Flux", FamilyDefaults(1024, 1024, 28, 3.5, "Flow Euler"), flow=True,
               negative_prompt=False, guidance_embedding=True, text_encoders="CLIP-L and T5",
               schedulers=("Flow Euler", "Euler", "DPM++ 2M", "UniPC"),
               pipelines=("FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline"),
               **_DIT_SLIDERS),
    FamilySpec("sana", "Sana", FamilyDefaults(1024, 1024, 20, 4.5, "DPM++ 2M"), flow=True,
               img2img=False, inpaint=False, text_encoders="Gemma 2",
               pipelines=("SanaPipeline",), **{**_DIT_SLIDERS, "size_multiple": 32}),
    FamilySpec("auraflow", "AuraFlow", FamilyDefaults(1024, 1024, 28, 3.5, "Flow Euler"),
               flow=True, img2img=False, inpaint=False, text_encoders="UMT5",
               pipelines=("AuraFlowPipeline",), **_DIT_SLIDERS),
    *EDIT_SPECS,
)}
DEFAULTS: dict[str, FamilyDefaults] = {name: s.defaults for name, s in SPECS.items()}
CLASS_FAMILIES = {cls: s.name for s in SPECS.values() for cls in s.pipelines}
DIT_FAMILIES = tuple(s.name for s in SPECS.values() if s.pipelines)
EDIT_FAMILIES = tuple(s.name for s in SPECS.values() if s.edit)

# The pipeline classes a family's folder names in model_index.json.
SD_FAMILIES = ("sd1", "sd2", "sd2-v", "sd1-lcm", "sd1-turbo", "studio-tiny", "sd1-inpaint",
               "sd2-inpaint")
SDXL_FAMILIES = ("sdxl", "sdxl-lcm", "sdxl-turbo", "sdxl-inpaint")
# Families that take regional prompts (studio.engine.regions: the cross-attention of a UNet,
# PixArt and Sana; a text stream per region through the blocks of SD3 and Flux); AuraFlow and
# the edit families refuse them with the reason.
REGION_FAMILIES = SD_FAMILIES + SDXL_FAMILIES + ("sd3", "flux", "pixart", "sana")
# Flux 2 (Flux2Pipeline, read as the generic "flux2") and Flux 2 Klein's text to image: a
# text stream per region through the Flux 2 blocks (its edits refuse them: the reference
# image's tokens ride beside the picture's); Z-Image (generic "z-image"): a sequence per
# region through its main layers.
REGION_FAMILIES += ("flux2", "flux2-klein", "z-image")
REGIONS_TXT2IMG_ONLY = ("flux2", "flux2-klein")  # their image input is a reference, not a start
REGIONS_WHY_NOT = ("regions mask the cross-attention of UNet models, PixArt and Sana, and run "
                   "a text stream per region through the blocks of SD3, Flux, Flux 2 and "
                   "Z-Image; AuraFlow, the edit models Flux Kontext and Qwen-Image-Edit and "
                   "the other DiTs do not take them here yet.")
# Why a family the engine runs takes no regions, where there is more to say than the line
# above (EngineFeatures.regions_reason reads them, the window shows them as the tooltip).
REGIONS_OFF: dict[str, str] = {
    "chroma": "Chroma's blocks are Flux's, but they mask the prompt's padding with the "
              "main prompt's mask; the regions' text streams do not carry masks of their own "
              "yet.",
    "lumina2": "Lumina 2 joins the prompt's tokens and the picture's into one sequence per "
               "image, as Z-Image does, with its own refiners and positions; not wired yet.",
    "qwenimage": "Qwen-Image's blocks carry the prompt with its own padding mask and text "
                 "lengths into every block; the regions' text streams do not carry theirs "
                 "yet.",
    "hidreamimage": "HiDream reads a different Llama layer's prompt tokens in every block "
                    "(and routes tokens to experts); a region would need all of them: not "
                    "wired yet.",
}
# Families whose UNet DDIM inversion can run backwards (sliders over an imported image).
INVERTIBLE_FAMILIES = tuple(f for f in SD_FAMILIES + SDXL_FAMILIES if not f.endswith("-inpaint"))
# SD 1.x/2.x/SDXL pipelines of diffusers (a UNet and CLIP text encoders).
_UNET_CLASSES = ("StableDiffusionPipeline", "StableDiffusionXLPipeline",
                 "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline",
                 "StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline",
                 "LatentConsistencyModelPipeline", "StableDiffusionPAGPipeline",
                 "StableDiffusionXLPAGPipeline")
_GENERIC: dict[str, FamilySpec] = {}  # generic families met so far, by name


def is_flow_config(scheduler: dict[str, Any]) -> bool:
    """Whether a scheduler config belongs to a flow-matching model."""
    return (str(scheduler.get("_class_name", "")).startswith("FlowMatch")
            or scheduler.get("prediction_type") == "flow_prediction"
            or bool(scheduler.get("use_flow_sigmas")))


def spec_for(family: str) -> FamilySpec:
    """The declared abilities of ``family`` (a generic one as detected; an unknown name
    gets the cautious abilities of a generic DiT)."""
    spec = SPECS.get(family) or _GENERIC.get(family)
    if spec is not None:
        return spec
    return FamilySpec(family, family, FamilyDefaults(1024, 1024, 28, 4.0, "Euler"),
                      img2img=False, inpaint=False, lora=False, **_DIT)


@cache
def _diffusers_class(cls_name: str) -> Any:
    """The pipeline class of the installed diffusers named ``cls_name`` (``None``: none)."""
    if not cls_name.isidentifier() or not cls_name.endswith("Pipeline"):
        return None
    try:
        import diffusers

        cls = getattr(diffusers, cls_name, None)
    except Exception:  # diffusers missing or broken: nothing to identify against
        return None
    return cls if isinstance(cls, type) else None


def generic_spec(cls_name: str, scheduler: dict[str, Any]) -> FamilySpec | None:
    """A family for a text-to-image pipeline of the installed diffusers that ``SPECS`` does
    not declare (Chroma, Lumina 2, Qwen-Image, ...), its abilities read from the class and
    diffusers' auto-pipeline maps; ``None`` where diffusers has no such text-to-image class."""
    import inspect

    cls = _diffusers_class(cls_name)
    if cls is None:
        return None
    from diffusers.pipelines import auto_pipeline as auto

    key = next((k for k, v in auto.AUTO_TEXT2IMAGE_PIPELINES_MAPPING.items() if v is cls), None)
    params = inspect.signature(cls.__call__).parameters
    if key is None and ("prompt" not in params or "height" not in params
                        or "image" in params or "control_image" in params):
        return None
    name = key or cls_name.removesuffix("Pipeline").lower()
    flow = is_flow_config(scheduler)
    sched_cls = str(scheduler.get("_class_name", ""))
    from studio.core.samplers import SCHEDULER_CLASSES

    default = "Flow Euler" if flow else SCHEDULER_CLASSES.get(sched_cls, "Euler")
    spec = FamilySpec(
        name, cls_name.removesuffix("Pipeline"),
        FamilyDefaults(1024, 1024, 28, 4.0 if flow else 5.0, default), flow=flow,
        negative_prompt="negative_prompt" in params,
        img2img=key in auto.AUTO_IMAGE2IMAGE_PIPELINES_MAPPING,
        inpaint=key in auto.AUTO_INPAINT_PIPELINES_MAPPING,
        lora=hasattr(cls, "load_lora_weights"), text_encoders="its text encoders",
        schedulers=("Flow Euler", "Euler") if flow else (), pipelines=(cls_name,), **_DIT)
    _GENERIC[name] = spec
    return spec


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def detect_family(model_index: dict[str, Any], unet: dict[str, Any] | None = None,
                  scheduler: dict[str, Any] | None = None,
                  studio: dict[str, Any] | None = None) -> str:
    """Family of a diffusers pipeline from its ``model_index.json`` and component configs.

    ``UNKNOWN`` where the class is neither an SD pipeline, nor a declared family, nor a
    text-to-image pipeline of the installed diffusers.
    """
    if studio and studio.get("family"):
        return str(studio["family"])
    cls = str(model_index.get("_class_name", ""))
    unet = unet or {}
    scheduler = scheduler or {}
    if cls in CLASS_FAMILIES:
        return CLASS_FAMILIES[cls]
    if cls not in _UNET_CLASSES and not (cls.startswith("StableDiffusion") and unet):
        spec = generic_spec(cls, scheduler)
        return spec.name if spec is not None else UNKNOWN
    lcm = unet.get("time_cond_proj_dim") is not None or scheduler.get("_class_name") == "LCMScheduler"
    turbo = (scheduler.get("timestep_spacing") == "trailing"
             and scheduler.get("_class_name") == "EulerAncestralDiscreteScheduler")
    if "XL" in cls or unet.get("addition_embed_type") == "text_time":
        base = "sdxl"
    elif _cross_dim(unet) == 1024:
        base = "sd2-v" if scheduler.get("prediction_type") == "v_prediction" else "sd2"
    else:
        base = "sd1"
    if unet.get("in_channels") == 9:
        return f"{base.split('-')[0]}-inpaint"
    if lcm:
        return f"{base.split('-')[0]}-lcm"
    if turbo:
        return f"{base.split('-')[0]}-turbo"
    return base


def _cross_dim(unet: dict[str, Any]) -> int:
    dim = unet.get("cross_attention_dim", 768)
    if isinstance(dim, list | tuple):
        dim = dim[0]
    return int(dim or 0)


def detect_folder_family(folder: Path) -> str:
    """Family of a diffusers folder (``UNKNOWN`` where it is no pipeline diffusers has)."""
    return detect_family(
        read_json(folder / "model_index.json"),
        read_json(folder / "unet" / "config.json"),
        read_json(folder / "scheduler" / "scheduler_config.json"),
        read_json(folder / "studio.json"),
    )


def defaults_for(family: str) -> FamilyDefaults:
    return spec_for(family).defaults if family != UNKNOWN else DEFAULTS["sd1"]


TASK_WORDS = {"txt2img": "text to image", "img2img": "image to image",
              "inpaint": "inpainting"}  # a request's task as the messages say it


def check_request(request: Any, family: str, scheduler: str | None = None) -> None:
    """Refuse in one line, before any loading, what ``family`` cannot do for ``request``
    (a ``GenerationRequest``): an unknown model, the task, sliders, a negative prompt, LoRAs,
    the scheduler (``scheduler``: our name) and a size the pipeline would change."""
    from studio.core.errors import InvalidRequestError, WrongModelKindError

    if family == UNKNOWN:
        raise WrongModelKindError(
            "This folder's pipeline is not a text-to-image pipeline the installed diffusers "
            "knows (see _class_name in its model_index.json).",
            hint="Update diffusers, or pick another model (see `studio models`).")
    spec = spec_for(family)
    label = spec.label
    if spec.edit and request.task != "img2img" and not (request.task == "txt2img"
                                                        and spec.txt2img):
        raise InvalidRequestError(
            f"{label} edits an image with words: it cannot do "
            f"{TASK_WORDS.get(request.task, request.task)}.",
            hint="Give it an image (--init-image, or a layer or selection in the window) "
                 "and an instruction such as \"make the hair red\".")
    if spec.edit and request.task == "img2img" and (
            request.variation_strength > 0 and request.variation_seed is not None):
        raise InvalidRequestError(f"{label} edits start from the image, not from seed noise: "
                                  "set the variation strength to 0.")
    if request.task == "img2img" and not spec.img2img or (
            request.task == "inpaint" and not spec.inpaint):
        words = TASK_WORDS.get(request.task, request.task)
        raise InvalidRequestError(f"{label} models cannot do {words}: diffusers has no "
                                  f"{words} pipeline for them.",
                                  hint="Use text to image, or an SD, SDXL, SD3 or Flux model.")
    moved = [s for s in request.sliders if s.value
             and not (s.space == "interp" and spec.seed_sliders)]  # A<->B: the seed sliders
    if moved and not spec.prompt_sliders:
        raise InvalidRequestError(
            f"Sliders ({', '.join(s.slider_id for s in moved)}) do not act on {label} models "
            "yet; set them to 0 or use an SD 1.x, 2.x, SDXL, SD3 or Flux model.")
    if request.negative_prompt.strip() and not spec.negative_prompt:
        raise InvalidRequestError(f"{label} models take no negative prompt; clear it "
                                  "(describe what you want in the prompt instead).")
    if request.loras and not spec.lora:
        raise InvalidRequestError(f"diffusers loads no LoRAs into {label} models; remove "
                                  f"{', '.join(lw.name or Path(lw.path).stem for lw in request.loras)}.")
    if scheduler is not None and not spec.fits(scheduler, request.task):
        if not spec.flow:
            raise InvalidRequestError(
                f"The scheduler {scheduler!r} does not work with {label} (a diffusion model); "
                "try Euler, or any sampler but the flow-matching ones.")
        names = (FLOW_IMAGE_SCHEDULERS if request.task != "txt2img"
                 else spec.schedulers or FLOW_SCHEDULERS)
        raise InvalidRequestError(
            f"The scheduler {scheduler!r} does not work with {label} (a flow-matching model"
            f"{'' if request.task == 'txt2img' else ', ' + request.task}); "
            f"choose one of: {', '.join(names)}.")
    step = spec.size_multiple
    if request.width % step or request.height % step:
        raise InvalidRequestError(
            f"{label} models need a width and height that are multiples of {step} "
            f"(asked {request.width}x{request.height}).",
            hint=f"Try {request.width // step * step or step}x"
                 f"{request.height // step * step or step}.")
