"""Slider math and slider sets: directions, exactness at 0, requests, undo, saving."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from studio.core.document.edits import SetSliderValue
from studio.core.document.layers import Document
from studio.core.jobs.request import GenerationRequest
from studio.core.project.store import ProjectStore
from studio.core.sliders.directions import (
    Direction,
    apply_directions,
    build_direction,
    class_direction,
    fit_source_classes,
    orthogonalize,
    principal_directions,
)
from studio.core.sliders.specs import (
    SliderSet,
    SliderSpec,
    apply_sliders,
    interpolation_requests,
    latent_slider,
    lora_slider,
    neighbourhood_requests,
    prompt_pair,
    spec_from_id,
    starter_sliders,
    variation_slider,
)


def _planted(n: int = 600, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = np.zeros(dim)
    truth[3] = 1.0
    x = rng.standard_normal((n, dim))
    x[:, 3] *= 3.0  # the attribute is the main mode of variation (so PCA finds it too)
    labels = x @ truth + 0.3 * rng.standard_normal(n) > 0
    return x, labels, truth


@pytest.mark.parametrize("method", ["mean", "logistic", "svm", "pca"])
def test_direction_builder_finds_a_planted_attribute(method):
    x, labels, truth = _planted()
    d = build_direction(x, labels, method, space="vae", attribute="a")
    assert d.unit @ truth > 0.9
    # Value 1 moves as far as the class means are apart.
    gap = np.linalg.norm(x[labels].mean(0) - x[~labels].mean(0))
    assert np.linalg.norm(d.vector) == pytest.approx(gap, rel=0.05)


def test_value_zero_is_exact_and_response_is_monotone():
    x, labels, _ = _planted()
    d = build_direction(x, labels, "logistic")
    z = x[:5].astype(np.float32)
    assert np.array_equal(apply_directions(z, [(d.vector, 0.0)]), z)
    scores = [float((apply_directions(z, [(d.vector, v)]) @ d.unit).mean())
              for v in (-2, -1, -0.5, 0, 0.5, 1, 2)]
    assert scores == sorted(scores)


def test_conditional_direction_keeps_other_attribute():
    rng = np.random.default_rng(1)
    a = rng.standard_normal(8)
    b = rng.standard_normal(8)
    out = orthogonalize(a, [b])
    assert abs(out @ b) < 1e-9
    assert out @ (a / np.linalg.norm(a)) == pytest.approx(np.linalg.norm(a))


def _colours(n_per: int = 200, dim: int = 12, seed: int = 3):
    """Latents of three "hair colours" around their own centres, plus unrelated variation."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((3, dim)) * 3.0
    y = np.repeat(np.arange(3), n_per)
    x = centres[y] + rng.standard_normal((len(y), dim))
    return x, y, centres, ("black", "blonde", "white")


def test_class_direction_takes_every_colour_to_the_target_at_the_slider_end():
    x, y, centres, names = _colours()
    source = fit_source_classes(x, y, names)
    assert np.mean(source.predict(x) == y) > 0.97
    d = class_direction(x, y, names, "blonde", space="vae", attribute="hair=blonde",
                        source=source)
    z = x[y != 1][:50].astype(np.float32)
    moved = apply_directions(z, [(d.steps_for(z), 2.0)])
    # Black and white both arrive at blonde (one vector for all would not do both).
    assert np.mean(source.predict(moved) == 1) == 1.0
    halfway = apply_directions(z, [(d.steps_for(z), 1.0)])
    dist = [np.linalg.norm(v - centres[1], axis=1).mean() for v in (z, halfway, moved)]
    assert dist[0] > dist[1] > dist[2]  # monotone towards the target
    assert np.array_equal(apply_directions(z, [(d.steps_for(z), 0.0)]), z)
    # Already blonde: the step is the target-vs-rest mean difference (on the same scale).
    blonde = x[y == 1][:3]
    expected = (x[y == 1].mean(0) - x[y != 1].mean(0)) / 2
    assert np.allclose(d.steps_for(blonde), expected[None, :], atol=1e-5)
    # ... which takes it away from blonde below 0; above 0 it is there already and stays
    # (further along, blonde turns white).
    assert np.allclose(d.steps_for(blonde, -1.0), expected[None, :], atol=1e-5)
    assert not d.steps_for(blonde, 1.0).any()
    mixed = np.concatenate([blonde, z[:2]])
    assert np.allclose(d.steps_for(mixed, 1.0)[3:], d.steps_for(z[:2]), atol=1e-6)


