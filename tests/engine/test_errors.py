"""Every input a user can get wrong gives one typed error with a clear message."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import save_file

from studio.core.errors import (
    CorruptModelError,
    ModelNotFoundError,
    NaNOutputError,
    OutOfMemoryError,
    UnsafeModelFileError,
    WrongModelKindError,
)
from studio.core.jobs.request import GenerationRequest
from studio.engine.engine import Engine


def _req(model, **kw):
    return GenerationRequest("a cat", model=str(model), width=64, height=64, steps=2, **kw)


@pytest.fixture
def fresh_engine(tmp_path):
    return Engine(device="cpu", dtype="float32", embedded_dir=tmp_path / "none", hf_cache=False)


def test_no_such_model(fresh_engine):
    with pytest.raises(ModelNotFoundError, match="No model named 'sd-nope'"):
        fresh_engine.generate(_req("sd-nope"))


def test_hub_id_not_in_cache_says_offline(fresh_engine):
    with pytest.raises(ModelNotFoundError, match="not in the Hugging Face cache"):
        fresh_engine.generate(_req("someone/some-model"))


def test_empty_folder_is_the_wrong_kind(fresh_engine, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(WrongModelKindError, match="empty folder"):
        fresh_engine.generate(_req(folder))


def test_component_folder_is_not_a_pipeline(fresh_engine, tiny_sd1_dir):
    with pytest.raises(WrongModelKindError, match="single model component"):
        fresh_engine.generate(_req(tiny_sd1_dir / "unet"))


def test_pickle_checkpoint_is_refused_without_being_opened(fresh_engine, tmp_path):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(UnsafeModelFileError, match="pickle"):
        fresh_engine.generate(_req(ckpt))


def test_lora_file_is_not_a_checkpoint(fresh_engine, tmp_path):
    lora = tmp_path / "style.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0.lora_down.weight": torch.zeros(4, 8)}, lora)
    with pytest.raises(WrongModelKindError, match="lora"):
        fresh_engine.generate(_req(lora))


def test_corrupt_weights_say_the_files_are_damaged(fresh_engine, tiny_sd1_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_sd1_dir, broken)
    weights = broken / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CorruptModelError, match="damaged or incomplete"):
        fresh_engine.generate(_req(broken))


def test_nan_output_is_reported_not_saved(engine, tiny_sd1_dir, monkeypatch):
    loaded = engine.load(str(tiny_sd1_dir))

    def nan_decode(latents, *a, **k):
        shape = (latents.shape[0], 3, latents.shape[2] * 2, latents.shape[3] * 2)
        return torch.full(shape, float("nan"))

    monkeypatch.setattr(loaded.pipe.vae, "decode", lambda *a, **k: (nan_decode(*a),))
    with pytest.raises(NaNOutputError, match="NaN"):
        engine.generate(_req(tiny_sd1_dir))


def test_out_of_memory_becomes_a_clear_message(engine, tiny_sd1_dir, monkeypatch):
    loaded = engine.load(str(tiny_sd1_dir))

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(loaded.pipe.unet, "forward", oom)
    with pytest.raises(OutOfMemoryError, match="smaller size"):
        engine.generate(_req(tiny_sd1_dir))
