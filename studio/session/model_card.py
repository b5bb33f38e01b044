"""A model's recommended settings read from its card, before any engine is loaded.

The window shows the default model's size, steps, guidance and sampler from the moment it
opens: they are in the model folder's ``studio.json`` (``"recommended"``), which discovery
reads too. Reading it needs no torch, so the values do not jump when the engine arrives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from studio.core.jobs.request import DEFAULT_MODEL
from studio.paths import embedded_models_dir

CARD_FILE = "studio.json"
CARD_KEYS = ("width", "height", "steps", "guidance", "scheduler")


def model_folder(model_id: str) -> Path | None:
    """The folder of ``model_id``: an embedded model's name or a model folder's path."""
    if not model_id:
        return None
    embedded = embedded_models_dir() / model_id
    if embedded.is_dir():
        return embedded
    path = Path(model_id).expanduser()
    return path if path.is_dir() else None


def recommended_settings(model_id: str = DEFAULT_MODEL) -> dict[str, Any]:
    """The settings ``model_id``'s card recommends (``width``, ``height``, ``steps``,
    ``guidance``, ``scheduler``); empty when it has no card or the card cannot be read."""
    folder = model_folder(model_id)
    if folder is None:
        return {}
    try:
        card = json.loads((folder / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    recommended = card.get("recommended") if isinstance(card, dict) else None
    if not isinstance(recommended, dict):
        return {}
    values = {key: recommended[key] for key in CARD_KEYS if key in recommended}
    if not ("width" in values and "height" in values):
        values.pop("width", None)
        values.pop("height", None)
    return values


def startup_settings(*model_ids: str) -> tuple[str, dict[str, Any]]:
    """The first of ``model_ids`` (then the embedded default) that has a card, and its
    recommended settings: what the window shows before the engine loads."""
    for model_id in (*model_ids, DEFAULT_MODEL):
        values = recommended_settings(model_id)
        if values:
            return model_id, values
    return DEFAULT_MODEL, {}
