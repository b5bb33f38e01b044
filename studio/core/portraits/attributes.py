"""The portraits' attribute vocabulary: hair colours, glasses, skin tones, backgrounds, smile.

Defined once here and shared by the renderer (``studio.core.portraits.render``), the
embedded networks' heads (``studio.engine.nets``), the slider specs and training. Only
numpy is imported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HAIR_COLOURS: tuple[str, ...] = ("black", "brown", "blonde", "red", "blue", "white")
GLASSES: tuple[str, ...] = ("none", "round", "square")
SKIN_TONES: tuple[str, ...] = ("pale", "tan", "brown", "dark")
BACKGROUNDS: tuple[str, ...] = ("white", "grey", "red", "yellow", "green", "blue", "purple",
                                "pink")
SMILE_BINS: tuple[str, ...] = ("frowning", "neutral", "smiling")
SMILE_THRESHOLD = 0.35  # |smile| above this is named in the caption


def smile_bin_index(smile: np.ndarray) -> np.ndarray:
    """Index into ``SMILE_BINS`` of smile values in [-1, 1] (frowning, neutral, smiling)."""
    smile = np.asarray(smile)
    return np.where(smile > SMILE_THRESHOLD, 2, np.where(smile < -SMILE_THRESHOLD, 0, 1))


CLASS_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "hair": HAIR_COLOURS, "glasses": GLASSES, "skin": SKIN_TONES, "background": BACKGROUNDS,
}


@dataclass(frozen=True)
class PortraitAttributes:
    """The labelled attributes of one portrait.

    ``smile`` is continuous in [-1, 1]: -1 frowns, 0 is a straight mouth, 1 smiles.
    """

    hair: str
    glasses: str
    smile: float
    skin: str
    background: str

    @property
    def smile_bin(self) -> str:
        """``"frowning"``, ``"neutral"`` or ``"smiling"`` as the caption says it."""
        if self.smile > SMILE_THRESHOLD:
            return "smiling"
        if self.smile < -SMILE_THRESHOLD:
            return "frowning"
        return "neutral"

    def label_indices(self) -> dict[str, int]:
        """Class index of every categorical attribute (see ``CLASS_ATTRIBUTES``)."""
        return {name: values.index(getattr(self, name))
                for name, values in CLASS_ATTRIBUTES.items()}


def sample_attributes(rng: np.random.Generator) -> PortraitAttributes:
    """Draw attributes uniformly (smile uniform in [-1, 1])."""
    return PortraitAttributes(
        hair=HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))],
        glasses=GLASSES[rng.integers(len(GLASSES))],
        smile=float(np.round(rng.uniform(-1.0, 1.0), 4)),
        skin=SKIN_TONES[rng.integers(len(SKIN_TONES))],
        background=BACKGROUNDS[rng.integers(len(BACKGROUNDS))],
    )
