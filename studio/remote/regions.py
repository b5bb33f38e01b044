"""Regional prompts on a ComfyUI server, built from ComfyUI's own nodes.

A region (``studio.core.jobs.request.Region``: a grey mask, a prompt, a strength) becomes
conditioning with a mask: ``CLIPTextEncode`` of the region's prompt, then
``ConditioningSetMask`` with the region's mask (uploaded as a PNG, read with
``LoadImageMask``) and its strength. The main prompt's conditioning gets the mask of what
the regions leave to it, ``1 - sum(strength_r * mask_r)`` (``SolidMask`` and
``MaskComposite``, clamped to [0, 1] by ComfyUI), and ``ConditioningCombine`` joins them all
into the positive conditioning. The negative prompt is unchanged.

How ComfyUI uses it (``comfy.samplers.calc_cond_batch``): every conditioning of the list is
run through the model on its own and the predictions are averaged, each weighted per latent
pixel by its mask times its strength (the masks resized to the latent, bilinear). So at a
pixel the prediction is ``(w_main * main + sum_r w_r * region_r) / (w_main + sum_r w_r)``
with ``w_r = strength_r * mask_r`` and ``w_main = max(0, 1 - sum_r w_r)``: outside every
region the main prompt alone, inside a region at strength 1 that region's prompt alone,
between a blend, and overlapping regions share the place by their weights. These are the
local engine's weights (``studio.engine.regions``), applied to the model's prediction instead
of to each cross-attention layer's output, so the local engine's contrast (there to undo the
picture-wide mixing of attention-level blends) is not needed here. The price is one more
model evaluation per region and step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from studio.core.jobs.request import GenerationRequest


def mask_image(request: GenerationRequest, index: int) -> np.ndarray:
    """Region ``index``'s mask at the request's size as an RGB image (``LoadImageMask``
    reads its red channel; white: in the region), resized bilinear as the local engine
    resizes it (``studio.engine.regions.region_mask``; remote code imports no local engine)."""
    from PIL import Image

    mask = Image.fromarray(np.asarray(request.regions[index].mask.to_array())).convert("L")
    if mask.size != (request.width, request.height):
        mask = mask.resize((request.width, request.height), Image.Resampling.BILINEAR)
    return np.asarray(mask.convert("RGB"), dtype=np.uint8)


async def upload_masks(client: Any, request: GenerationRequest) -> tuple[str, ...]:
    """Upload the regions' masks to ``client``'s server; their names there, in order."""
    from studio.remote.client import encode_png

    return tuple([await client.upload(encode_png(mask_image(request, i)))
                  for i in range(len(request.regions))])


def conditioning(g: Any, request: GenerationRequest, masks: tuple[str, ...], clip: list,
                 positive: list, text: Callable[[str], str]) -> list:
    """The positive conditioning with ``request``'s regions (``positive`` unchanged when it
    has none). ``g``: the workflow being built (``add(class_type, **inputs)`` gives a node id);
    ``masks``: the uploaded masks' names, in the regions' order; ``text``: a prompt as the
    server reads it (LoRA tags taken out)."""
    if not request.regions:
        return positive
    if len(masks) != len(request.regions):
        from studio.core.errors import InvalidRequestError

        raise InvalidRequestError(f"{len(request.regions)} regional prompts need their masks "
                                  f"on the server ({len(masks)} uploaded).")
    width, height = request.width, request.height
    left = [g.add("SolidMask", value=1.0, width=width, height=height), 0]  # main's weight
    parts = []
    for region, name in zip(request.regions, masks, strict=True):
        strength = float(region.strength)
        mask = [g.add("LoadImageMask", image=name, channel="red"), 0]
        encoded = [g.add("CLIPTextEncode", text=text(region.prompt), clip=clip), 0]
        parts.append([g.add("ConditioningSetMask", conditioning=encoded, mask=mask,
                            strength=strength, set_cond_area="default"), 0])
        weight = mask
        if strength != 1.0:
            solid = [g.add("SolidMask", value=strength, width=width, height=height), 0]
            weight = [g.add("MaskComposite", destination=mask, source=solid, x=0, y=0,
                            operation="multiply"), 0]
        left = [g.add("MaskComposite", destination=left, source=weight, x=0, y=0,
                      operation="subtract"), 0]
    out = [g.add("ConditioningSetMask", conditioning=positive, mask=left, strength=1.0,
                 set_cond_area="default"), 0]
    for part in parts:
        out = [g.add("ConditioningCombine", conditioning_1=out, conditioning_2=part), 0]
    return out


__all__ = ["conditioning", "mask_image", "upload_masks"]
