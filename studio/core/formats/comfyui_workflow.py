"""ComfyUI's editor graph (``workflow``) turned into its API form, as far as we know the nodes.

The editor stores each node's settings as positional ``widgets_values`` and its connections
in a separate ``links`` list (``[id, from_node, from_slot, to_node, to_slot, type]``, or
objects with ``origin_id``/``target_id`` in newer versions). A widget turned into an input and
fed by a primitive node keeps its value in the list, so positions stay as below.
"""

from __future__ import annotations

from typing import Any

# Widget order of the editor's nodes we read settings from; ``None`` marks the
# "control after generate" widget (a bool in old versions, "fixed"/"randomize" later).
WIDGETS: dict[str, tuple[str | None, ...]] = {
    "KSampler": ("seed", None, "steps", "cfg", "sampler_name", "scheduler", "denoise"),
    "KSamplerAdvanced": ("add_noise", "noise_seed", None, "steps", "cfg", "sampler_name",
                         "scheduler", "start_at_step", "end_at_step", "return_with_leftover_noise"),
    "SamplerCustom": ("add_noise", "noise_seed", None, "cfg"),
    "RandomNoise": ("noise_seed", None),
    "KSamplerSelect": ("sampler_name",),
    "BasicScheduler": ("scheduler", "steps", "denoise"),
    "KarrasScheduler": ("steps", "sigma_max", "sigma_min", "rho"),
    "ExponentialScheduler": ("steps", "sigma_max", "sigma_min"),
    "PolyexponentialScheduler": ("steps", "sigma_max", "sigma_min", "rho"),
    "SDTurboScheduler": ("steps", "denoise"),
    "AlignYourStepsScheduler": ("model_type", "steps", "denoise"),
    "BetaSamplingScheduler": ("steps", "alpha", "beta"),
    "CFGGuider": ("cfg",),
    "DualCFGGuider": ("cfg_conds", "cfg_cond2_negative"),
    "FluxGuidance": ("guidance",),
    "CLIPTextEncode": ("text",),
    "smZ CLIPTextEncode": ("text",),
    "CLIPTextEncodeSDXL": ("width", "height", "crop_w", "crop_h", "target_width",
                           "target_height", "text_g", "text_l"),
    "CLIPTextEncodeSDXLRefiner": ("ascore", "width", "height", "text"),
    "CLIPTextEncodeFlux": ("clip_l", "t5xxl", "guidance"),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "EmptySD3LatentImage": ("width", "height", "batch_size"),
    "ImageScale": ("upscale_method", "width", "height", "crop"),
    "LatentUpscale": ("upscale_method", "width", "height", "crop"),
    "LoadImage": ("image", "upload"),
    "CheckpointLoaderSimple": ("ckpt_name",),
    "CheckpointLoader": ("config_name", "ckpt_name"),
    "unCLIPCheckpointLoader": ("ckpt_name",),
    "ImageOnlyCheckpointLoader": ("ckpt_name",),
    "UNETLoader": ("unet_name", "weight_dtype"),
    "UnetLoaderGGUF": ("unet_name",),
    "PrimitiveNode": ("value", None),
    "PrimitiveString": ("value",),
    "PrimitiveStringMultiline": ("value",),
    "PrimitiveInt": ("value", None),
    "PrimitiveFloat": ("value",),
    "CR Prompt Text": ("prompt",),
    "Text Multiline": ("text",),
    "String Literal": ("string",),
}
_CONTROL = {"fixed", "increment", "decrement", "randomize"}


def _links(workflow: dict[str, Any]) -> dict[Any, list[Any]]:
    links: dict[Any, list[Any]] = {}
    for link in workflow.get("links") or []:
        if isinstance(link, list) and len(link) >= 5:
            links[link[0]] = [str(link[1]), link[2]]
        elif isinstance(link, dict) and "id" in link and "origin_id" in link:
            links[link["id"]] = [str(link["origin_id"]), link.get("origin_slot", 0)]
    return links


def _widget_inputs(node: dict[str, Any]) -> dict[str, Any]:
    values = node.get("widgets_values")
    if isinstance(values, dict):  # some custom nodes save their widgets by name
        return {str(k): v for k, v in values.items()}
    if not isinstance(values, list):
        return {}
    names = list(WIDGETS.get(str(node.get("type")), ()))
    if None in names and len(values) == len(names) - 1:
        names.remove(None)  # saved without the control widget
    inputs: dict[str, Any] = {}
    for name, value in zip(names, values, strict=False):
        if name is None and (isinstance(value, bool) or value in _CONTROL):
            continue
        if name is not None:
            inputs[name] = value
    return inputs


def workflow_to_prompt(workflow: Any) -> dict[str, Any] | None:
    """The editor's ``workflow`` graph in API form, as far as the known node types allow."""
    if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list):
        return None
    links = _links(workflow)
    nodes: dict[str, Any] = {}
    for node in workflow["nodes"]:
        if not isinstance(node, dict) or "id" not in node or node.get("mode") in (2, 4):
            continue  # muted or bypassed nodes did not run
        inputs = _widget_inputs(node)
        for slot in node.get("inputs") or []:
            if isinstance(slot, dict) and isinstance(slot.get("link"), int) \
                    and slot["link"] in links:
                inputs[str(slot.get("name"))] = links[slot["link"]]
        nodes[str(node["id"])] = {"class_type": node.get("type", ""), "inputs": inputs}
    return nodes
