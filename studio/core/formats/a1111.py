"""The AUTOMATIC1111 "parameters" text: the de facto standard other tools read and write.

The format::

    <prompt, possibly several lines>
    Negative prompt: <negative prompt, possibly several lines>
    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Model: name, ...

Values holding a comma, a colon or a newline are JSON-quoted, as A1111 does.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import PurePath, PureWindowsPath
from typing import Any

from studio.core.control import a1111_control_fields, read_a1111_controls
from studio.core.formats.imported import ImportedSettings
from studio.core.formats.imported import number_or_none as _num
from studio.core.jobs.request import GenerationRequest
from studio.core.samplers import split_schedule

_NEGATIVE = "Negative prompt:"
# The key of one "Key: value" pair, bounded so that a long line is read in linear time.
_KEY = re.compile(r"\s*(\w[\w \-/+().]{0,63}?):\s*")
_QUOTE_OR_ESCAPE = re.compile(r'\\.|"')
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
    if request.is_edit:  # edit with words: the prompt is the instruction, no strength used
        params["Task"] = "edit"
    elif request.task != "txt2img":
        params["Denoising strength"] = _number(request.strength)
    if request.clip_skip > 1:
        params["Clip skip"] = request.clip_skip
    names = [_lora_name(lora.path, lora.name) for lora in request.loras]
    hashes = [f"{name}: {lora_hashes[name]}" for name in names
              if lora_hashes and lora_hashes.get(name)]
    if hashes:
        params["Lora hashes"] = ", ".join(hashes)
    params.update(a1111_control_fields(request.controls))  # "ControlNet 0: Module: ..."
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
    return _num(value, int)


def _float(value: Any) -> float | None:
    return _num(value, float)


def _quotes(line: str) -> list[int]:
    """Positions of the double quotes in ``line`` that no backslash escapes, in one pass."""
    return [m.start() for m in _QUOTE_OR_ESCAPE.finditer(line) if m[0] == '"']


def split_parameters(line: str) -> dict[str, str]:
    """The ``Key: value, Key: value`` pairs of A1111's last line, by key as written.

    Linear in the line's length whatever it holds (a 100 KB line without commas or with
    unclosed quotes included): keys are short, and each quote is looked up, not searched for.
    """
    params: dict[str, str] = {}
    quotes = _quotes(line)
    pos, size = 0, len(line)
    while pos < size:
        key = _KEY.match(line, pos)
        comma = line.find(",", pos)
        if key is None:
            if comma < 0:
                break
            pos = comma + 1
            continue
        start = key.end()
        value_end = comma if comma >= 0 else size
        if line.startswith('"', start):
            after = bisect.bisect_right(quotes, start)
            if after < len(quotes):
                close = quotes[after]
                tail = line.find(",", close)
                if not line[close + 1:tail if tail >= 0 else size].strip():
                    value_end = tail if tail >= 0 else size
        params[key[1].strip()] = _unquote(line[start:value_end])
        pos = value_end + 1
    return params


def _tool(params: dict[str, str], default: str) -> str:
    """Which A1111-family tool wrote the text, by the keys and versions only it writes."""
    low = {k.lower(): v for k, v in params.items()}
    version = low.get("version", "")
    if "civitai resources" in low or "civitai metadata" in low:
        return "Civitai"
    if low.get("app", "").lower().replace(" ", "") == "sd.next":
        return "SD.Next"
    if re.match(r"f\d", version):
        return "Forge"
    if version.lower().startswith("comfyui"):
        return "ComfyUI"
    return default


def parse_a1111_parameters(text: str, source: str = "AUTOMATIC1111") -> ImportedSettings:
    """Read an A1111 "parameters" text back into settings.

    Keys are matched whatever their case (``CFG Scale`` as well as ``CFG scale``). Keys we do
    not map (hires fix, ADetailer, ...) stay in ``extra`` by their own names; LoRA tags stay in
    the prompt and are also listed in ``extra["loras"]`` as ``(name, weight)`` pairs. A
    ``Denoising strength`` written beside a hires pass is that pass's, not the image's.
    """
    lines = text.strip().replace("\r\n", "\n").split("\n")
    params: dict[str, str] = {}
    if lines:
        last = split_parameters(lines[-1])
        if len(last) >= 3 or (len(last) >= 2 and len(lines) > 1):
            params = last
            lines.pop()
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        if line.startswith(_NEGATIVE) and not negative:
            negative.append(line[len(_NEGATIVE):].lstrip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    low = {k.lower(): v for k, v in params.items()}
    settings: dict[str, Any] = {"prompt": "\n".join(prompt).strip(),
                                "negative_prompt": "\n".join(negative).strip()}
    size = _SIZE.match(low.get("size", ""))
    if size:
        settings["width"], settings["height"] = int(size[1]), int(size[2])
    settings["seed"] = _int(low.get("seed"))
    settings["steps"] = _int(low.get("steps"))
    settings["guidance"] = _float(low.get("cfg scale"))
    settings["sampler"] = low.get("sampler", "")
    settings["schedule"] = low.get("schedule type", "")
    settings["model"] = low.get("model", "")
    settings["model_hash"] = low.get("model hash", "")
    hires = any(k.startswith("hires ") for k in low)
    if "denoising strength" in low and not hires:
        settings["strength"] = _float(low["denoising strength"])
        settings["task"] = "inpaint" if "mask blur" in low else "img2img"
    used = {"size", "seed", "steps", "cfg scale", "sampler", "model", "model hash",
            "schedule type"} | (set() if hires else {"denoising strength"})
    extra: dict[str, Any] = {k: v for k, v in params.items() if k.lower() not in used}
    if settings["schedule"]:
        extra["schedule"] = settings["schedule"]
    loras = [(name, float(weight)) for name, weight in _LORA_TAG.findall(settings["prompt"])]
    if loras:
        extra["loras"] = loras
    controls = read_a1111_controls(params)  # kind, model, strength, start, end each
    if controls:
        extra["controls"] = controls
    return ImportedSettings(source=_tool(params, source), extra=extra, **settings)
