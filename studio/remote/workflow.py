"""ComfyUI workflows in API format, built by small pure functions per task.

Each function returns the graph ``POST /prompt`` takes: ``{node_id: {"class_type": ...,
"inputs": {...}}}``, where an input that comes from another node is ``[node_id, output_index]``.
Nothing here talks to a server, so a test can assert on a graph and then run it for real.

Image ``i`` of a batch is sampled with seed ``seed + i`` on a branch of its own (as the local
engine does), so that it can be made again alone; ComfyUI's own batch latents would share one
noise generator and give other pixels for the same seed.
"""

from __future__ import annotations

import math
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


FLOW_FAMILIES = ("flux", "sd3", "qwen")  # 16-channel latents (EmptySD3LatentImage)
MODEL_FOLDERS = ("checkpoints", "diffusion_models")  # where a main model may live


@dataclass(frozen=True)
class Inputs:
    """What a workflow needs beyond the request: names the server knows things by."""

    checkpoint: str  # the server's model name (as /models/checkpoints or diffusion_models lists)
    loras: tuple[tuple[str, float], ...] = ()  # (server's LoRA name, weight)
    init_image: str = ""  # uploaded image name (img2img, inpaint)
    mask: str = ""  # uploaded mask name (inpaint; white: repaint)
    samplers: tuple[str, ...] = ()  # the server's sampler names, for checking
    family: str = ""  # "sd1", "sdxl", "flux", "sd3", ... ("": an SD checkpoint)
    folder: str = "checkpoints"  # "diffusion_models": the model alone, encoders and VAE beside
    text_encoders: tuple[str, ...] = ()  # the server's text encoder names (diffusion_models)
    vae: str = ""  # the server's VAE name ("": the checkpoint's own)
    enlarge_with: str = ""  # hires fix: the init image is enlarged to the request's size on
    # the server first, with this upscale model ("lanczos": Lanczos only)
    regions: tuple[str, ...] = ()  # uploaded region masks, in request.regions' order
    controls: tuple = ()  # studio.remote.control.ServerControl, in the controls' order


