"""ControlNets for SD 3.x and Flux, and the Union ControlNets (SDXL; Flux union modes).

Tiny random ControlNets built from configs beside the tiny SD3/Flux/SDXL folders give the
pixels of diffusers' own ControlNet pipelines (same seed, same control image); strength 0
gives the image without control; the step range changes only its steps; the controls are
recorded and read back, from the CLI and through the job runner; a ControlNet of another
family, or of another width, is refused in one line before anything loads.
"""

from __future__ import annotations

import dataclasses
import json
import threading

import numpy as np
import pytest
import torch

from studio.core.control import ControlLayer
from studio.core.document.pixels import Pixels
from studio.core.errors import InvalidRequestError
from studio.core.jobs.request import GenerationRequest
from tests.engine.test_dit_families import build_family

PROMPT = "a portrait of a woman with red hair"
SIZE = 64
# name -> (model folder, control model, its family)
CASES = {"sd3": ("sd3", "tiny-sd3-canny"), "flux": ("flux", "tiny-flux-canny"),
         "union": ("sdxl", "tiny-sdxl-union")}


def _randomise(module, seed: int) -> None:
    """Fresh ControlNets add nothing (zero projections): give every weight a value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)


def _save(module, folder, extra=None) -> None:
    module.save_pretrained(folder, safe_serialization=True)
    if extra:
        (folder / "studio.json").write_text(json.dumps(extra))


def _sd3_controlnet(**kw):
    from diffusers import SD3ControlNetModel

    return SD3ControlNetModel(sample_size=8, patch_size=2, in_channels=16, num_layers=1,
                              attention_head_dim=8, num_attention_heads=2,
                              joint_attention_dim=32, caption_projection_dim=16,
                              pooled_projection_dim=64, out_channels=16, **kw)


def _flux_controlnet(**kw):
    from diffusers import FluxControlNetModel

    return FluxControlNetModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                               attention_head_dim=8, num_attention_heads=2,
                               joint_attention_dim=32, pooled_projection_dim=32,
                               axes_dims_rope=[2, 2, 4], guidance_embeds=True, **kw)


def _union_controlnet(sdxl_dir):
    import inspect

    from diffusers import ControlNetUnionModel, UNet2DConditionModel

    from studio.engine.control_models import controlnet_config

    unet = UNet2DConditionModel.from_pretrained(sdxl_dir / "unet")
    params = set(inspect.signature(ControlNetUnionModel.__init__).parameters)
    config = {k: v for k, v in controlnet_config(dict(unet.config), (16, 32)).items()
              if k in params}
    width = unet.config.block_out_channels[0]
    return ControlNetUnionModel.from_config({**config, "num_control_type": 8,
                                             "num_trans_channel": width,
                                             "num_proj_channel": width,
                                             "num_trans_head": 2})


@pytest.fixture(scope="module")
def dit_control_root(tmp_path_factory, tiny_sdxl_dir, tiny_sd1_dir):
    """A user's folder: tiny SD3 and Flux models, and models/ControlNet with an SD3 and a
    Flux ControlNet, a Flux union, an SDXL union, and an SD3 ControlNet of another width."""
    root = tmp_path_factory.mktemp("dit-control")
    for kind in ("sd3", "flux"):
        build_family(kind, root)
    # SD3's last joint block takes no ControlNet residual (context_pre_only): two blocks.
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(1)
    SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=16, num_layers=2, attention_head_dim=8,
        num_attention_heads=2, caption_projection_dim=16, joint_attention_dim=32,
        pooled_projection_dim=64, out_channels=16,
    ).save_pretrained(root / "models" / "sd3" / "transformer", safe_serialization=True)
    nets = root / "models" / "ControlNet"
    torch.manual_seed(0)
    for name, module in (("tiny-sd3-canny", _sd3_controlnet()),
                         ("tiny-flux-canny", _flux_controlnet()),
                         ("tiny-flux-union", _flux_controlnet(num_mode=7)),
                         ("tiny-sdxl-union", _union_controlnet(tiny_sdxl_dir)),
                         ("wide-sd3-canny", _sd3_controlnet().__class__(
                             sample_size=8, patch_size=2, in_channels=16, num_layers=1,
                             attention_head_dim=8, num_attention_heads=4,
                             joint_attention_dim=32, caption_projection_dim=32,
                             pooled_projection_dim=64, out_channels=16))):
        _randomise(module, 1)
        _save(module, nets / name)
    from diffusers import ControlNetModel, UNet2DConditionModel

    from studio.engine.control_models import controlnet_config

    unet = UNet2DConditionModel.from_pretrained(tiny_sd1_dir / "unet")
    _save(ControlNetModel.from_config(controlnet_config(dict(unet.config), (16, 32))),
          nets / "tiny-sd1-canny", {"family": "sd1"})
    xl = UNet2DConditionModel.from_pretrained(tiny_sdxl_dir / "unet")
    _save(ControlNetModel.from_config(controlnet_config(dict(xl.config), (16, 32))),
          nets / "tiny-sdxl-canny", {"family": "sdxl"})
    return root / "models"


@pytest.fixture(scope="module")
def cengine(dit_control_root, tiny_sdxl_dir, tiny_sd1_dir, tmp_path_factory):
    from studio.engine.engine import Engine

    return Engine(device="cpu", dtype="float32",
                  model_dirs=[dit_control_root, tiny_sdxl_dir, tiny_sd1_dir],
                  embedded_dir=tmp_path_factory.mktemp("no-embedded"), hf_cache=False)


def _edges(seed: int = 0) -> Pixels:
    """A drawing of shapes (the edges preprocessor finds their outlines)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (SIZE, SIZE), (30, 30, 30))
    d = ImageDraw.Draw(im)
    for _ in range(4):
        x, y = rng.integers(4, SIZE - 24, 2)
        w, h = rng.integers(10, 20, 2)
        d.ellipse([int(x), int(y), int(x + w), int(y + h)], fill=tuple(
            int(v) for v in rng.integers(120, 255, 3)))
    return Pixels.from_array(np.asarray(im))


