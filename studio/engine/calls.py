"""The generation call builders: a pipeline's arguments for one request, one function a task.

Each returns the keyword arguments of one diffusers pipeline call, without the text
conditioning (``studio.engine.slider_edits.SliderEdits.text_args``) and the step callback
(``studio.engine.step_callback.StepCallback``). They read the request and nothing else, so
the same request always gives the same arguments.
"""

from __future__ import annotations

from typing import Any

from studio.core.jobs.request import GenerationRequest, SliderValue


def sampling_args(req: GenerationRequest) -> dict[str, Any]:
    """Steps, guidance, batch and one seeded CPU generator per image (same noise anywhere)."""
    import torch

    return {
        "num_inference_steps": req.steps,
        "guidance_scale": req.guidance,
        "num_images_per_prompt": req.batch_size,
        "generator": [torch.Generator("cpu").manual_seed(s) for s in req.seeds],
        "output_type": "np",
    }


def txt2img_args(req: GenerationRequest, latents: Any = None) -> dict[str, Any]:
    """Text to image: the size, and the starting noise where a latent slider moved it."""
    args: dict[str, Any] = {"height": req.height, "width": req.width}
    if latents is not None:
        args["latents"] = latents
    if req.family:
        from studio.engine.edit import is_edit_family, keep_size

        if is_edit_family(req.family):  # Kontext would draw 1 megapixel whatever was asked
            args.update(keep_size(req))
    return args


def _init_image(req: GenerationRequest) -> Any:
    from PIL import Image

    assert req.init_image is not None
    init = Image.fromarray(req.init_image.to_array()).convert("RGB")
    if init.size != (req.width, req.height):
        init = init.resize((req.width, req.height), Image.LANCZOS)
    return init


def img2img_args(req: GenerationRequest) -> dict[str, Any]:
    """Image to image: the init image at the request's size, and the strength."""
    return {"image": _init_image(req), "strength": req.strength}


def inpaint_args(req: GenerationRequest) -> dict[str, Any]:
    """Inpainting: as image to image, plus the mask (white: repaint) and the size."""
    from PIL import Image

    assert req.mask is not None
    mask = Image.fromarray(req.mask.to_array()).convert("L")
    if mask.size != (req.width, req.height):
        mask = mask.resize((req.width, req.height), Image.NEAREST)
    return {**img2img_args(req), "mask_image": mask, "height": req.height, "width": req.width}


def inversion_args(req: GenerationRequest, inverted: Any) -> dict[str, Any]:
    """Sliders over an imported image: text to image from its DDIM inversion ``inverted``."""
    return {"height": req.height, "width": req.width, "latents": inverted}


def latent_slider_latents(pipe: Any, req: GenerationRequest, interp: SliderValue | None,
                          device: Any, dtype: Any) -> Any:
    """The starting noise of the seed-noise sliders (``None`` where no slider moves it).

    A1111-style variation slerps each seed's noise towards the variation seed's; the A<->B
    slider (``interp``) slerps it towards ``seed_b``'s noise.
    """
    from studio.engine.sliders import interpolated_noise

    latents = None
    if req.variation_strength > 0 and req.variation_seed is not None:
        latents = variation_noise(pipe, req)
    if interp is not None:  # slerped in the drawn layout, packed after (Flux)
        latents = interpolated_noise(pipe, req, interp, latents)
    return None if latents is None else pack_latents(pipe, latents).to(device, dtype)


def variation_latents(pipe: Any, req: GenerationRequest) -> Any:
    """A1111-style variation: slerp between the seed's noise and the variation seed's,
    in the layout the pipeline's ``latents`` argument takes."""
    return pack_latents(pipe, variation_noise(pipe, req))


def variation_noise(pipe: Any, req: GenerationRequest) -> Any:
    """A1111-style variation in the layout the noise is drawn in (``noise_shape``)."""
    import torch

    from studio.engine.noise import slerp

    shape = noise_shape(pipe, req)
    out = []
    for i, seed in enumerate(req.seeds):
        a = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))
        vseed = (int(req.variation_seed or 0) + i) % 2**32
        b = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(vseed))
        out.append(slerp(a, b, req.variation_strength))
    return torch.cat(out)


def noise_shape(pipe: Any, req: GenerationRequest) -> tuple[int, int, int, int]:
    """The shape of one image's starting noise, as the pipeline draws it: the latent
    channels of its UNet or transformer (4, 16, 32 ...), the size over its VAE's factor.
    Flux draws 2x2-packed latents: its transformer's channels are 4 latent channels each,
    and the size is rounded to its patches."""
    net = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    channels = int(net.config.in_channels) if net is not None else 4
    factor = int(getattr(pipe, "vae_scale_factor", 8))
    if hasattr(pipe, "_pack_latents"):
        channels //= 4
        factor *= 2
        return (1, channels, 2 * (req.height // factor), 2 * (req.width // factor))
    return (1, channels, req.height // factor, req.width // factor)


def pack_latents(pipe: Any, latents: Any) -> Any:
    """Noise of ``noise_shape`` in the layout the pipeline's ``latents`` argument takes."""
    if not hasattr(pipe, "_pack_latents"):
        return latents
    b, c, h, w = latents.shape
    return pipe._pack_latents(latents, b, c, h, w)


def task_args(req: GenerationRequest, task: str) -> dict[str, Any]:
    """The image arguments of ``img2img`` or ``inpaint`` (text to image and inversion need
    latents from the engine: ``txt2img_args``, ``inversion_args``)."""
    if task == "inpaint":
        return inpaint_args(req)
    if task == "img2img" and req.family:
        from studio.engine.edit import edit_args, is_edit_family

        if is_edit_family(req.family):  # edit with words (Flux Kontext): no strength
            return edit_args(req)
    if task == "img2img":
        return img2img_args(req)
    raise ValueError(f"no image arguments for {task!r}")
