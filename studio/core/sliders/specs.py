"""Latent sliders: what a slider is, the shipped set, and how values shape a request.

A slider is a direction in a control space plus a scalar (see ARCHITECTURE.md). Its id says
what it is, so that ``Document.sliders`` (id -> value) alone restores a slider set:

==========================  =================================================================
``age`` (a starter id)      a prompt pair shipped in ``resources/sliders/*.json``
``prompt:old|young``        a user's prompt pair: positive ``old``, negative ``young``
``lora:/path/file.st``      a LoRA file and its weight (-3 .. 3)
``vae:glasses``             an attribute vector in the latent space of ``studio-tiny-vae``
``gan:hair=red``            the same in the ``z`` space of ``studio-tiny-gan``
``variation:1234``          variation strength towards variation seed 1234 (0 .. 1)
``interp:1234``             interpolation towards the image of seed 1234 (0 .. 1)
==========================  =================================================================

Values become part of the ``GenerationRequest`` (``sliders``, ``loras``, variation fields)
with everything the engine needs in the payload, so a recorded request reproduces its image
without the slider files. A value of 0 adds nothing to the request: the base image again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from studio.core.jobs.request import GenerationRequest, LoraWeight, SliderValue

PROMPT, LORA, VAE, GAN, VARIATION, INTERP = "prompt", "lora", "vae", "gan", "variation", "interp"
INVERT = "invert"  # a request marker: start from the DDIM inversion of the init image
SPACES = (PROMPT, LORA, VAE, GAN, VARIATION, INTERP)
LATENT_SPACES = (VAE, GAN)
LATENT_MODELS = {VAE: "studio-tiny-vae", GAN: "studio-tiny-gan"}
GROUPS = {PROMPT: "Prompt directions", LORA: "LoRA and concepts", VAE: "VAE latent",
          GAN: "GAN latent", VARIATION: "Seed exploration", INTERP: "Seed exploration"}
DEFAULT_TEMPLATES = ("a photo of a {} person", "a portrait of a {} person", "a {} person",
                     "a close-up photo of a {} face")
# Attributes of the embedded portraits that the VAE/GAN sliders and SliderBench know.
PORTRAIT_ATTRIBUTES = ("smile", "glasses", "hair=red", "hair=blonde", "hair=blue",
                       "hair=white", "hair=black", "background=blue", "skin=dark")


@dataclass(frozen=True)
class SliderSpec:
    """One slider: its id, the words on it, its control space and its range.

    ``positive``/``negative`` are the prompt pair of a prompt direction (``templates`` hold
    ``{}`` where the words go; ``start`` is the fraction of steps run before the direction
    applies, which keeps the composition). ``attribute`` names the portrait attribute the
    slider should change (``smile``, ``glasses``, ``hair=red`` ...), used by latent sliders
    and SliderBench.
    """

    slider_id: str
    label: str
    space: str
    positive: str = ""
    negative: str = ""
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    start: float = 0.0
    minimum: float = -2.0
    maximum: float = 2.0
    attribute: str = ""
    method: str = "mean"
    path: str = ""
    seed: int = 0
    description: str = field(default="", compare=False)
    vector: str = ""  # a direction built from the user's examples (comma-separated floats)
    # Prompt directions: other phrases of the same kind ("brown hair" ... for a red-hair
    # slider); one found in the prompt is what the slider moves away from (see place_in_prompt).
    alternatives: tuple[str, ...] = ()
    # Other phrases that say the positive ("square glasses" for a Glasses slider whose
    # positive is "round glasses"): one found in the prompt is kept as the positive end, so
    # the slider moves it to the negative words ("no glasses"), not from one to the other.
    synonyms: tuple[str, ...] = ()
    in_prompt: bool = True  # place the words in the prompt itself where it has a place for them
    # In the prompt, the value at which the slider gives exactly the prompt with its positive
    # words (2: the end of the travel, as latent class sliders reach their target class).
    reach: float = 2.0
    # In the prompt, how far the slider goes past the prompt's own words where the prompt
    # already says one of its ends ("round glasses" at +2, "no glasses" at -2), relative to
    # its travel towards the other end: 1 goes as far (a smile past "smiling" grows); a
    # yes-or-no attribute has nothing past its words, and going as far there breaks the
    # image (glasses: 0.25).
    beyond: float = 1.0
    # Edit only where the words act (DiffEdit mask, blended with the base generation), so
    # the rest of the image stays; off for sliders meant to change the whole picture.
    local: bool = False
    # Models (by name) this slider is known not to work on, each with the one-line reason
    # the panel greys it with (measured, e.g. a model that never draws the attribute).
    not_on: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def reason_not_on(self, model: str) -> str:
        """Why the slider cannot do what its name says on ``model`` ('' if nothing is known);
        ``model`` is a name or a path (its last part is matched)."""
        name = model.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        return next((why for m, why in self.not_on if m in (model, name)), "")

    @property
    def group(self) -> str:
        return GROUPS.get(self.space, "Sliders")

    def to_dict(self) -> dict[str, object]:
        return {"id": self.slider_id, "label": self.label, "space": self.space,
                "positive": self.positive, "negative": self.negative,
                "templates": list(self.templates), "start": self.start, "min": self.minimum,
                "max": self.maximum, "attribute": self.attribute, "method": self.method,
                "description": self.description,
                **({"path": self.path} if self.path else {}),
                **({"seed": self.seed} if self.seed else {}),
                **({"vector": self.vector} if self.vector else {}),
                **({"alternatives": list(self.alternatives)} if self.alternatives else {}),
                **({"synonyms": list(self.synonyms)} if self.synonyms else {}),
                **({} if self.in_prompt else {"in_prompt": False}),
                **({"reach": self.reach} if self.reach != 2.0 else {}),
                **({"beyond": self.beyond} if self.beyond != 1.0 else {}),
                **({"local": True} if self.local else {}),
                **({"not_on": dict(self.not_on)} if self.not_on else {})}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> SliderSpec:
        space = str(data.get("space", PROMPT))
        if space not in SPACES:
            raise ValueError(f"unknown slider space {space!r}")
        templates = tuple(str(t) for t in data.get("templates") or DEFAULT_TEMPLATES)  # type: ignore[union-attr]
        if float(data.get("reach", 2.0)) <= 0:  # type: ignore[arg-type]
            raise ValueError(f"slider {data.get('id')!r}: reach must be above 0")
        if not 0 <= float(data.get("beyond", 1.0)) <= 1:  # type: ignore[arg-type]
            raise ValueError(f"slider {data.get('id')!r}: beyond must be within 0 to 1")
        return cls(slider_id=str(data["id"]), label=str(data.get("label") or data["id"]),
                   space=space, positive=str(data.get("positive", "")),
                   negative=str(data.get("negative", "")), templates=templates,
                   start=float(data.get("start", 0.0)),  # type: ignore[arg-type]
                   minimum=float(data.get("min", -2.0)),  # type: ignore[arg-type]
                   maximum=float(data.get("max", 2.0)),  # type: ignore[arg-type]
                   attribute=str(data.get("attribute", "")),
                   method=str(data.get("method", "mean")),
                   path=str(data.get("path", "")), seed=int(data.get("seed", 0)),  # type: ignore[call-overload]
                   description=str(data.get("description", "")),
                   vector=str(data.get("vector", "")),
                   alternatives=tuple(str(a) for a in data.get("alternatives") or ()),  # type: ignore[union-attr]
                   synonyms=tuple(str(a) for a in data.get("synonyms") or ()),  # type: ignore[union-attr]
                   in_prompt=bool(data.get("in_prompt", True)),
                   reach=float(data.get("reach", 2.0)),  # type: ignore[arg-type]
                   beyond=float(data.get("beyond", 1.0)),  # type: ignore[arg-type]
                   local=bool(data.get("local", False)),
                   not_on=tuple((str(k), str(v)) for k, v in dict(
                       data.get("not_on") or {}).items()))  # type: ignore[call-overload]


def prompt_pair(positive: str, negative: str, templates: Iterable[str] = DEFAULT_TEMPLATES,
                start: float = 0.0, local: bool = True) -> SliderSpec:
    """A user's prompt-pair slider (``prompt:positive|negative``); ``local`` keeps the image
    where the words do not act (turn it off for pairs that change the whole picture)."""
    positive, negative = positive.strip(), negative.strip()
    if not positive and not negative:
        raise ValueError("a prompt slider needs at least one of its two texts")
    if "|" in positive or "|" in negative:
        raise ValueError("the texts of a prompt slider cannot contain '|'")
    label = f"{negative or '…'} ↔ {positive or '…'}"
    return SliderSpec(f"prompt:{positive}|{negative}", label, PROMPT, positive, negative,
                      tuple(templates), start, local=local)


def fill_template(template: str, words: str) -> str:
    """``template`` with ``{}`` replaced by ``words`` (runs of spaces collapsed)."""
    return " ".join(template.replace("{}", words).split())


def _find_phrase(text: str, phrase: str) -> re.Match[str] | None:
    """The first whole-word, case-insensitive occurrence of ``phrase`` in ``text``."""
    words = phrase.split()
    if not words:
        return None
    pattern = r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)"
    return re.search(pattern, text, flags=re.IGNORECASE)


def place_in_prompt(prompt: str, positive: str, negative: str,
                    alternatives: Iterable[str] = (),
                    templates: Iterable[str] = (),
                    synonyms: Iterable[str] = ()) -> tuple[str, str, str] | None:
    """Where a prompt direction's words go in ``prompt``: ``(template, positive, negative)``
    (the words at the slider's two ends) or None.

    A direction averaged over generic templates moves every token position of the prompt a
    little; the same pair of words placed in the prompt itself changes exactly what the
    prompt says (``prompt(positive) - prompt(negative)``; value 1 is the prompt with the
    positive words). In order:

    1. a phrase of the slider already in the prompt is replaced: the positive or negative
       words, one of ``alternatives`` (a red-hair slider on "... with blonde hair ..."
       moves from "blonde hair" to "red hair", not from the slider's "brown hair") or one
       of ``synonyms``, which stays the positive end (a Glasses slider on "... square
       glasses ..." moves from "square glasses" to "no glasses");
    2. else a template with a slot between words whose text without the words is in the
       prompt ("a {} person" in "a person with red hair") puts the words there
       ("a {} person with red hair");
    3. else None: the caller keeps the template-averaged direction.
    """
    synonyms = [p for p in synonyms if p.strip()]
    found: list[tuple[int, re.Match[str], str]] = []
    phrases = [p for p in (positive, negative, *alternatives) if p.strip()] + synonyms
    for rank, phrase in enumerate(phrases):
        m = _find_phrase(prompt, phrase)
        if m is not None:
            found.append((rank, m, phrase))
    if found:  # the earliest in the prompt; the longest phrase there (e.g. "dark red hair")
        _rank, m, phrase = min(found, key=lambda f: (f[1].start(), -len(f[1].group()), f[0]))
        template = prompt[:m.start()] + "{}" + prompt[m.end():]
        if phrase in synonyms:
            return template, m.group(), negative
        same_words = phrase.lower() == positive.strip().lower()
        return template, positive, (negative if same_words else m.group())
    for t in templates:
        before, _, after = t.partition("{}")
        if t.count("{}") != 1 or not before.strip() or not after.strip():
            continue  # only a slot between words ("a {} person") reads as the prompt's own
        m = _find_phrase(prompt, fill_template(t, ""))
        if m is not None:
            return (prompt[:m.start()] + " ".join(t.split()) + prompt[m.end():], positive,
                    negative)
    return None


def prompt_end(prompt: str, template: str, positive: str, negative: str) -> int:
    """Which end of a placed slider ``prompt`` already says: 1 where it is ``template``
    filled with ``positive``, -1 with ``negative``, 0 neither (whitespace and case aside)."""
    said = " ".join(prompt.split()).lower()
    if fill_template(template, positive).lower() == said:
        return 1
    return -1 if fill_template(template, negative).lower() == said else 0


def placement_note(spec: SliderSpec, prompt: str) -> str:
    """One line for the artist: how a prompt slider acts on ``prompt``."""
    if spec.space != PROMPT:
        return ""
    placed = place_in_prompt(prompt, spec.positive, spec.negative, spec.alternatives,
                             spec.templates, spec.synonyms) if spec.in_prompt and prompt.strip() else None
    keep = (" It changes the image only where its words act; the rest is kept."
            if spec.local else "")
    if placed is None:
        return ("Direction averaged over the slider's templates (no place for its words in "
                "this prompt)." + keep)
    template, positive, negative = placed
    where = template.replace("{}", "…")
    end = prompt_end(prompt, template, positive, negative)

    def past(side: str, words: str) -> str:  # the prompt says one end (see ``beyond``)
        return (f" To the {side} it goes only a little past “{words}”."
                if spec.beyond < 1 and words else "")

    if end == 1:
        # the prompt already says the positive: 0 is it, the other end is to the left
        return (f"In this prompt: “{positive or '…'}” → “{negative or '…'}” at "
                f"{-spec.reach:g} ({where})." + past("right", positive) + keep)
    return (f"In this prompt: “{negative or '…'}” → “{positive or '…'}” at "
            f"{spec.reach:g} ({where})." + (past("left", negative) if end == -1 else "")
            + keep)


def lora_slider(path: str, name: str = "") -> SliderSpec:
    return SliderSpec(f"lora:{path}", name or Path(path).stem, LORA, minimum=-3.0,
                      maximum=3.0, path=path)


# Class directions, conditional (see ``studio.core.sliders.directions.class_direction``): a hair
# colour slider steps from the image's own colour to the target (the whole travel 0 -> 2),
# smile and glasses use the mean difference; the other kinds of attribute are projected out
# (InterFaceGAN-style). On the embedded VAE SliderBench measured edit success 100% with 98%
# of other attributes kept, against 90% / 98% for the conditional mean difference
# ("mean-cond", which turned white and blue hair white, not blonde).
LATENT_METHOD = "class-cond"
# The GAN's z is entangled (a straight step that adds a smile flips hair or background
# colours of some latents), so its sliders follow a curved path steered by the GAN's latent
# attribute reader (``studio.core.sliders.latent_flow``). SliderBench (GAN, value 2): others kept
# 86.5% -> 91.1%, edit success 80.1% -> 90.2%.
FLOW_METHOD = "flow"
# Renderer-labelled pairs (``LatentModels.paired_directions``): the same portrait drawn with
# and without the attribute, encoded; the mean difference. Needs an encoder: the VAE's
# default. On 8 canvas portraits of the diffusion model (oracle, value 2, the edit carried
# over to the canvas): smile 8/8 with the rest kept 8/8, against 8/8 and 6/8 for class-cond.
PAIRED_METHOD = "paired"
LATENT_METHODS = {"vae": PAIRED_METHOD, "gan": FLOW_METHOD}
# Latent starters known not to do what their names say on a model, with the measured
# reason the panel greys them with (as ``SliderSpec.not_on``).
LATENT_NOT_ON = {
    ("gan", "smile"): (
        "Greyed on studio-tiny-gan: its inversion of a canvas portrait draws the mouth "
        "smudged, and Smile at 2 gave a smile the oracle reads on 2 of 8 portraits, 1 with "
        "the rest kept (5 of 8 and 3 before the oracle's mouth-line fix; a direction from "
        "the renderer's pairs: 1 of 8). Use VAE Smile."),
    ("gan", "background=blue"): (
        "Greyed on studio-tiny-gan: Blue background turned 4 of 8 canvas portraits blue "
        "(its path stopped short of blue on 3 and read a yellow as blue); a direction from "
        "the renderer's portraits drawn blue and inverted: 1 of 8. Use VAE Blue background."),
}


def latent_slider(space: str, attribute: str, method: str | None = None) -> SliderSpec:
    """A slider of one attribute in a latent space, with the space's own method unless
    ``method`` says otherwise (the method is recorded in each request)."""
    if space not in LATENT_SPACES:
        raise ValueError(f"{space!r} is not a latent model space")
    method = method or LATENT_METHODS[space]
    kind, _, value = attribute.partition("=")
    # A colour says what it colours ("Blue background", not "Blue").
    label = f"{value} {kind}" if kind in ("hair", "background", "skin") and value else attribute
    how = _LATENT_HOW.get(method.removesuffix("-cond"), f"along the {method} direction")
    if method.endswith("-cond"):
        how += ", the other kinds of attribute projected out"
    reason = LATENT_NOT_ON.get((space, attribute))
    return SliderSpec(f"{space}:{attribute}", label.capitalize(), space, attribute=attribute,
                      method=method,
                      description=f"{label.capitalize()} in the {space.upper()} latent: {how}.",
                      not_on=((LATENT_MODELS[space], reason),) if reason else ())


_LATENT_HOW = {
    "class": "a step from the image's own class towards it (the whole way at 2)",
    "mean": "along the difference of the mean latents with and without it",
    "logistic": "across a logistic boundary between latents with and without it",
    "svm": "across a linear SVM boundary between latents with and without it",
    "pca": "along the principal component that best separates it",
    PAIRED_METHOD: ("the mean step between the same portraits drawn with and without "
                    "it (from the image's own class for colours, the whole way at 2)"),
    FLOW_METHOD: ("a curved path that keeps the other attributes (steered by the model's "
                  "attribute reader, in the fewest pixels)"),
}


def example_slider(space: str, name: str, vector: Iterable[float],
                   method: str = "mean") -> SliderSpec:
    """A latent slider along a direction built from the user's marked examples (see
    ``studio.core.sliders.directions.build_direction``); the request carries the vector itself."""
    if space not in LATENT_SPACES:
        raise ValueError(f"{space!r} is not a latent model space")
    text = ",".join(repr(float(v)) for v in vector)
    return SliderSpec(f"{space}:example:{name}", name, space, attribute=f"example:{name}",
                      method=method, vector=text)


def variation_slider(seed: int) -> SliderSpec:
    return SliderSpec(f"variation:{int(seed)}", f"Variation (seed {int(seed)})", VARIATION,
                      minimum=0.0, maximum=1.0, seed=int(seed))


def interpolation_slider(seed: int) -> SliderSpec:
    return SliderSpec(f"interp:{int(seed)}", f"Towards seed {int(seed)}", INTERP,
                      minimum=0.0, maximum=1.0, seed=int(seed))


def spec_from_id(slider_id: str, starters: Mapping[str, SliderSpec] | None = None) -> SliderSpec:
    """The slider an id names (a starter id, or a self-describing ``space:...`` id)."""
    if starters and slider_id in starters:
        return starters[slider_id]
    space, sep, rest = slider_id.partition(":")
    if not sep:
        raise KeyError(f"unknown slider {slider_id!r}")
    if space == PROMPT:
        positive, _, negative = rest.partition("|")
        return prompt_pair(positive, negative)
    if space == LORA:
        return lora_slider(rest)
    if space in LATENT_SPACES:
        return latent_slider(space, rest)
    if space in (VARIATION, INTERP):
        seed = int(rest)
        return variation_slider(seed) if space == VARIATION else interpolation_slider(seed)
    raise KeyError(f"unknown slider {slider_id!r}")


def slider_for_id(slider_id: str) -> SliderSpec:
    """The slider ``slider_id`` names (starter or ``space:...`` id), or one clear error."""
    from studio.core.errors import InvalidRequestError

    starters = starter_sliders()
    try:
        return spec_from_id(slider_id, starters)
    except (KeyError, ValueError):
        raise InvalidRequestError(
            f"Unknown slider {slider_id!r}.",
            hint=f"Starter sliders: {', '.join(sorted(starters))}; or a prompt:positive|"
                 "negative, lora:FILE, vae:ATTRIBUTE or gan:ATTRIBUTE id.") from None


def load_starter_set(folder: str | Path) -> dict[str, SliderSpec]:
    """The slider files of a folder (``*.json``: one slider, or ``{"sliders": [...]}``)."""
    out: dict[str, SliderSpec] = {}
    for path in sorted(Path(folder).glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for item in data.get("sliders", [data]) if isinstance(data, dict) else data:
            spec = SliderSpec.from_dict(item)
            out[spec.slider_id] = spec
    return out


def starter_sliders() -> dict[str, SliderSpec]:
    """The starter set shipped in ``resources/sliders``."""
    from studio.paths import resources_dir

    return load_starter_set(resources_dir() / "sliders")


class SliderSet:
    """The sliders shown in a document, in order, with their values.

    ``to_values``/``from_values`` go to and from ``Document.sliders``; every slider in the
    set has an entry there (0 for a slider at rest) so the set itself is saved too.
    """

    def __init__(self, specs: Iterable[SliderSpec] = (),
                 values: Mapping[str, float] | None = None) -> None:
        self.specs: dict[str, SliderSpec] = {s.slider_id: s for s in specs}
        self.values: dict[str, float] = {k: 0.0 for k in self.specs}
        for k, v in (values or {}).items():
            if k in self.specs:
                self.values[k] = float(v)

    def add(self, spec: SliderSpec, value: float = 0.0) -> None:
        self.specs[spec.slider_id] = spec
        self.values.setdefault(spec.slider_id, float(value))

    def remove(self, slider_id: str) -> None:
        self.specs.pop(slider_id, None)
        self.values.pop(slider_id, None)

    def set(self, slider_id: str, value: float) -> None:
        spec = self.specs[slider_id]
        self.values[slider_id] = min(spec.maximum, max(spec.minimum, float(value)))

    def reset(self) -> None:
        self.values = {k: 0.0 for k in self.specs}

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.specs.values())

    def __len__(self) -> int:
        return len(self.specs)

    def to_values(self) -> dict[str, float]:
        return dict(self.values)

    @classmethod
    def from_values(cls, values: Mapping[str, float],
                    starters: Mapping[str, SliderSpec] | None = None) -> SliderSet:
        """Rebuild a set from ``Document.sliders``; unknown ids are skipped."""
        specs = []
        for slider_id in values:
            try:
                specs.append(spec_from_id(slider_id, starters))
            except (KeyError, ValueError):
                continue
        return cls(specs, values)

    def apply(self, request: GenerationRequest) -> GenerationRequest:
        """``request`` with this set's non-zero values (see ``apply_sliders``)."""
        return apply_sliders(request, [(s, self.values.get(s.slider_id, 0.0)) for s in self])


def slider_value(spec: SliderSpec, value: float) -> SliderValue:
    """The request entry of one slider, with what the engine needs in its payload."""
    payload: dict[str, object] = {}
    if spec.space == PROMPT:
        payload = {"positive": spec.positive, "negative": spec.negative,
                   "templates": "\n".join(spec.templates), "start": float(spec.start)}
        if spec.in_prompt:  # requests recorded before this key keep their template-only delta
            payload["context"] = "prompt"
            payload["reach"] = float(spec.reach)
            if spec.beyond != 1.0:  # requests without it keep the linear travel
                payload["beyond"] = float(spec.beyond)
            if spec.alternatives:
                payload["alternatives"] = "\n".join(spec.alternatives)
            if spec.synonyms:
                payload["synonyms"] = "\n".join(spec.synonyms)
        if spec.local:
            payload["local"] = True
    elif spec.space in LATENT_SPACES:
        payload = {"attribute": spec.attribute, "method": spec.method}
        if spec.vector:
            payload["vector"] = spec.vector
    elif spec.space == INTERP:
        payload = {"seed_b": int(spec.seed)}
    return SliderValue(spec.slider_id, float(value), spec.space, tuple(sorted(payload.items())))


def apply_sliders(request: GenerationRequest,
                  values: Iterable[tuple[SliderSpec, float]]) -> GenerationRequest:
    """The request with slider values applied; values of 0 change nothing at all.

    Prompt, latent and interpolation sliders go to ``request.sliders``, LoRA sliders to
    ``request.loras`` and the variation slider to the variation fields. Entries of sliders
    this call does not mention are kept.
    """
    given = [(s, float(v)) for s, v in values]
    ids = {s.slider_id for s, _ in given}
    sliders = [sv for sv in request.sliders if sv.slider_id not in ids]
    lora_paths = {s.path for s, _ in given if s.space == LORA}
    loras = [lw for lw in request.loras if lw.path not in lora_paths]
    changes: dict[str, object] = {}
    for spec, value in given:
        if spec.space == VARIATION:
            if value != 0:
                changes.update(variation_seed=spec.seed, variation_strength=min(1.0, abs(value)))
            elif request.variation_seed == spec.seed:
                changes.update(variation_seed=None, variation_strength=0.0)
            continue
        if value == 0:
            continue
        if spec.space == LORA:
            loras.append(LoraWeight(spec.path, value, spec.label))
        else:
            sliders.append(slider_value(spec, value))
    return replace(request, sliders=tuple(sliders), loras=tuple(loras), **changes)  # type: ignore[arg-type]


def payload_of(value: SliderValue) -> dict[str, object]:
    return dict(value.payload)


def preview_steps(steps: int) -> int:
    """Steps of a drag preview: a sixth of the final steps, at least 4 (the final render on
    release uses all of them). 4 of 25 Euler steps keep the composition and the attribute."""
    return max(1, min(steps, max(4, round(steps / 6))))


def preview_request(request: GenerationRequest) -> GenerationRequest:
    """The fast stand-in rendered while a slider is dragged (fewer sampler steps)."""
    return replace(request, steps=preview_steps(request.steps))


def inversion_request(request: GenerationRequest, steps: int | None = None,
                      guidance: float = 1.0) -> GenerationRequest:
    """Sliders over an imported photo: the engine inverts ``request.init_image`` with DDIM
    (its prompt describes the photo) and samples back from that noise with DDIM, where the
    sliders act. Value-0 sliders give the reconstruction of the photo."""
    if request.init_image is None:
        raise ValueError("inversion needs the image (init_image) to invert")
    marker = SliderValue(INVERT, 1.0, INVERT)
    kept = tuple(s for s in request.sliders if s.space != INVERT)
    return replace(request, task="img2img", scheduler="DDIM", guidance=float(guidance),
                   steps=int(steps or request.steps), sliders=(marker, *kept), mask=None)


# -- seed exploration -------------------------------------------------------------------
def interpolation_requests(request: GenerationRequest, seed_b: int,
                           frames: int = 8) -> list[GenerationRequest]:
    """A strip of ``frames`` requests from ``request``'s image (t=0) to seed ``seed_b``'s (t=1).

    The first request is ``request`` itself; the last reproduces the image of ``seed_b``
    (the engine returns exactly that seed's noise at t=1).
    """
    spec = interpolation_slider(seed_b)
    n = max(2, int(frames))
    return [apply_sliders(request, [(spec, i / (n - 1))]) for i in range(n)]


def neighbourhood_requests(request: GenerationRequest, strength: float = 0.2,
                           first_seed: int | None = None) -> list[GenerationRequest]:
    """A 3x3 grid around ``request``'s image: the centre is the image itself, the eight
    around it are variations of strength ``strength`` with seeds ``first_seed .. +7``."""
    first = (request.seed + 1) if first_seed is None else int(first_seed)
    out = []
    k = 0
    for i in range(9):
        if i == 4:
            out.append(request)
            continue
        spec = variation_slider((first + k) % 2**32)
        out.append(apply_sliders(request, [(spec, strength)]))
        k += 1
    return out