def _model_dir(case, dit_control_root, tiny_sdxl_dir):
    return tiny_sdxl_dir if case == "union" else dit_control_root / CASES[case][0]


def _req(model_dir, controls=(), **kw) -> GenerationRequest:
    from studio.engine.models.families import spec_for

    family = "sdxl" if "sdxl" in str(model_dir) else model_dir.name
    spec = spec_for(family)
    values = dict(model=str(model_dir), steps=2, width=SIZE, height=SIZE, seed=3,
                  guidance=spec.defaults.guidance, controls=tuple(controls))
    if spec.flow:
        values["scheduler"] = spec.defaults.scheduler
    values.update(kw)
    return GenerationRequest(PROMPT, **values)


def _map(image: Pixels):
    from PIL import Image

    from studio.core.control import control_map

    return Image.fromarray(control_map("edges", image, SIZE, SIZE)[0])


def _u8(images) -> np.ndarray:
    return (np.clip(images[0], 0, 1) * 255).round().astype(np.uint8)


def _threads(cengine, pipe):
    from studio.engine.tuning import cpu_threads_for, torch_threads

    return torch_threads(cpu_threads_for(pipe, cengine.choice))


def _bare(cengine, case, model_dir, image, root, strength, start, end, mode=None):
    """The same generation as a bare diffusers ControlNet pipeline call."""
    import diffusers

    loaded = cengine.load(str(model_dir))
    name = CASES[case][1]
    cls_name, pipe_name = {
        "sd3": ("SD3ControlNetModel", "StableDiffusion3ControlNetPipeline"),
        "flux": ("FluxControlNetModel", "FluxControlNetPipeline"),
        "union": ("ControlNetUnionModel", "StableDiffusionXLControlNetUnionPipeline")}[case]
    net = getattr(diffusers, cls_name).from_pretrained(root / "ControlNet" / name)
    pipe = getattr(diffusers, pipe_name).from_pipe(loaded.pipe, controlnet=net)
    pipe.set_progress_bar_config(disable=True)
    req = _req(model_dir)
    args = dict(num_inference_steps=2, guidance_scale=req.guidance, height=SIZE, width=SIZE,
                output_type="np", generator=[torch.Generator("cpu").manual_seed(3)],
                control_image=_map(image), controlnet_conditioning_scale=strength,
                control_guidance_start=start, control_guidance_end=end)
    if case == "union":  # one image and its control mode (3: canny/lineart)
        args.update(control_image=[_map(image)], control_mode=[3])
    from studio.engine.schedulers import canonical_name, make_scheduler

    pipe.scheduler = make_scheduler(canonical_name(req.scheduler), loaded.scheduler_config)
    with torch.inference_mode(), _threads(cengine, loaded.pipe):
        if case == "sd3":  # its pipeline samples the control image's latent from torch's
            torch.manual_seed(3)  # global generator: the studio seeds it with the seed
        return _u8(pipe(PROMPT, **args).images)


