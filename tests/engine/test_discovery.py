"""Model discovery: user folders in A1111/ComfyUI layouts, the HF cache offline, families."""

from __future__ import annotations

import json
import shutil

import numpy as np
import torch
from safetensors.torch import save_file

from studio.core.jobs.request import GenerationRequest
from studio.engine.engine import Engine
from studio.engine.models.discovery import discover
from studio.engine.models.families import detect_family


def _fake_checkpoint(path, prefix="model.diffusion_model.input_blocks.0.0.weight"):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({prefix: torch.zeros(4, 4, 3, 3)}, path)


def test_a1111_and_comfyui_layouts_are_recognised(tmp_path, tiny_sd1_dir):
    a1111 = tmp_path / "webui" / "models"
    _fake_checkpoint(a1111 / "Stable-diffusion" / "dreamy.safetensors")
    save_file({"lora_unet_down_blocks_0.lora_down.weight": torch.zeros(2, 2)},
              _mkdir(a1111 / "Lora") / "ink.safetensors")
    save_file({"encoder.down.0.block.0.conv1.weight": torch.zeros(2, 2)},
              _mkdir(a1111 / "VAE") / "vae-ft.safetensors")
    (a1111 / "Stable-diffusion" / "old.ckpt").write_bytes(b"pickle")  # never listed
    comfy = tmp_path / "ComfyUI" / "models"
    shutil.copytree(tiny_sd1_dir, comfy / "diffusers" / "tiny")
    _fake_checkpoint(comfy / "checkpoints" / "sub" / "other.safetensors")
    save_file({"w": torch.zeros(1)}, _mkdir(comfy / "upscale_models") / "4x.safetensors")

    found = {m.name: m for m in discover(None, [tmp_path / "webui", tmp_path / "ComfyUI"],
                                         hf_cache=False)}
    assert found["dreamy"].kind == "diffusion" and found["dreamy"].source == "single-file"
    assert found["ink"].kind == "lora"
    assert found["vae-ft"].kind == "vae"
    assert found["tiny"].kind == "diffusion" and found["tiny"].family == "sd1"
    assert found["tiny"].source == "diffusers"
    assert found["other"].kind == "diffusion"
    assert found["4x"].kind == "upscaler"  # by its folder, the header says nothing
    assert "old" not in found


def _mkdir(p):
    p.mkdir(parents=True, exist_ok=True)
    return p


def test_hf_cache_entry_is_found_and_loads_offline_by_repo_id(tmp_path, tiny_sd1_dir,
                                                             monkeypatch):
    hub = tmp_path / "hf" / "hub"
    repo = hub / "models--studio-test--tiny-sd"
    rev = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_sd1_dir, repo / "snapshots" / rev)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    (repo / "blobs").mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(hub))
    engine = Engine(device="cpu", dtype="float32", embedded_dir=tmp_path / "none")
    models = {m.id: m for m in engine.list_models()}
    assert "studio-test/tiny-sd" in models
    assert models["studio-test/tiny-sd"].source == "hf-cache"
    res = engine.generate(GenerationRequest("a cat", model="studio-test/tiny-sd", width=64,
                                            height=64, steps=2))
    assert res.images[0].shape == (64, 64, 3) and np.isfinite(res.images[0]).all()


def test_family_is_read_from_configs_not_names():
    sd2v = detect_family({"_class_name": "StableDiffusionPipeline"},
                         {"cross_attention_dim": 1024}, {"prediction_type": "v_prediction"})
    assert sd2v == "sd2-v"
    assert detect_family({"_class_name": "StableDiffusionPipeline"},
                         {"cross_attention_dim": 1024}, {"prediction_type": "epsilon"}) == "sd2"
    assert detect_family({"_class_name": "StableDiffusionXLPipeline"},
                         {"addition_embed_type": "text_time"}, {}) == "sdxl"
    assert detect_family({"_class_name": "StableDiffusionPipeline"},
                         {"cross_attention_dim": 768, "time_cond_proj_dim": 256}, {}) == "sd1-lcm"
    turbo = detect_family({"_class_name": "StableDiffusionXLPipeline"},
                          {"addition_embed_type": "text_time"},
                          {"_class_name": "EulerAncestralDiscreteScheduler",
                           "timestep_spacing": "trailing"})
    assert turbo == "sdxl-turbo"
    assert detect_family({"_class_name": "PixArtAlphaPipeline"}) == "pixart"
    assert detect_family({"_class_name": "StableDiffusion3Pipeline"}) == "sd3"


def test_embedded_folder_kinds(tmp_path, tiny_sd1_dir):
    emb = tmp_path / "models"
    shutil.copytree(tiny_sd1_dir, emb / "studio-tiny-diffusion")
    (emb / "studio-tiny-diffusion" / "studio.json").write_text(json.dumps(
        {"family": "studio-tiny", "recommended": {"steps": 12, "width": 64, "height": 64}}))
    _mkdir(emb / "studio-tiny-vae")
    (emb / "studio-tiny-vae" / "studio.json").write_text(json.dumps({"kind": "vae"}))
    models = {m.id: m for m in discover(emb, [], hf_cache=False)}
    tiny = models["studio-tiny-diffusion"]
    assert (tiny.family, tiny.source, tiny.recommended_value("steps")) == ("studio-tiny",
                                                                          "embedded", 12)
    assert models["studio-tiny-vae"].kind == "vae"
