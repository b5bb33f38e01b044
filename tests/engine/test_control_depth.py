"""Depth from a photo: a depth-estimation model in the user's folders (transformers' DPT or
Depth Anything, tiny and random, built from configs here) makes the depth map a depth
ControlNet reads; without one the kind is off with the reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

from studio.core.control import (
    DEPTH_ESTIMATE_OFF,
    ControlLayer,
    a1111_control_fields,
    control_map,
    parse_control_spec,
    read_a1111_controls,
)
from studio.core.document.pixels import Pixels
from studio.core.errors import InvalidRequestError
from studio.core.jobs.request import GenerationRequest

PROMPT = "a portrait with red hair"


def _photo(size: int = 64) -> Pixels:
    """A 'photo': a lit sphere-ish head on a gradient, with noise."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    head = np.clip(1 - ((xx - 0.5) ** 2 + (yy - 0.45) ** 2) * 8, 0, 1)
    rgb = np.stack([0.3 + 0.5 * head, 0.2 + 0.4 * yy, 0.6 - 0.4 * head], axis=2)
    rgb += np.random.default_rng(3).normal(0, 0.03, rgb.shape)
    return Pixels.from_array((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8))


def _dpt(folder) -> None:
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(0)
    model = DPTForDepthEstimation(DPTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=37, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[16, 16, 32, 32],
        fusion_hidden_size=16, reassemble_factors=[4, 2, 1, 0.5], is_hybrid=False))
    model.save_pretrained(folder)
    DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False
                      ).save_pretrained(folder)


def _depth_anything(folder) -> None:
    import torch
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )

    torch.manual_seed(1)
    backbone = Dinov2Config(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4,
                            num_attention_heads=4, intermediate_size=37,
                            out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False)
    model = DepthAnythingForDepthEstimation(DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=32, patch_size=8,
        neck_hidden_sizes=[16, 16, 32, 32], fusion_hidden_size=16, head_hidden_size=8))
    model.save_pretrained(folder)
    DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False
                      ).save_pretrained(folder)


@pytest.fixture(scope="module")
def user_root(tmp_path_factory, tiny_sd1_dir):
    """A user's model folder: a depth ControlNet for the tiny SD1 model, a DPT in
    models/depth (ComfyUI keeps annotators apart; both layouts are read)."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    from studio.engine.control_models import controlnet_config

    root = tmp_path_factory.mktemp("depth-user") / "models"
    unet = UNet2DConditionModel.from_pretrained(tiny_sd1_dir / "unet")
    net = ControlNetModel.from_config(controlnet_config(dict(unet.config), (16, 32)))
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    folder = root / "ControlNet" / "tiny-sd1-depth"
    net.save_pretrained(folder, safe_serialization=True)
    (folder / "studio.json").write_text(json.dumps({"family": "sd1",
                                                    "control_kinds": ["depth"]}))
    _dpt(root / "depth" / "tiny-dpt")
    return root


def _engine(dirs, tmp_path_factory):
    from studio.engine.engine import Engine

    return Engine(device="cpu", dtype="float32", model_dirs=list(dirs),
                  embedded_dir=tmp_path_factory.mktemp("no-embedded"), hf_cache=False)


@pytest.fixture(scope="module")
def dengine(tiny_sd1_dir, user_root, tmp_path_factory):
    return _engine([tiny_sd1_dir, user_root.parent], tmp_path_factory)


def _req(model_dir, controls=(), **kw):
    return GenerationRequest(PROMPT, model=str(model_dir), width=64, height=64, steps=3,
                             seed=7, guidance=5.0, controls=tuple(controls), **kw)


def _transformers_depth(folder, photo: Pixels) -> np.ndarray:
    """transformers' own depth-estimation pipeline on the photo (uint8 (H, W))."""
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation, pipeline

    run = pipeline("depth-estimation",
                   model=AutoModelForDepthEstimation.from_pretrained(folder),
                   image_processor=AutoImageProcessor.from_pretrained(folder))
    return np.asarray(run(Image.fromarray(photo.to_array()[..., :3]))["depth"])


def test_depth_from_a_photo_gives_the_pixels_of_a_bare_call_on_the_estimated_map(
        dengine, user_root, tiny_sd1_dir):
    import torch
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline
    from PIL import Image

    from studio.engine.tuning import cpu_threads_for, torch_threads

    photo = _photo()
    ctrl = ControlLayer("depth-estimate", photo, strength=0.9)  # auto: the depth ControlNet
    res = dengine.generate(_req(tiny_sd1_dir, [ctrl]))
    assert res.request.controls == (ctrl,)
    depth = _transformers_depth(user_root / "depth" / "tiny-dpt", photo)
    # The estimate is not the photo's brightness (what "depth as is" would read).
    as_is = control_map("depth", photo, 64, 64)[0][..., 0]
    assert np.abs(depth.astype(int) - as_is.astype(int)).mean() > 10
    base = dengine.load(str(tiny_sd1_dir)).pipe
    cn = ControlNetModel.from_pretrained(user_root / "ControlNet" / "tiny-sd1-depth")
    pipe = StableDiffusionControlNetPipeline.from_pipe(base, controlnet=cn)
    with torch.inference_mode(), torch_threads(cpu_threads_for(base, dengine.choice)):
        bare = pipe(PROMPT, image=Image.fromarray(np.repeat(depth[..., None], 3, 2)),
                    num_inference_steps=3, guidance_scale=5.0, height=64, width=64,
                    output_type="np", generator=[torch.Generator("cpu").manual_seed(7)],
                    controlnet_conditioning_scale=0.9).images[0]
    bare = (np.clip(bare, 0, 1) * 255).round().astype(np.uint8)
    assert np.array_equal(res.images[0], bare)
    as_image = dengine.generate(_req(tiny_sd1_dir, [ControlLayer("depth", photo, 0.9)]))
    assert not np.array_equal(res.images[0], as_image.images[0])
    assert dict(dengine.features.why_not).get("depth-estimate") is None  # the kind is on


