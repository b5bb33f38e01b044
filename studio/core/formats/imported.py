"""``ImportedSettings``: the generation settings found in an image, whoever made it.

Values come from files anyone can edit, so they are checked here, at the boundary: a NaN
guidance, ten million steps or a 10^6-pixel side is dropped and reported as unreadable,
never passed on to a request.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from studio.core.jobs.request import EDIT_STRENGTH, MAX_SIDE, GenerationRequest
from studio.core.samplers import to_scheduler

#: The fields an import restores, in the order they are reported.
FIELDS = ("prompt", "negative_prompt", "seed", "steps", "guidance", "sampler", "width",
          "height", "model")
#: The user's words for the fields, as the one-line "could not read" message says them.
FIELD_LABELS = {"prompt": "prompt", "negative_prompt": "negative prompt", "seed": "seed",
                "steps": "steps", "guidance": "CFG", "sampler": "sampler", "width": "size",
                "height": "size", "model": "model", "strength": "strength"}
#: Limits of plausible values in a file (wider than ours: other tools allow more).
MAX_STEPS = 1000
MAX_GUIDANCE = 100.0
MAX_FILE_SIDE = 16384
MIN_FILE_SIDE = 16  # below this a "size" is a crop or a thumbnail, not what was generated
MAX_SEED = 2**64
#: JSON nested deeper than this is refused: no tool writes it, and it is how a file
#: crashes a reader (a "nesting bomb").
MAX_JSON_DEPTH = 64


class MetadataTooDeepError(ValueError):
    """A metadata text nests JSON deeper than ``MAX_JSON_DEPTH``."""


@dataclass(frozen=True)
class ImportedSettings:
    """Settings read from an image's metadata.

    Values are as the tool wrote them; a field is ``None`` (or ``""`` for text) when the file
    does not hold it or holds a value no tool could have used (those are listed in
    ``dropped``). ``scheduler`` is our name for ``sampler`` with ``schedule`` when we know one.
    ``request`` is the exact ``GenerationRequest`` when the image was made by Latent Studio.

    Attributes
    ----------
    source
        The tool that wrote the metadata: ``"Latent Studio"``, ``"AUTOMATIC1111"``,
        ``"Forge"``, ``"SD.Next"``, ``"ComfyUI"``, ``"Civitai"``, ``"SwarmUI"``,
        ``"InvokeAI"``, ``"Fooocus"``, ``"RuinedFooocus"``, ``"NovelAI"``, ``"Draw Things"``,
        ``"Hugging Face Space"``.
    schedule
        The tool's separate noise schedule (ComfyUI ``karras``, A1111 ``Schedule type``).
    task
        ``"txt2img"``, ``"img2img"`` or ``"inpaint"``, as far as the file tells; ``"edit"``
        for our edit with words (an edit model's image to image, no strength used).
    dropped
        Fields the file held with impossible values (NaN guidance, absurd sizes).
    extra
        Everything else the tool recorded, by the tool's own names.
    """

    source: str
    prompt: str = ""
    negative_prompt: str = ""
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    sampler: str = ""
    width: int | None = None
    height: int | None = None
    model: str = ""
    model_hash: str = ""
    strength: float | None = None
    schedule: str = ""
    task: str = "txt2img"
    dropped: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    request: GenerationRequest | None = None

    def __post_init__(self) -> None:
        dropped = list(self.dropped)
        for name, value in _invalid_fields(self).items():
            object.__setattr__(self, name, value)
            if name not in dropped:
                dropped.append(name)
        if not self.schedule and isinstance(self.extra.get("schedule"), str):
            object.__setattr__(self, "schedule", self.extra["schedule"])
        object.__setattr__(self, "dropped", tuple(dropped))

    @property
    def scheduler(self) -> str | None:
        """Our scheduler name for ``sampler``, or ``None`` when there is no equivalent."""
        if self.request is not None:
            return self.request.scheduler
        return to_scheduler(self.sampler, self.schedule) if self.sampler else None

    @property
    def read(self) -> tuple[str, ...]:
        """The fields of ``FIELDS`` this file gave a usable value for."""
        return tuple(n for n in FIELDS if getattr(self, n) not in (None, ""))

    @property
    def unread(self) -> tuple[str, ...]:
        """The fields an import cannot restore from this file (the negative prompt is left
        out: most tools write none when it is empty)."""
        return tuple(n for n in FIELDS if n != "negative_prompt" and n not in self.read)

    @property
    def unread_message(self) -> str:
        """One line naming what could not be read, or ``""``."""
        labels = dict.fromkeys(FIELD_LABELS[n] for n in self.unread)
        if self.sampler and self.scheduler is None:
            labels[f"sampler {self.sampler!r} (no equivalent here)"] = None
        return f"could not read: {', '.join(labels)}" if labels else ""

    def to_request(self, base: GenerationRequest | None = None) -> GenerationRequest:
        """A text-to-image request with the fields read over ``base`` (or the defaults).

        Fields the file does not hold keep ``base``'s values, and so do the prompts when the
        file's are empty. Sizes are rounded to multiples of 8 within our limits and seeds wider
        than 32 bits are folded into range, since other tools' noise differs from ours anyway.
        """
        if self.request is not None:
            return self.request
        req = base or GenerationRequest(prompt="")
        changes: dict[str, Any] = {"task": "txt2img", "init_image": None, "mask": None}
        if self.prompt.strip():
            changes["prompt"] = self.prompt
        if self.negative_prompt.strip():
            changes["negative_prompt"] = self.negative_prompt
        if self.seed is not None:
            changes["seed"] = int(self.seed) % 2**32
        if self.steps is not None:
            changes["steps"] = int(self.steps)
        if self.guidance is not None:
            changes["guidance"] = float(self.guidance)
        if self.strength is not None:
            changes["strength"] = float(self.strength)
        if self.scheduler:
            changes["scheduler"] = self.scheduler
        if self.width and self.height:
            changes["width"] = min(max(8, round(self.width / 8) * 8), MAX_SIDE)
            changes["height"] = min(max(8, round(self.height / 8) * 8), MAX_SIDE)
        if self.model:
            changes["model"] = self.model
            changes["model_hash"] = self.model_hash
        return req.replace(**changes)

    def changes(self, base: GenerationRequest | None = None) -> dict[str, Any]:
        """The request fields an import sets over ``base``: only those read, the prompts
        only when not empty, in ``GenerationRequest`` terms (rounded, within our limits)."""
        req = self.to_request(base)
        if self.request is not None:
            names = ["prompt", "negative_prompt", "seed", "steps", "guidance", "scheduler",
                     "width", "height", "model", "strength"]
            made = {n: getattr(req, n) for n in names}
            if self.task == "edit":  # edit with words: a Strength below 1 is the edit mode
                made["strength"] = EDIT_STRENGTH
            elif req.task == "txt2img":  # a new image: Strength 1, or the next run refines
                made["strength"] = 1.0
            return made
        out: dict[str, Any] = {}
        for name in ("prompt", "negative_prompt"):
            if getattr(self, name).strip():
                out[name] = getattr(req, name)
        for name in ("seed", "steps", "guidance", "strength"):
            if getattr(self, name) is not None:
                out[name] = getattr(req, name)
        if self.scheduler:
            out["scheduler"] = req.scheduler
        if self.width and self.height:
            out["width"], out["height"] = req.width, req.height
        if self.task == "txt2img" and self.strength is None and (self.prompt.strip()
                                                                 or "task" in self.read):
            # issue 29: a text-to-image file; the next run must not refine the canvas
            out["strength"] = 1.0
        return out

    def fields(self) -> dict[str, Any]:
        """The fields read, by name (for ``studio info --json`` and scripts)."""
        out: dict[str, Any] = {n: getattr(self, n) for n in self.read}
        if self.negative_prompt:
            out["negative_prompt"] = self.negative_prompt
        for name in ("model_hash", "strength", "schedule"):
            if getattr(self, name) not in (None, ""):
                out[name] = getattr(self, name)
        if self.scheduler:
            out["scheduler"] = self.scheduler
        return out


def _finite(value: float | None, low: float, high: float) -> bool:
    return value is None or (math.isfinite(value) and low <= value <= high)


def _invalid_fields(s: ImportedSettings) -> dict[str, Any]:
    """Field -> the empty value that replaces it, for every implausible value in ``s``."""
    bad: dict[str, Any] = {}
    if s.seed is not None and not 0 <= s.seed < MAX_SEED:
        bad["seed"] = None
    if s.steps is not None and not 1 <= s.steps <= MAX_STEPS:
        bad["steps"] = None
    if not _finite(s.guidance, 0.0, MAX_GUIDANCE):
        bad["guidance"] = None
    if not _finite(s.strength, 0.0, 1.0):
        bad["strength"] = None
    sides = (s.width, s.height)
    if any(v is not None for v in sides) and not all(
            v is not None and MIN_FILE_SIDE <= v <= MAX_FILE_SIDE for v in sides):
        bad["width"] = bad["height"] = None
    for name in ("prompt", "negative_prompt"):
        if looks_like_json(getattr(s, name)):
            bad[name] = ""  # a graph or a settings object is never a prompt
    return bad


_JSON_START = re.compile(r"\s*[\[{]\s*[\"\[{\]}]")


def looks_like_json(text: str) -> bool:
    """Whether ``text`` is a JSON object or array (not a prompt that starts with "[")."""
    return bool(text) and bool(_JSON_START.match(text)) and json_or_none(text) is not None


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')


def json_depth(text: str) -> int:
    """How deep ``text``'s brackets nest (outside JSON strings), in one linear pass."""
    depth = deepest = 0
    for bracket in re.finditer(r"[\[\]{}]", _STRINGS.sub("", text)):
        depth += 1 if bracket[0] in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def json_or_none(text: str | None) -> Any:
    """``json.loads(text)``, or ``None`` for empty or invalid text (metadata is often broken).

    Raises
    ------
    MetadataTooDeepError
        When the text nests deeper than ``MAX_JSON_DEPTH``.
    """
    if not text or text.lstrip()[:1] not in ("{", "["):
        return None
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and json_depth(text) > MAX_JSON_DEPTH:
        raise MetadataTooDeepError("the metadata nests JSON too deeply to be read")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def number_or_none(value: Any, kind: Callable[[Any], Any] = float) -> Any:
    """``kind(value)``, or ``None`` when the value is missing or not a number.

    Integers are read exactly (a 64-bit seed as text stays exact); ``True``/``False`` are not
    numbers.
    """
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        if kind is int:
            if isinstance(value, float):
                return int(value) if value.is_integer() else None
            text = str(value).strip()
            return int(text) if re.fullmatch(r"[-+]?\d{1,40}", text) else int(float(text))
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        return None
