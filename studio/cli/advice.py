"""One warning line when a request asks the embedded model for what it cannot draw.

The embedded ``studio-tiny`` diffusion model was trained on 64 x 64 procedural portraits
with captions from a small vocabulary (its model card lists it): another size gives noise,
and words outside the vocabulary are ignored (a portrait comes out). Big models know both,
so they are never warned about.
"""

from __future__ import annotations

from typing import Any

# The vocabulary lives in core, shared with the GUI's prompt box.
from studio.core.portraits.prompts import (
    known_words,
    unknown_words,
    uses_embedded_vocabulary,
    what_it_knows,
)

__all__ = ["fit_warning", "known_words", "unknown_words", "what_it_knows"]


def fit_warning(model: Any, request: Any) -> str | None:
    """One line saying what ``request`` asks that ``model`` does not know, or ``None``."""
    if not uses_embedded_vocabulary(model):
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
