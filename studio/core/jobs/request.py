"""``GenerationRequest``: everything needed to reproduce one image, as a frozen value."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from studio.core.control import ControlLayer, control_problems, control_refs
from studio.core.document.pixels import Pixels
from studio.core.errors import InvalidRequestError

TASKS = ("txt2img", "img2img", "inpaint")
# Edit with words: the families whose image to image is an instruction edit (Flux Kontext,
# Flux 2 Klein; ``FamilySpec.edit`` in studio.engine.models.families, which a test keeps in
# step). Their requests stay ``img2img`` for the engine; History, the image's metadata and
# "Use settings" name them "edit" (``GenerationRequest.is_edit``), with no strength (the
# pipeline has none).
EDIT_FAMILIES = ("flux-kontext", "flux2-klein", "qwen-image-edit")
# The Strength the window holds while editing with words (below 1: the canvas is the image
# to edit), restored with an edit's settings; the edit itself uses none.
EDIT_STRENGTH = 0.75

DEFAULT_MODEL = "studio-tiny-diffusion"
DEFAULT_SCHEDULER = "Euler"
MAX_SIDE = 4096


@dataclass(frozen=True)
class LoraWeight:
    """A LoRA file applied with a weight (negative weights are allowed)."""

    path: str
    weight: float = 1.0
    name: str = ""


@dataclass(frozen=True)
class SliderValue:
    """The value of one latent slider, recorded so that the image can be reproduced."""

    slider_id: str
    value: float
    space: str = ""
    payload: tuple[tuple[str, Any], ...] = ()


MAX_REGIONS = 16


@dataclass(frozen=True)
class Region:
    """A regional prompt: ``prompt`` applies where ``mask`` is white, with ``strength``.

    ``mask`` is an 8-bit grey image (255: fully in the region), resized by the engine to the
    request's size; like the init image it is referred to by its content hash on disk.
    ``strength`` (0 to 1) is how far the region's prompt replaces the main prompt inside it.
    """

    mask: Pixels = field(repr=False)
    prompt: str
    strength: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"mask": _pixels_ref(self.mask), "prompt": self.prompt,
                "strength": self.strength}

    @classmethod
    def from_dict(cls, data: dict[str, Any], images: dict[str, Pixels]) -> Region | None:
        """The region, or ``None`` when its mask is not in ``images``."""
        ref = data.get("mask")
        mask = images.get(ref.get("sha256", "")) if isinstance(ref, dict) else None
        if mask is None:
            return None
        return cls(mask, str(data.get("prompt", "")), float(data.get("strength", 1.0)))


def _pixels_ref(value: Pixels) -> dict[str, Any]:
    return {"sha256": value.sha256, "width": value.width, "height": value.height,
            "mode": value.mode}


@dataclass(frozen=True)
class GenerationRequest:
    """One generation, complete enough to give the same pixels again.

    The engine fills in ``model_hash``, ``family``, ``device`` and ``dtype`` when it runs the
    request (see ``GenerationResult.request``), so a recorded request names exactly what made
    the image. Image ``i`` of a batch uses seed ``seed + i``, so it can be made on its own.
    """

    prompt: str
    negative_prompt: str = ""
    model: str = DEFAULT_MODEL
    model_hash: str = ""
    family: str = ""
    scheduler: str = DEFAULT_SCHEDULER
    seed: int = 0
    steps: int = 20
    guidance: float = 7.0
    width: int = 512
    height: int = 512
    batch_size: int = 1
    task: str = "txt2img"
    strength: float = 0.75
    init_image: Pixels | None = field(default=None, compare=True, repr=False)
    mask: Pixels | None = field(default=None, compare=True, repr=False)
    variation_seed: int | None = None
    variation_strength: float = 0.0
    sliders: tuple[SliderValue, ...] = ()
    loras: tuple[LoraWeight, ...] = ()
    clip_skip: int = 0
    regions: tuple[Region, ...] = ()
    controls: tuple[ControlLayer, ...] = ()  # control layers (studio.core.control)
    device: str = ""
    dtype: str = ""

    def __post_init__(self) -> None:
        problems = []
        if self.task not in TASKS:
            problems.append(f"unknown task {self.task!r} (one of {', '.join(TASKS)})")
        if not 1 <= self.steps <= 1000:
            problems.append("steps must be between 1 and 1000")
        if not (8 <= self.width <= MAX_SIDE and 8 <= self.height <= MAX_SIDE):
            problems.append(f"size must be between 8 and {MAX_SIDE} pixels a side")
        if self.width % 8 or self.height % 8:
            problems.append("width and height must be multiples of 8")
        if not 1 <= self.batch_size <= 64:
            problems.append("batch size must be between 1 and 64")
        if not 0.0 <= self.strength <= 1.0:
            problems.append("strength must be between 0 and 1")
        if not 0.0 <= self.variation_strength <= 1.0:
            problems.append("variation strength must be between 0 and 1")
        if not 0 <= self.seed < 2**32:
            problems.append("seed must be between 0 and 4294967295")
        if self.task in ("img2img", "inpaint") and self.init_image is None:
            problems.append(f"{self.task} needs an init image")
        if self.task == "inpaint" and self.mask is None:
            problems.append("inpainting needs a mask")
        problems += _region_problems(self.regions)
        problems += control_problems(self.controls)
        if problems:
            raise InvalidRequestError("Invalid request: " + "; ".join(problems) + ".")

    def replace(self, **changes: Any) -> GenerationRequest:
        return dataclasses.replace(self, **changes)

    @property
    def pixels(self) -> tuple[Pixels, ...]:
        """Every image the request refers to: init image, mask, region masks and control
        images."""
        out = [p for p in (self.init_image, self.mask) if p is not None]
        return (*out, *(region.mask for region in self.regions),
                *(control.image for control in self.controls))

    @property
    def is_edit(self) -> bool:
        """Whether this is an edit with words: an edit model's image to image (the prompt is
        the instruction; the strength is not used)."""
        return self.task == "img2img" and self.family in EDIT_FAMILIES

    @property
    def task_label(self) -> str:
        """The task as people name it: ``"edit"`` for an edit with words, else ``task``."""
        return "edit" if self.is_edit else self.task

    @property
    def seeds(self) -> list[int]:
        return [(self.seed + i) % 2**32 for i in range(self.batch_size)]

    def for_image(self, index: int) -> GenerationRequest:
        """The request that reproduces image ``index`` of this batch on its own."""
        return self.replace(seed=self.seeds[index], batch_size=1)

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; images are referred to by their content hash."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Pixels):
                value = _pixels_ref(value)
            elif f.name == "regions":
                value = [region.to_dict() for region in value]
            elif f.name == "controls":
                value = [control.to_dict() for control in value]
            elif f.name == "sliders":
                value = [dict(slider_id=s.slider_id, value=s.value, space=s.space,
                              payload=dict(s.payload)) for s in value]
            elif f.name == "loras":
                value = [dataclasses.asdict(lora) for lora in value]
            out[f.name] = value
        out["version"] = 1
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any],
                  images: dict[str, Pixels] | None = None) -> GenerationRequest:
        """Rebuild a request; ``images`` maps content hashes to pixels for init/mask."""
        images = images or {}
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {k: v for k, v in data.items() if k in names}
        for key in ("init_image", "mask"):
            ref = kwargs.get(key)
            if isinstance(ref, dict):
                kwargs[key] = images.get(ref.get("sha256", ""))
        kwargs["sliders"] = tuple(
            SliderValue(s["slider_id"], float(s["value"]), s.get("space", ""),
                        tuple(sorted(s.get("payload", {}).items())))
            for s in kwargs.get("sliders", ()) or ())
        kwargs["loras"] = tuple(LoraWeight(**lw) for lw in kwargs.get("loras", ()) or ())
        # A region whose mask is not at hand is left out, as an init image is.
        regions = (Region.from_dict(r, images) for r in kwargs.get("regions", ()) or ())
        kwargs["regions"] = tuple(r for r in regions if r is not None)
        # So is a control whose image is not at hand.
        controls = (ControlLayer.from_dict(c, images) for c in kwargs.get("controls", ()) or ()
                    if isinstance(c, dict))
        kwargs["controls"] = tuple(c for c in controls if c is not None)
        if kwargs.get("task") in ("img2img", "inpaint") and kwargs.get("init_image") is None:
            kwargs["task"] = "txt2img"
        if kwargs.get("task") == "txt2img":
            kwargs["mask"] = None
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str, images: dict[str, Pixels] | None = None) -> GenerationRequest:
        return cls.from_dict(json.loads(text), images)


def _region_problems(regions: tuple[Region, ...]) -> list[str]:
    problems = []
    if len(regions) > MAX_REGIONS:
        problems.append(f"at most {MAX_REGIONS} regions")
    for i, region in enumerate(regions, 1):
        if not isinstance(region, Region):
            problems.append(f"region {i} is not a Region")
            continue
        if not region.prompt.strip():
            problems.append(f"region {i} needs a prompt")
        if not 0.0 <= region.strength <= 1.0:
            problems.append(f"region {i}: strength must be between 0 and 1")
        if region.mask.mode != "L":
            problems.append(f"region {i}: the mask must be a grey (L) image")
    return problems


def request_image_refs(data: dict[str, Any]) -> list[str]:
    """Content hashes of the images a serialised request refers to (init image, mask and
    region masks), for a reader that must fetch them before ``from_dict``."""
    refs = []
    entries = [data.get("init_image"), data.get("mask")]
    regions = data.get("regions")
    if isinstance(regions, list):
        entries += [r.get("mask") for r in regions if isinstance(r, dict)]
    for ref in entries:
        if isinstance(ref, dict) and isinstance(ref.get("sha256"), str) and ref["sha256"]:
            refs.append(ref["sha256"])
    return refs + control_refs(data)