class _Graph:
    """Numbers nodes as they are added: ``add`` returns the node's id."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict] = {}

    def add(self, class_type: str, **inputs: object) -> str:
        node_id = str(len(self.nodes) + 1)
        self.nodes[node_id] = {"class_type": class_type, "inputs": inputs}
        return node_id


def _is_flow(family: str) -> bool:
    return family.split("-")[0] in FLOW_FAMILIES


def _loaders(g: _Graph, inputs: Inputs) -> tuple[list, list, list]:
    """The model, text encoder(s) and VAE: one checkpoint, or (Flux, SD3 style) a diffusion
    model with its text encoders and VAE in their own files."""
    family = inputs.family.split("-")[0]
    if inputs.folder != "diffusion_models":
        ckpt = g.add("CheckpointLoaderSimple", ckpt_name=inputs.checkpoint)
        model, clip, vae = [ckpt, 0], [ckpt, 1], [ckpt, 2]
    else:
        if family not in FLOW_FAMILIES:
            raise InvalidRequestError(
                f"{inputs.checkpoint} is a diffusion model without its text encoders; Latent "
                "Studio builds those workflows for Flux, SD3 and Qwen-Image-Edit only (put a "
                "whole checkpoint in models/checkpoints for other families).")
        model = [g.add("UNETLoader", unet_name=inputs.checkpoint, weight_dtype="default"), 0]
        encoders = inputs.text_encoders
        if family == "qwen" and len(encoders) == 1:  # Qwen2.5-VL alone
            clip = [g.add("CLIPLoader", clip_name=encoders[0], type="qwen_image"), 0]
        elif family == "sd3" and len(encoders) == 3:
            clip = [g.add("TripleCLIPLoader", clip_name1=encoders[0], clip_name2=encoders[1],
                          clip_name3=encoders[2]), 0]
        elif len(encoders) == 2:
            clip = [g.add("DualCLIPLoader", clip_name1=encoders[0], clip_name2=encoders[1],
                          type=family), 0]
        else:
            raise InvalidRequestError(f"{inputs.checkpoint} needs its text encoders "
                                      f"({companions_wanted(family)}).")
        if not inputs.vae:
            raise InvalidRequestError(f"{inputs.checkpoint} needs its VAE in models/vae.")
    if inputs.vae:
        vae = [g.add("VAELoader", vae_name=inputs.vae), 0]
    if family == "qwen":  # as ComfyUI's Qwen-Image-Edit templates sample it
        model = [g.add("ModelSamplingAuraFlow", model=model, shift=QWEN_SHIFT), 0]
        model = [g.add("CFGNorm", model=model, strength=1.0), 0]
    return model, clip, vae


def _model_and_clip(g: _Graph, inputs: Inputs, clip_skip: int) -> tuple[list, list, list]:
    model, clip, vae = _loaders(g, inputs)
    for name, weight in inputs.loras:
        lora = g.add("LoraLoader", model=model, clip=clip, lora_name=name,
                     strength_model=float(weight), strength_clip=float(weight))
        model, clip = [lora, 0], [lora, 1]
    if clip_skip > 0 and not _is_flow(inputs.family):
        # ours counts skipped layers (as diffusers); ComfyUI counts from the end
        clip = [g.add("CLIPSetLastLayer", clip=clip, stop_at_clip_layer=-int(clip_skip) - 1), 0]
    return model, clip, vae


def _conditioning(g: _Graph, request: GenerationRequest, inputs: Inputs, clip: list
                  ) -> tuple[list, list, float]:
    """The positive and negative conditioning and the sampler's CFG. Flux takes its guidance
    as a conditioning value (``FluxGuidance``) and samples at CFG 1 with no negative."""
    positive = [g.add("CLIPTextEncode", text=_text(request.prompt), clip=clip), 0]
    plain = positive
    if request.regions:  # masked conditioning per region (studio.remote.regions)
        from studio.remote import regions

        positive = regions.conditioning(g, request, inputs.regions, clip, positive, _text)
    if inputs.family.split("-")[0] == "flux":
        negative = [g.add("ConditioningZeroOut", conditioning=plain), 0]
        positive = [g.add("FluxGuidance", conditioning=positive,
                          guidance=float(request.guidance)), 0]
        return positive, negative, 1.0
    negative = [g.add("CLIPTextEncode", text=_text(request.negative_prompt), clip=clip), 0]
    return positive, negative, float(request.guidance)


def _control(g: _Graph, request: GenerationRequest, inputs: Inputs, positive: list,
             negative: list, vae: list) -> tuple[list, list]:
    """Where control layers join the graph: ControlNet nodes (``ControlNetLoader``,
    ``ControlNetApplyAdvanced``) take the conditioning pair here and give it back changed
    (``studio.remote.control``; the pair passes through without controls)."""
    if not inputs.controls:
        return positive, negative
    from studio.remote import control

    return control.apply(g, inputs.controls, positive, negative,
                         vae if _is_flow(inputs.family) else None)


def _pixels(g: _Graph, request: GenerationRequest, inputs: Inputs) -> list:
    """The init image on the server; for a hires fix enlarged to the request's size there."""
    pixels = [g.add("LoadImage", image=inputs.init_image), 0]
    if inputs.enlarge_with:
        if inputs.enlarge_with.lower() != "lanczos":
            loader = g.add("UpscaleModelLoader", model_name=inputs.enlarge_with)
            pixels = [g.add("ImageUpscaleWithModel", upscale_model=[loader, 0],
                            image=pixels), 0]
        pixels = [g.add("ImageScale", image=pixels, upscale_method="lanczos",
                        width=request.width, height=request.height, crop="disabled"), 0]
    return pixels


EDIT_FAMILY = "flux-kontext"
# The edit models whose ComfyUI workflows are built (``edits``): Flux Kontext and
# Qwen-Image-Edit (its 2509/2511 releases with ComfyUI's "Plus" encoder).
EDIT_FAMILIES = (EDIT_FAMILY, "qwen-image-edit")
QWEN_SHIFT = 3.0  # ModelSamplingAuraFlow's shift in ComfyUI's Qwen-Image-Edit templates


def edits(request: GenerationRequest, family: str) -> bool:
    """Whether ``request`` is an edit with words on a server: a Flux Kontext or
    Qwen-Image-Edit model given an image (its image to image is the edit; the strength is
    not used)."""
    return family in EDIT_FAMILIES and request.task == "img2img"


def edit_feature(family: str) -> str:
    """The ``REQUIRED_NODES`` key of an edit by ``family``."""
    return "edit-qwen" if family == "qwen-image-edit" else "edit"


def qwen_edit_plus(name: str) -> bool:
    """Whether a Qwen-Image-Edit file is a 2509/2511 release (ComfyUI encodes its prompt
    with ``TextEncodeQwenImageEditPlus``; the first release with ``TextEncodeQwenImageEdit``),
    told from its name as the family is."""
    low = _stem(name)
    return any(m in low for m in ("2509", "2511", "plus"))


