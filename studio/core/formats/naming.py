"""File names for batch export, from a template such as ``"{date}_{index:03}_{seed}_{prompt}"``.

Names are safe on Windows, macOS and Linux: no path separators or reserved characters, no
control characters, no trailing dots or spaces, no reserved device names (``CON``, ``NUL``,
``COM1`` ...), at most ``MAX_STEM_BYTES`` bytes of UTF-8, and unique in their folder.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path, PurePath
from typing import Any

from studio.core.errors import StudioError
from studio.core.jobs.request import GenerationRequest

DEFAULT_TEMPLATE = "{date}_{index:03}_{seed}_{prompt}"
FIELDS = ("seed", "prompt", "negative", "model", "index", "date", "time", "steps", "guidance",
          "sampler", "width", "height", "task")
MAX_STEM_BYTES = 150  # leaves room for a folder path, a "-12" counter and an extension
PROMPT_LENGTH = 60

_FIELD = re.compile(r"\{(\w*)(?::([^{}]*))?\}")
_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]+')
_PROMPT_JUNK = re.compile(r"<lora:[^>]*>|[^\w\s\-.,]+")
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$", re.IGNORECASE)


class FileNameTemplateError(StudioError):
    """The batch export file name template cannot be used."""

    kind = "file-name-template"


def _truncate_bytes(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8")[:max_bytes]
    return data.decode("utf-8", errors="ignore")


def sanitize_file_name(text: str, max_bytes: int = MAX_STEM_BYTES) -> str:
    """``text`` made into a file name (without folder) that every common system accepts."""
    name = unicodedata.normalize("NFC", text)
    name = re.sub(r"\s+", " ", name).strip()
    name = _UNSAFE.sub("_", name)
    name = _truncate_bytes(name, max_bytes).rstrip(". ")
    name = name.lstrip(" ")
    if not name or set(name) <= {"."}:
        return "image"
    if _RESERVED.match(name):
        name = "_" + name
    return name


def _prompt_slug(prompt: str, length: int) -> str:
    words = _PROMPT_JUNK.sub(" ", prompt).replace(",", " ").split()
    slug = "_".join(words)
    return slug[:length].rstrip("_-.") if length > 0 else slug


def _model_name(model: str) -> str:
    name = PurePath(model.replace("\\", "/")).name or model
    return re.sub(r"\.(safetensors|ckpt|pt|bin|gguf)$", "", name, flags=re.IGNORECASE)


def _values(request: GenerationRequest | None, index: int, when: datetime,
            prompt_length: int) -> dict[str, Any]:
    values: dict[str, Any] = {"index": index, "date": when.strftime("%Y-%m-%d"),
                              "time": when.strftime("%H%M%S")}
    if request is not None:
        values.update(
            seed=request.seed, prompt=_prompt_slug(request.prompt, prompt_length),
            negative=_prompt_slug(request.negative_prompt, prompt_length),
            model=_model_name(request.model), steps=request.steps,
            guidance=f"{request.guidance:g}", sampler=request.scheduler.replace(" ", "_"),
            width=request.width, height=request.height, task=request.task)
    return values


def format_file_name(template: str, request: GenerationRequest | None = None, *, index: int = 0,
                     when: datetime | None = None, prompt_length: int = PROMPT_LENGTH) -> str:
    """The file name stem for one image (no extension, no uniqueness check).

    Parameters
    ----------
    template
        Text with fields ``{seed}``, ``{prompt}``, ``{negative}``, ``{model}``, ``{index}``,
        ``{date}`` (2026-01-31), ``{time}`` (143005), ``{steps}``, ``{guidance}``,
        ``{sampler}``, ``{width}``, ``{height}``, ``{task}``. Numbers take a format spec,
        ``{index:04}``; ``{prompt:30}`` keeps 30 characters of the prompt.
    request
        The image's request; its fields are empty without one.

    Raises
    ------
    FileNameTemplateError
        An unknown field or a bad format spec, naming the field.
    """
    values = _values(request, index, when or datetime.now(), prompt_length)

    def field(match: re.Match[str]) -> str:
        name, spec = match[1], match[2] or ""
        if name not in FIELDS:
            raise FileNameTemplateError(
                f"Unknown field {{{name}}} in the file name template; use one of "
                + ", ".join("{" + f + "}" for f in FIELDS) + ".")
        value = values.get(name, "")
        if name in ("prompt", "negative") and spec:
            if not spec.isdigit():
                raise FileNameTemplateError(f"{{{name}:{spec}}}: give a length, like {{{name}:30}}.")
            return str(value)[: int(spec)].rstrip("_-.")
        try:
            return format(value, spec)
        except (ValueError, TypeError):
            raise FileNameTemplateError(
                f"{{{name}:{spec}}} is not a valid format in the file name template.") from None

    return sanitize_file_name(_FIELD.sub(field, template))


def unique_path(folder: str | os.PathLike[str], stem: str, suffix: str, *,
                taken: Iterable[str] = ()) -> Path:
    """``folder/stem+suffix``, or ``stem-2``, ``stem-3`` ... when that name is in use.

    Names are compared without regard to case, as Windows and macOS do, against the files in
    ``folder`` and against ``taken`` (names chosen for a batch that is not written yet).
    """
    base = Path(folder)
    used = {name.lower() for name in taken}
    if base.is_dir():
        used |= {p.name.lower() for p in base.iterdir()}
    candidate, n = f"{stem}{suffix}", 1
    while candidate.lower() in used:
        n += 1
        tail = f"-{n}"
        candidate = f"{_truncate_bytes(stem, MAX_STEM_BYTES - len(tail))}{tail}{suffix}"
    return base / candidate


def batch_paths(folder: str | os.PathLike[str], requests: Sequence[GenerationRequest], *,
                template: str = DEFAULT_TEMPLATE, suffix: str = ".png",
                when: datetime | None = None, start_index: int = 1) -> list[Path]:
    """Unique paths in ``folder`` for a batch of images, one per request, in order."""
    when = when or datetime.now()
    taken: list[str] = []
    out = []
    for i, request in enumerate(requests, start=start_index):
        stem = format_file_name(template, request, index=i, when=when)
        path = unique_path(folder, stem, suffix, taken=taken)
        taken.append(path.name)
        out.append(path)
    return out
