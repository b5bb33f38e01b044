"""A1111 prompt syntax: weights, escapes, BREAK, inline LoRAs, malformed input."""

from __future__ import annotations

import pytest

from studio.core.errors import ModelNotFoundError
from studio.core.jobs.request import GenerationRequest, LoraWeight
from studio.core.models import ModelInfo
from studio.core.prompt_syntax import (
    LoraTag,
    PromptFragment,
    PromptSyntaxError,
    check_prompt,
    has_syntax,
    parse_prompt,
    with_prompt_loras,
)


def weights(text: str) -> list[tuple[str, float]]:
    return [(f.text, round(f.weight, 4)) for f in parse_prompt(text).fragments]


@pytest.mark.parametrize("text, expected", [
    ("a cat", [("a cat", 1.0)]),
    ("a (cat:1.3) dog", [("a ", 1.0), ("cat", 1.3), (" dog", 1.0)]),
    ("(cat)", [("cat", 1.1)]),
    ("((cat))", [("cat", 1.21)]),
    ("[cat]", [("cat", 0.9091)]),
    ("(a (b:1.5) c:1.2)", [("a ", 1.2), ("b", 1.8), (" c", 1.2)]),
    ("(cat:0.5)", [("cat", 0.5)]),
    ("(cat: .5 )", [("cat", 0.5)]),
    ("(time: 12:30)", [("time: 12", 30.0)]),  # the last ':number' is the weight, as in A1111
    ("(a: b)", [("a: b", 1.1)]),
])
def test_weights(text, expected):
    assert weights(text) == expected


def test_weight_one_is_plain():
    parsed = parse_prompt("(word:1.0)")
    assert parsed.is_plain and parsed.fragments == (PromptFragment("word", 1.0),)


def test_escaped_brackets_are_literal():
    parsed = parse_prompt(r"a \(cat\) and \[dog\] \\ x")
    assert parsed.fragments == (PromptFragment(r"a (cat) and [dog] \ x", 1.0),)
    assert not parsed.warnings


def test_break_splits_chunks():
    parsed = parse_prompt("a red car BREAK (blue sky:1.2)")
    assert len(parsed.chunks) == 2
    assert parsed.chunks[1] == (PromptFragment(" ", 1.0), PromptFragment("blue sky", 1.2))
    assert not parse_prompt("BREAKFAST at dawn").chunks[1:]  # only a whole word breaks


@pytest.mark.parametrize("text, literal", [
    ("a (cat", "a (cat"), ("a cat)", "a cat)"), ("[a (b] c", "[a (b] c"),
])
def test_unbalanced_brackets_are_literal_with_a_warning(text, literal):
    parsed = parse_prompt(text)
    assert "".join(f.text for f in parsed.fragments) == literal
    assert parsed.warnings and "literally" in parsed.warnings[0]
    with pytest.raises(PromptSyntaxError, match="character"):
        check_prompt(text)


def test_inline_lora_tags_are_parsed_and_removed():
    parsed = parse_prompt("portrait <lora:inkStyle:0.8>, (smile:1.2) <lora:grain>")
    assert parsed.loras == (LoraTag("inkStyle", 0.8), LoraTag("grain", 1.0))
    assert "lora" not in parsed.plain_text
    assert parsed.display() == "portrait , (smile:1.2) <lora:inkStyle:0.8> <lora:grain:1>"
    assert has_syntax("a <lora:x:1> b") and not has_syntax("a plain prompt, with commas")


def test_prompt_loras_resolve_to_paths_and_are_idempotent():
    models = [ModelInfo(id="/m/loras/inkStyle.safetensors", name="inkStyle", kind="lora",
                        family="", source="single-file", path="/m/loras/inkStyle.safetensors")]
    req = GenerationRequest(prompt="a cat <lora:inkstyle:0.7>")
    once = with_prompt_loras(req, models)
    assert once.loras == (LoraWeight("/m/loras/inkStyle.safetensors", 0.7, "inkStyle"),)
    assert with_prompt_loras(once, models) == once
    with pytest.raises(ModelNotFoundError, match="No LoRA named 'nope'.*inkStyle"):
        with_prompt_loras(GenerationRequest(prompt="<lora:nope:1>"), models)


def test_bad_lora_weight_warns():
    parsed = parse_prompt("<lora:x:abc> cat")
    assert parsed.loras == (LoraTag("x", 1.0),) and "not a number" in parsed.warnings[0]