def test_a_colour_direction_ends_at_the_target_whatever_the_colour_it_starts_from():
    """Renderer groups (each portrait in every colour, all else the same): the colour's
    few dimensions are found, and at the slider's end a latent's colour part is the
    target's, from any colour, even one unlike any it was built from; the rest stays."""
    from studio.core.sliders.directions import colour_basis, subspace_direction

    rng = np.random.default_rng(3)
    dim, n = 24, 80
    colours = rng.standard_normal((5, dim)) * 3  # where each colour puts a latent
    span = np.linalg.qr(rng.standard_normal((dim, 3)))[0].T  # colours vary in 3 dims
    colours = colours @ span.T @ span
    rest = rng.standard_normal((n, dim))
    rest -= rest @ span.T @ span  # the rest of the portrait: nothing in the colour dims
    groups = rest[:, None, :] + colours[None] + 0.01 * rng.standard_normal((n, 5, dim))
    basis = colour_basis(groups)
    assert basis.shape == (3, dim)
    assert np.allclose(basis @ basis.T, np.eye(3), atol=1e-8)
    assert np.linalg.norm(span @ basis.T, axis=0).min() > 0.99  # the planted dims
    d = subspace_direction(groups, 2, basis, "vae", "background=blue")
    back = Direction.from_dict(d.to_dict())
    odd = rest[:10] + rng.standard_normal(3) @ span * 4  # a colour not among the five
    for z in (groups[:10, 0], groups[:10, 4], odd):
        z = z.astype(np.float32)
        end = apply_directions(z, [(back.steps_for(z, 2.0), 2.0)])
        target = np.broadcast_to(colours[2] @ basis.T, (10, 3))
        assert np.allclose(end @ basis.T, target, atol=0.05)
        assert np.allclose((end - z) - (end - z) @ basis.T @ basis, 0, atol=1e-4)  # rest kept
        half = apply_directions(z, [(back.steps_for(z, 1.0), 1.0)])
        assert np.allclose(half, (z + end) / 2, atol=1e-4)
        assert np.array_equal(apply_directions(z, [(back.steps_for(z, 0.0), 0.0)]), z)
    # Below 0 it moves away along the mean step from the other colours.
    assert np.allclose(back.steps_for(odd, -1.0), d.vector, atol=1e-6)
    with pytest.raises(ValueError):
        colour_basis(groups[:, :1])


def test_class_direction_round_trips_and_projects_out_other_kinds():
    x, y, _, names = _colours(n_per=60)
    keep = np.random.default_rng(0).standard_normal(x.shape[1])
    keep /= np.linalg.norm(keep)
    d = class_direction(x, y, names, "white", condition_on=[keep])
    assert all(abs(v @ keep) < 1e-4 for v in d.from_class.values())
    back = Direction.from_dict(d.to_dict())
    assert set(back.from_class) == {"black", "blonde"}
    assert back.source is not None and back.source.names == names
    assert np.allclose(back.steps_for(x[:20]), d.steps_for(x[:20]), atol=1e-5)
    with pytest.raises(ValueError):
        class_direction(x, np.zeros(len(x), int), names, "black")


def test_direction_needs_both_classes_and_round_trips():
    x, labels, _ = _planted(n=50)
    with pytest.raises(ValueError):
        build_direction(x, np.ones(50, bool))
    d = build_direction(x, labels, "svm", space="gan", attribute="smile")
    back = Direction.from_dict(d.to_dict())
    assert np.allclose(back.vector, d.vector) and back.method == "svm"
    assert principal_directions(x, 3).shape == (3, 16)


def test_starter_set_ships_the_issue_sliders():
    starters = starter_sliders()
    for sid in ("age", "smile", "glasses", "hair-red", "lighting", "style-painting"):
        assert sid in starters
    assert starters["lighting"].start > 0


def test_zero_values_leave_the_request_unchanged_and_values_are_recorded(tmp_path):
    base = GenerationRequest("a person", seed=3, width=64, height=64)
    age = starter_sliders()["age"]
    lora = lora_slider(str(tmp_path / "x.safetensors"))
    var = variation_slider(99)
    assert apply_sliders(base, [(age, 0.0), (lora, 0.0), (var, 0.0)]) == base
    req = apply_sliders(base, [(age, 1.5), (lora, -2.0), (var, 0.3)])
    assert req.sliders[0].slider_id == "age" and req.sliders[0].value == 1.5
    assert dict(req.sliders[0].payload)["positive"] == "old"
    assert req.loras[0].weight == -2.0
    assert (req.variation_seed, req.variation_strength) == (99, 0.3)
    # The recorded request reproduces: it survives JSON.
    assert GenerationRequest.from_json(req.to_json()) == req
    # Moving back to 0 removes the entry again.
    assert apply_sliders(req, [(age, 0.0), (lora, 0.0), (var, 0.0)]) == base


