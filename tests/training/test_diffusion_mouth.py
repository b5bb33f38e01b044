"""The mouth fine-tune of studio-tiny-diffusion (issue 27): its twins, its wider UNet, its run.

The twins are the whole idea: a training portrait drawn again with the smile negated, and
nothing else changed. If they differed elsewhere, the pairs would teach the model other
things than the mood word; if the oracle did not read them the other way, they would teach
nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from studio.core.portraits.oracle import read_portraits
from studio.training import common
from studio.training.train_diffusion_mouth import (
    add_fine_attention,
    mood_captions,
    render_twins,
    swap_mood,
)


@pytest.fixture(scope="module")
def small():
    return common.build_dataset(common.TRAIN_SEED, 64)


def test_twins_differ_from_their_portrait_only_at_the_mouth_and_read_the_other_way(small):
    strong = np.flatnonzero(np.abs(small.smile) > 0.5)[:12]
    assert len(strong) >= 8
    twins = render_twins(strong)
    originals = small.images[strong]
    changed = np.abs(twins.astype(int) - originals.astype(int)).max(-1) > 0
    ys, xs = np.nonzero(changed.any(0))
    # the renderer's mouth lies within rows 32..46 and columns 20..44 (train_diffusion)
    assert ys.min() >= 32 and ys.max() < 47 and xs.min() >= 20 and xs.max() < 45
    assert changed.reshape(len(strong), -1).sum(1).min() >= 4  # every twin's mouth moved
    read_a, read_b = read_portraits(originals), read_portraits(twins)
    pairs = [(a.smile, b.smile, truth) for a, b, truth
             in zip(read_a, read_b, small.smile[strong], strict=True)
             if a.smile is not None and b.smile is not None]
    assert len(pairs) >= 6
    assert all(np.sign(a) == -np.sign(b) for a, b, _ in pairs), pairs
    assert all(np.sign(a) == np.sign(truth) for a, _, truth in pairs), pairs


def test_mood_captions_name_the_mood_and_the_swap_names_the_other():
    data = common.build_dataset(common.TRAIN_SEED, 64)
    draw = mood_captions(data, 0)
    for i in np.flatnonzero(np.abs(data.smile) > 0.5)[:20]:
        caption = draw(int(i))
        want, other = ("smiling", "frowning") if data.smile[i] > 0 else ("frowning", "smiling")
        assert want in caption and other not in caption
        assert swap_mood(caption) == caption.replace(want, other)
    neutral = int(np.flatnonzero(np.abs(data.smile) < 0.3)[0])
    with pytest.raises(ValueError, match="no mood"):
        draw(neutral)


def test_fine_attention_starts_from_the_base_function():
    from diffusers import UNet2DConditionModel

    from studio.training.train_diffusion import UNET_CONFIG

    torch.manual_seed(0)
    base = UNet2DConditionModel(**UNET_CONFIG).eval()
    wider = add_fine_attention(base).eval()
    assert wider.config.down_block_types[0] == "CrossAttnDownBlock2D"
    assert wider.config.up_block_types[-1] == "CrossAttnUpBlock2D"
    assert sum(p.numel() for p in wider.parameters()) > sum(p.numel() for p in base.parameters())
    x, cond = torch.randn(2, 4, 16, 16), torch.randn(2, 7, 64)
    with torch.no_grad():
        torch.testing.assert_close(wider(x, 500, cond).sample, base(x, 500, cond).sample)
    assert add_fine_attention(wider) is wider


@pytest.mark.slow
def test_the_mouth_fine_tune_trains_a_saved_pipeline_and_chains_its_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small) -> None:
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from studio.training import train_diffusion, train_diffusion_mouth
    from studio.training.train_diffusion import (
        TEXT_CONFIG,
        UNET_CONFIG,
        build_autoencoder,
        build_tokenizer,
        save_pipeline,
    )

    monkeypatch.setattr(common, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(train_diffusion_mouth, "build_dataset", lambda seed, n: small)
    out = tmp_path / "models"
    tokenizer = build_tokenizer(tmp_path / "tok", train_diffusion.caption_stream(small, 0)(
        range(64)))
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), **TEXT_CONFIG))
    save_pipeline(out / "studio-tiny-diffusion", build_autoencoder(),
                  UNet2DConditionModel(**UNET_CONFIG), text_encoder, tokenizer,
                  {"scaling_factor": 1.0})
    (out / "studio-tiny-diffusion" / "training.json").write_text(json.dumps(
        {"command": "python -m studio.training diffusion --minutes 1", "seconds": 60,
         "diffusion_steps": 10}))
    train_diffusion_mouth.train(out, minutes=0.05)
    folder = out / "studio-tiny-diffusion"
    record = json.loads((folder / "training.json").read_text())
    assert record["command"] == ("python -m studio.training diffusion --minutes 1 && "
                                 "python -m studio.training diffusion-mouth --minutes 0.05")
    assert record["diffusion_steps"] > 10 and record["mouth_pairs"] == 8
    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
    assert pipe.unet.config.down_block_types[0] == "CrossAttnDownBlock2D"
    image = pipe("a smiling person", num_inference_steps=2, height=64, width=64,
                 output_type="np", generator=torch.Generator().manual_seed(0)).images[0]
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()


def test_ema_weights_are_in_place_while_saving_and_the_live_ones_after():
    """Both diffusion trainers save their EMA weights this way (``common.ema_weights``)."""
    params = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.zeros(2))]
    ema = [torch.full((3,), 5.0), torch.full((2,), -1.0)]
    with common.ema_weights(params, ema):
        assert torch.equal(params[0], ema[0]) and torch.equal(params[1], ema[1])
    assert torch.equal(params[0], torch.ones(3)) and torch.equal(params[1], torch.zeros(2))
    with pytest.raises(RuntimeError), common.ema_weights(params, ema):
        raise RuntimeError("a full disk while saving")
    assert torch.equal(params[0], torch.ones(3))  # training goes on with its own weights
