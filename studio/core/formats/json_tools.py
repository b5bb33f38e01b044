"""Settings that tools write as one JSON object: SwarmUI, RuinedFooocus, Draw Things,
Hugging Face Spaces (diffusers apps) and the Civitai generator.

Each spells the same settings its own way (``cfgscale``, ``cfg``, ``scale``,
``guidance_scale``; ``negativeprompt``, ``Negative``, ``uc``); ``settings_from_json`` reads
any of these spellings, matched whatever their case, spaces and underscores.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from studio.core.formats.comfyui import parse_comfy_graph
from studio.core.formats.imported import ImportedSettings
from studio.core.formats.imported import json_or_none as _json
from studio.core.formats.imported import number_or_none as _num

# Our field -> the tools' spellings, normalised (lower case, no spaces, "_" or "-").
_SPELLINGS: dict[str, tuple[str, ...]] = {
    "prompt": ("prompt", "positiveprompt", "positive", "c"),
    "negative_prompt": ("negativeprompt", "negative", "uc"),
    "seed": ("seed", "noiseseed"),
    "steps": ("steps", "numinferencesteps", "samplingsteps"),
    "guidance": ("cfgscale", "cfg", "guidancescale", "scale", "guidance"),
    "sampler": ("samplername", "sampler", "sampler_name"),
    "schedule": ("scheduler", "scheduletype", "schedule"),
    "width": ("width",),
    "height": ("height",),
    "size": ("size", "resolution", "dimensions"),
    "model": ("model", "basemodelname", "basemodel", "modelname", "checkpoint", "ckpt"),
    "model_hash": ("modelhash", "basemodelhash"),
    "strength": ("strength", "denoisingstrength", "initimagecreativity", "denoise"),
}
_SIZE = re.compile(r"^\D*(\d+)\s*[x×*,]\s*(\d+)")


def _normal(key: str) -> str:
    return re.sub(r"[\s_\-]", "", key.lower())


def _lookup(data: Mapping[str, Any], field: str) -> Any:
    keys = {_normal(str(k)): v for k, v in data.items()}
    return next((keys[k] for k in _SPELLINGS[field] if keys.get(k) not in (None, "")), None)


def settings_from_json(data: Mapping[str, Any], source: str, *,
                       extra: dict[str, Any] | None = None) -> ImportedSettings:
    """Settings from a flat JSON object in any of the spellings above."""
    values = {f: _lookup(data, f) for f in _SPELLINGS}
    width, height = _num(values["width"], int), _num(values["height"], int)
    size = _SIZE.match(str(values["size"] or ""))
    if width is None and size:
        width, height = int(size[1]), int(size[2])
    model, model_hash = values["model"], values["model_hash"]
    if isinstance(model, Mapping):  # e.g. {"Model": "Animagine XL 3.1", "Model hash": "e3c4"}
        model_hash = model_hash or _lookup(model, "model_hash")
        model = _lookup(model, "model")
    strength = _num(values["strength"])
    task = "img2img" if strength is not None and strength < 1 else "txt2img"
    used = {k for k in data if any(_normal(str(k)) in s for s in _SPELLINGS.values())}
    return ImportedSettings(
        source=source, prompt=_text(values["prompt"]), negative_prompt=_text(values["negative_prompt"]),
        seed=_num(values["seed"], int), steps=_num(values["steps"], int),
        guidance=_num(values["guidance"]), sampler=_text(values["sampler"]),
        schedule=_text(values["schedule"]), width=width, height=height, model=_text(model),
        model_hash=_text(model_hash), strength=strength if task != "txt2img" else None,
        task=task, extra={**{k: v for k, v in data.items() if k not in used}, **(extra or {})})


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


# -- the tools ---------------------------------------------------------------------------
def parse_swarmui(data: Any) -> ImportedSettings | None:
    """SwarmUI: ``{"sui_image_params": {...}, "sui_extra_data": {...}, "sui_models": [...]}``."""
    if not isinstance(data, dict) or not isinstance(data.get("sui_image_params"), dict):
        return None
    extra = {k: v for k, v in data.items() if k != "sui_image_params"}
    return settings_from_json(data["sui_image_params"], "SwarmUI", extra=extra)


def parse_ruined_fooocus(data: Any) -> ImportedSettings | None:
    """RuinedFooocus: flat JSON in ``parameters`` with ``"software": "RuinedFooocus"``."""
    if not isinstance(data, dict) or str(data.get("software", "")) != "RuinedFooocus":
        return None
    return settings_from_json(data, "RuinedFooocus")


def parse_draw_things(data: Any, creator: str = "") -> ImportedSettings | None:
    """Draw Things: JSON (``c`` prompt, ``uc`` negative, ``size``) in XMP ``exif:UserComment``."""
    if not isinstance(data, dict) or not ("c" in data or "Draw Things" in creator):
        return None
    return settings_from_json(data, "Draw Things")


def parse_hf_space(data: Any) -> ImportedSettings | None:
    """A diffusers app (most Hugging Face Spaces): ``num_inference_steps``, ``guidance_scale``,
    a ``resolution`` text, the model as a nested object."""
    if not isinstance(data, dict):
        return None
    keys = {_normal(str(k)) for k in data}
    if not keys & {"numinferencesteps", "guidancescale", "resolution"} or "prompt" not in keys:
        return None
    return settings_from_json(data, "Hugging Face Space")


def parse_civitai(graph: Any, *, image_size: tuple[int, int] | None = None
                  ) -> ImportedSettings | None:
    """The Civitai generator: a ComfyUI API graph plus ``extra``, ``extraMetadata`` (JSON
    text with the prompt and settings) and a ``resource-stack`` of loader nodes."""
    if not isinstance(graph, dict) or not ({"extraMetadata", "resource-stack"} & graph.keys()):
        return None
    meta = graph.get("extraMetadata")
    meta = _json(meta) if isinstance(meta, str) else meta
    nodes = {k: v for k, v in graph.items() if k not in ("extra", "extraMetadata")}
    settings = parse_comfy_graph(nodes, source="Civitai", image_size=image_size)
    if not isinstance(meta, dict):
        return settings
    backup = settings_from_json(meta, "Civitai")
    fill = {f: getattr(backup, f) for f in ("prompt", "negative_prompt", "seed", "steps",
                                             "guidance", "sampler", "width", "height", "model")
            if getattr(settings, f) in (None, "") and getattr(backup, f) not in (None, "")}
    if not fill:
        return settings
    return dataclasses.replace(settings, **fill, extra={**settings.extra, "extraMetadata": meta})
