"""ComfyUI workflows in API format, built by small pure functions per task.

Each function returns the graph ``POST /prompt`` takes: ``{node_id: {"class_type": ...,
"inputs": {...}}}``, where an input that comes from another node is ``[node_id, output_index]``.
Nothing here talks to a server, so a test can assert on a graph and then run it for real.

Image ``i`` of a batch is sampled with seed ``seed + i`` on a branch of its own (as the local
engine does), so that it can be made again alone; ComfyUI's own batch latents would share one
noise generator and give other pixels for the same seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from studio.core.errors import InvalidRequestError
from studio.core.jobs.request import GenerationRequest

MAX_SEED = 2**64 - 1  # ComfyUI's KSampler takes 64-bit seeds

# Our sampler names (studio.core.samplers.SCHEDULER_NAMES, without a schedule word) ->
# ComfyUI's sampler_name and its default scheduler; " Karras" / " Exponential" after ours
# choose ComfyUI's "karras" / "exponential" scheduler.
_SAMPLERS: dict[str, tuple[str, str]] = {
    "Euler": ("euler", "normal"),
    "Euler a": ("euler_ancestral", "normal"),
    "Heun": ("heun", "normal"),
    "LMS": ("lms", "normal"),
    "DPM2": ("dpm_2", "normal"),
    "DPM2 a": ("dpm_2_ancestral", "normal"),
    "DPM fast": ("dpm_fast", "normal"),
    "DPM adaptive": ("dpm_adaptive", "normal"),
    "DPM++ 2M": ("dpmpp_2m", "normal"),
    "DPM++ 2M SDE": ("dpmpp_2m_sde", "normal"),
    "DPM++ 2M SDE Heun": ("dpmpp_2m_sde_heun", "normal"),
    "DPM++ 3M SDE": ("dpmpp_3m_sde", "normal"),
    "DPM++ SDE": ("dpmpp_sde", "normal"),
    "DPM++ 2S a": ("dpmpp_2s_ancestral", "normal"),
    "DDIM": ("ddim", "ddim_uniform"),
    "DDPM": ("ddpm", "normal"),
    "PNDM": ("ipndm", "normal"),
    "PLMS": ("ipndm", "normal"),
    "UniPC": ("uni_pc", "normal"),
    "DEIS": ("deis", "normal"),
    "LCM": ("lcm", "sgm_uniform"),
    "Flow Euler": ("euler", "simple"),
}
_SCHEDULES = {"Karras": "karras", "Exponential": "exponential"}


def _table() -> dict[str, tuple[str, str]]:
    from studio.core.samplers import SCHEDULER_NAMES

    table = {}
    for name in SCHEDULER_NAMES:
        base, word = name, ""
        for suffix in _SCHEDULES:
            if name.endswith(" " + suffix):
                base, word = name[: -len(suffix) - 1], suffix
        if base in _SAMPLERS:
            sampler, schedule = _SAMPLERS[base]
            table[name] = (sampler, _SCHEDULES[word] if word else schedule)
    return table


SCHEDULERS: dict[str, tuple[str, str]] = _table()
# Ours that ComfyUI 0.8 has no sampler for -> the nearest that it has.
NEAREST: dict[str, str] = {"TCD": "LCM", "Restart": "Euler"}


def comfy_sampler(scheduler: str, available: Sequence[str] = ()) -> tuple[str, str]:
    """ComfyUI's ``(sampler_name, scheduler)`` for one of our scheduler names.

    ``available``: the server's sampler names (``/object_info``), when known.

    Raises
    ------
    InvalidRequestError
        No ComfyUI sampler fits (the message names the nearest one that does).
    """
    from studio.core.samplers import scheduler_name

    name = scheduler_name(scheduler)
    pair = SCHEDULERS.get(name)
    if pair is None or (available and pair[0] not in available):
        nearest = NEAREST.get(name, "Euler")
        if pair is not None and available:  # the server lacks this sampler: its nearest
            nearest = next((ours for ours, (smp, _s) in SCHEDULERS.items()
                            if smp in available and ours != name), "Euler")
        raise InvalidRequestError(
            f"The scheduler {name} has no ComfyUI sampler; the nearest is {nearest}.")
    return pair


@dataclass(frozen=True)
class Inputs:
    """What a workflow needs beyond the request: names the server knows things by."""

    checkpoint: str  # the server's checkpoint name (as /models/checkpoints lists it)
    loras: tuple[tuple[str, float], ...] = ()  # (server's LoRA name, weight)
    init_image: str = ""  # uploaded image name (img2img, inpaint)
    mask: str = ""  # uploaded mask name (inpaint; white: repaint)
    samplers: tuple[str, ...] = ()  # the server's sampler names, for checking


class _Graph:
    """Numbers nodes as they are added: ``add`` returns the node's id."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict] = {}

    def add(self, class_type: str, **inputs: object) -> str:
        node_id = str(len(self.nodes) + 1)
        self.nodes[node_id] = {"class_type": class_type, "inputs": inputs}
        return node_id


def _model_and_clip(g: _Graph, inputs: Inputs, clip_skip: int) -> tuple[list, list, list]:
    ckpt = g.add("CheckpointLoaderSimple", ckpt_name=inputs.checkpoint)
    model, clip, vae = [ckpt, 0], [ckpt, 1], [ckpt, 2]
    for name, weight in inputs.loras:
        lora = g.add("LoraLoader", model=model, clip=clip, lora_name=name,
                     strength_model=float(weight), strength_clip=float(weight))
        model, clip = [lora, 0], [lora, 1]
    if clip_skip > 0:  # ours counts skipped layers (as diffusers); ComfyUI counts from the end
        clip = [g.add("CLIPSetLastLayer", clip=clip, stop_at_clip_layer=-int(clip_skip) - 1), 0]
    return model, clip, vae


