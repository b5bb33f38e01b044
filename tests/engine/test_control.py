"""Control layers in the local engine: tiny random ControlNets and T2I-Adapters built from
configs give the pixels of diffusers' own pipelines; strength 0 and the step range do
exactly what they say; bad control input is one clear message."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from studio.core.control import ControlLayer
from studio.core.document.pixels import Pixels
from studio.core.errors import CorruptModelError, InvalidRequestError, StudioError
from studio.core.jobs.request import GenerationRequest

PROMPT = "a portrait with red hair"


def _randomise(module, seed: int) -> None:
    """Fresh ControlNets add nothing (zero convolutions): give every weight a value."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)


def _save(module, folder, family: str, kinds=("scribble",)) -> None:
    module.save_pretrained(folder, safe_serialization=True)
    (folder / "studio.json").write_text(json.dumps({"family": family,
                                                    "control_kinds": list(kinds)}))


@pytest.fixture(scope="module")
def control_root(tmp_path_factory, tiny_sd1_dir, tiny_sdxl_dir):
    """A user's model folder with models/ControlNet and models/t2i_adapter for both tiny
    pipelines (and an SDXL ControlNet to refuse on the SD 1.x one)."""
    from diffusers import ControlNetModel, T2IAdapter, UNet2DConditionModel

    from studio.engine.control_models import controlnet_config

    root = tmp_path_factory.mktemp("user-models") / "models"
    for name, folder, family in (("sd1", tiny_sd1_dir, "sd1"), ("sdxl", tiny_sdxl_dir, "sdxl")):
        unet = UNet2DConditionModel.from_pretrained(folder / "unet")
        cn = ControlNetModel.from_config(controlnet_config(dict(unet.config), (16, 32)))
        _randomise(cn, 1)
        _save(cn, root / "ControlNet" / f"tiny-{name}-scribble", family)
        adapter = T2IAdapter(in_channels=3, channels=[32, 64], num_res_blocks=1,
                             downscale_factor=4, adapter_type="full_adapter_xl")
        _randomise(adapter, 2)
        _save(adapter, root / "t2i_adapter" / f"tiny-{name}-adapter", family)
    return root


@pytest.fixture(scope="module")
def cengine(tiny_sd1_dir, tiny_sdxl_dir, control_root, tmp_path_factory):
    from studio.engine.engine import Engine

    return Engine(device="cpu", dtype="float32",
                  model_dirs=[tiny_sd1_dir, tiny_sdxl_dir, control_root.parent],
                  embedded_dir=tmp_path_factory.mktemp("no-embedded"), hf_cache=False)


def _scribble(size: int = 64) -> Pixels:
    """Dark strokes on a transparent layer: a head outline and two glasses rings."""
    from PIL import Image, ImageDraw

    im = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    k = size / 64
    d.ellipse([18 * k, 12 * k, 46 * k, 48 * k], outline=(0, 0, 0, 255), width=max(1, int(2 * k)))
    for x in (24, 40):
        d.ellipse([(x - 5) * k, 24 * k, (x + 5) * k, 34 * k], outline=(0, 0, 0, 255),
                  width=max(1, int(2 * k)))
    return Pixels.from_array(np.asarray(im))


def _req(model_dir, controls=(), **kw):
    base = dict(model=str(model_dir), width=64, height=64, steps=4, seed=5, guidance=5.0,
                controls=tuple(controls))
    base.update(kw)
    return GenerationRequest(PROMPT, **base)


def _threads(cengine, pipe):
    from studio.engine.tuning import cpu_threads_for, torch_threads

    return torch_threads(cpu_threads_for(pipe, cengine.choice))


def _map(image: Pixels):
    from PIL import Image

    from studio.core.control import control_map

    return Image.fromarray(control_map("scribble", image, 64, 64)[0])


