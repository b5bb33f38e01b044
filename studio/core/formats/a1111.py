"""The AUTOMATIC1111 "parameters" text: the de facto standard other tools read and write.

The format::

    <prompt, possibly several lines>
    Negative prompt: <negative prompt, possibly several lines>
    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Model: name, ...

Values holding a comma, a colon or a newline are JSON-quoted, as A1111 does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import PurePath, PureWindowsPath
from typing import Any

from studio.core.formats.imported import ImportedSettings
from studio.core.jobs.request import GenerationRequest
from studio.core.samplers import split_schedule

_NEGATIVE = "Negative prompt:"
# One "Key: value" pair; the value is either JSON-quoted or runs to the next comma.
_PARAM = re.compile(r'\s*(\w[\w \-/+]*):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")
_LORA_TAG = re.compile(r"<lora:([^:>]+):([-+0-9.eE]+)(?::[^>]*)?>")
_MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin", ".gguf")


def _number(value: float) -> str:
    """``7.0`` -> ``"7"``, ``0.75`` -> ``"0.75"``: the shortest text that reads back the same."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _quote(value: Any) -> str:
    text = str(value)
    if "," in text or ":" in text or "\n" in text or text.startswith('"'):
        return json.dumps(text, ensure_ascii=False)
    return text


def _model_name(model: str) -> str:
    """A1111 names a checkpoint by its file name without extension; hub ids stay as they are."""
    if model.lower().endswith(_MODEL_SUFFIXES):
        name = PureWindowsPath(model).name if "\\" in model else PurePath(model).name
        return name.rsplit(".", 1)[0]
    return model


def _lora_name(path: str, name: str) -> str:
    return name or _model_name(path.replace("\\", "/").rsplit("/", 1)[-1] or path)


def lora_hash(path: str | os.PathLike[str]) -> str:
    """A1111's short hash of a LoRA ``.safetensors`` file, or ``""`` if it cannot be read.

    As A1111 computes it (the "addnet" hash): SHA-256 of the tensor data after the JSON header,
    first 12 hex digits. Civitai uses it to find the LoRA.
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            header = int.from_bytes(f.read(8), "little")
            f.seek(8 + header)
            for block in iter(lambda: f.read(1024 * 1024), b""):
                digest.update(block)
    except (OSError, ValueError, OverflowError):
        return ""
    return digest.hexdigest()[:12]


def a1111_parameters(request: GenerationRequest, *,
                     lora_hashes: Mapping[str, str] | None = None) -> str:
    """The A1111 "parameters" text for ``request``, as shown by A1111's PNG Info.

    LoRAs are written as ``<lora:name:weight>`` tags at the end of the prompt (A1111 keeps them
    in the prompt too) and, given ``lora_hashes`` (name -> ``lora_hash``), as A1111's
    ``Lora hashes`` entry. Our scheduler "DPM++ 2M Karras" is written as
    ``Sampler: DPM++ 2M, Schedule type: Karras`` (A1111 1.9 and later).
    """
    prompt = request.prompt
    for lora in request.loras:
        tag = f"<lora:{_lora_name(lora.path, lora.name)}:{_number(lora.weight)}>"
        if tag not in prompt:
            prompt = f"{prompt} {tag}" if prompt else tag
    sampler, schedule = split_schedule(request.scheduler)
    params: dict[str, Any] = {
        "Steps": request.steps,
        "Sampler": sampler,
        "Schedule type": schedule or None,
        "CFG scale": _number(request.guidance),
        "Seed": request.seed,
        "Size": f"{request.width}x{request.height}",
        "Model hash": request.model_hash[:10] or None,
        "Model": _model_name(request.model) or None,
    }
    if request.variation_seed is not None and request.variation_strength > 0:
        params["Variation seed"] = request.variation_seed
        params["Variation seed strength"] = _number(request.variation_strength)
    if request.task != "txt2img":
        params["Denoising strength"] = _number(request.strength)
    if request.clip_skip > 1:
        params["Clip skip"] = request.clip_skip
    names = [_lora_name(lora.path, lora.name) for lora in request.loras]
    hashes = [f"{name}: {lora_hashes[name]}" for name in names
              if lora_hashes and lora_hashes.get(name)]
    if hashes:
        params["Lora hashes"] = ", ".join(hashes)
    lines = [prompt]
    if request.negative_prompt:
        lines.append(f"{_NEGATIVE} {request.negative_prompt}")
    lines.append(", ".join(f"{k}: {_quote(v)}" for k, v in params.items() if v is not None))
    return "\n".join(lines).strip()  # as A1111 does, so an empty prompt leaves no blank line


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) > 1 and value[0] == '"' and value[-1] == '"':
        try:
            return str(json.loads(value))
        except ValueError:
            pass
    return value


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _float(value: Any) -> float | None:
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def parse_a1111_parameters(text: str, source: str = "AUTOMATIC1111") -> ImportedSettings:
    """Read an A1111 "parameters" text back into settings.

    Keys we do not map (hires fix, ADetailer, ...) stay in ``extra`` by their A1111 names;
    LoRA tags stay in the prompt and are also listed in ``extra["loras"]`` as
    ``(name, weight)`` pairs.
    """
    lines = text.strip().replace("\r\n", "\n").split("\n")
    params: dict[str, str] = {}
    if lines and len(_PARAM.findall(lines[-1])) >= 3:
        params = {k.strip(): _unquote(v) for k, v in _PARAM.findall(lines.pop())}
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        if line.startswith(_NEGATIVE) and not negative:
            negative.append(line[len(_NEGATIVE):].lstrip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    settings: dict[str, Any] = {"prompt": "\n".join(prompt).strip(),
                                "negative_prompt": "\n".join(negative).strip()}
    extra: dict[str, Any] = {}
    size = _SIZE.match(params.get("Size", ""))
    if size:
        settings["width"], settings["height"] = int(size[1]), int(size[2])
    settings["seed"] = _int(params.get("Seed", ""))
    settings["steps"] = _int(params.get("Steps", ""))
    settings["guidance"] = _float(params.get("CFG scale", ""))
    settings["strength"] = _float(params.get("Denoising strength", ""))
    settings["sampler"] = params.get("Sampler", "")
    settings["model"] = params.get("Model", "")
    settings["model_hash"] = params.get("Model hash", "")
    if params.get("Schedule type"):
        extra["schedule"] = params["Schedule type"]
    used = {"Size", "Seed", "Steps", "CFG scale", "Denoising strength", "Sampler", "Model",
            "Model hash", "Schedule type"}
    extra.update({k: v for k, v in params.items() if k not in used})
    loras = [(name, float(weight)) for name, weight in _LORA_TAG.findall(settings["prompt"])]
    if loras:
        extra["loras"] = loras
    return ImportedSettings(source=source, extra=extra, **settings)
