"""One warning line when a request asks the embedded model for what it cannot draw.

The embedded ``studio-tiny`` diffusion model was trained on 64 x 64 procedural portraits
with captions from a small vocabulary (its model card lists it): another size gives noise,
and words outside the vocabulary are ignored (a portrait comes out). Big models know both,
so they are never warned about.
"""

from __future__ import annotations

import re
from typing import Any

# Words a prompt may hold that carry no meaning the model could miss.
_FILLER = frozenset({"a", "an", "the", "of", "with", "and", "on", "in", "at", "to", "very"})


def known_words() -> frozenset[str]:
    """The words of the embedded model's captions (hair colours, glasses, backgrounds...)."""
    from studio.core.portraits.render import caption_vocabulary

    return frozenset(caption_vocabulary()[-1].split())


def what_it_knows() -> str:
    from studio.core.portraits.attributes import BACKGROUNDS, GLASSES, HAIR_COLOURS, SKIN_TONES

    return (f"hair {'/'.join(HAIR_COLOURS)}, glasses {'/'.join(GLASSES)}, skin "
            f"{'/'.join(SKIN_TONES)}, background {'/'.join(BACKGROUNDS)}, smiling/frowning")


def unknown_words(prompt: str) -> list[str]:
    """The prompt's words the embedded model has never seen (weights and tags left out)."""
    text = re.sub(r"<[^>]*>", " ", prompt.lower())  # <lora:...> tags
    text = re.sub(r":\s*-?[\d.]+", " ", text)  # (word:1.2) weights
    known = known_words() | _FILLER
    out: list[str] = []
    for word in re.findall(r"[a-z]+", text):
        if word not in known and word not in out:
            out.append(word)
    return out


def fit_warning(model: Any, request: Any) -> str | None:
    """One line saying what ``request`` asks that ``model`` does not know, or ``None``."""
    if model.family != "studio-tiny" or model.kind != "diffusion":
        return None
    rec = dict(model.recommended)
    native = (int(rec.get("width", 64)), int(rec.get("height", 64)))
    problems = []
    if (request.width, request.height) != native:
        problems.append(f"{request.width}x{request.height} gives noise")
    unknown = unknown_words(request.prompt)
    if unknown:
        quoted = ", ".join(f"'{w}'" for w in unknown[:6]) + (" ..." if len(unknown) > 6 else "")
        problems.append(f"it does not know {quoted} (ignored)")
    if not problems:
        return None
    return (f"{model.name} draws {native[0]}x{native[1]} portraits: {'; '.join(problems)}. "
            f"It knows: {what_it_knows()}.")
