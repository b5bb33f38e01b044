"""Generation settings written by other tools: ComfyUI, InvokeAI, Fooocus and NovelAI.

Each reader takes the image's text chunks (``key -> text``) and returns ``ImportedSettings``
or ``None`` when the chunks are not that tool's. AUTOMATIC1111 text lives in ``a1111``.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping
from typing import Any

from studio.core.a1111 import parse_a1111_parameters
from studio.core.imported import ImportedSettings


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _num(value: Any, kind: Callable[[Any], Any] = float) -> Any:
    try:
        return kind(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


# -- ComfyUI ---------------------------------------------------------------------------------
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
    return {"id": node_id, "class_type": graph.nodes[node_id].get("class_type", ""),
            "seed": inputs.get("seed", inputs.get("noise_seed")), "steps": inputs.get("steps"),
            "cfg": inputs.get("cfg"), "sampler": inputs.get("sampler_name"),
            "scheduler": inputs.get("scheduler", ""), "denoise": inputs.get("denoise"),
            "first_pass": latent is None or not graph.is_sampler(latent),
            "adds_noise": inputs.get("add_noise", "enable") != "disable",
            "width": size.get("width"), "height": size.get("height"),
            "model": model_inputs.get("ckpt_name", model_inputs.get("unet_name", "")),
            "prompt": "\n".join(graph.prompts(inputs.get("positive"))),
            "negative_prompt": "\n".join(graph.prompts(inputs.get("negative")))}


def parse_comfyui(info: Mapping[str, str]) -> ImportedSettings | None:
    """Settings from a ComfyUI ``prompt`` graph.

    A graph may hold several samplers (hires passes, latent compositing); the settings are those
    of the first pass: the lowest-numbered sampler that starts from noise rather than from
    another sampler's output. All samplers are listed in ``extra["samplers"]``.
    """
    nodes = _json(info.get("prompt"))
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


# -- InvokeAI --------------------------------------------------------------------------------
def _split_brackets(text: str) -> tuple[str, str]:
    """InvokeAI 2 wrote the negative prompt in square brackets inside the prompt."""
    negative = [m.strip(" ,") for m in re.findall(r"\[([^\[\]]*)\]", text)]
    positive = re.sub(r"\[[^\[\]]*\]", "", text)
    return " ".join(positive.split()).strip(" ,"), ", ".join(n for n in negative if n)


def _invoke_model(model: Any) -> tuple[str, str]:
    if isinstance(model, dict):
        return str(model.get("model_name") or model.get("name") or ""), str(model.get("hash", ""))
    return (str(model), "") if model else ("", "")


def parse_invokeai(info: Mapping[str, str]) -> ImportedSettings | None:
    """Settings from any of InvokeAI's variants: ``invokeai_metadata`` (3.x and later),
    ``sd-metadata`` (2.x) and ``Dream`` (1.x command line)."""
    meta = _json(info.get("invokeai_metadata"))
    if isinstance(meta, dict):
        model, model_hash = _invoke_model(meta.get("model"))
        used = {"positive_prompt", "negative_prompt", "seed", "steps", "cfg_scale", "scheduler",
                "width", "height", "model", "strength"}
        return ImportedSettings(
            source="InvokeAI", prompt=str(meta.get("positive_prompt", "")),
            negative_prompt=str(meta.get("negative_prompt", "")),
            seed=_num(meta.get("seed"), int), steps=_num(meta.get("steps"), int),
            guidance=_num(meta.get("cfg_scale")), sampler=str(meta.get("scheduler", "")),
            width=_num(meta.get("width"), int), height=_num(meta.get("height"), int),
            model=model, model_hash=model_hash, strength=_num(meta.get("strength")),
            extra={k: v for k, v in meta.items() if k not in used})
    meta = _json(info.get("sd-metadata"))
    if isinstance(meta, dict) and isinstance(meta.get("image"), dict):
        image = meta["image"]
        prompt = image.get("prompt", "")
        if isinstance(prompt, list):
            prompt = " ".join(str(p.get("prompt", "")) for p in prompt if isinstance(p, dict))
        positive, negative = _split_brackets(str(prompt))
        return ImportedSettings(
            source="InvokeAI", prompt=positive, negative_prompt=negative,
            seed=_num(image.get("seed"), int), steps=_num(image.get("steps"), int),
            guidance=_num(image.get("cfg_scale")), sampler=str(image.get("sampler", "")),
            width=_num(image.get("width"), int), height=_num(image.get("height"), int),
            model=str(meta.get("model_weights", "")), model_hash=str(meta.get("model_hash", "")),
            strength=_num(image.get("strength")) if image.get("type") == "img2img" else None,
            extra={k: v for k, v in meta.items() if k != "image"})
    if info.get("Dream"):
        return _parse_dream(info["Dream"])
    return None


_DREAM_OPTIONS = {"-s": "steps", "-S": "seed", "-W": "width", "-H": "height", "-C": "cfg_scale",
                  "-A": "sampler", "-f": "strength"}


def _parse_dream(text: str) -> ImportedSettings | None:
    try:
        words = shlex.split(text)
    except ValueError:
        return None
    if not words:
        return None
    options: dict[str, str] = {}
    for flag, value in zip(words[1:], words[2:], strict=False):
        if flag in _DREAM_OPTIONS:
            options[_DREAM_OPTIONS[flag]] = value
    positive, negative = _split_brackets(words[0])
    return ImportedSettings(
        source="InvokeAI", prompt=positive, negative_prompt=negative,
        seed=_num(options.get("seed"), int), steps=_num(options.get("steps"), int),
        guidance=_num(options.get("cfg_scale")), sampler=options.get("sampler", ""),
        width=_num(options.get("width"), int), height=_num(options.get("height"), int),
        strength=_num(options.get("strength")), extra={"dream": text})


# -- Fooocus ---------------------------------------------------------------------------------
def parse_fooocus(info: Mapping[str, str]) -> ImportedSettings | None:
    """Settings from Fooocus: JSON ``parameters`` (its own scheme) or A1111 text."""
    text = info.get("parameters", "")
    meta = _json(text) if text.lstrip().startswith("{") else None
    if isinstance(meta, dict) and (meta.get("metadata_scheme") == "fooocus"
                                   or "fooocus" in str(meta.get("version", "")).lower()):
        size = re.findall(r"\d+", str(meta.get("resolution", "")))
        used = {"prompt", "negative_prompt", "seed", "steps", "guidance_scale", "sampler",
                "resolution", "base_model", "base_model_hash"}
        extra = {k: v for k, v in meta.items() if k not in used}
        extra["schedule"] = meta.get("scheduler", "")
        return ImportedSettings(
            source="Fooocus", prompt=str(meta.get("prompt", "")),
            negative_prompt=str(meta.get("negative_prompt", "")),
            seed=_num(meta.get("seed"), int), steps=_num(meta.get("steps"), int),
            guidance=_num(meta.get("guidance_scale")), sampler=str(meta.get("sampler", "")),
            width=int(size[0]) if len(size) == 2 else None,
            height=int(size[1]) if len(size) == 2 else None,
            model=str(meta.get("base_model", "")), model_hash=str(meta.get("base_model_hash", "")),
            extra=extra)
    if text and "Version: Fooocus" in text:
        return parse_a1111_parameters(text, source="Fooocus")
    return None


# -- NovelAI ---------------------------------------------------------------------------------
def parse_novelai(info: Mapping[str, str]) -> ImportedSettings | None:
    """Settings from NovelAI: prompt in ``Description``, the rest as JSON in ``Comment``."""
    comment = _json(info.get("Comment"))
    if not isinstance(comment, dict) or (info.get("Software") != "NovelAI" and "uc" not in comment):
        return None
    used = {"steps", "sampler", "seed", "scale", "uc", "width", "height", "prompt"}
    extra = {k: v for k, v in comment.items() if k not in used}
    extra.update({k: info[k] for k in ("Source", "Software", "Title") if k in info})
    return ImportedSettings(
        source="NovelAI", prompt=str(info.get("Description", comment.get("prompt", ""))),
        negative_prompt=str(comment.get("uc", "")), seed=_num(comment.get("seed"), int),
        steps=_num(comment.get("steps"), int), guidance=_num(comment.get("scale")),
        sampler=str(comment.get("sampler", "")), width=_num(comment.get("width"), int),
        height=_num(comment.get("height"), int), extra=extra)


def parse_foreign(info: Mapping[str, str]) -> ImportedSettings | None:
    """Settings from whichever tool's text chunks ``info`` holds, or ``None``."""
    for parse in (parse_fooocus, parse_comfyui, parse_invokeai, parse_novelai):
        settings = parse(info)
        if settings is not None:
            return settings
    text = info.get("parameters", "")
    return parse_a1111_parameters(text) if text.strip() else None
