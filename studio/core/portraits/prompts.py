"""Prompts as people write them, the embedded models' vocabulary, and judging by the oracle.

The training captions follow one template that names every attribute ("a smiling person
with red hair and round glasses on a blue background"). People type less and in their own
order: "a person with black hair on a blue background", "blue background, blonde woman with
glasses", "smiling person, red hair". ``partial_prompts`` draws such prompts, naming one, two
or all of hair colour, glasses, background and smile; the attributes a prompt does not name
are free, and ``judge`` checks only the named ones, by the oracle
(``studio.core.portraits.oracle``), never by a learned model.

The vocabulary functions (``known_words``, ``unknown_words``, ``what_it_knows``,
``completion_words``) tell the CLI and the GUI which words the embedded models know.

Only numpy (and the oracle's Pillow) are imported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from studio.core.portraits.attributes import (
    BACKGROUNDS,
    GLASSES,
    HAIR_COLOURS,
    SKIN_TONES,
    SMILE_THRESHOLD,
)
from studio.core.portraits.oracle import OracleReading

# The attributes a prompt can name and the oracle can read (skin is neither asked nor read).
NAMEABLE: tuple[str, ...] = ("hair", "background", "glasses", "smile")
GLASSES_WORDS: tuple[str, ...] = ("glasses", "round", "square", "no")
SMILE_WORDS: tuple[str, ...] = ("smiling", "frowning")

# Words a prompt may hold that carry no meaning the model could miss.
FILLER: frozenset[str] = frozenset({"a", "an", "the", "of", "with", "and", "on", "in", "at",
                                    "to", "very"})


# -- vocabulary ------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def known_words() -> frozenset[str]:
    """The words of the embedded models' captions (hair colours, glasses, backgrounds...)."""
    from studio.core.portraits.render import caption_vocabulary

    return frozenset(caption_vocabulary()[-1].split())


def what_it_knows() -> str:
    """One line listing what the embedded models know, for messages and model cards."""
    return (f"hair {'/'.join(HAIR_COLOURS)}, glasses {'/'.join(GLASSES)}, skin "
            f"{'/'.join(SKIN_TONES)}, background {'/'.join(BACKGROUNDS)}, "
            f"{'/'.join(SMILE_WORDS)}")


def completion_words() -> tuple[str, ...]:
    """The words worth offering while a prompt for an embedded model is typed, the
    attribute values first, then the nouns they go with (no filler words)."""
    words = [*HAIR_COLOURS, *BACKGROUNDS, *GLASSES_WORDS[1:], *SKIN_TONES, *SMILE_WORDS,
             "hair", "glasses", "background", "skin", "person", "portrait", "cartoon"]
    return tuple(dict.fromkeys(w for w in words if w != "none"))


EMBEDDED_FAMILY = "studio-tiny"


def uses_embedded_vocabulary(model: object) -> bool:
    """Whether ``model`` (a ``ModelInfo`` or None) is an embedded text-to-image model, which
    knows only the words of its captions (bigger models know any words)."""
    return (getattr(model, "family", None) == EMBEDDED_FAMILY
            and getattr(model, "kind", None) == "diffusion")


def _words(prompt: str) -> list[str]:
    text = re.sub(r"<[^>]*>", " ", prompt.lower())  # <lora:...> tags
    text = re.sub(r":\s*-?[\d.]+", " ", text)  # (word:1.2) weights
    return re.findall(r"[a-z]+", text)


def unknown_words(prompt: str) -> list[str]:
    """The prompt's words the embedded models have never seen (weights and tags left out)."""
    known = known_words() | FILLER
    out: list[str] = []
    for word in _words(prompt):
        if word not in known and word not in out:
            out.append(word)
    return out


def has_known_word(prompt: str) -> bool:
    """Whether the prompt names anything the embedded models know (filler aside)."""
    known = known_words() - FILLER
    return any(w in known for w in _words(prompt))


def vocabulary_hint(prompt: str) -> str:
    """One line for a non-empty prompt in which the embedded models know no word, else ""."""
    if not prompt.strip() or has_known_word(prompt):
        return ""
    return f"The embedded model knows none of these words; it knows: {what_it_knows()}."


# -- prompts as people write them --------------------------------------------------------------
@dataclass(frozen=True)
class PartialPrompt:
    """A prompt and what it names: ``named`` maps ``"hair"`` / ``"background"`` to a colour,
    ``"glasses"`` to ``"round"``, ``"square"``, ``"any"`` (just "glasses") or ``"none"``, and
    ``"smile"`` to ``"smiling"`` or ``"frowning"``. Attributes not in ``named`` are free."""

    text: str
    named: dict[str, str]


_NOUNS = ("person", "person", "man", "woman", "portrait", "cartoon person", "face")


def _glasses_phrases(value: str) -> tuple[str, str]:
    """(the tag / "with" form, a trailing form)."""
    if value == "none":
        return "no glasses", "without glasses"
    word = "glasses" if value == "any" else f"{value} glasses"
    return word, f"wearing {word}"


