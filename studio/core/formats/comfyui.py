"""Generation settings from ComfyUI images: the ``prompt`` graph, or the ``workflow`` graph.

ComfyUI saves the graph it ran in API form (``prompt``: ``{id: {"class_type", "inputs"}}``,
where an input is a value or a link ``[node_id, output_slot]``) and the editor's graph
(``workflow``, see ``comfyui_workflow``). A sampler is either one node (``KSampler``) or split
over several (``SamplerCustomAdvanced`` fed by ``RandomNoise``, a guider, ``KSamplerSelect``
and a sigmas node such as ``BasicScheduler``), as in Flux and most newer workflows.

Graphs come from files anyone can edit: every walk here is iterative, visits a node at most
once and stops after ``MAX_VISITS`` nodes, so cycles and 5000-node chains cost little.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from studio.core.formats.comfyui_workflow import workflow_to_prompt
from studio.core.formats.imported import ImportedSettings
from studio.core.formats.imported import json_or_none as _json
from studio.core.formats.imported import number_or_none as _num

__all__ = ["parse_comfyui", "parse_comfy_graph", "workflow_to_prompt"]

MAX_VISITS = 20000
_MAX_LINK_DEPTH = 32
_MAX_SAMPLERS = 32
# Inputs that carry a prompt's text, most specific first.
_TEXT_KEYS = ("text", "populated_text", "text_g", "t5xxl", "clip_l", "text_l", "prompt",
              "positive", "string", "value", "text_positive", "wildcard_text")
_CONCAT = re.compile(r"^(?:string|text)_?(?:[a-z]|\d+)$")
_LATENT_KEYS = ("latent_image", "samples", "samples_to", "samples_from", "latent", "pixels",
                "image", "images", "latent_a")
_INPAINT = ("VAEEncodeForInpaint", "SetLatentNoiseMask", "InpaintModelConditioning")
_MODEL_FILE_KEYS = ("ckpt_name", "unet_name", "base_ckpt_name", "model_name")
# Sampler nodes that name their sampler by their class.
_SAMPLER_CLASSES = {
    "SamplerEulerAncestral": "euler_ancestral", "SamplerEulerAncestralCFGPP": "euler_ancestral",
    "SamplerLMS": "lms", "SamplerDPMPP_2M_SDE": "dpmpp_2m_sde", "SamplerDPMPP_3M_SDE":
    "dpmpp_3m_sde", "SamplerDPMPP_SDE": "dpmpp_sde", "SamplerDPMPP_2S_Ancestral":
    "dpmpp_2s_ancestral", "SamplerDPMAdaptative": "dpm_adaptive", "SamplerLCMUpscale": "lcm"}
# Sigmas nodes that name their schedule by their class.
_SCHEDULE_CLASSES = {
    "KarrasScheduler": "karras", "ExponentialScheduler": "exponential",
    "PolyexponentialScheduler": "polyexponential", "SDTurboScheduler": "sd_turbo",
    "AlignYourStepsScheduler": "align_your_steps", "BetaSamplingScheduler": "beta",
    "LaplaceScheduler": "laplace", "VPScheduler": "vp", "GITSScheduler": "gits"}


class ComfyGraph:
    """A ComfyUI API-format graph: ``{id: {"class_type": ..., "inputs": {...}}}``."""

    def __init__(self, nodes: Mapping[Any, Any]) -> None:
        self.nodes = {str(k): v for k, v in nodes.items()
                      if isinstance(v, dict) and isinstance(v.get("inputs", {}), dict)}

    def kind(self, node_id: str) -> str:
        return str(self.nodes.get(node_id, {}).get("class_type", ""))

    def inputs(self, node_id: str) -> dict[str, Any]:
        inputs = self.nodes.get(node_id, {}).get("inputs", {})
        return inputs if isinstance(inputs, dict) else {}

    @staticmethod
    def link(value: Any) -> tuple[str, int] | None:
        if (isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)
                and isinstance(value[0], (str, int))):
            return str(value[0]), value[1]
        return None

    def linked(self, value: Any) -> tuple[str, dict[str, Any]] | None:
        """The node a link points to and its inputs, or ``None``."""
        link = self.link(value)
        return (link[0], self.inputs(link[0])) if link and link[0] in self.nodes else None

    def walk(self, start: Any, follow: Callable[[str, int], list[Any]]) -> Iterator[str]:
        """Node ids reached from the link ``start``, depth first, each once, bounded."""
        stack, seen = [start], set()
        while stack and len(seen) < MAX_VISITS:
            link = self.link(stack.pop())
            if link is None or link[0] in seen or link[0] not in self.nodes:
                continue
            seen.add(link[0])
            yield link[0]
            stack.extend(reversed(follow(link[0], link[1])))

    # -- values through links --------------------------------------------------------
    def text(self, value: Any, depth: int = 0) -> str:
        """A text input, following links to primitive, string and concatenation nodes."""
        if isinstance(value, str):
            return value
        found = self.linked(value)
        if found is None or depth > _MAX_LINK_DEPTH:
            return ""
        node_id, inputs = found
        parts = sorted(k for k in inputs if _CONCAT.match(k))
        if len(parts) > 1:  # StringConcatenate, "Text Concatenate", "CR Text Concatenate"
            glue = inputs.get("delimiter", inputs.get("separator", " "))
            texts = [t for k in parts if (t := self.text(inputs[k], depth + 1))]
            return (glue if isinstance(glue, str) else " ").join(texts)
        for key in _TEXT_KEYS:
            if key in inputs and (text := self.text(inputs[key], depth + 1)):
                return text
        return ""

    def scalar(self, value: Any, name: str, depth: int = 0) -> Any:
        """A setting that may come through a link from a seed or number node."""
        found = self.linked(value)
        if self.link(value) is None:
            return value
        if found is None or depth > _MAX_LINK_DEPTH:
            return None
        inputs = found[1]
        for key in (name, "seed", "noise_seed", "value", "int", "float", "number"):
            if key in inputs:
                return self.scalar(inputs[key], name, depth + 1)
        return None

    def encoder_text(self, inputs: dict[str, Any]) -> str:
        """The prompt of a text encoder node (``CLIPTextEncode`` and its many cousins)."""
        texts = []
        for key in _TEXT_KEYS:
            if key in inputs and (text := self.text(inputs[key]).strip()) and text not in texts:
                texts.append(text)
                if key not in ("text_g", "clip_l"):
                    break
        # SDXL and Flux encoders hold two texts, usually the same: keep one unless they differ.
        return "\n".join(texts[:2])

    def prompts(self, value: Any) -> list[str]:
        """Texts of every text encoder feeding a conditioning input, upstream first."""
        out: list[str] = []

        def follow(node_id: str, slot: int) -> list[Any]:
            inputs = self.inputs(node_id)
            if self.kind(node_id) == "ConditioningZeroOut" or self._is_encoder(node_id):
                return []
            if "positive" in inputs and "negative" in inputs:  # ControlNetApplyAdvanced, ...
                return [inputs["negative" if slot == 1 else "positive"]]
            return [v for k, v in inputs.items()
                    if k.startswith(("conditioning", "cond")) or k in ("positive", "negative")]

        for node_id in self.walk(value, follow):
            if self._is_encoder(node_id):
                text = self.encoder_text(self.inputs(node_id))
                if text and text not in out:
                    out.append(text)
        return out

    def _is_encoder(self, node_id: str) -> bool:
        inputs = self.inputs(node_id)
        kind = self.kind(node_id)
        has_text = any(k in inputs for k in _TEXT_KEYS if k not in ("positive",))
        return has_text and ("clip" in inputs or "TextEncode" in kind or "Encode" in kind)

    def upstream(self, value: Any, keys: tuple[str, ...], stop: Callable[[str], bool],
                 passed: list[str] | None = None) -> str | None:
        """The first node upstream of ``value`` through ``keys`` inputs where ``stop`` holds;
        the kinds of the nodes passed on the way are appended to ``passed``."""
        def follow(node_id: str, slot: int) -> list[Any]:
            return [v for k, v in self.inputs(node_id).items() if k in keys]

        for node_id in self.walk(value, follow):
            if stop(node_id):
                return node_id
            if passed is not None:
                passed.append(self.kind(node_id))
        return None

    # -- samplers ---------------------------------------------------------------------
    def is_sampler(self, node_id: str) -> bool:
        inputs = self.inputs(node_id)
        if self.kind(node_id) == "SamplerCustomAdvanced":
            return "sigmas" in inputs or "guider" in inputs
        if "sigmas" in inputs and "sampler" in inputs and ("cfg" in inputs or "guider" in inputs):
            return True  # SamplerCustom and look-alikes
        return (all(k in inputs for k in ("steps", "cfg", "sampler_name"))
                and ("seed" in inputs or "noise_seed" in inputs))


def _size(inputs: dict[str, Any]) -> tuple[Any, Any]:
    width, height = _num(inputs.get("width"), int), _num(inputs.get("height"), int)
    if width is None and isinstance(inputs.get("dimensions"), str):  # rgthree's size presets
        found = re.match(r"\s*(\d+)\s*x\s*(\d+)", inputs["dimensions"])
        if found:
            width, height = int(found[1]), int(found[2])
    return width, height


def _sigmas(graph: ComfyGraph, value: Any) -> dict[str, Any]:
    """Steps, schedule and denoise of a sigmas input (``BasicScheduler`` and the like)."""
    for node_id in graph.walk(value, lambda n, s: [graph.inputs(n).get("sigmas")]):
        inputs, kind = graph.inputs(node_id), graph.kind(node_id)
        if "steps" in inputs or kind in _SCHEDULE_CLASSES:
            return {"steps": graph.scalar(inputs.get("steps"), "steps"),
                    "scheduler": graph.scalar(inputs.get("scheduler"), "scheduler")
                    or _SCHEDULE_CLASSES.get(kind, ""),
                    "denoise": graph.scalar(inputs.get("denoise"), "denoise")}
    return {}


def _sampler_name(graph: ComfyGraph, inputs: dict[str, Any]) -> Any:
    if "sampler_name" in inputs:
        return graph.scalar(inputs["sampler_name"], "sampler_name")
    found = graph.linked(inputs.get("sampler"))
    if found is None:
        return None
    node_id, sampler = found
    if "sampler_name" in sampler:
        return graph.scalar(sampler["sampler_name"], "sampler_name")
    return _SAMPLER_CLASSES.get(graph.kind(node_id))


def _guidance(graph: ComfyGraph, conditioning: Any) -> Any:
    """The ``FluxGuidance`` (or Flux encoder) guidance on a conditioning input, if any."""
    def follow(node_id: str, slot: int) -> list[Any]:
        return [v for k, v in graph.inputs(node_id).items() if k.startswith("conditioning")]

    for node_id in graph.walk(conditioning, follow):
        if "guidance" in graph.inputs(node_id):
            return graph.scalar(graph.inputs(node_id)["guidance"], "guidance")
    return None


def _split_sampler(graph: ComfyGraph, node_id: str) -> dict[str, Any]:
    """What a node-split sampler's helper nodes say, in ``KSampler``'s terms."""
    inputs = graph.inputs(node_id)
    out: dict[str, Any] = {"sampler": _sampler_name(graph, inputs), **_sigmas(
        graph, inputs.get("sigmas"))}
    noise = graph.linked(inputs.get("noise"))
    if noise is not None:
        out["seed"] = graph.scalar(noise[1].get("noise_seed", noise[1].get("seed")), "noise_seed")
        out["adds_noise"] = graph.kind(noise[0]) != "DisableNoise"
    guider = graph.linked(inputs.get("guider"))
    if guider is not None:
        g = guider[1]
        out["model"] = g.get("model")
        out["positive"] = g.get("positive", g.get("conditioning", g.get("cond1")))
        out["negative"] = g.get("negative")
        if "cfg" in g or "cfg_conds" in g:
            out["cfg"] = graph.scalar(g.get("cfg", g.get("cfg_conds")), "cfg")
        else:  # BasicGuider: no CFG; Flux's distilled guidance is what the user set
            flux = _guidance(graph, out["positive"])
            out["cfg"] = flux if flux is not None else 1.0
    else:
        out["adds_noise"] = inputs.get("add_noise", True) not in ("disable", False)
        out["seed"] = graph.scalar(inputs.get("noise_seed", inputs.get("seed")), "noise_seed")
        out["cfg"] = graph.scalar(inputs.get("cfg"), "cfg")
        out["model"], out["positive"], out["negative"] = (
            inputs.get("model"), inputs.get("positive"), inputs.get("negative"))
    if out.get("model") is None:
        out["model"] = graph.inputs(_link_id(graph, inputs.get("sigmas"))).get("model")
    return out


def _link_id(graph: ComfyGraph, value: Any) -> str:
    link = graph.link(value)
    return link[0] if link else ""


def _sampler(graph: ComfyGraph, node_id: str, image_size: tuple[int, int] | None) -> dict[str, Any]:
    inputs = graph.inputs(node_id)
    if "sigmas" in inputs or "guider" in inputs:
        found = _split_sampler(graph, node_id)
    else:
        def get(*names: str) -> Any:
            name = next((n for n in names if n in inputs), names[0])
            return graph.scalar(inputs.get(name), name)

        found = {"seed": get("seed", "noise_seed"), "steps": get("steps"), "cfg": get("cfg"),
                 "sampler": get("sampler_name"), "scheduler": get("scheduler") or "",
                 "denoise": get("denoise"), "start": get("start_at_step"),
                 "adds_noise": inputs.get("add_noise", "enable") not in ("disable", False),
                 "model": inputs.get("model"), "positive": inputs.get("positive"),
                 "negative": inputs.get("negative")}
    passed: list[str] = []
    latent = graph.upstream(inputs.get("latent_image"), _LATENT_KEYS, graph.is_sampler, passed)
    first_pass = latent is None
    sized = next((n for n in graph.walk(inputs.get("latent_image"), lambda n, s: [] if
                  graph.is_sampler(n) else [v for k, v in graph.inputs(n).items()
                                            if k in _LATENT_KEYS])
                  if _size(graph.inputs(n))[0] is not None), None)
    width, height = _size(graph.inputs(sized)) if sized and first_pass else (None, None)
    task = ("inpaint" if any(k in _INPAINT for k in passed)
            else "img2img" if any(k.startswith("VAEEncode") or k == "LoadImage" for k in passed)
            else "txt2img")
    if width is None and first_pass and task != "txt2img" and image_size:
        width, height = image_size  # the saved image is this sampler's latent, decoded
    model = graph.upstream(found.get("model"), ("model", "unet", "base_model"),
                           lambda n: any(k in graph.inputs(n) for k in _MODEL_FILE_KEYS))
    model_inputs = graph.inputs(model) if model else {}
    return {"id": node_id, "class_type": graph.kind(node_id), "seed": found.get("seed"),
            "steps": found.get("steps"), "cfg": found.get("cfg"),
            "sampler": found.get("sampler") or "", "scheduler": found.get("scheduler") or "",
            "denoise": found.get("denoise"), "start_at_step": found.get("start"),
            "first_pass": first_pass, "adds_noise": found.get("adds_noise", True),
            "task": task, "width": width, "height": height,
            "model": next((str(model_inputs[k]) for k in _MODEL_FILE_KEYS if k in model_inputs),
                          ""),
            "prompt": "\n".join(graph.prompts(found.get("positive"))),
            "negative_prompt": "\n".join(graph.prompts(found.get("negative")))}


def _decoded_by_saver(graph: ComfyGraph, sampler_id: str) -> bool:
    """Whether a save node's image is this sampler's latent, decoded at the same size."""
    for node_id in graph.nodes:
        images = graph.linked(graph.inputs(node_id).get("images"))
        if images and "samples" in images[1]:
            link = graph.link(images[1]["samples"])
            if link and link[0] == sampler_id:
                return True
    return False


def parse_comfy_graph(nodes: Mapping[Any, Any], *, source: str = "ComfyUI",
                      image_size: tuple[int, int] | None = None) -> ImportedSettings:
    """Settings from an API-format graph.

    A graph may hold several samplers (hires passes, refiners, latent compositing); the
    settings are those of the first pass: the lowest-numbered sampler that starts from noise
    rather than from another sampler's output. All samplers are listed in
    ``extra["samplers"]``. ``image_size`` is the saved image's size, used for image-to-image
    graphs whose latent comes from a loaded image of unknown size.
    """
    graph = ComfyGraph(nodes)
    ids = sorted((n for n in graph.nodes if graph.is_sampler(n)), key=lambda n: (len(n), n))
    ids = ids[:_MAX_SAMPLERS]  # each costs a walk of the graph: keep hostile files cheap
    if not ids:
        return ImportedSettings(source=source, extra={"prompt": dict(nodes)})
    size_for: dict[str, tuple[int, int] | None] = {
        n: image_size if image_size and _decoded_by_saver(graph, n) else None for n in ids}
    samplers = [_sampler(graph, n, size_for[n]) for n in ids]
    main = next((s for s in samplers if s["first_pass"] and s["adds_noise"]), samplers[0])
    denoise, steps = _num(main["denoise"]), _num(main["steps"], int)
    start = _num(main["start_at_step"], int)
    strength = denoise if denoise is not None and denoise < 1 else None
    if strength is None and start and steps and main["task"] != "txt2img":
        strength = max(0.0, min(1.0, (steps - start) / steps))  # KSamplerAdvanced img2img
    return ImportedSettings(
        source=source, prompt=main["prompt"], negative_prompt=main["negative_prompt"],
        seed=_num(main["seed"], int), steps=steps, guidance=_num(main["cfg"]),
        sampler=str(main["sampler"] or ""), schedule=str(main["scheduler"] or ""),
        width=_num(main["width"], int), height=_num(main["height"], int),
        model=str(main["model"]), strength=strength, task=main["task"],
        extra={"schedule": str(main["scheduler"] or ""), "samplers": samplers})


def parse_comfyui(info: Mapping[str, str], *,
                  image_size: tuple[int, int] | None = None) -> ImportedSettings | None:
    """Settings from a ComfyUI ``prompt`` graph (or, without one, its ``workflow``)."""
    nodes = _json(info.get("prompt"))
    if not isinstance(nodes, dict):
        nodes = workflow_to_prompt(_json(info.get("workflow")))
    if not isinstance(nodes, dict):
        return None
    return parse_comfy_graph(nodes, image_size=image_size)