# -- the pixels of diffusers' own pipelines ------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_controlnet_gives_the_pixels_of_a_bare_diffusers_call(
        cengine, dit_control_root, tiny_sdxl_dir, case):
    model_dir = _model_dir(case, dit_control_root, tiny_sdxl_dir)
    image = _edges()
    ctrl = ControlLayer("edges", image, strength=0.8, start=0.0, end=1.0,
                        model=CASES[case][1])
    res = cengine.generate(_req(model_dir, [ctrl]))
    assert res.request.controls == (ctrl,)
    bare = _bare(cengine, case, model_dir, image, dit_control_root, 0.8, 0.0, 1.0)
    assert np.array_equal(res.images[0], bare)
    plain = cengine.generate(_req(model_dir)).images[0]
    assert np.abs(res.images[0].astype(int) - plain.astype(int)).mean() > 0.5
    # The same request again is the same image (the SD3 control latent is seeded too).
    assert np.array_equal(cengine.generate(_req(model_dir, [ctrl])).images[0], res.images[0])


@pytest.mark.parametrize("case", list(CASES))
def test_strength_zero_gives_exactly_the_image_without_control(
        cengine, dit_control_root, tiny_sdxl_dir, case):
    """SD3 and the SDXL union add residuals of zero; Flux's pipeline would move the seed's
    noise to encode the control image, so a control at strength 0 is left out there."""
    model_dir = _model_dir(case, dit_control_root, tiny_sdxl_dir)
    ctrl = ControlLayer("edges", _edges(), strength=0.0, model=CASES[case][1])
    assert np.array_equal(cengine.generate(_req(model_dir, [ctrl])).images[0],
                          cengine.generate(_req(model_dir)).images[0])


def _previews(cengine, req):
    seen = []
    cengine.generate(req, on_step=lambda p: p.phase == "sampling" and seen.append(p.preview))
    return seen


@pytest.mark.parametrize("case", list(CASES))
def test_step_range_is_passed_as_a_bare_diffusers_call_takes_it(
        cengine, dit_control_root, tiny_sdxl_dir, case):
    model_dir = _model_dir(case, dit_control_root, tiny_sdxl_dir)
    image = _edges()
    full = cengine.generate(_req(model_dir, [ControlLayer("edges", image, 0.8,
                                                          model=CASES[case][1])])).images[0]
    for start, end in ((0.5, 1.0), (0.0, 0.5)):
        ctrl = ControlLayer("edges", image, 0.8, start, end, model=CASES[case][1])
        ours = cengine.generate(_req(model_dir, [ctrl])).images[0]
        assert np.array_equal(ours, _bare(cengine, case, model_dir, image, dit_control_root,
                                          0.8, start, end))
        assert not np.array_equal(ours, full)


