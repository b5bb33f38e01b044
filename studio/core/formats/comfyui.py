"""Generation settings from ComfyUI images: the ``prompt`` graph, or the ``workflow`` graph.

ComfyUI saves the graph it ran in API form (``prompt``: ``{id: {"class_type", "inputs"}}``,
where an input is a value or a link ``[node_id, output_slot]``) and the editor's graph
(``workflow``: nodes with positional ``widgets_values`` and a separate list of links).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from studio.core.formats.imported import ImportedSettings
from studio.core.formats.imported import json_or_none as _json
from studio.core.formats.imported import number_or_none as _num

_SAMPLER_INPUTS = ("steps", "cfg", "sampler_name")
_TEXT_INPUTS = ("text", "text_g", "text_l", "string", "value", "prompt")


class _ComfyGraph:
    """A ComfyUI API-format graph: ``{id: {"class_type": ..., "inputs": {...}}}``."""

    def __init__(self, nodes: dict[str, Any]) -> None:
        self.nodes = {str(k): v for k, v in nodes.items() if isinstance(v, dict)}

    def inputs(self, node_id: str) -> dict[str, Any]:
        inputs = self.nodes.get(node_id, {}).get("inputs", {})
        return inputs if isinstance(inputs, dict) else {}

    @staticmethod
    def link(value: Any) -> tuple[str, int] | None:
        if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int):
            return str(value[0]), value[1]
        return None

    def is_sampler(self, node_id: str) -> bool:
        inputs = self.inputs(node_id)
        return all(k in inputs for k in _SAMPLER_INPUTS) and ("seed" in inputs or "noise_seed" in inputs)

    def text(self, value: Any, depth: int = 0) -> str:
        """A text input, following links to primitive/string nodes."""
        if isinstance(value, str):
            return value
        link = self.link(value)
        if link is None or depth > 20:
            return ""
        inputs = self.inputs(link[0])
        return next((t for k in _TEXT_INPUTS if k in inputs and (t := self.text(inputs[k], depth + 1))), "")

    def scalar(self, value: Any, name: str, depth: int = 0) -> Any:
        """A setting that may come through a link from a seed or number node."""
        link = self.link(value)
        if link is None or depth > 20:
            return value
        inputs = self.inputs(link[0])
        for key in (name, "seed", "noise_seed", "value", "int", "float", "number"):
            if key in inputs:
                return self.scalar(inputs[key], name, depth + 1)
        return None

    def prompts(self, value: Any, seen: set[str] | None = None) -> list[str]:
        """Texts of every text encoder feeding a conditioning input, upstream first."""
        seen = set() if seen is None else seen
        link = self.link(value)
        if link is None or link[0] in seen:
            return []
        node_id, slot = link
        seen.add(node_id)
        inputs = self.inputs(node_id)
        texts = [t.strip() for k in ("text", "text_g") if k in inputs and (t := self.text(inputs[k]))]
        if texts:
            return texts[:1]
        if "positive" in inputs and "negative" in inputs:  # e.g. ControlNetApplyAdvanced
            return self.prompts(inputs["negative" if slot == 1 else "positive"], seen)
        out: list[str] = []
        for key, upstream in inputs.items():
            if key.startswith("conditioning") or key in ("positive", "negative"):
                out += [t for t in self.prompts(upstream, seen) if t not in out]
        return out

    def upstream(self, value: Any, keys: tuple[str, ...], stop: Callable[[str], bool]) -> str | None:
        """Follow ``keys`` inputs upstream from a link until ``stop(node_id)`` holds."""
        todo, seen = [value], set()
        while todo:
            link = self.link(todo.pop(0))
            if link is None or link[0] in seen:
                continue
            seen.add(link[0])
            if stop(link[0]):
                return link[0]
            todo += [v for k, v in self.inputs(link[0]).items() if k in keys]
        return None


def _comfy_sampler(graph: _ComfyGraph, node_id: str) -> dict[str, Any]:
    inputs = graph.inputs(node_id)
    latent_keys = ("latent_image", "samples", "samples_to", "samples_from", "latent", "pixels")
    latent = graph.upstream(inputs.get("latent_image"), latent_keys,
                            lambda n: graph.is_sampler(n) or "width" in graph.inputs(n)
                            and "batch_size" in graph.inputs(n))
    model = graph.upstream(inputs.get("model"), ("model",),
                           lambda n: any(k in graph.inputs(n) for k in ("ckpt_name", "unet_name")))
    model_inputs = graph.inputs(model) if model else {}
    size = graph.inputs(latent) if latent and not graph.is_sampler(latent) else {}
    def get(*names: str) -> Any:
        name = next((n for n in names if n in inputs), names[0])
        return graph.scalar(inputs.get(name), name)

    return {"id": node_id, "class_type": graph.nodes[node_id].get("class_type", ""),
            "seed": get("seed", "noise_seed"), "steps": get("steps"), "cfg": get("cfg"),
            "sampler": get("sampler_name"), "scheduler": get("scheduler") or "",
            "denoise": get("denoise"),
            "first_pass": latent is None or not graph.is_sampler(latent),
            "adds_noise": inputs.get("add_noise", "enable") != "disable",
            "width": size.get("width"), "height": size.get("height"),
            "model": model_inputs.get("ckpt_name", model_inputs.get("unet_name", "")),
            "prompt": "\n".join(graph.prompts(inputs.get("positive"))),
            "negative_prompt": "\n".join(graph.prompts(inputs.get("negative")))}


# Widget order of the editor's nodes we read settings from; ``None`` marks the
# "control after generate" widget (a bool in old versions, "fixed"/"randomize" later).
_WIDGETS: dict[str, tuple[str | None, ...]] = {
    "KSampler": ("seed", None, "steps", "cfg", "sampler_name", "scheduler", "denoise"),
    "KSamplerAdvanced": ("add_noise", "noise_seed", None, "steps", "cfg", "sampler_name",
                         "scheduler", "start_at_step", "end_at_step", "return_with_leftover_noise"),
    "CLIPTextEncode": ("text",),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "CheckpointLoaderSimple": ("ckpt_name",),
    "CheckpointLoader": ("config_name", "ckpt_name"),
    "unCLIPCheckpointLoader": ("ckpt_name",),
    "ImageOnlyCheckpointLoader": ("ckpt_name",),
    "UNETLoader": ("unet_name",),
}
_CONTROL = {"fixed", "increment", "decrement", "randomize"}


def workflow_to_prompt(workflow: Any) -> dict[str, Any] | None:
    """The editor's ``workflow`` graph in API form, as far as the known node types allow."""
    if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list):
        return None
    links = {}
    for link in workflow.get("links") or []:
        if isinstance(link, list) and len(link) >= 5:
            links[link[0]] = [str(link[1]), link[2]]
    nodes: dict[str, Any] = {}
    for node in workflow["nodes"]:
        if not isinstance(node, dict) or "id" not in node or node.get("mode") in (2, 4):
            continue  # muted or bypassed nodes did not run
        inputs: dict[str, Any] = {}
        values = list(node.get("widgets_values") or []) if isinstance(
            node.get("widgets_values"), list) else []
        names = list(_WIDGETS.get(str(node.get("type")), ()))
        if None in names and len(values) == len(names) - 1:
            names.remove(None)  # saved without the control widget
        for name, value in zip(names, values, strict=False):
            if name is None and (isinstance(value, bool) or value in _CONTROL):
                continue
            if name is not None:
                inputs[name] = value
        for slot in node.get("inputs") or []:
            if isinstance(slot, dict) and slot.get("link") in links:
                inputs[str(slot.get("name"))] = links[slot["link"]]
        nodes[str(node["id"])] = {"class_type": node.get("type", ""), "inputs": inputs}
    return nodes


