"""Prompt syntax artists know from A1111: weights, ``BREAK`` and inline LoRAs.

* ``(word)`` multiplies the attention to ``word`` by 1.1, ``[word]`` divides it by 1.1;
  nesting multiplies (``((word))`` is 1.21).
* ``(word:1.3)`` sets the weight (it multiplies any enclosing weight); ``(word:1.0)`` is the
  same as ``word``.
* ``\\(``, ``\\)``, ``\\[``, ``\\]`` and ``\\\\`` are literal characters.
* ``BREAK`` (upper case, a word of its own) starts a new 75-token chunk.
* ``<lora:name:0.8>`` (or ``<lora:name>``, weight 1) applies a LoRA found in the model folders;
  the tag is removed from the text the model reads.

Malformed input never fails: like A1111 we keep going, but more predictably. An unmatched
``(``/``[`` or a stray ``)``/``]`` is kept as a literal character, and ``ParsedPrompt.warnings``
says so (the prompt panel shows it). ``check_prompt`` raises ``PromptSyntaxError`` with the
same message for callers that prefer to refuse (the CLI with ``--strict-prompt``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from studio.core.errors import ModelNotFoundError, StudioError
from studio.core.jobs.request import GenerationRequest, LoraWeight
from studio.core.models import ModelInfo

ATTENTION_UP = 1.1
BREAK = "BREAK"

_LORA_RE = re.compile(r"<(lora|lyco):([^:>]+)(?::([^:>]*))?(?::[^>]*)?>", re.IGNORECASE)
_WEIGHT_RE = re.compile(r":\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*$")
_BREAK_RE = re.compile(r"(?<![^\s,()\[\]])BREAK(?![^\s,()\[\]])")
_SYNTAX_CHARS = set("()[]\\")


class PromptSyntaxError(StudioError):
    kind = "prompt-syntax"


@dataclass(frozen=True)
class PromptFragment:
    """A run of text read with one weight."""

    text: str
    weight: float = 1.0


@dataclass(frozen=True)
class LoraTag:
    """An inline ``<lora:name:weight>`` tag."""

    name: str
    weight: float = 1.0


@dataclass(frozen=True)
class ParsedPrompt:
    """A prompt as the encoder reads it.

    ``chunks`` are the ``BREAK``-separated parts, each a tuple of weighted fragments (adjacent
    fragments of equal weight merged). ``loras`` are the inline LoRA tags, in order.
    """

    source: str
    chunks: tuple[tuple[PromptFragment, ...], ...]
    loras: tuple[LoraTag, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def fragments(self) -> tuple[PromptFragment, ...]:
        return tuple(f for chunk in self.chunks for f in chunk)

    @property
    def is_plain(self) -> bool:
        """No weights, no ``BREAK``: the encoder may read the text as it is."""
        return len(self.chunks) <= 1 and all(f.weight == 1.0 for f in self.fragments)

    @property
    def plain_text(self) -> str:
        """The text without any syntax (what the words are, not how strongly)."""
        return " BREAK ".join("".join(f.text for f in chunk) for chunk in self.chunks)

    def display(self) -> str:
        """A normalised form for records and tooltips: ``a (cat:1.21) BREAK <lora:x:0.8>``."""
        parts = []
        for chunk in self.chunks:
            text = ""
            for f in chunk:
                escaped = re.sub(r"([()\[\]\\])", r"\\\1", f.text)
                if f.weight == 1.0:
                    text += escaped
                else:
                    core = escaped.strip()
                    lead = escaped[: len(escaped) - len(escaped.lstrip())]
                    tail = escaped[len(escaped.rstrip()):]
                    text += f"{lead}({core}:{f.weight:.3g}){tail}" if core else escaped
            parts.append(text.strip())
        out = " BREAK ".join(parts)
        tags = " ".join(f"<lora:{t.name}:{t.weight:g}>" for t in self.loras)
        return f"{out} {tags}".strip()


def extract_loras(text: str) -> tuple[str, tuple[LoraTag, ...], tuple[str, ...]]:
    """The text without ``<lora:...>`` tags, the tags, and warnings for bad weights."""
    tags: list[LoraTag] = []
    warnings: list[str] = []

    def take(m: re.Match[str]) -> str:
        name, raw = m.group(2).strip(), (m.group(3) or "").strip()
        weight = 1.0
        if raw:
            try:
                weight = float(raw)
            except ValueError:
                warnings.append(f"LoRA weight {raw!r} of {name!r} is not a number; using 1.")
        tags.append(LoraTag(name, weight))
        return ""

    return _LORA_RE.sub(take, text), tuple(tags), tuple(warnings)


def has_syntax(text: str) -> bool:
    """Whether ``text`` uses any weighting, ``BREAK``, escape or LoRA syntax."""
    return bool(_SYNTAX_CHARS & set(text)) or bool(_BREAK_RE.search(text)) or \
        bool(_LORA_RE.search(text))


def _match_brackets(text: str) -> tuple[dict[int, int], list[str]]:
    """Pairs of matching bracket positions; unmatched ones are reported and left literal."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    warnings: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in "()[]\\":
            i += 2
            continue
        if c in "([":
            stack.append(i)
        elif c in ")]":
            want = "(" if c == ")" else "["
            if stack and text[stack[-1]] == want:
                pairs[stack.pop()] = i
            else:
                warnings.append(f"unmatched '{c}' at character {i + 1} is read literally")
        i += 1
    for j in stack:
        warnings.append(f"unclosed '{text[j]}' at character {j + 1} is read literally")
    return pairs, warnings