def _edit_conditioning(g: _Graph, request: GenerationRequest, inputs: Inputs, clip: list,
                       vae: list) -> tuple[list, list, float]:
    """Flux Kontext's edit with ComfyUI's own nodes, as its Kontext example wires them: the
    instruction's conditioning given the encoded image as its reference (``ReferenceLatent``),
    the guidance as a conditioning value (``FluxGuidance``), no negative
    (``ConditioningZeroOut``). The image stays at the request's size (the local engine's
    ``_auto_resize`` off): ``FluxKontextImageScale`` would move it to one of Kontext's
    1-megapixel sizes and the result with it."""
    if not inputs.init_image:
        raise InvalidRequestError("An edit with words needs its image on the server.")
    if inputs.family == "qwen-image-edit":
        return _qwen_edit_conditioning(g, request, inputs, clip, vae)
    plain = [g.add("CLIPTextEncode", text=_text(request.prompt), clip=clip), 0]
    reference = [g.add("VAEEncode", pixels=_pixels(g, request, inputs), vae=vae), 0]
    positive = [g.add("ReferenceLatent", conditioning=plain, latent=reference), 0]
    positive = [g.add("FluxGuidance", conditioning=positive,
                      guidance=float(request.guidance)), 0]
    negative = [g.add("ConditioningZeroOut", conditioning=plain), 0]
    return positive, negative, 1.0


def _qwen_edit_conditioning(g: _Graph, request: GenerationRequest, inputs: Inputs,
                            clip: list, vae: list) -> tuple[list, list, float]:
    """Qwen-Image-Edit as ComfyUI's templates wire it: the instruction and the negative
    prompt each encoded by Qwen2.5-VL with the image (``TextEncodeQwenImageEdit``, which
    also gives the encoded image as the reference latent; ``...Plus`` for the 2509/2511
    releases), sampled at the request's guidance as CFG (the model patched by
    ``ModelSamplingAuraFlow`` and ``CFGNorm`` in ``_loaders``)."""
    pixels = _pixels(g, request, inputs)
    plus = qwen_edit_plus(inputs.checkpoint)
    node = "TextEncodeQwenImageEditPlus" if plus else "TextEncodeQwenImageEdit"
    image = {"image1" if plus else "image": pixels}
    positive = [g.add(node, clip=clip, prompt=_text(request.prompt), vae=vae, **image), 0]
    negative = [g.add(node, clip=clip, prompt=_text(request.negative_prompt), vae=vae,
                      **image), 0]
    return positive, negative, float(request.guidance)


def _check(request: GenerationRequest) -> None:
    problems = []
    if request.sliders:
        problems.append("latent sliders run on the local engine only")
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


def varies(request: GenerationRequest) -> bool:
    """Whether ``request`` has a variation seed that moves its noise (text to image only,
    as on the local engine)."""
    return (request.task == "txt2img" and request.variation_strength > 0
            and request.variation_seed is not None)


def variation_weights(strength: float) -> tuple[float, float]:
    """The weights of the seed's noise and the variation seed's: a spherical blend of two
    independent noises (orthogonal in so many dimensions), so the noise keeps its scale;
    0 gives the seed's noise, 1 the variation seed's."""
    angle = float(strength) * math.pi / 2
    return (0.0 if strength >= 1 else math.cos(angle)), (1.0 if strength >= 1 else math.sin(angle))


