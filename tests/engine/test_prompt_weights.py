"""Weighted and long prompts on the tiny SD1 and SDXL pipelines."""

from __future__ import annotations

import pytest
import torch

from studio.core.errors import ModelNotFoundError
from studio.core.jobs.request import GenerationRequest
from studio.engine.conditioning import encode_prompts
from studio.engine.prompt_weights import needs_weighted_encoding, token_count

KINDS = ["tiny_sd1_dir", "tiny_sdxl_dir"]
WORDS = ("red hair", "round glasses", "blue background", "smiling", "portrait", "person")


@pytest.fixture(params=KINDS)
def loaded(request, engine):
    return engine.load(str(request.getfixturevalue(request.param)))


def encode(loaded, prompt: str, negative: str = "", clip_skip: int = 0) -> dict:
    req = GenerationRequest(prompt, negative_prompt=negative, clip_skip=clip_skip)
    with torch.inference_mode():
        return encode_prompts(loaded.pipe, loaded.family, req, torch.device("cpu")).kwargs


def test_weight_one_equals_the_plain_prompt(loaded):
    plain = encode(loaded, "a person with red hair", "blurry")
    weighted = encode(loaded, "a person with (red hair:1.0)", "(blurry:1.0)")
    assert not needs_weighted_encoding(loaded.pipe, GenerationRequest("a person with red hair"))
    assert plain.keys() == weighted.keys()
    for key in plain:
        torch.testing.assert_close(weighted[key], plain[key], rtol=0, atol=1e-6)


def test_weight_changes_the_embedding_of_its_tokens(loaded):
    plain = encode(loaded, "a person with red hair")["prompt_embeds"]
    up = encode(loaded, "a person with (red hair:1.5)")["prompt_embeds"]
    down = encode(loaded, "a person with [red hair]")["prompt_embeds"]
    assert up.shape == plain.shape
    assert not torch.allclose(up, plain) and not torch.allclose(down, plain)
    # A1111: the weighted tokens are scaled by 1.5 relative to the others (then all are
    # rescaled together so that the mean stays that of the plain prompt); SDXL does this per
    # text encoder, each filling its own part of the features.
    te1 = loaded.pipe.text_encoder
    sdxl = getattr(loaded.pipe, "text_encoder_2", None) is not None
    split = te1.config.hidden_size if te1 is not None and sdxl else None
    parts = [slice(0, split), slice(split, None)] if split else [slice(None)]
    for part in parts:
        for emb, w in ((up, 1.5), (down, 1 / 1.1)):
            ratio = (emb[..., part].norm(dim=-1) / plain[..., part].norm(dim=-1))[0]
            torch.testing.assert_close(ratio[4:6] / ratio[1], torch.tensor([w, w]), rtol=1e-4,
                                       atol=0)


def test_long_prompt_is_chunked_not_truncated(loaded):
    long = ", ".join(WORDS[i % len(WORDS)] for i in range(70))
    tok = loaded.pipe.tokenizer or loaded.pipe.tokenizer_2
    n = token_count(tok, long)
    assert n > 150
    pe = encode(loaded, long, "blurry")
    length = pe["prompt_embeds"].shape[1]
    assert length % 77 == 0 and length // 77 >= -(-n // 75)  # every token has a place
    assert pe["negative_prompt_embeds"].shape == pe["prompt_embeds"].shape
    # The words past token 77 matter: changing the tail changes the embedding.
    other = encode(loaded, long + ", frowning", "blurry")["prompt_embeds"]
    assert other.shape == pe["prompt_embeds"].shape
    assert not torch.allclose(other[:, -77:], pe["prompt_embeds"][:, -77:])
    torch.testing.assert_close(other[:, :77], pe["prompt_embeds"][:, :77])


def test_break_starts_a_new_chunk(loaded):
    pe = encode(loaded, "red hair BREAK blue background")["prompt_embeds"]
    assert pe.shape[1] == 154


def test_weighted_prompt_generates(engine, tiny_sd1_dir):
    req = GenerationRequest("a (person:1.3) with [red hair] BREAK glasses",
                            model=str(tiny_sd1_dir), width=64, height=64, steps=2)
    res = engine.generate(req)
    assert res.images[0].shape == (64, 64, 3)
    with pytest.raises(ModelNotFoundError, match="No LoRA named 'nowhere'"):
        engine.generate(req.replace(prompt="a person <lora:nowhere:0.5>"))


def test_grid_command_makes_a_labelled_grid_and_every_cell(tmp_path, tiny_sd1_dir, capsys):
    from PIL import Image

    from studio.cli import main

    out = tmp_path / "grid.png"
    code = main(["grid", "a (person:1.2) with red hair", "--x", "seed=1,2", "--y",
                 "guidance=3,7", "--model", str(tiny_sd1_dir), "--steps", "2", "--size",
                 "64x64", "-o", str(out), "--cells", str(tmp_path / "cells"), "--quiet",
                 "--no-hf-cache", "--device", "cpu", "--dtype", "float32"])
    assert code == 0, capsys.readouterr().err
    assert Image.open(out).size[0] > 2 * 64 and len(list((tmp_path / "cells").glob("*.png"))) == 4
    assert main(["grid", "a cat", "--x", "colour=red", "--model", str(tiny_sd1_dir),
                 "--no-hf-cache", "--device", "cpu"]) == 1
    assert "Cannot vary 'colour'" in capsys.readouterr().err
