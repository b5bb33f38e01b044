"""Prompt sliders on the SHIPPED ``studio-tiny-dit`` (issue 24 point 4), judged by the oracle
(``studio.core.portraits.oracle``: the renderer's own regions and palette, trained on
nothing): the Red hair starter turns brown hair red, a blue/grey background pair turns the
grey background blue, each leaves the other alone, is exact at 0 and grows with its value."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from studio.core.jobs.request import GenerationRequest
from studio.core.portraits.oracle import read_portrait
from studio.core.sliders.specs import (
    apply_sliders,
    prompt_pair,
    slider_value,
    starter_sliders,
)
from studio.training.common import DEFAULT_OUT

pytestmark = pytest.mark.models

PROMPT = "a person with brown hair on a grey background"
SEEDS = (1, 2)
BACKGROUND = prompt_pair("blue background", "grey background",
                         templates=("a person on a {}", "a person with brown hair on a {}"),
                         local=False)


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


@functools.lru_cache(maxsize=1)
def _engine():
    from studio.engine.engine import Engine

    return Engine(device="cpu", dtype="float32", model_dirs=[], embedded_dir=DEFAULT_OUT,
                  hf_cache=False)


def _base(seed: int) -> GenerationRequest:
    return GenerationRequest(PROMPT, model="studio-tiny-dit", seed=seed, steps=20,
                             guidance=5.0, width=64, height=64, scheduler="Flow Euler")


def _images(spec, value: float) -> list[np.ndarray]:
    return [_engine().generate(apply_sliders(_base(s), [(spec, value)])).images[0]
            for s in SEEDS]


@pytest.mark.parametrize("slider, kind, target, other", [
    ("hair-red", "hair", "red", "background"),
    ("background", "background", "blue", "hair"),
])
def test_dit_slider_changes_what_it_names_by_the_oracle(slider, kind, target, other):
    spec = BACKGROUND if slider == "background" else starter_sliders()[slider]
    plain = [_engine().generate(_base(s)).images[0] for s in SEEDS]
    # The slider recorded at 0 (as a file or a project keeps it): the same pixels.
    at_zero = _engine().generate(_base(SEEDS[0]).replace(sliders=(slider_value(spec, 0.0),)))
    assert np.array_equal(at_zero.images[0], plain[0])
    readings = {v: [read_portrait(im) for im in (plain if v == 0 else _images(spec, v))]
                for v in (0.0, 1.0, 2.0)}
    assert [getattr(r, kind) for r in readings[0.0]] == ["brown" if kind == "hair"
                                                         else "grey"] * len(SEEDS)
    assert [getattr(r, kind) for r in readings[2.0]] == [target] * len(SEEDS), (
        [getattr(r, kind) for r in readings[2.0]])
    # Monotone: the delta E to the named colour falls as the value grows, on every seed.
    dist = np.array([[getattr(r, f"{kind}_distances")[target] for r in readings[v]]
                     for v in (0.0, 1.0, 2.0)])
    assert (np.diff(dist, axis=0) < 0).all(), dist
    # The other attribute the oracle reads stays as it was.
    assert ([getattr(r, other) for r in readings[2.0]]
            == [getattr(r, other) for r in readings[0.0]])


def test_a_local_slider_on_the_dit_changes_only_where_its_words_act(edit_masks):
    """Red hair with "Keep the rest" on the DiT (issue 27 point 4: the DiT kept 85.8 % of the
    other attributes without a mask): the edit's mask comes from the transformer's velocity
    under both prompts (flow matching), and outside it the base generation is put back, so
    the hair turns red while the shirt and background at the bottom of the picture change
    far less than with the slider on the whole image, and the mask stays off them. Measured
    on the twin-trained weights (2026-12-07): the last 8 rows changed by 5.5 levels against
    13.5 without the mask, the mask's mean there 0.008 (the last 12 rows, where long hair
    falls on the shoulders: 8.2 against 15.8; the first DiT 3.1 against 12.9)."""
    from dataclasses import replace

    red = starter_sliders()["hair-red"]
    assert red.local
    req = _base(7).replace(prompt="a person with blonde hair and round glasses on a grey "
                                   "background", batch_size=4)
    base = _engine().generate(req).images
    local = _engine().generate(apply_sliders(req, [(red, 2.0)])).images
    masks = list(edit_masks)
    whole = _engine().generate(apply_sliders(req, [(replace(red, local=False), 2.0)])).images
    assert len(masks) == 1 and masks[0].shape == (4, 1, 16, 16)
    assert float(masks[0][:, :, 14:].mean()) < 0.02  # not the shirt (a stray pixel at most)

    def below_face(images):  # the shirt and the background below where the hair reaches
        return float(np.mean([np.abs(a.astype(int) - b.astype(int)).mean(2)[-8:].mean()
                              for a, b in zip(images, base, strict=True)]))

    assert below_face(local) < 0.5 * below_face(whole), (below_face(local), below_face(whole))
    assert [read_portrait(im).hair for im in local] == ["red"] * 4
    assert ([read_portrait(im).background for im in local]
            == [read_portrait(im).background for im in base])


def test_the_smile_slider_on_the_dit_smiles_and_frowns_where_the_oracle_reads_a_mouth():
    """Smile on the twin-trained DiT (it was greyed on the first one, which drew no smile):
    at 2 a frowning prompt's portraits smile, at -2 a smiling prompt's frown. Eight seeds in
    one batch each; the oracle reads the mouth's curvature (not every mouth: faint or on dark
    skin it finds none). Measured (2026-12-07): frowning prompt at 0, 0 of 8 smile; at 2, 5
    of 8 (every mouth read); smiling prompt at 0, 4 of 8 smile; at -2, none, 3 frown."""
    smile = starter_sliders()["smile"]

    def moods(prompt: str, value: float) -> tuple[int, int]:
        req = _base(0).replace(prompt=prompt, batch_size=8)
        images = _engine().generate(apply_sliders(req, [(smile, value)]) if value
                                    else req).images
        read = [r.smile for r in map(read_portrait, images) if r.smile is not None]
        return sum(s > 0.35 for s in read), sum(s < -0.35 for s in read)

    frowning = "a frowning person with blonde hair on a grey background"
    assert moods(frowning, 0.0)[0] <= 1
    smiles, frowns = moods(frowning, 2.0)
    assert smiles >= 4 and frowns == 0, (smiles, frowns)
    smiling = "a smiling person with brown hair on a grey background"
    smiles, frowns = moods(smiling, -2.0)
    assert smiles == 0 and frowns >= 3, (smiles, frowns)
