"""The model registry: discovery, resolve, the default model, added folders."""

from __future__ import annotations

import shutil

import pytest

from studio.core.errors import ModelNotFoundError
from studio.engine.models.registry import ModelRegistry


def test_it_lists_the_folders_models_and_resolves_by_id_name_or_path(tmp_path, tiny_sd1_dir):
    registry = ModelRegistry([tiny_sd1_dir.parent], embedded_dir=tmp_path / "none",
                             hf_cache=False)
    models = registry.models("diffusion")
    assert [m.path for m in models] == [str(tiny_sd1_dir)]
    info = models[0]
    assert registry.resolve(info.id) == info
    assert registry.resolve(info.name) == info
    assert registry.resolve(str(tiny_sd1_dir)).path == info.path
    assert registry.models("lora") == []
    assert registry.default() == info  # no embedded model: the first diffusion model


def test_the_embedded_model_is_the_default(tmp_path, tiny_sd1_dir):
    embedded = tmp_path / "embedded"
    shutil.copytree(tiny_sd1_dir, embedded / "studio-tiny-diffusion")
    registry = ModelRegistry([tiny_sd1_dir.parent], embedded_dir=embedded, hf_cache=False)
    assert len(registry.models("diffusion")) == 2
    assert registry.default().id == "studio-tiny-diffusion"


def test_an_added_folder_is_scanned_at_once(tmp_path, tiny_sd1_dir):
    registry = ModelRegistry(embedded_dir=tmp_path / "none", hf_cache=False)
    assert registry.models("diffusion") == [] and registry.default() is None
    registry.add_dir(tiny_sd1_dir.parent)
    assert tiny_sd1_dir.parent in registry.model_dirs
    assert [m.path for m in registry.models("diffusion")] == [str(tiny_sd1_dir)]


def test_an_unknown_model_is_a_clear_error(tmp_path):
    registry = ModelRegistry(embedded_dir=tmp_path / "none", hf_cache=False)
    with pytest.raises(ModelNotFoundError):
        registry.resolve("no-such-model")