def build(request: GenerationRequest, inputs: Inputs, *, seeds: Sequence[int] | None = None,
          variation_seeds: Sequence[int] | None = None) -> dict[str, dict]:
    """The workflow for ``request`` (its task, family, batch, LoRAs, scheduler and seeds).

    ``seeds`` overrides ``request.seeds`` (ComfyUI takes seeds up to 2**64 - 1), and
    ``variation_seeds`` the variation seeds (``variation_seed + i`` for image ``i``). The
    output nodes are ``PreviewImage`` nodes, one per image in batch order (``output_nodes``).
    """
    _check(request)
    sampler, schedule = comfy_sampler(request.scheduler, inputs.samplers)
    g = _Graph()
    model, clip, vae = _model_and_clip(g, inputs, request.clip_skip)
    edit = edits(request, inputs.family)
    if edit:  # the new image drawn from noise at the request's size, the image its reference
        positive, negative, cfg = _edit_conditioning(g, request, inputs, clip, vae)
    else:
        positive, negative, cfg = _conditioning(g, request, inputs, clip)
    positive, negative = _control(g, request, inputs, positive, negative, vae)
    if request.task == "txt2img" or edit:
        empty = "EmptySD3LatentImage" if _is_flow(inputs.family) else "EmptyLatentImage"
        latent = [g.add(empty, width=request.width, height=request.height, batch_size=1), 0]
        denoise = 1.0
    else:
        if not inputs.init_image:
            raise InvalidRequestError(f"{request.task} needs an init image on the server.")
        latent = [g.add("VAEEncode", pixels=_pixels(g, request, inputs), vae=vae), 0]
        denoise = float(request.strength)
        if request.task == "inpaint":
            if not inputs.mask:
                raise InvalidRequestError("Inpainting needs a mask on the server.")
            mask = [g.add("LoadImageMask", image=inputs.mask, channel="red"), 0]
            latent = [g.add("SetLatentNoiseMask", samples=latent, mask=mask), 0]
    seeds = list(request.seeds if seeds is None else seeds)
    if varies(request):
        vseeds = list(variation_seeds if variation_seeds is not None else
                      [(int(request.variation_seed or 0) + i) % 2**32 for i in range(len(seeds))])
        samples = _variation_samplers(g, request, model, positive, negative, cfg, sampler,
                                      schedule, latent, seeds, vseeds)
    else:
        samples = [g.add("KSampler", model=model, seed=_seed(seed), steps=request.steps,
                         cfg=cfg, sampler_name=sampler, scheduler=schedule, positive=positive,
                         negative=negative, latent_image=latent, denoise=denoise)
                   for seed in seeds]
    for sampled in samples:
        image = g.add("VAEDecode", samples=[sampled, 0], vae=vae)
        g.add("PreviewImage", images=[image, 0])
    return g.nodes


def _variation_samplers(g: _Graph, request: GenerationRequest, model: list, positive: list,
                        negative: list, cfg: float, sampler: str, schedule: str, latent: list,
                        seeds: list[int], vseeds: list[int]) -> list[str]:
    """Variation seeds with ComfyUI's own nodes: each seed's noise and its variation seed's
    (``RandomNoise`` + ``AddNoise``, the same noise ``KSampler`` draws for a seed) blended
    by ``variation_weights``, then sampled without adding noise (``SamplerCustomAdvanced``)."""
    sigmas = [g.add("BasicScheduler", model=model, scheduler=schedule, steps=request.steps,
                    denoise=1.0), 0]
    chosen = [g.add("KSamplerSelect", sampler_name=sampler), 0]
    guider = [g.add("CFGGuider", model=model, positive=positive, negative=negative, cfg=cfg), 0]
    silent = [g.add("DisableNoise"), 0]
    keep, move = variation_weights(request.variation_strength)
    out = []
    for seed, vseed in zip(seeds, vseeds, strict=True):
        noisy = []
        for s, weight in ((seed, keep), (vseed, move)):
            noise = [g.add("RandomNoise", noise_seed=_seed(s)), 0]
            added = [g.add("AddNoise", model=model, noise=noise, sigmas=sigmas,
                           latent_image=latent), 0]
            noisy.append([g.add("LatentMultiply", samples=added, multiplier=weight), 0])
        mixed = [g.add("LatentAdd", samples1=noisy[0], samples2=noisy[1]), 0]
        out.append(g.add("SamplerCustomAdvanced", noise=silent, guider=guider, sampler=chosen,
                         sigmas=sigmas, latent_image=mixed))
    return out


# -- Flux and SD3: the files beside the diffusion model ---------------------------------------
def _stem(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1].lower()


def _find(names: Sequence[str], *markers: str) -> str:
    for name in names:
        low = _stem(name).replace("-", "_")
        if any(m in low for m in markers):
            return name
    return ""


def companions_wanted(family: str) -> str:
    """What a diffusion model of ``family`` needs beside it, and where each goes."""
    if family.split("-")[0] == "qwen":
        return ("the Qwen2.5-VL text encoder (qwen_2.5_vl_7b_fp8_scaled.safetensors) in "
                "ComfyUI/models/text_encoders/, the Qwen-Image VAE (qwen_image_vae.safetensors) "
                "in ComfyUI/models/vae/")
    if family == "flux":
        return ("T5-XXL (t5xxl_fp16.safetensors) and CLIP-L (clip_l.safetensors) in "
                "ComfyUI/models/text_encoders/, the Flux VAE (ae.safetensors) in "
                "ComfyUI/models/vae/")
    return ("CLIP-L, CLIP-G (clip_l.safetensors, clip_g.safetensors; T5-XXL optional) in "
            "ComfyUI/models/text_encoders/, the SD3 VAE in ComfyUI/models/vae/")


