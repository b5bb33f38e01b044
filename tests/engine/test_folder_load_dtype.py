"""An fp32 diffusers folder loaded in bf16 holds its weights once, in bf16 (#26): each
tensor is read and converted as it is read, not mapped whole beside the bf16 copy. The
weights must be exactly those of diffusers' own load in that dtype."""

from __future__ import annotations

import threading

import pytest

from studio.engine import device as dev
from studio.engine.models import loading, single_file


@pytest.fixture
def native_bf16(monkeypatch):
    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda *a, **k: True)
    monkeypatch.setattr(dev, "LARGE_MODEL_BYTES", 1)  # the tiny model stands in for SD 1.5
    monkeypatch.delenv("STUDIO_DTYPE", raising=False)


def _reads(monkeypatch) -> list[str]:
    """The weights files read tensor by tensor through the studio's reader."""
    seen: list[str] = []
    original = single_file._read_checkpoint

    def spy(path, cancel, torch_dtype=None, keep=None):
        seen.append(f"{path.parent.name}:{torch_dtype}")
        return original(path, cancel, torch_dtype, keep)

    monkeypatch.setattr(single_file, "_read_checkpoint", spy)
    return seen


def test_an_fp32_folder_loads_in_bf16_with_diffusers_own_weights(native_bf16, monkeypatch,
                                                                   tmp_path, tiny_sd1_dir):
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from studio.engine.engine import Engine

    reads = _reads(monkeypatch)
    engine = Engine(device="cpu", dtype="auto", model_dirs=[tiny_sd1_dir],
                    embedded_dir=tmp_path / "none", hf_cache=False)
    loaded = engine.load(str(tiny_sd1_dir))
    assert "unet:torch.bfloat16" in reads and "vae:torch.bfloat16" in reads
    for name, cls in (("unet", UNet2DConditionModel), ("vae", AutoencoderKL)):
        # diffusers' own load in the same dtype (its mapped read: no studio thread active)
        theirs = cls.from_pretrained(tiny_sd1_dir / name, torch_dtype=torch.bfloat16)
        ours = getattr(loaded.pipe, name).state_dict()
        reference = theirs.state_dict()
        assert ours.keys() == reference.keys()
        for key, tensor in reference.items():
            assert ours[key].dtype == tensor.dtype == torch.bfloat16, key
            assert torch.equal(ours[key], tensor), key
    assert {p.dtype for p in loaded.pipe.unet.parameters()} == {torch.bfloat16}


def test_the_read_is_confined_to_the_loading_thread(tiny_sd1_dir):
    """Another thread's diffusers load (a ControlNet, a test) reads as diffusers does."""
    import torch
    from diffusers import AutoencoderKL

    loading._hook_state_dict_reads()
    got: dict[str, torch.dtype] = {}

    def other() -> None:
        vae = AutoencoderKL.from_pretrained(tiny_sd1_dir / "vae")
        got["dtype"] = next(vae.parameters()).dtype

    with loading._reading_in(torch.bfloat16, None):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        mine = AutoencoderKL.from_pretrained(tiny_sd1_dir / "vae", torch_dtype=torch.bfloat16)
    assert got["dtype"] == torch.float32
    assert next(mine.parameters()).dtype == torch.bfloat16


def test_the_preview_colours_are_fitted_once_per_vae_file(monkeypatch, tmp_path, tiny_sd1_dir):
    """The latent-to-RGB fit (a VAE encode) runs at the first load of a VAE file only: a
    later start gets the same factors from the cache; a changed file is fitted again."""
    import os
    import shutil

    import numpy as np

    from studio.engine import previews

    calls: list[int] = []
    original = previews.fit_latent_rgb

    def spy(vae, size=64):
        calls.append(1)
        return original(vae, size)

    monkeypatch.setattr(loading, "fit_latent_rgb", spy)
    model = tmp_path / "model"
    shutil.copytree(tiny_sd1_dir, model)
    vae = loading._load_folder(model, dev.choose_device("cpu", "float32")).vae
    first = loading.latent_rgb_factors(vae, model)
    second = loading.latent_rgb_factors(vae, model)
    assert len(calls) == 1
    assert np.array_equal(first, second) and np.array_equal(first, original(vae))
    weights = next((model / "vae").glob("*.safetensors"))
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    loading.latent_rgb_factors(vae, model)
    assert len(calls) == 2
