"""``ImportedSettings``: the generation settings found in an image, whoever made it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from studio.core.jobs.request import MAX_SIDE, GenerationRequest
from studio.core.samplers import to_scheduler


@dataclass(frozen=True)
class ImportedSettings:
    """Settings read from an image's metadata.

    Values are as the tool wrote them; a field is ``None`` (or ``""`` for text) when the file
    does not hold it. ``scheduler`` is our name for ``sampler`` when we know one.
    ``request`` is the exact ``GenerationRequest`` when the image was made by Latent Studio.

    Attributes
    ----------
    source
        The tool that wrote the metadata: ``"Latent Studio"``, ``"AUTOMATIC1111"``,
        ``"ComfyUI"``, ``"InvokeAI"``, ``"Fooocus"`` or ``"NovelAI"``.
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
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    request: GenerationRequest | None = None

    @property
    def scheduler(self) -> str | None:
        """Our scheduler name for ``sampler``, or ``None`` when there is no equivalent."""
        if self.request is not None:
            return self.request.scheduler
        return to_scheduler(self.sampler, str(self.extra.get("schedule", ""))) if self.sampler else None

    def to_request(self, base: GenerationRequest | None = None) -> GenerationRequest:
        """A text-to-image request with these settings over ``base`` (or the defaults).

        Sizes are rounded to multiples of 8 within our limits and seeds wider than 32 bits
        are folded into range, since other tools' noise differs from ours anyway.
        """
        if self.request is not None:
            return self.request
        req = base or GenerationRequest(prompt="")
        changes: dict[str, Any] = {"prompt": self.prompt, "negative_prompt": self.negative_prompt,
                                   "task": "txt2img", "init_image": None, "mask": None}
        if self.seed is not None:
            changes["seed"] = int(self.seed) % 2**32
        if self.steps is not None:
            changes["steps"] = min(max(int(self.steps), 1), 1000)
        if self.guidance is not None:
            changes["guidance"] = float(self.guidance)
        if self.scheduler:
            changes["scheduler"] = self.scheduler
        for name in ("width", "height"):
            value = getattr(self, name)
            if value:
                changes[name] = min(max(8, round(value / 8) * 8), MAX_SIDE)
        if self.model:
            changes["model"] = self.model
            changes["model_hash"] = self.model_hash
        return req.replace(**changes)


def json_or_none(text: str | None) -> Any:
    """``json.loads(text)``, or ``None`` for empty or invalid text (metadata is often broken)."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def number_or_none(value: Any, kind: Callable[[Any], Any] = float) -> Any:
    """``kind(value)``, or ``None`` when the value is missing or not a number."""
    try:
        return kind(value) if value is not None and value != "" else None
    except (TypeError, ValueError, OverflowError):
        return None