def test_a_depth_anything_folder_among_comfyuis_annotators_is_found_and_used(
        tiny_sd1_dir, user_root, tmp_path_factory):
    other = tmp_path_factory.mktemp("annotators-user") / "models"
    folder = other / "annotators" / "depth-anything" / "tiny-depth-anything"
    _depth_anything(folder)
    engine = _engine([tiny_sd1_dir, other.parent, user_root / "ControlNet"], tmp_path_factory)
    found = engine.controls.depth_models()
    assert [(m.name, m.model_type) for m in found] == [("tiny-depth-anything", "depth_anything")]
    photo = _photo()
    assert np.array_equal(engine.controls.estimate_depth(photo.to_array()),
                          _transformers_depth(folder, photo))


def test_without_a_depth_model_the_kind_is_off_with_the_reason(tiny_sd1_dir, user_root,
                                                               tmp_path_factory):
    engine = _engine([tiny_sd1_dir, user_root / "ControlNet"], tmp_path_factory)
    assert dict(engine.features.why_not)["depth-estimate"] == DEPTH_ESTIMATE_OFF
    with pytest.raises(InvalidRequestError, match="needs a depth-estimation model"):
        engine.generate(_req(tiny_sd1_dir, [ControlLayer("depth-estimate", _photo())]))
    # Refused before any control model loaded.
    assert not any(k[0] in ("control", "depth-estimator") for k in engine.pipelines.keys()
                   if isinstance(k, tuple))
    # A depth image as is still works there.
    engine.generate(_req(tiny_sd1_dir, [ControlLayer("depth", _photo())]))


def test_a_folder_that_is_not_a_depth_model_is_not_offered(tmp_path):
    from studio.engine.control_models import scan_depth

    seg = tmp_path / "models" / "annotators" / "segmenter"
    seg.mkdir(parents=True)
    (seg / "config.json").write_text(json.dumps({"model_type": "dpt", "architectures": [
        "DPTForSemanticSegmentation"]}))
    (seg / "model.safetensors").write_bytes(b"")
    empty = tmp_path / "models" / "depth" / "no-weights"
    empty.mkdir(parents=True)
    (empty / "config.json").write_text(json.dumps({"model_type": "depth_anything"}))
    assert scan_depth([tmp_path]) == []


def test_depth_from_a_photo_is_recorded_as_a1111s_depth_preprocessor_and_read_back():
    ctrl = ControlLayer("depth-estimate", _photo(), 0.6, 0.1, 0.9, "control_sd15_depth")
    fields = a1111_control_fields((ctrl,))
    assert fields["ControlNet 0"].startswith("Module: depth_anything, Model: control_sd15_depth")
    assert read_a1111_controls(fields) == [{"kind": "depth-estimate", "strength": 0.6,
                                            "start": 0.1, "end": 0.9,
                                            "model": "control_sd15_depth"}]
    assert parse_control_spec("depth-estimate=photo.png:0.7") == (
        "depth-estimate", "photo.png", 0.7, 0.0, 1.0)
    with pytest.raises(ValueError, match="needs a depth-estimation model"):
        control_map("depth-estimate", _photo(), 64, 64)  # no estimator given


def test_cli_depth_from_a_photo_with_and_without_a_depth_model(tiny_sd1_dir, user_root,
                                                              tmp_path, monkeypatch, capsys):
    from PIL import Image

    from studio.cli import main
    from studio.core.formats.metadata import read_settings

    monkeypatch.setenv("STUDIO_CONFIG_DIR", str(tmp_path / "config"))
    Image.fromarray(_photo().to_array()).save(tmp_path / "photo.png")
    args = ["generate", "x", "--model", str(tiny_sd1_dir), "--steps", "2", "--size", "64x64",
            "--seed", "3", "--device", "cpu", "--dtype", "float32", "--no-hf-cache",
            "--quiet", "--control", f"depth-estimate={tmp_path / 'photo.png'}:0.8"]
    monkeypatch.setenv("STUDIO_MODEL_DIRS", str(user_root / "ControlNet"))  # no depth model
    assert main([*args, "-o", str(tmp_path / "none.png")]) != 0
    err = capsys.readouterr().err
    assert "needs a depth-estimation model" in err and "Traceback" not in err
    assert not (tmp_path / "none.png").exists()
    monkeypatch.setenv("STUDIO_MODEL_DIRS", str(user_root))
    assert main([*args, "-o", str(tmp_path / "o.png")]) == 0
    rgba = Pixels.from_array(np.dstack([_photo().to_array(), np.full((64, 64), 255, np.uint8)]))
    (control,) = read_settings(tmp_path / "o.png", images={rgba.sha256: rgba}).request.controls
    assert (control.kind, control.strength) == ("depth-estimate", 0.8)