@pytest.mark.parametrize("case", ["sd3", "union"])
def test_step_range_changes_only_its_steps(cengine, dit_control_root, tiny_sdxl_dir, case):
    """2 steps: a control from 0.5 acts on step 2 only (step 1 as without it, whatever its
    image); one that ends at 0.5 makes step 1 as the full-range control, step 2 not.
    (Flux's tiny previews are black at these sizes: its range is checked above only.)"""
    model_dir = _model_dir(case, dit_control_root, tiny_sdxl_dir)
    name = CASES[case][1]

    def run(image, **kw):
        return _previews(cengine, _req(model_dir, [ControlLayer("edges", image, model=name,
                                                                **kw)]))

    late, late_other = run(_edges(0), start=0.5), run(_edges(1), start=0.5)
    full, early = run(_edges(0)), run(_edges(0), end=0.5)
    assert len(late) == len(full) == len(early) == 2
    assert np.array_equal(late[0], late_other[0])
    assert not np.array_equal(late[1], late_other[1])
    assert np.array_equal(early[0], full[0]) and not np.array_equal(early[1], full[1])
    none = _previews(cengine, _req(model_dir))
    assert np.array_equal(late[0], none[0]) and not np.array_equal(full[0], none[0])


def test_flux_union_gets_the_control_mode_of_each_kind(cengine, dit_control_root):
    """Depth on a Flux union ControlNet is its mode 2 (InstantX's numbering), as a bare call
    with ``control_mode=2``; the same image as edges (mode 0) gives another image."""
    import diffusers

    model_dir = dit_control_root / "flux"
    image = _edges()
    depth = cengine.generate(_req(model_dir, [ControlLayer("depth", image, 0.9,
                                                           model="tiny-flux-union")]))
    edges = cengine.generate(_req(model_dir, [ControlLayer("edges", image, 0.9,
                                                           model="tiny-flux-union")]))
    assert not np.array_equal(depth.images[0], edges.images[0])
    loaded = cengine.load(str(model_dir))
    net = diffusers.FluxControlNetModel.from_pretrained(
        dit_control_root / "ControlNet" / "tiny-flux-union")
    pipe = diffusers.FluxControlNetPipeline.from_pipe(loaded.pipe, controlnet=net)
    pipe.set_progress_bar_config(disable=True)
    from studio.core.control import control_map
    from studio.engine.schedulers import canonical_name, make_scheduler

    pipe.scheduler = make_scheduler(canonical_name(_req(model_dir).scheduler),
                                    loaded.scheduler_config)
    from PIL import Image

    with torch.inference_mode(), _threads(cengine, loaded.pipe):
        bare = pipe(PROMPT, num_inference_steps=2, guidance_scale=_req(model_dir).guidance,
                    height=SIZE, width=SIZE, output_type="np",
                    generator=[torch.Generator("cpu").manual_seed(3)],
                    control_image=Image.fromarray(control_map("depth", image, SIZE, SIZE)[0]),
                    control_mode=2, controlnet_conditioning_scale=0.9).images
    assert np.array_equal(depth.images[0], _u8(bare))


@pytest.mark.parametrize("case, models", [("flux", ("tiny-flux-canny", "tiny-flux-union")),
                                          ("union", ("tiny-sdxl-union", "tiny-sdxl-union")),
                                          ("sd3", ("tiny-sd3-canny", "tiny-sd3-canny"))])
def test_several_controlnets_run_together(cengine, dit_control_root, tiny_sdxl_dir, case,
                                          models):
    model_dir = _model_dir(case, dit_control_root, tiny_sdxl_dir)
    one = ControlLayer("edges", _edges(0), model=models[0])
    two = ControlLayer("pose", _edges(1).__class__.from_array(
        np.asarray(_edges(1).to_array())[::-1].copy()), 0.7, model=models[1])
    both = cengine.generate(_req(model_dir, [one, two]))
    assert both.request.controls == (one, two)
    assert not np.array_equal(both.images[0],
                              cengine.generate(_req(model_dir, [one])).images[0])