@pytest.mark.parametrize("kind", ["sd1", "sdxl"])
def test_controlnet_gives_the_pixels_of_a_bare_diffusers_controlnet_call(
        cengine, control_root, request, kind):
    import torch
    from diffusers import (
        ControlNetModel,
        StableDiffusionControlNetPipeline,
        StableDiffusionXLControlNetPipeline,
    )

    model_dir = request.getfixturevalue(f"tiny_{kind}_dir")
    image = _scribble()
    ctrl = ControlLayer("scribble", image, strength=0.8, start=0.0, end=0.75,
                        model=f"tiny-{kind}-scribble")
    res = cengine.generate(_req(model_dir, [ctrl]))
    assert res.request.controls == (ctrl,)
    base = cengine.load(str(model_dir)).pipe
    cn = ControlNetModel.from_pretrained(control_root / "ControlNet" / f"tiny-{kind}-scribble")
    cls = StableDiffusionXLControlNetPipeline if kind == "sdxl" else StableDiffusionControlNetPipeline
    pipe = cls.from_pipe(base, controlnet=cn)
    with torch.inference_mode(), _threads(cengine, base):
        bare = pipe(PROMPT, image=_map(image), num_inference_steps=4, guidance_scale=5.0,
                    height=64, width=64, output_type="np",
                    generator=[torch.Generator("cpu").manual_seed(5)],
                    controlnet_conditioning_scale=0.8, control_guidance_start=0.0,
                    control_guidance_end=0.75).images[0]
    bare = (np.clip(bare, 0, 1) * 255).round().astype(np.uint8)
    assert np.array_equal(res.images[0], bare)
    plain = cengine.generate(_req(model_dir)).images[0]
    assert np.abs(res.images[0].astype(int) - plain.astype(int)).mean() > 1.0


def test_t2i_adapter_gives_the_pixels_of_a_bare_diffusers_adapter_call(
        cengine, control_root, tiny_sd1_dir):
    import torch
    from diffusers import StableDiffusionAdapterPipeline, T2IAdapter

    image = _scribble()
    ctrl = ControlLayer("scribble", image, strength=0.7, model="tiny-sd1-adapter")
    res = cengine.generate(_req(tiny_sd1_dir, [ctrl]))
    base = cengine.load(str(tiny_sd1_dir)).pipe
    adapter = T2IAdapter.from_pretrained(control_root / "t2i_adapter" / "tiny-sd1-adapter")
    pipe = StableDiffusionAdapterPipeline.from_pipe(base, adapter=adapter)
    with torch.inference_mode(), _threads(cengine, base):
        bare = pipe(PROMPT, image=_map(image), num_inference_steps=4, guidance_scale=5.0,
                    height=64, width=64, output_type="np", adapter_conditioning_scale=0.7,
                    generator=[torch.Generator("cpu").manual_seed(5)]).images[0]
    bare = (np.clip(bare, 0, 1) * 255).round().astype(np.uint8)
    assert np.array_equal(res.images[0], bare)
    plain = cengine.generate(_req(tiny_sd1_dir)).images[0]
    assert not np.array_equal(res.images[0], plain)


@pytest.mark.parametrize("model", ["tiny-sd1-scribble", "tiny-sd1-adapter"])
def test_strength_zero_gives_exactly_the_image_without_control(cengine, tiny_sd1_dir, model):
    ctrl = ControlLayer("scribble", _scribble(), strength=0.0, model=model)
    assert np.array_equal(cengine.generate(_req(tiny_sd1_dir, [ctrl])).images[0],
                          cengine.generate(_req(tiny_sd1_dir)).images[0])


def _previews(cengine, req):
    seen = []
    cengine.generate(req, on_step=lambda p: p.phase == "sampling" and seen.append(p.preview))
    return seen


def test_step_range_changes_only_its_steps(cengine, tiny_sd1_dir):
    """4 steps; a control from 0.5 leaves steps 1-2 as without control and changes 3-4; one
    that ends at 0.5 makes steps 1-2 as the full-range control does, and 3-4 differently."""
    image = _scribble()
    none = _previews(cengine, _req(tiny_sd1_dir))
    late = _previews(cengine, _req(tiny_sd1_dir, [ControlLayer("scribble", image, start=0.5,
                                                               model="tiny-sd1-scribble")]))
    full = _previews(cengine, _req(tiny_sd1_dir, [ControlLayer("scribble", image,
                                                               model="tiny-sd1-scribble")]))
    early = _previews(cengine, _req(tiny_sd1_dir, [ControlLayer("scribble", image, end=0.5,
                                                                model="tiny-sd1-scribble")]))
    assert len(none) == len(late) == len(full) == len(early) == 4
    for step in (0, 1):
        assert np.array_equal(late[step], none[step])
        assert np.array_equal(early[step], full[step])
        assert not np.array_equal(full[step], none[step])
    for step in (2, 3):
        assert not np.array_equal(late[step], none[step])
        assert not np.array_equal(early[step], full[step])


