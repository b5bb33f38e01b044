"""Prompts as people write them, judged by the oracle on the attributes they name."""

from __future__ import annotations

import numpy as np

from studio.core.models import ModelInfo
from studio.core.portraits.attributes import BACKGROUNDS, HAIR_COLOURS, PortraitAttributes
from studio.core.portraits.oracle import read_portrait
from studio.core.portraits.prompts import (
    NAMEABLE,
    PartialPrompt,
    adherence,
    completion_words,
    judge,
    known_words,
    partial_prompts,
    unknown_words,
    uses_embedded_vocabulary,
    vocabulary_hint,
)
from studio.core.portraits.render import caption_for, render_portrait


def test_prompts_name_one_two_or_all_attributes_in_varied_words() -> None:
    prompts = partial_prompts(120, seed=3)
    assert [len(p.named) for p in prompts[:6]] == [1, 2, 4, 1, 2, 4]
    assert len({p.text for p in prompts}) >= 115  # varied, not one template
    # Not the training caption template, and several word orders: the background comes
    # first in some prompts that name it, last in others.
    first = [p for p in prompts if "background" in p.named
             and p.text.replace("a ", "").startswith((p.named["background"], "on ", "against"))]
    last = [p for p in prompts if p.text.endswith("background") and len(p.named) > 1]
    assert first and last
    templates = {caption_for(PortraitAttributes("red", "round", 0.0, "tan", "blue"))}
    assert not templates & {p.text for p in prompts}
    for p in prompts:  # every named value is in the words, nothing else is
        words = p.text.replace("-", " ").replace(",", " ").split()
        if "hair" in p.named:
            assert p.named["hair"] in words, p
        if "background" in p.named:
            assert p.named["background"] in words and "background" in words, p
        if "smile" in p.named:
            assert p.named["smile"] in words, p
        if "glasses" in p.named:
            assert "glasses" in words, p
        else:
            assert "glasses" not in words, p
        assert set(p.named) <= set(NAMEABLE)
    assert partial_prompts(10, seed=3) == prompts[:10]  # reproducible
    colours = {p.named["background"] for p in prompts if "background" in p.named}
    assert colours == set(BACKGROUNDS)
    assert {p.named["hair"] for p in prompts if "hair" in p.named} == set(HAIR_COLOURS)


def test_the_judge_reads_only_the_named_attributes_by_the_oracle() -> None:
    rng = np.random.default_rng(0)
    image = render_portrait(PortraitAttributes("red", "none", 0.8, "tan", "blue"), rng)
    reading = read_portrait(image)
    ok = PartialPrompt("a smiling person with red hair on a blue background",
                       {"hair": "red", "background": "blue", "smile": "smiling"})
    assert judge(ok, reading) == {"hair": True, "background": True, "smile": True}
    wrong = PartialPrompt("purple background, glasses", {"background": "purple",
                                                          "glasses": "any"})
    assert judge(wrong, reading) == {"background": False, "glasses": False}
    frowning = PartialPrompt("frowning, no glasses", {"smile": "frowning", "glasses": "none"})
    assert judge(frowning, reading) == {"smile": False, "glasses": True}
    figures = adherence([ok, wrong, frowning], [reading] * 3)
    assert figures["background"] == (0.5, 2) and figures["hair"] == (1.0, 1)
    assert figures["all_named"] == (1 / 3, 3)


def test_rendered_portraits_of_the_named_attributes_pass_the_judge() -> None:
    """The renderer drawing what each prompt names (the rest at random) passes: the judge and
    the generator agree on what the words mean."""
    rng = np.random.default_rng(1)
    prompts = partial_prompts(60, seed=5)
    readings = []
    for p in prompts:
        glasses = p.named.get("glasses", str(rng.choice(["none", "round"])))
        smile = {"smiling": 0.9, "frowning": -0.9}.get(p.named.get("smile", ""), 0.0)
        attrs = PortraitAttributes(p.named.get("hair", "brown"),
                                   "round" if glasses == "any" else glasses, smile, "pale",
                                   p.named.get("background", "grey"))
        readings.append(read_portrait(render_portrait(attrs, rng)))
    figures = adherence(prompts, readings)
    assert all(share >= 0.95 for share, _ in figures.values()), figures


def test_vocabulary_words_and_the_no_known_word_line() -> None:
    assert {"blonde", "purple", "glasses", "smiling", "frowning"} <= set(completion_words())
    assert "a" not in completion_words() and "none" not in completion_words()
    assert set(completion_words()) <= known_words()
    assert unknown_words("a blonde woman with glasses") == ["woman"]
    assert unknown_words("(red hair:1.2) <lora:x:0.5>") == []
    assert vocabulary_hint("") == vocabulary_hint("a red cat") == ""
    hint = vocabulary_hint("a cat in space")  # filler words know nothing
    assert hint.startswith("The embedded model knows none of these words") and "purple" in hint
    tiny = ModelInfo("studio-tiny-diffusion", "t", "diffusion", "studio-tiny", "embedded", "")
    assert uses_embedded_vocabulary(tiny)
    assert not uses_embedded_vocabulary(ModelInfo("x", "x", "diffusion", "sd1", "folder", ""))
    assert not uses_embedded_vocabulary(ModelInfo("g", "g", "gan", "studio-tiny", "embedded", ""))
    assert not uses_embedded_vocabulary(None)