# -- refused in one line, before anything loads --------------------------------------------
@pytest.mark.parametrize("model, control, words", [
    ("flux", "tiny-sd1-canny", ["tiny-sd1-canny (SD 1.x)", "flux", "Flux model"]),
    ("flux", "tiny-sd3-canny", ["tiny-sd3-canny (SD 3.x)", "Flux model"]),
    ("sd3", "tiny-flux-canny", ["tiny-flux-canny (Flux)", "SD 3.x model"]),
    ("sd3", "wide-sd3-canny", ["wide-sd3-canny (SD 3.x) is 32 wide", "transformer is 16 wide"]),
])
def test_a_controlnet_that_does_not_fit_is_refused_in_one_line_before_loading(
        dit_control_root, tiny_sdxl_dir, tiny_sd1_dir, tmp_path, model, control, words):
    from studio.engine.engine import Engine

    fresh = Engine(device="cpu", dtype="float32", model_dirs=[dit_control_root],
                   embedded_dir=tmp_path, hf_cache=False)
    ctrl = ControlLayer("edges", _edges(), model=control)
    with pytest.raises(InvalidRequestError) as err:
        fresh.generate(_req(dit_control_root / model, [ctrl]))
    assert "\n" not in err.value.message
    for word in words:
        assert word in err.value.message
    assert len(fresh.pipelines) == 0  # neither the model nor the ControlNet loaded


def test_what_diffusers_has_no_pipeline_for_is_refused_in_one_line(
        cengine, dit_control_root, tiny_sdxl_dir):
    init = Pixels.from_array(np.full((SIZE, SIZE, 3), 150, np.uint8))
    sd3 = _req(dit_control_root / "sd3", [ControlLayer("edges", _edges(),
                                                       model="tiny-sd3-canny")],
               task="img2img", init_image=init, strength=0.6)
    with pytest.raises(InvalidRequestError, match="text to image only"):
        cengine.generate(sd3)
    mixed = _req(dit_control_root / "flux", [
        ControlLayer("edges", _edges(), model="tiny-flux-canny"),
        ControlLayer("tile", _edges(), model="tiny-flux-union")])
    assert cengine.generate(mixed).images  # Flux's union and plain ControlNets mix
    odd = _req(dit_control_root / "flux", [ControlLayer("scribble", _edges(),
                                                        model="tiny-sdxl-union")])
    with pytest.raises(InvalidRequestError, match="SDXL"):
        cengine.generate(odd)
    union_and_plain = _req(tiny_sdxl_dir, [
        ControlLayer("edges", _edges(), model="tiny-sdxl-union"),
        ControlLayer("edges", _edges(), model="tiny-sdxl-canny")])
    with pytest.raises(InvalidRequestError) as err:
        cengine.generate(union_and_plain)
    assert "ControlNet-Union tiny-sdxl-union" in err.value.message
    assert "cannot run in one generation" in err.value.message


def test_flux_and_union_controlnets_work_in_image_to_image_and_inpainting(
        cengine, dit_control_root, tiny_sdxl_dir):
    init = Pixels.from_array(np.full((SIZE, SIZE, 3), 150, np.uint8))
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[16:48, 16:48] = 255
    for model_dir, name in ((dit_control_root / "flux", "tiny-flux-canny"),
                            (tiny_sdxl_dir, "tiny-sdxl-union")):
        ctrl = ControlLayer("edges", _edges(), model=name)
        for task, extra in (("img2img", {}), ("inpaint", {"mask": Pixels.from_array(mask)})):
            req = _req(model_dir, [ctrl], task=task, init_image=init, strength=0.7, **extra)
            with_control = cengine.generate(req).images[0]
            assert with_control.shape == (SIZE, SIZE, 3)
            assert not np.array_equal(with_control,
                                      cengine.generate(req.replace(controls=())).images[0])