def _draw_named(rng: np.random.Generator, count: int) -> dict[str, str]:
    kinds = list(NAMEABLE) if count >= len(NAMEABLE) else [
        NAMEABLE[i] for i in sorted(rng.choice(len(NAMEABLE), count, replace=False))]
    named: dict[str, str] = {}
    for kind in kinds:
        if kind == "hair":
            named[kind] = str(rng.choice(HAIR_COLOURS))
        elif kind == "background":
            named[kind] = str(rng.choice(BACKGROUNDS))
        elif kind == "glasses":
            named[kind] = str(rng.choice(("any", "round", "square", "none")))
        else:
            named[kind] = str(rng.choice(SMILE_WORDS))
    return named


def _phrase(named: dict[str, str], rng: np.random.Generator) -> str:
    """Words for ``named`` in one of several forms and orders."""
    hair, bg = named.get("hair"), named.get("background")
    glasses, mood = named.get("glasses"), named.get("smile")
    noun = str(rng.choice(_NOUNS))
    form = int(rng.integers(4))
    if form == 0:  # a sentence: "a smiling woman with red hair and glasses on a blue background"
        withs = [f"{hair} hair"] if hair else []
        trailing = ""
        if glasses:
            tag, trail = _glasses_phrases(glasses)
            if rng.random() < 0.6:
                withs.append(tag)
            else:
                trailing = " " + trail
        withs = [withs[i] for i in rng.permutation(len(withs))]
        subject = f"a {mood + ' ' if mood else ''}{noun}"
        body = subject + (" with " + " and ".join(withs) if withs else "") + trailing
        if bg:
            where = str(rng.choice(("on a {} background", "against a {} background",
                                    "in front of a {} background"))).format(bg)
            body = f"{where}, {body}" if rng.random() < 0.25 else f"{body} {where}"
        return body
    if form == 1:  # tags: "red hair, glasses, blue background, smiling"
        tags = []
        if hair:
            tags.append(f"{hair} hair")
        if glasses:
            tags.append(_glasses_phrases(glasses)[0])
        if bg:
            tags.append(f"{bg} background")
        if mood:
            tags.append(mood)
        tags = [tags[i] for i in rng.permutation(len(tags))]
        return ", ".join(tags if rng.random() < 0.6 else [noun, *tags])
    if form == 2:  # background first: "blue background, blonde woman with glasses"
        lead = [f"{bg} background"] if bg else []
        # "blonde woman" is how people say it; "black woman" would name the skin instead.
        adjective = hair if hair == "blonde" and rng.random() < 0.5 else (
            f"{hair}-haired" if hair else "")
        adjective = " ".join(w for w in (mood, adjective) if w)
        subject = f"{adjective + ' ' if adjective else ''}{noun}"
        if glasses:
            tag, trail = _glasses_phrases(glasses)
            subject += f" with {tag}" if rng.random() < 0.5 else f" {trail}"
        return ", ".join([*lead, subject]) if lead or rng.random() < 0.5 else f"a {subject}"
    # subject then details: "smiling person, red hair"
    subject = f"{mood + ' ' if mood else ''}{noun}"
    details = []
    if hair:
        details.append(f"{hair} hair")
    if glasses:
        details.append(_glasses_phrases(glasses)[int(rng.integers(2))])
    if bg:
        details.append(f"{bg} background")
    details = [details[i] for i in rng.permutation(len(details))]
    return ", ".join([subject, *details])


def partial_prompts(n: int, seed: int = 0, counts: Iterable[int] = (1, 2, 4)) -> list[PartialPrompt]:
    """``n`` prompts as people write them, each naming ``counts[i % len(counts)]`` of
    ``NAMEABLE`` (4: all of them), in varied phrasings and orders; reproducible per seed."""
    counts = tuple(counts)
    rng = np.random.default_rng((int(seed), 27))
    out = []
    for i in range(n):
        named = _draw_named(rng, counts[i % len(counts)])
        text = _phrase(named, rng)
        out.append(PartialPrompt(" ".join(text.split()), named))
    return out


# -- judging ---------------------------------------------------------------------------------
def judge(prompt: PartialPrompt, reading: OracleReading) -> dict[str, bool]:
    """For each attribute ``prompt`` names, whether the oracle's ``reading`` shows it.

    Glasses are judged as present or absent (the oracle sees frames, not their shape);
    smiling and frowning by the mouth's curvature beyond the captions' +-0.35."""
    out: dict[str, bool] = {}
    for kind, value in prompt.named.items():
        if kind in ("hair", "background"):
            out[kind] = getattr(reading, kind) == value
        elif kind == "glasses":
            out[kind] = reading.glasses == (value != "none")
        else:
            smile = reading.smile
            out[kind] = smile is not None and (smile > SMILE_THRESHOLD if value == "smiling"
                                               else smile < -SMILE_THRESHOLD)
    return out


def adherence(prompts: list[PartialPrompt],
              readings: list[OracleReading]) -> dict[str, tuple[float, int]]:
    """Per named attribute: (share of the prompts naming it whose reading shows it, how many
    prompts named it); ``"all_named"``: share of prompts whose every named attribute shows."""
    hits: dict[str, list[bool]] = {k: [] for k in NAMEABLE}
    every = []
    for prompt, reading in zip(prompts, readings, strict=True):
        verdict = judge(prompt, reading)
        for kind, ok in verdict.items():
            hits[kind].append(ok)
        every.append(all(verdict.values()))
    out = {k: (float(np.mean(v)), len(v)) for k, v in hits.items() if v}
    out["all_named"] = (float(np.mean(every)), len(every))
    return out