def _check(request: GenerationRequest) -> None:
    problems = []
    if request.sliders:
        problems.append("latent sliders run on the local engine only")
    if request.variation_strength > 0:
        problems.append("variation seeds run on the local engine only")
    if problems:
        raise InvalidRequestError("A ComfyUI server cannot run this: " + "; ".join(problems)
                                  + ".")


def _text(prompt: str) -> str:
    """The prompt without its ``<lora:name:weight>`` tags (they become ``LoraLoader`` nodes);
    weights written ``(word:1.2)`` mean the same to ComfyUI as to us."""
    from studio.core.prompt_syntax import extract_loras

    return extract_loras(prompt)[0] if "<" in prompt else prompt


def _seed(seed: int) -> int:
    if not 0 <= seed <= MAX_SEED:
        raise InvalidRequestError(f"Seed {seed} is out of range (0 to {MAX_SEED}).")
    return int(seed)


def build(request: GenerationRequest, inputs: Inputs, *, seeds: Sequence[int] | None = None
          ) -> dict[str, dict]:
    """The workflow for ``request`` (its task, batch, LoRAs, scheduler and seeds).

    ``seeds`` overrides ``request.seeds`` (ComfyUI takes seeds up to 2**64 - 1). The output
    nodes are ``PreviewImage`` nodes, one per image in batch order (see ``output_nodes``).
    """
    _check(request)
    sampler, schedule = comfy_sampler(request.scheduler, inputs.samplers)
    g = _Graph()
    model, clip, vae = _model_and_clip(g, inputs, request.clip_skip)
    positive = [g.add("CLIPTextEncode", text=_text(request.prompt), clip=clip), 0]
    negative = [g.add("CLIPTextEncode", text=_text(request.negative_prompt), clip=clip), 0]
    if request.task == "txt2img":
        latent = [g.add("EmptyLatentImage", width=request.width, height=request.height,
                        batch_size=1), 0]
        denoise = 1.0
    else:
        if not inputs.init_image:
            raise InvalidRequestError(f"{request.task} needs an init image on the server.")
        pixels = [g.add("LoadImage", image=inputs.init_image), 0]
        latent = [g.add("VAEEncode", pixels=pixels, vae=vae), 0]
        denoise = float(request.strength)
        if request.task == "inpaint":
            if not inputs.mask:
                raise InvalidRequestError("Inpainting needs a mask on the server.")
            mask = [g.add("LoadImageMask", image=inputs.mask, channel="red"), 0]
            latent = [g.add("SetLatentNoiseMask", samples=latent, mask=mask), 0]
    for seed in (request.seeds if seeds is None else seeds):
        sampled = g.add("KSampler", model=model, seed=_seed(seed), steps=request.steps,
                        cfg=float(request.guidance), sampler_name=sampler, scheduler=schedule,
                        positive=positive, negative=negative, latent_image=latent,
                        denoise=denoise)
        image = g.add("VAEDecode", samples=[sampled, 0], vae=vae)
        g.add("PreviewImage", images=[image, 0])
    return g.nodes


def txt2img(request: GenerationRequest, checkpoint: str) -> dict[str, dict]:
    """Text to image: checkpoint, prompts, an empty latent, ``KSampler``, decode."""
    return build(request.replace(task="txt2img", init_image=None, mask=None), Inputs(checkpoint))


def img2img(request: GenerationRequest, checkpoint: str, image: str) -> dict[str, dict]:
    """Image to image: the uploaded ``image`` encoded and sampled with denoise = strength."""
    return build(request, Inputs(checkpoint, init_image=image))


def inpaint(request: GenerationRequest, checkpoint: str, image: str, mask: str
            ) -> dict[str, dict]:
    """Inpainting: as img2img, with ``SetLatentNoiseMask`` so only the mask is denoised."""
    return build(request, Inputs(checkpoint, init_image=image, mask=mask))


def upscale(image: str, model: str) -> dict[str, dict]:
    """Super-resolution of the uploaded ``image`` with the server's upscale ``model``."""
    g = _Graph()
    loader = g.add("UpscaleModelLoader", model_name=model)
    pixels = g.add("LoadImage", image=image)
    up = g.add("ImageUpscaleWithModel", upscale_model=[loader, 0], image=[pixels, 0])
    g.add("PreviewImage", images=[up, 0])
    return g.nodes


def output_nodes(workflow: dict[str, dict]) -> list[str]:
    """The image outputs of a workflow, in batch order."""
    return [node_id for node_id, node in workflow.items()
            if node["class_type"] in ("PreviewImage", "SaveImage")]


def sampler_nodes(workflow: dict[str, dict]) -> list[str]:
    return [node_id for node_id, node in workflow.items() if node["class_type"] == "KSampler"]


# Node classes each feature needs on the server.
REQUIRED_NODES: dict[str, tuple[str, ...]] = {
    "txt2img": ("CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "KSampler",
                "VAEDecode", "PreviewImage"),
    "img2img": ("LoadImage", "VAEEncode"),
    "inpainting": ("LoadImage", "LoadImageMask", "SetLatentNoiseMask"),
    "lora": ("LoraLoader",),
    "upscaling": ("UpscaleModelLoader", "ImageUpscaleWithModel"),
    "control": ("ControlNetLoader", "ControlNetApplyAdvanced"),
}