# -- found by family -------------------------------------------------------------------------
def test_controlnets_are_found_with_the_family_they_fit(cengine):
    found = {m.name: m for m in cengine.controls.list(refresh=True)}
    assert (found["tiny-sd3-canny"].family, found["tiny-sd3-canny"].arch) == (
        "sd3", "SD3ControlNetModel")
    assert found["tiny-flux-canny"].family == "flux" and not found["tiny-flux-canny"].modes
    union = found["tiny-flux-union"]
    assert (union.family, union.modes) == ("flux", 7) and "depth" in union.kinds
    assert union.label == "ControlNet-Union tiny-flux-union (Flux)"
    xl = found["tiny-sdxl-union"]
    assert (xl.family, xl.arch, xl.modes) == ("sdxl", "ControlNetUnionModel", 8)
    assert {"pose", "depth", "scribble", "edges", "tile"} <= set(xl.kinds)
    # Without a name, the one that fits the model's family and the kind is chosen.
    assert cengine.controls.resolve("", "edges", "flux").family == "flux"
    assert cengine.controls.resolve("", "pose", "sdxl").name == "tiny-sdxl-union"


def test_single_files_are_identified_by_their_tensor_names(tmp_path):
    from safetensors.torch import save_file

    from studio.engine.control_models import file_info

    def write(name, tensors):
        path = tmp_path / f"{name}.safetensors"
        save_file({k: torch.zeros(shape) for k, shape in tensors.items()}, str(path))
        return file_info(path)

    flux = write("instantx-union", {"controlnet_x_embedder.weight": (3072, 64),
                                    "controlnet_blocks.0.weight": (3072, 3072),
                                    "controlnet_mode_embedder.weight": (10, 3072)})
    xlabs = write("xlabs-canny", {"input_hint_block.0.weight": (16, 3, 3, 3),
                                  "double_blocks.0.img_attn.qkv.weight": (9216, 3072),
                                  "controlnet_blocks.0.weight": (3072, 3072)})
    sd3 = write("sd35-large-canny", {"pos_embed_input.proj.weight": (2432, 16, 2, 2),
                                     "controlnet_blocks.0.weight": (2432, 2432)})
    union = write("promax", {"task_embedding": (8, 320),
                             "control_add_embedding.linear_1.weight": (1280, 2048),
                             "controlnet_cond_embedding.conv_in.weight": (16, 3, 3, 3),
                             "add_embedding.linear_1.weight": (1280, 2816)})
    assert (flux.family, flux.arch, flux.modes, flux.width) == ("flux", "FluxControlNetModel",
                                                                10, 3072)
    assert (xlabs.family, xlabs.arch) == ("flux", "FluxControlNetModel")
    assert (sd3.family, sd3.width) == ("sd3", 2432)
    assert (union.family, union.arch, union.modes) == ("sdxl", "ControlNetUnionModel", 8)
    assert "tile" in union.kinds


def test_a_kind_a_union_has_no_mode_for_is_refused_in_one_line():
    """xinsir's first union (6 modes) has no tile mode; promax (8) has."""
    from studio.engine import control_dit
    from studio.engine.control_models import ControlModelInfo

    union = ControlModelInfo("u", "controlnet-union-sdxl-1.0", "controlnet", "sdxl", "/u",
                             arch="ControlNetUnionModel", modes=6)
    tile = ControlLayer("tile", _edges())
    with pytest.raises(InvalidRequestError) as err:
        control_dit.check([union], [tile], "txt2img", 0, "sdxl-base")
    assert err.value.message == ("ControlNet-Union controlnet-union-sdxl-1.0 (SDXL) has no "
                                 "control mode for tile; it reads pose, depth, depth-estimate, "
                                 "scribble, lineart, edges.")
    promax = dataclasses.replace(union, modes=8)
    control_dit.check([promax], [tile], "txt2img", 0, "sdxl-base")  # tile is its mode 6