def test_img2img_inpaint_and_batches_follow_the_control(cengine, tiny_sd1_dir):
    import torch
    from diffusers import StableDiffusionControlNetImg2ImgPipeline

    image = _scribble()
    ctrl = ControlLayer("scribble", image, model="tiny-sd1-scribble")
    init = Pixels.from_array(np.full((64, 64, 3), 160, np.uint8))
    mask = Pixels.from_array(np.pad(np.full((32, 32), 255, np.uint8), 16))
    req = _req(tiny_sd1_dir, [ctrl], task="img2img", init_image=init, strength=0.6)
    ours = cengine.generate(req).images[0]
    base = cengine.load(str(tiny_sd1_dir)).pipe
    pipe = StableDiffusionControlNetImg2ImgPipeline.from_pipe(
        base, controlnet=cengine.controls.load(cengine.controls.resolve(
            "tiny-sd1-scribble", "scribble", "sd1")))
    from PIL import Image

    with torch.inference_mode(), _threads(cengine, base):
        bare = pipe(PROMPT, image=Image.fromarray(init.to_array()), control_image=_map(image),
                    strength=0.6, controlnet_conditioning_scale=1.0,  # its default is 0.8
                    num_inference_steps=4, guidance_scale=5.0, output_type="np",
                    generator=[torch.Generator("cpu").manual_seed(5)]).images[0]
    assert np.array_equal(ours, (np.clip(bare, 0, 1) * 255).round().astype(np.uint8))
    inpaint = _req(tiny_sd1_dir, [ctrl], task="inpaint", init_image=init, mask=mask,
                   strength=0.9)
    with_control = cengine.generate(inpaint).images[0]
    without = cengine.generate(inpaint.replace(controls=())).images[0]
    assert not np.array_equal(with_control, without)
    batch = _req(tiny_sd1_dir, [ctrl], batch_size=2)
    images = cengine.generate(batch).images
    assert np.array_equal(images[1], cengine.generate(batch.for_image(1)).images[0])


def test_two_controlnets_run_as_multicontrolnet(cengine, tiny_sd1_dir):
    image = _scribble()
    one = ControlLayer("scribble", image, model="tiny-sd1-scribble")
    two = ControlLayer("edges", Pixels.from_array(np.asarray(_map(image))), strength=0.5,
                       model="tiny-sd1-scribble")
    both = cengine.generate(_req(tiny_sd1_dir, [one, two])).images[0]
    assert not np.array_equal(both, cengine.generate(_req(tiny_sd1_dir, [one])).images[0])


def test_a_control_image_of_another_size_is_scaled_with_a_note(cengine, tiny_sd1_dir, caplog):
    small = ControlLayer("scribble", _scribble(64), model="tiny-sd1-scribble")
    big = ControlLayer("scribble", _scribble(128), model="tiny-sd1-scribble")
    with caplog.at_level(logging.INFO):
        res = cengine.generate(_req(tiny_sd1_dir, [big]))
    assert "(128x128) was scaled to 64x64" in caplog.text
    plain = cengine.generate(_req(tiny_sd1_dir)).images[0]
    ours = cengine.generate(_req(tiny_sd1_dir, [small])).images[0]
    # Scaled, the big drawing steers the image as the small one does, not as no control.
    assert (np.abs(res.images[0].astype(int) - ours).mean()
            < np.abs(plain.astype(int) - ours).mean())


def test_an_empty_control_layer_is_skipped_and_said_once(cengine, tiny_sd1_dir, caplog):
    empty = ControlLayer("scribble", Pixels.from_array(np.zeros((64, 64, 4), np.uint8)),
                         model="tiny-sd1-scribble")
    with caplog.at_level(logging.INFO):
        res = cengine.generate(_req(tiny_sd1_dir, [empty]))
    assert caplog.text.count("is empty: skipped") == 1
    assert np.array_equal(res.images[0], cengine.generate(_req(tiny_sd1_dir)).images[0])