def companions(family: str, text_encoders: Sequence[str], vaes: Sequence[str]
               ) -> tuple[tuple[str, ...], str, list[str]]:
    """The server's text encoders (in the loader's order) and VAE for a ``family`` diffusion
    model, and what is missing: one "what, and where it goes" line each."""
    family = family.split("-")[0]
    t5 = _find(text_encoders, "t5")
    clip_l = _find(text_encoders, "clip_l", "clipl")
    clip_g = _find(text_encoders, "clip_g", "clipg")
    missing = []
    where = "in ComfyUI/models/text_encoders/"
    if family == "qwen":
        qwen_vl = _find(text_encoders, "qwen_2.5_vl", "qwen2.5_vl", "qwen_2_5_vl", "qwen25_vl")
        vae = _find(vaes, "qwen")
        if not qwen_vl:
            missing.append("the Qwen2.5-VL text encoder (qwen_2.5_vl_7b_fp8_scaled.safetensors) "
                           + where)
        if not vae:
            missing.append("the Qwen-Image VAE (qwen_image_vae.safetensors) in "
                           "ComfyUI/models/vae/")
        return (qwen_vl,), vae, missing
    if family == "flux":
        vae = _find(vaes, "flux") or next((v for v in vaes if _stem(v).split(".")[0] == "ae"), "")
        if not t5:
            missing.append(f"the T5-XXL text encoder (t5xxl_fp16.safetensors) {where}")
        if not clip_l:
            missing.append(f"the CLIP-L text encoder (clip_l.safetensors) {where}")
        if not vae:
            missing.append("the Flux VAE (ae.safetensors) in ComfyUI/models/vae/")
        return (t5, clip_l), vae, missing
    if family == "sd3":
        vae = _find(vaes, "sd3")
        if not clip_l:
            missing.append(f"the CLIP-L text encoder (clip_l.safetensors) {where}")
        if not clip_g:
            missing.append(f"the CLIP-G text encoder (clip_g.safetensors) {where}")
        if not vae:
            missing.append("the SD3 VAE (sd3_vae.safetensors) in ComfyUI/models/vae/")
        return ((clip_l, clip_g, t5) if t5 else (clip_l, clip_g)), vae, missing
    return (), "", [f"{family or 'this family'}: not built for a lone diffusion model; use a "
                    "checkpoint in ComfyUI/models/checkpoints/"]


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


SAMPLER_NODES = ("KSampler", "SamplerCustomAdvanced")


def sampler_nodes(workflow: dict[str, dict]) -> list[str]:
    """The sampler of each image, in batch order."""
    return [node_id for node_id, node in workflow.items()
            if node["class_type"] in SAMPLER_NODES]


# Node classes each feature needs on the server.
REQUIRED_NODES: dict[str, tuple[str, ...]] = {
    "txt2img": ("CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "KSampler",
                "VAEDecode", "PreviewImage"),
    "img2img": ("LoadImage", "VAEEncode"),
    "inpainting": ("LoadImage", "LoadImageMask", "SetLatentNoiseMask"),
    "lora": ("LoraLoader",),
    "upscaling": ("UpscaleModelLoader", "ImageUpscaleWithModel"),
    "control": ("ControlNetLoader", "ControlNetApplyAdvanced"),
    "variation": ("RandomNoise", "AddNoise", "LatentMultiply", "LatentAdd", "DisableNoise",
                  "BasicScheduler", "KSamplerSelect", "CFGGuider", "SamplerCustomAdvanced"),
    "hires": ("LoadImage", "ImageScale", "VAEEncode"),
    "flux": ("UNETLoader", "DualCLIPLoader", "VAELoader", "EmptySD3LatentImage",
             "FluxGuidance", "ConditioningZeroOut"),
    "sd3": ("UNETLoader", "TripleCLIPLoader", "DualCLIPLoader", "VAELoader",
            "EmptySD3LatentImage"),
    "edit": ("LoadImage", "VAEEncode", "ReferenceLatent", "FluxGuidance",
             "ConditioningZeroOut", "EmptySD3LatentImage"),  # Flux Kontext (``edits``)
    "qwen": ("UNETLoader", "CLIPLoader", "VAELoader", "EmptySD3LatentImage",
             "ModelSamplingAuraFlow", "CFGNorm"),
    "edit-qwen": ("LoadImage", "TextEncodeQwenImageEdit", "TextEncodeQwenImageEditPlus",
                  "EmptySD3LatentImage"),  # Qwen-Image-Edit (``edits``)
    "regions": ("CLIPTextEncode", "LoadImageMask", "ConditioningSetMask",
                "ConditioningCombine", "SolidMask", "MaskComposite"),  # studio.remote.regions
}