def test_slider_words_are_placed_in_the_prompt_itself():
    from studio.core.sliders.specs import place_in_prompt, placement_note

    red = starter_sliders()["hair-red"]
    prompt = "a smiling person with blonde hair and no glasses on a red background"
    # The prompt's own hair colour is what a hair slider moves away from (not "brown hair"),
    # and "red" of the background is not mistaken for the hair.
    template, positive, negative = place_in_prompt(prompt, red.positive, red.negative,
                                                   red.alternatives, red.templates)
    assert (positive, negative) == ("red hair", "blonde hair")
    assert template == "a smiling person with {} and no glasses on a red background"
    # Case and spacing of the prompt do not hide a phrase; the prompt's own words are kept.
    assert place_in_prompt("A person with Blonde  hair", "red hair", "brown hair",
                           ["blonde hair"]) == ("A person with {}", "red hair", "Blonde  hair")
    # The positive words already there: the slider moves between them and its negative.
    assert place_in_prompt("a smiling person", "smiling", "frowning") == (
        "a {} person", "smiling", "frowning")
    # No phrase: a template whose text without the words is in the prompt gives the place.
    smile = starter_sliders()["smile"]
    assert place_in_prompt("a person with red hair", smile.positive, smile.negative,
                           smile.alternatives, smile.templates) == (
        "a {} person with red hair", "smiling", "frowning")
    # A slot at a template's end would make "a person with round glasses blonde hair": no.
    assert place_in_prompt("a person with blonde hair", "round glasses", "",
                           (), ("a person with {}",)) is None
    # No place at all: None (the template-averaged direction is used).
    assert place_in_prompt("a mountain lake", "smiling", "frowning", (), smile.templates) is None
    # Glasses: the prompt's own glasses of another shape are the "with" end, so the slider
    # removes them to the left (it once moved "square glasses" towards "round glasses", and
    # left the glasses on at -2); "without glasses" is the "without" end.
    glasses = starter_sliders()["glasses"]

    def glasses_in(text):
        return place_in_prompt(text, glasses.positive, glasses.negative, glasses.alternatives,
                               glasses.templates, glasses.synonyms)

    assert glasses_in("a person with square glasses on a red background") == (
        "a person with {} on a red background", "square glasses", "no glasses")
    assert glasses_in("a person wearing glasses") == ("a person wearing {}", "glasses",
                                                      "no glasses")
    assert glasses_in("a person without glasses") == ("a person {}", "round glasses",
                                                      "without glasses")
    assert glasses_in("a person with no glasses") == ("a person with {}", "round glasses",
                                                      "no glasses")
    assert glasses_in("a person with round glasses") == ("a person with {}", "round glasses",
                                                         "no glasses")
    # The panel's note says which way the slider goes from the prompt as written.
    assert placement_note(glasses, "a person with square glasses").startswith(
        "In this prompt: “square glasses” → “no glasses” at -2 (a person with …).")
    assert placement_note(glasses, "a person with no glasses").startswith(
        "In this prompt: “no glasses” → “round glasses” at 2 (a person with …).")
    # Whole words only: "reddish hair" is no "red hair".
    assert place_in_prompt("reddish hair", "red hair", "", (), ()) is None
    # The request records where the words may go, so the image can be reproduced.
    payload = dict(apply_sliders(GenerationRequest(prompt), [(red, 1.0)]).sliders[0].payload)
    assert payload["context"] == "prompt" and "blonde hair" in payload["alternatives"]
    assert payload["reach"] == 2.0
    assert SliderSpec.from_dict(red.to_dict()) == red
    smile_again = SliderSpec.from_dict(smile.to_dict())
    assert smile_again == smile and smile.reach == 2.0  # the word at 2, as the others
    near = replace(smile, reach=1.0)  # a reach of its own is kept by its file
    assert SliderSpec.from_dict(near.to_dict()) == near and near.to_dict()["reach"] == 1.0
    with pytest.raises(ValueError, match="reach"):
        SliderSpec.from_dict({**red.to_dict(), "reach": 0})