def test_a_controlnet_of_another_family_is_refused_in_one_line_nothing_loaded(
        tiny_sd1_dir, control_root, tmp_path):
    from studio.engine.engine import Engine

    fresh = Engine(device="cpu", dtype="float32", model_dirs=[tiny_sd1_dir, control_root.parent],
                   embedded_dir=tmp_path, hf_cache=False)
    ctrl = ControlLayer("scribble", _scribble(), model="tiny-sdxl-scribble")
    with pytest.raises(InvalidRequestError) as err:
        fresh.generate(_req(tiny_sd1_dir, [ctrl]))
    text = str(err.value).splitlines()[0]
    assert "tiny-sdxl-scribble (SDXL)" in text and "tiny-sd1" in text and "SD 1.x" in text
    assert not any(k[0] == "control" for k in fresh.pipelines.keys())


def test_a_corrupt_control_model_is_one_clear_error(cengine, tiny_sd1_dir, tmp_path):
    bad = tmp_path / "ControlNet" / "broken-canny.safetensors"
    bad.parent.mkdir()
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    ctrl = ControlLayer("edges", _scribble(), model=str(bad))
    with pytest.raises(StudioError) as err:
        cengine.generate(_req(tiny_sd1_dir, [ctrl]))
    assert isinstance(err.value, CorruptModelError)
    assert "broken-canny.safetensors is damaged" in str(err.value)
    # The studio stays usable: the next generation runs.
    assert cengine.generate(_req(tiny_sd1_dir)).images


def test_adapters_refuse_what_diffusers_cannot_do_in_one_line(cengine, tiny_sd1_dir):
    init = Pixels.from_array(np.full((64, 64, 3), 160, np.uint8))
    ctrl = ControlLayer("scribble", _scribble(), model="tiny-sd1-adapter")
    with pytest.raises(InvalidRequestError, match="text to image only"):
        cengine.generate(_req(tiny_sd1_dir, [ctrl], task="img2img", init_image=init))
    with pytest.raises(InvalidRequestError, match="first step"):
        cengine.generate(_req(tiny_sd1_dir, [ctrl.__class__("scribble", ctrl.image,
                                                            start=0.3,
                                                            model="tiny-sd1-adapter")]))


def test_control_models_are_found_by_family_in_a1111_and_comfyui_layouts(cengine):
    found = {m.name: m for m in cengine.controls.list(refresh=True)}
    assert found["tiny-sd1-scribble"].kind == "controlnet"
    assert found["tiny-sd1-scribble"].family == "sd1"
    assert found["tiny-sdxl-adapter"].kind == "t2i-adapter"
    assert found["tiny-sdxl-adapter"].family == "sdxl"
    # Without a name, the control model that fits the diffusion model's family is chosen.
    assert cengine.controls.resolve("", "scribble", "sdxl").name in ("tiny-sdxl-scribble",
                                                                      "tiny-sdxl-adapter")


def test_single_file_controlnets_are_identified_by_their_tensor_shapes(tmp_path):
    """An SDXL ControlNet file (original A1111 layout) and an SD 1.x one (diffusers keys),
    read from their headers: cross-attention width 2048 / 768, never from the name."""
    import torch
    from safetensors.torch import save_file

    from studio.engine.control_models import file_info

    xl = tmp_path / "control-sd15-looking-name.safetensors"
    save_file({"control_model.input_hint_block.0.weight": torch.zeros(16, 3, 3, 3),
               "control_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight":
                   torch.zeros(4, 2048),
               "control_model.label_emb.0.0.weight": torch.zeros(4, 4)}, str(xl))
    sd = tmp_path / "whatever.safetensors"
    save_file({"controlnet_cond_embedding.conv_in.weight": torch.zeros(16, 3, 3, 3),
               "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight":
                   torch.zeros(4, 768)}, str(sd))
    assert (file_info(xl).kind, file_info(xl).family) == ("controlnet", "sdxl")
    assert (file_info(sd).kind, file_info(sd).family) == ("controlnet", "sd1")
