"""The DiT's twin fine-tune (``python -m studio.training dit-mouth``, an experiment: see its
module): its glasses twins, their captions, and a seconds-long run on a saved DiT.

A twin must differ from its portrait only where the changed attribute is drawn, and the two
captions of a pair only in the words naming it; otherwise the pairs teach other things than
the word.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from studio.core.portraits.attributes import GLASSES
from studio.core.portraits.oracle import read_portraits
from studio.training import common
from studio.training.train_dit_mouth import (
    glasses_caption_pair,
    other_glasses,
    render_glasses_twins,
)


@pytest.fixture(scope="module")
def small():
    return common.build_dataset(common.TRAIN_SEED, 48)


def test_glasses_twins_change_the_glasses_around_the_eyes_and_nothing_else(small):
    idx = np.arange(16)
    offsets = other_glasses(idx)
    twins = render_glasses_twins(idx, offsets)
    for j in idx:
        own = GLASSES[small.labels["glasses"][j]]
        other = GLASSES[(small.labels["glasses"][j] + offsets[j]) % len(GLASSES)]
        assert own != other
        changed = np.abs(twins[j].astype(int) - small.images[j].astype(int)).max(-1) > 8
        ys, _ = np.nonzero(changed)
        assert changed.sum() >= 20  # a frame appeared, went, or changed shape
        assert ys.max() < 40  # the eyes' band: not the mouth, the shirt or the hair's ends
    truth = [GLASSES[(small.labels["glasses"][j] + offsets[j]) % 3] != "none" for j in idx]
    read = [r.glasses for r in read_portraits(twins)]
    assert np.mean([a == b for a, b in zip(read, truth, strict=True)]) >= 0.9


def test_a_caption_pair_differs_only_in_the_glasses_each_naming_its_own(small):
    rng = np.random.default_rng(0)
    names = {"none": ("no glasses", "without glasses"), "round": ("round glasses",),
             "square": ("square glasses",)}
    for i in range(24):
        own = GLASSES[small.labels["glasses"][i]]
        other = GLASSES[(small.labels["glasses"][i] + 1) % 3]
        first, second = glasses_caption_pair(small, i, other, rng)
        assert any(n in first for n in names[own]), first
        assert any(n in second for n in names[other]), second
        for word in ("red", "blue", "smiling", "frowning", "background", "hair"):
            assert first.count(word) == second.count(word), (first, second)


@pytest.mark.slow
def test_the_dit_twin_fine_tune_trains_a_saved_dit_and_chains_its_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small) -> None:
    import torch

    from studio.training import train_dit, train_dit_mouth
    from studio.training.common import DEFAULT_OUT

    monkeypatch.setattr(common, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(train_dit_mouth, "build_dataset", lambda seed, n: small)
    monkeypatch.setattr(train_dit_mouth, "GLASSES_TWINS", 16)
    out = tmp_path / "models"
    pipe = train_dit.build_pipeline(DEFAULT_OUT / "studio-tiny-diffusion")
    pipe.vae.register_to_config(scaling_factor=0.5, shift_factor=0.0)
    train_dit.save_pipeline(out / "studio-tiny-dit", pipe, {})
    (out / "studio-tiny-dit" / "training.json").write_text(json.dumps(
        {"command": "python -m studio.training dit --minutes 1", "seconds": 60,
         "dit_steps": 10}))
    before = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    train_dit_mouth.train(out, minutes=0.05)
    record = json.loads((out / "studio-tiny-dit" / "training.json").read_text())
    assert record["command"] == ("python -m studio.training dit --minutes 1 && "
                                 "python -m studio.training dit-mouth --minutes 0.05")
    assert record["dit_steps"] > 10 and record["twin_pairs"] == {"mood": 8, "glasses": 4}
    saved = train_dit.load_pipeline(out / "studio-tiny-dit")
    after = saved.transformer.state_dict()
    assert any(not torch.equal(after[k], v) for k, v in before.items())
    image = saved("a smiling person", num_inference_steps=2, height=64, width=64,
                  output_type="np", generator=torch.Generator().manual_seed(0)).images[0]
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()


@pytest.mark.slow
def test_a_dit_from_scratch_with_twins_from_the_first_step_saves_a_loadable_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small) -> None:
    """``scratch``: a fresh transformer and text encoders from the source model (no saved DiT
    needed), the latents' scale and shift set as ``train_dit`` sets them, the pair counts and
    the text path's learning-rate scale recorded with the command that made it."""
    import torch

    from studio.training import train_dit, train_dit_mouth
    from studio.training.common import DEFAULT_OUT

    monkeypatch.setattr(common, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(train_dit_mouth, "build_dataset", lambda seed, n: small)
    monkeypatch.setattr(train_dit_mouth, "GLASSES_TWINS", 16)
    out = tmp_path / "models"
    out.mkdir()
    (out / "studio-tiny-diffusion").symlink_to(DEFAULT_OUT / "studio-tiny-diffusion")
    train_dit_mouth.train(out, minutes=0.05, scratch=True, mood_pairs=2, glasses_pairs=1,
                          text_lr_scale=2.0, command="python -m studio.training dit")
    record = json.loads((out / "studio-tiny-dit" / "training.json").read_text())
    assert record["command"] == "python -m studio.training dit" and record["dit_steps"] > 0
    assert record["twin_pairs"] == {"mood": 2, "glasses": 1}
    assert record["text_path_lr_scale"] == 2.0 and record["scaling_factor"] > 0
    saved = train_dit.load_pipeline(out / "studio-tiny-dit")
    assert saved.vae.config.scaling_factor == pytest.approx(record["scaling_factor"])
    image = saved("a smiling person", num_inference_steps=2, height=64, width=64,
                  output_type="np", generator=torch.Generator().manual_seed(0)).images[0]
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()


def test_the_mood_words_offsets_act_once_whether_hooked_or_folded_in() -> None:
    """``MoodOffsets`` (STUDIO_DIT_MOOD_LR_SCALE): the offset of "smiling" moves that token's
    text-encoder output and no other prompt's; folded into the weights to save, the encoder
    gives the same output with the offsets reading 0, and taking them out restores both."""
    import torch

    from studio.training import train_dit
    from studio.training.common import DEFAULT_OUT
    from studio.training.train_dit_mouth import MoodOffsets

    pipe = train_dit.build_pipeline(DEFAULT_OUT / "studio-tiny-diffusion")
    encoders = [pipe.text_encoder, pipe.text_encoder_2]

    def states(text):
        ids = pipe.tokenizer([text], return_tensors="pt").input_ids
        with torch.no_grad():
            return encoders[0](ids, output_hidden_states=True).hidden_states[-2]

    plain = {t: states(t) for t in ("a smiling person", "a person with red hair")}
    mood = MoodOffsets(encoders, pipe.tokenizer)
    with torch.no_grad():
        for offset in mood.offsets:
            offset.normal_()
    hooked = {t: states(t) for t in plain}
    assert not torch.allclose(hooked["a smiling person"], plain["a smiling person"])
    assert torch.equal(hooked["a person with red hair"], plain["a person with red hair"])
    table = mood.tables[0].weight.detach().clone()
    mood.fold(+1)
    assert torch.allclose(states("a smiling person"), hooked["a smiling person"], atol=1e-5)
    mood.fold(-1)
    assert torch.equal(mood.tables[0].weight, table)
    assert torch.allclose(states("a smiling person"), hooked["a smiling person"], atol=1e-6)