def parse_prompt(text: str) -> ParsedPrompt:
    """Parse ``text`` (see the module docstring). Never raises."""
    stripped, loras, lora_warnings = extract_loras(text)
    pairs, warnings = _match_brackets(stripped)
    pieces: list[tuple[str, float]] = []  # (text, weight), BREAK as ("", -1)

    def walk(start: int, end: int, weight: float) -> None:
        buf = ""
        i = start
        while i < end:
            c = stripped[i]
            if c == "\\" and i + 1 < end and stripped[i + 1] in "()[]\\":
                buf += stripped[i + 1]
                i += 2
                continue
            if c in "([" and i in pairs:
                close = pairs[i]
                if buf:
                    pieces.append((buf, weight))
                    buf = ""
                inner_end = close
                factor = ATTENTION_UP if c == "(" else 1 / ATTENTION_UP
                if c == "(":
                    m = _WEIGHT_RE.search(stripped, i + 1, close)
                    if m is not None and _outside_nested(i + 1, m.start(), pairs):
                        factor = float(m.group(1))
                        inner_end = m.start()
                walk(i + 1, inner_end, weight * factor)
                i = close + 1
                continue
            buf += c
            i += 1
        if buf:
            pieces.append((buf, weight))

    walk(0, len(stripped), 1.0)
    chunks: list[list[PromptFragment]] = [[]]
    for piece, weight in pieces:
        parts = _BREAK_RE.split(piece)
        for k, part in enumerate(parts):
            if k:
                chunks.append([])
            if part:
                _append(chunks[-1], PromptFragment(part, round(weight, 6)))
    return ParsedPrompt(text, tuple(tuple(c) for c in chunks), loras,
                        tuple(warnings) + lora_warnings)


def _outside_nested(start: int, pos: int, pairs: dict[int, int]) -> bool:
    """Whether ``pos`` (a ``:weight`` suffix) is not inside a nested bracket pair."""
    return not any(start <= o < pos < c for o, c in pairs.items())


def _append(chunk: list[PromptFragment], frag: PromptFragment) -> None:
    if chunk and chunk[-1].weight == frag.weight:
        chunk[-1] = PromptFragment(chunk[-1].text + frag.text, frag.weight)
    else:
        chunk.append(frag)


def check_prompt(text: str) -> ParsedPrompt:
    """Like ``parse_prompt``, but unbalanced brackets raise ``PromptSyntaxError``."""
    parsed = parse_prompt(text)
    if parsed.warnings:
        raise PromptSyntaxError(
            "The prompt has " + "; ".join(parsed.warnings) + ".",
            hint=r"Close the bracket, or write \( \) \[ \] for literal brackets.")
    return parsed


def resolve_lora(name: str, models: Sequence[ModelInfo]) -> ModelInfo:
    """The LoRA model named ``name`` (file stem, id or path; case-insensitive stem)."""
    for m in models:
        if name in (m.name, m.id, m.path):
            return m
    lower = name.lower()
    for m in models:
        if m.name.lower() == lower:
            return m
    known = ", ".join(sorted(m.name for m in models)) or "none found"
    raise ModelNotFoundError(f"No LoRA named {name!r} in the model folders (LoRAs: {known}).",
                             hint="Put the .safetensors file in a loras folder and rescan.")


def with_prompt_loras(request: GenerationRequest,
                      lora_models: Iterable[ModelInfo]) -> GenerationRequest:
    """``request`` with its prompt's ``<lora:...>`` tags added to ``request.loras``.

    The prompt keeps its tags (it is what the artist wrote, and what metadata records); the
    encoder drops them. Calling this twice changes nothing more: a LoRA already in ``loras``
    (same path) takes the tag's weight instead of being added again.
    """
    tags = parse_prompt(request.prompt).loras
    if not tags:
        return request
    models = list(lora_models)
    loras = list(request.loras)
    for tag in tags:
        info = resolve_lora(tag.name, models)
        entry = LoraWeight(path=info.path, weight=tag.weight, name=info.name)
        for i, existing in enumerate(loras):
            if existing.path == info.path:
                loras[i] = entry
                break
        else:
            loras.append(entry)
    return request.replace(loras=tuple(loras))