def test_a_single_file_sdxl_union_loads_with_its_modes(tiny_sdxl_dir, tmp_path, monkeypatch):
    """xinsir's promax is one file in diffusers' keys: read with the SDXL ControlNet config
    (here the tiny one in its place) and its number of modes from ``task_embedding``."""
    from safetensors.torch import save_file

    from studio.engine import control_models

    net = _union_controlnet(tiny_sdxl_dir)
    _randomise(net, 4)
    path = tmp_path / "ControlNet" / "diffusion_pytorch_model_promax.safetensors"
    path.parent.mkdir()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    config = {k: v for k, v in dict(net.config).items() if not k.startswith("_")}
    monkeypatch.setattr(control_models, "_bundled_controlnet_config",
                        lambda family: {**config, "num_control_type": 6})
    info = control_models.file_info(path)
    assert (info.arch, info.family, info.modes) == ("ControlNetUnionModel", "sdxl", 8)
    loaded = control_models.load_control_model(info, torch.float32)
    assert type(loaded).__name__ == "ControlNetUnionModel"
    assert loaded.config.num_control_type == 8
    for name, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value)


# -- recorded: metadata, the CLI, the job runner -------------------------------------------
def test_the_control_is_in_the_image_metadata_and_read_back(cengine, dit_control_root, tmp_path):
    from studio.core.formats.metadata import read_settings, save_image

    image = _edges()
    ctrl = ControlLayer("edges", image, 0.6, 0.0, 0.5, model="tiny-flux-canny")
    res = cengine.generate(_req(dit_control_root / "flux", [ctrl]))
    path = tmp_path / "flux.png"
    save_image(path, res.images[0], res.request)
    back = read_settings(path, images={image.sha256: image}).request
    assert back.controls == (ctrl,)
    assert np.array_equal(cengine.generate(back.replace(model=res.request.model)).images[0],
                          res.images[0])


def test_cli_generate_with_an_sd3_controlnet(dit_control_root, tmp_path, monkeypatch, capsys):
    from PIL import Image

    from studio.cli import main
    from studio.core.formats.metadata import read_settings

    monkeypatch.setenv("STUDIO_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("STUDIO_MODEL_DIRS", str(dit_control_root))
    image = _edges()
    Image.fromarray(image.to_array()).save(tmp_path / "shapes.png")
    out = tmp_path / "o.png"
    args = ["generate", PROMPT, "--model", str(dit_control_root / "sd3"), "--steps", "2",
            "--size", "64x64", "--seed", "3", "--device", "cpu", "--dtype", "float32",
            "--no-hf-cache", "--quiet", "-o", str(out)]
    assert main([*args, "--control", f"edges={tmp_path / 'shapes.png'}:0.8:0:0.5",
                 "--control-model", "tiny-sd3-canny"]) == 0
    from studio.cli.generate import read_pixels

    drawn = read_pixels(tmp_path / "shapes.png", "RGBA")  # as the CLI reads it
    (control,) = read_settings(out, images={drawn.sha256: drawn}).request.controls
    assert (control.kind, control.strength, control.end, control.model) == (
        "edges", 0.8, 0.5, "tiny-sd3-canny")
    capsys.readouterr()
    assert main([*args[:-1], str(tmp_path / "o2.png"), "--control",
                 f"edges={tmp_path / 'shapes.png'}", "--control-model", "tiny-sd1-canny"]) != 0
    err = capsys.readouterr().err
    assert "tiny-sd1-canny (SD 1.x)" in err and "SD 3.x" in err


def test_a_job_with_a_flux_controlnet_runs_through_the_job_runner(cengine, dit_control_root):
    from studio.core.jobs.events import JobFailed, JobFinished
    from studio.core.jobs.runner import JobRunner

    ctrl = ControlLayer("edges", _edges(), 0.8, model="tiny-flux-canny")
    req = _req(dit_control_root / "flux", [ctrl])
    done = threading.Event()
    events = []

    def listen(event):
        if isinstance(event, JobFinished | JobFailed):
            events.append(event)
            done.set()

    runner = JobRunner(cengine)
    runner.add_listener(listen)
    try:
        runner.submit(req)
        assert done.wait(120)
    finally:
        runner.shutdown()
    (event,) = events
    assert isinstance(event, JobFinished), getattr(event, "message", "")
    assert event.result.request.controls == (ctrl,)
    assert np.array_equal(event.result.images[0], cengine.generate(req).images[0])
