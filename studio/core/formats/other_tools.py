"""Generation settings written by other tools: InvokeAI, Fooocus and NovelAI, and the
dispatch over every reader (``parse_foreign``).

Each reader takes the image's metadata texts (``key -> text``) and returns ``ImportedSettings``
or ``None`` when the texts are not that tool's. AUTOMATIC1111 text lives in ``a1111``,
ComfyUI graphs in ``comfyui``, single-JSON tools (SwarmUI, RuinedFooocus, Draw Things,
Hugging Face Spaces, Civitai) in ``json_tools``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

from studio.core.formats.a1111 import parse_a1111_parameters
from studio.core.formats.comfyui import parse_comfyui
from studio.core.formats.imported import ImportedSettings
from studio.core.formats.imported import json_or_none as _json
from studio.core.formats.imported import number_or_none as _num
from studio.core.formats.json_tools import (
    parse_civitai,
    parse_draw_things,
    parse_hf_space,
    parse_ruined_fooocus,
    parse_swarmui,
    settings_from_json,
)


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
    """Settings from NovelAI: prompt in ``Description``, the rest as JSON in ``Comment``.

    PNGs hold these as text chunks; NovelAI's WebP holds the same keys as one JSON object in
    the EXIF UserComment, which ``metadata`` spreads into ``info`` before this runs.
    """
    comment = _json(info.get("Comment"))
    if not isinstance(comment, dict) or (info.get("Software") != "NovelAI" and "uc" not in comment):
        return None
    used = {"steps", "sampler", "seed", "scale", "uc", "width", "height", "prompt",
            "noise_schedule", "strength"}
    extra = {k: v for k, v in comment.items() if k not in used}
    extra.update({k: info[k] for k in ("Source", "Software", "Title") if k in info})
    prompt = info.get("Description") or comment.get("prompt") or ""
    strength = _num(comment.get("strength"))
    img2img = strength is not None and strength < 1 and bool(comment.get("image"))
    return ImportedSettings(
        source="NovelAI", prompt=str(prompt), negative_prompt=str(comment.get("uc", "")),
        seed=_num(comment.get("seed"), int), steps=_num(comment.get("steps"), int),
        guidance=_num(comment.get("scale")), sampler=str(comment.get("sampler", "")),
        schedule=str(comment.get("noise_schedule", "") or ""),
        width=_num(comment.get("width"), int), height=_num(comment.get("height"), int),
        strength=strength if img2img else None, task="img2img" if img2img else "txt2img",
        extra=extra)


def _json_parameters(info: Mapping[str, str]) -> Any:
    text = info.get("parameters", "")
    return _json(text) if text.lstrip().startswith("{") else None


def parse_foreign(info: Mapping[str, str], *,
                  image_size: tuple[int, int] | None = None) -> ImportedSettings | None:
    """Settings from whichever tool's metadata ``info`` holds, or ``None``.

    The tools are told apart by what only they write; A1111's text is the last resort, and
    a JSON text nobody claims is never read as an A1111 prompt.
    """
    params = _json_parameters(info)
    for settings in (parse_swarmui(params), parse_ruined_fooocus(params),
                     parse_swarmui(_json(info.get("UserComment")))):
        if settings is not None:
            return settings
    for parse in (parse_fooocus, parse_novelai):
        if (settings := parse(info)) is not None:
            return settings
    graph = _json(info.get("prompt"))
    if (settings := parse_civitai(graph, image_size=image_size)) is not None:
        return settings
    if (settings := parse_comfyui(info, image_size=image_size)) is not None:
        return settings
    if (settings := parse_invokeai(info)) is not None:
        return settings
    draw_things = parse_draw_things(_json(info.get("xmp:UserComment")), info.get("xmp:CreatorTool", ""))
    if draw_things is not None:
        return draw_things
    if "Draw Things" in info.get("xmp:CreatorTool", "") and info.get("xmp:description"):
        return parse_a1111_parameters(info["xmp:description"], source="Draw Things")
    if isinstance(params, dict):
        return parse_hf_space(params) or settings_from_json(params, "unknown tool")
    text = info.get("parameters", "")
    return parse_a1111_parameters(text) if text.strip() else None