def test_past_the_end_the_prompt_already_says_a_slider_goes_as_far_as_its_beyond():
    """A yes-or-no slider (Glasses, ``beyond`` 0.25) goes only a little past the words the
    prompt already says, either way; the other side and the other sliders travel linearly,
    and requests recorded without ``beyond`` keep the linear travel."""
    from studio.core.sliders.specs import placement_note
    from studio.engine.sliders import PromptDelta, travel

    glasses, smile = starter_sliders()["glasses"], starter_sliders()["smile"]
    assert glasses.beyond == 0.25 and smile.beyond == 1.0
    said_on, said_off, neither = (PromptDelta(None, end=1), PromptDelta(None, end=-1),
                                  PromptDelta(None))
    assert travel(said_on, 2.0, 0.25) == 0.5 and travel(said_on, -2.0, 0.25) == -2.0
    assert travel(said_off, -2.0, 0.25) == -0.5 and travel(said_off, 1.0, 0.25) == 1.0
    assert travel(neither, 2.0, 0.25) == 2.0 and travel(said_on, 2.0, 1.0) == 2.0
    payload = dict(apply_sliders(GenerationRequest("a person with round glasses"),
                                 [(glasses, 2.0)]).sliders[0].payload)
    assert payload["beyond"] == 0.25
    plain = dict(apply_sliders(GenerationRequest("a smiling person"), [(smile, 2.0)])
                 .sliders[0].payload)
    assert "beyond" not in plain  # a smile past "smiling" grows: the linear travel
    assert SliderSpec.from_dict(glasses.to_dict()) == glasses
    with pytest.raises(ValueError, match="beyond"):
        SliderSpec.from_dict({**glasses.to_dict(), "beyond": 1.5})
    # The panel's note says so where the prompt says one end, and only there.
    assert "only a little past “round glasses”" in placement_note(
        glasses, "a person with round glasses")
    assert "To the left it goes only a little past “no glasses”" in placement_note(
        glasses, "a person with no glasses")
    assert "only a little" not in placement_note(smile, "a smiling person")


def test_ids_describe_their_sliders():
    pair = prompt_pair("old", "young")
    assert spec_from_id(pair.slider_id) == pair
    assert spec_from_id("vae:hair=red").attribute == "hair=red"
    assert spec_from_id("gan:smile").space == "gan"
    assert spec_from_id("interp:7").seed == 7
    with pytest.raises(KeyError):
        spec_from_id("nonsense")


def test_interpolation_strip_and_neighbourhood_grid():
    base = GenerationRequest("a cat", seed=5, width=64, height=64)
    strip = interpolation_requests(base, 42, frames=5)
    assert strip[0] == base and len(strip) == 5
    assert strip[-1].sliders[0].value == 1.0
    grid = neighbourhood_requests(base, 0.2)
    assert len(grid) == 9 and grid[4] == base
    assert len({r.variation_seed for r in grid}) == 9


def test_one_undo_entry_per_drag_and_the_set_is_saved(tmp_path):
    from studio.core.document.undo import UndoStack

    doc = Document()
    undo = UndoStack(doc)
    sset = SliderSet([starter_sliders()["age"], latent_slider("vae", "glasses")])
    for sid, v in sset.to_values().items():
        doc.sliders[sid] = v
    for v in (0.1, 0.4, 0.9, 1.3):  # one drag
        undo.push(SetSliderValue("age", v, merge_id="drag-1"))
    undo.push(SetSliderValue("age", 1.3, merge_id="drag-1-end"))
    assert doc.sliders["age"] == 1.3
    undo.undo()
    undo.undo()
    assert doc.sliders["age"] == 0.0
    undo.redo()
    path = tmp_path / "p.studio"
    ProjectStore.save(path, doc, undo)
    loaded = ProjectStore.load(path).document
    again = SliderSet.from_values(loaded.sliders, starter_sliders())
    assert list(again.specs) == ["age", "vae:glasses"]
    assert again.values["age"] == 1.3


def test_drag_previews_use_fewer_steps():
    from studio.core.sliders.specs import preview_request, preview_steps

    assert [preview_steps(s) for s in (1, 2, 4, 25, 40)] == [1, 2, 4, 4, 7]
    req = GenerationRequest("a", steps=25, width=64, height=64)
    assert preview_request(req).steps == 4 and preview_request(req).seed == req.seed