def parse_comfyui(info: Mapping[str, str]) -> ImportedSettings | None:
    """Settings from a ComfyUI ``prompt`` graph (or, without one, its ``workflow``).

    A graph may hold several samplers (hires passes, latent compositing); the settings are those
    of the first pass: the lowest-numbered sampler that starts from noise rather than from
    another sampler's output. All samplers are listed in ``extra["samplers"]``.
    """
    nodes = _json(info.get("prompt"))
    if not isinstance(nodes, dict):
        nodes = workflow_to_prompt(_json(info.get("workflow")))
    if not isinstance(nodes, dict):
        return None
    graph = _ComfyGraph(nodes)
    ids = sorted((n for n in graph.nodes if graph.is_sampler(n)), key=lambda n: (len(n), n))
    if not ids:
        return ImportedSettings(source="ComfyUI", extra={"prompt": nodes})
    samplers = [_comfy_sampler(graph, n) for n in ids]
    main = next((s for s in samplers if s["first_pass"] and s["adds_noise"]), samplers[0])
    denoise = _num(main["denoise"])
    return ImportedSettings(
        source="ComfyUI", prompt=main["prompt"], negative_prompt=main["negative_prompt"],
        seed=_num(main["seed"], int), steps=_num(main["steps"], int), guidance=_num(main["cfg"]),
        sampler=str(main["sampler"] or ""), width=_num(main["width"], int),
        height=_num(main["height"], int), model=str(main["model"]),
        strength=denoise if denoise is not None and denoise < 1 else None,
        extra={"schedule": main["scheduler"], "samplers": samplers})
