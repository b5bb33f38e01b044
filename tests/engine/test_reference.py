"""Reference images (IP-Adapter) in the local engine: tiny real IP-Adapters and CLIP vision
encoders built from configs, kept as users keep them (diffusers' h94 layout, ComfyUI's
ipadapter + clip_vision), give the pixels of a bare diffusers ``load_ip_adapter`` call;
the reference changes the image, scale 0 is exactly no reference, and bad input is one
clear message."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.control import ControlLayer
from studio.core.document.pixels import Pixels
from studio.core.errors import InvalidRequestError, StudioError
from studio.core.jobs.request import GenerationRequest
from tests.engine.reference_models import build_reference_root

PROMPT = "a portrait with red hair"


@pytest.fixture(scope="module")
def ref_root(tmp_path_factory, tiny_sd1_dir, tiny_sdxl_dir):
    """IP-Adapters as users keep them, and a scribble ControlNet to run beside them."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    from studio.engine.control_models import controlnet_config
    from tests.engine.test_control import _randomise, _save

    root = build_reference_root(tmp_path_factory.mktemp("user-refs"), tiny_sd1_dir,
                                tiny_sdxl_dir)
    unet = UNet2DConditionModel.from_pretrained(tiny_sd1_dir / "unet")
    cn = ControlNetModel.from_config(controlnet_config(dict(unet.config), (16, 32)))
    _randomise(cn, 1)
    _save(cn, root / "models" / "ControlNet" / "tiny-sd1-scribble", "sd1")
    return root


@pytest.fixture(scope="module")
def rengine(tiny_sd1_dir, tiny_sdxl_dir, ref_root, tmp_path_factory):
    from studio.engine.engine import Engine

    return Engine(device="cpu", dtype="float32",
                  model_dirs=[tiny_sd1_dir, tiny_sdxl_dir, ref_root],
                  embedded_dir=tmp_path_factory.mktemp("no-embedded"), hf_cache=False)


def photo(seed: int = 0, size: int = 48) -> Pixels:
    """A picture to take the look of: coloured blocks."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return Pixels.from_array(np.ascontiguousarray(
        np.kron(blocks, np.ones((size // 4, size // 4, 1), np.uint8))))


def _req(model_dir, controls=(), **kw):
    base = dict(model=str(model_dir), width=64, height=64, steps=4, seed=5, guidance=5.0,
                controls=tuple(controls))
    base.update(kw)
    return GenerationRequest(PROMPT, **base)


def _bare(rengine, model_dir, folder, weight, image, scale, **kw):
    """The same call through diffusers alone: ``load_ip_adapter`` from the folder (its
    ``image_encoder`` loaded by diffusers), ``set_ip_adapter_scale``, ``ip_adapter_image``."""
    import torch
    from diffusers import StableDiffusionPipeline
    from PIL import Image

    from studio.engine.tuning import cpu_threads_for, torch_threads

    base = rengine.load(str(model_dir)).pipe
    pipe = StableDiffusionPipeline.from_pretrained(model_dir, torch_dtype=torch.float32,
                                                   safety_checker=None)
    pipe.scheduler = type(base.scheduler).from_config(base.scheduler.config)
    pipe.load_ip_adapter(str(folder), subfolder="", weight_name=weight,
                         image_encoder_folder="image_encoder", local_files_only=True)
    pipe.set_ip_adapter_scale(scale)
    pipe.set_progress_bar_config(disable=True)
    with torch.inference_mode(), torch_threads(cpu_threads_for(base, rengine.choice)):
        out = pipe(PROMPT, num_inference_steps=4, guidance_scale=5.0, height=64, width=64,
                   output_type="np", generator=[torch.Generator("cpu").manual_seed(5)],
                   ip_adapter_image=Image.fromarray(image.to_array()).convert("RGB"),
                   **kw).images[0]
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def test_a_reference_gives_the_pixels_of_a_bare_diffusers_ip_adapter_call(
        rengine, ref_root, tiny_sd1_dir):
    image = photo(0)
    ref = ControlLayer("reference", image, strength=0.8, model="ip-adapter_tiny-sd1")
    res = rengine.generate(_req(tiny_sd1_dir, [ref]))
    assert res.request.controls == (ref,)
    folder = ref_root / "ipadapter" / "IP-Adapter" / "models"
    bare = _bare(rengine, tiny_sd1_dir, folder, "ip-adapter_tiny-sd1.safetensors", image, 0.8)
    assert np.array_equal(res.images[0], bare)
    plain = rengine.generate(_req(tiny_sd1_dir)).images[0]
    assert np.abs(res.images[0].astype(int) - plain.astype(int)).mean() > 1.0
    # The cached pipeline is as it was loaded: the next plain call gives the same image.
    assert np.array_equal(rengine.generate(_req(tiny_sd1_dir)).images[0], plain)


def test_scale_zero_is_exactly_no_reference_and_another_image_another_look(
        rengine, tiny_sd1_dir):
    plain = rengine.generate(_req(tiny_sd1_dir)).images[0]
    zero = rengine.generate(_req(tiny_sd1_dir, [ControlLayer("reference", photo(0),
                                                               strength=0.0)])).images[0]
    assert np.array_equal(zero, plain)
    a = rengine.generate(_req(tiny_sd1_dir, [ControlLayer("reference", photo(0))])).images[0]
    b = rengine.generate(_req(tiny_sd1_dir, [ControlLayer("reference", photo(7))])).images[0]
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 1.0


def test_the_step_range_limits_the_reference_to_its_steps(rengine, tiny_sd1_dir):
    plain = rengine.generate(_req(tiny_sd1_dir)).images[0]
    full = rengine.generate(_req(tiny_sd1_dir, [ControlLayer("reference", photo(0))])).images[0]
    late = rengine.generate(_req(tiny_sd1_dir, [ControlLayer("reference", photo(0),
                                                               start=0.5)])).images[0]
    assert not np.array_equal(late, full) and not np.array_equal(late, plain)
    # From half way: the first two of the four steps are those without a reference.
    seen = {}
    for name, ctrl in (("none", ()), ("late", (ControlLayer("reference", photo(0),
                                                             start=0.5),))):
        previews = []
        rengine.generate(_req(tiny_sd1_dir, ctrl),
                         on_step=lambda p, out=previews: out.append(np.asarray(
                             p.preview).copy()) if p.phase == "sampling" and p.preview
                         is not None else None)
        seen[name] = previews
    assert len(seen["none"]) == len(seen["late"]) == 4
    assert all(np.array_equal(a, b) for a, b in zip(seen["none"][:2], seen["late"][:2], strict=True))
    assert not np.array_equal(seen["none"][3], seen["late"][3])


def test_a_reference_beside_a_controlnet_gives_the_pixels_of_a_bare_diffusers_call(
        rengine, ref_root, tiny_sd1_dir):
    import torch
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline
    from PIL import Image

    from studio.engine.tuning import cpu_threads_for, torch_threads
    from tests.engine.test_control import _map, _scribble

    image, sketch = photo(0), _scribble()
    res = rengine.generate(_req(tiny_sd1_dir, [
        ControlLayer("scribble", sketch, strength=0.8, model="tiny-sd1-scribble"),
        ControlLayer("reference", image, strength=0.6, model="ip-adapter_tiny-sd1")]))
    base = rengine.load(str(tiny_sd1_dir)).pipe
    cn = ControlNetModel.from_pretrained(ref_root / "models" / "ControlNet" / "tiny-sd1-scribble")
    pipe = StableDiffusionControlNetPipeline.from_pretrained(
        tiny_sd1_dir, controlnet=cn, torch_dtype=torch.float32, safety_checker=None)
    pipe.scheduler = type(base.scheduler).from_config(base.scheduler.config)
    pipe.load_ip_adapter(str(ref_root / "ipadapter" / "IP-Adapter" / "models"), subfolder="",
                         weight_name="ip-adapter_tiny-sd1.safetensors", local_files_only=True)
    pipe.set_ip_adapter_scale(0.6)
    pipe.set_progress_bar_config(disable=True)
    with torch.inference_mode(), torch_threads(cpu_threads_for(base, rengine.choice)):
        bare = pipe(PROMPT, image=_map(sketch), num_inference_steps=4, guidance_scale=5.0,
                    height=64, width=64, output_type="np",
                    generator=[torch.Generator("cpu").manual_seed(5)],
                    controlnet_conditioning_scale=0.8,
                    ip_adapter_image=Image.fromarray(image.to_array()).convert("RGB")).images[0]
    bare = (np.clip(bare, 0, 1) * 255).round().astype(np.uint8)
    assert np.array_equal(res.images[0], bare)


def test_two_references_at_once_and_a_reference_in_img2img(rengine, tiny_sd1_dir):
    one = rengine.generate(_req(tiny_sd1_dir, [ControlLayer("reference", photo(0),
                                                              model="ip-adapter_tiny-sd1")]))
    two = rengine.generate(_req(tiny_sd1_dir, [
        ControlLayer("reference", photo(0), model="ip-adapter_tiny-sd1"),
        ControlLayer("reference", photo(7), strength=0.7, model="ip-adapter_tiny-sd1-b")]))
    assert np.abs(one.images[0].astype(int) - two.images[0].astype(int)).mean() > 0.5
    init = Pixels.from_array(np.full((64, 64, 3), 120, np.uint8))
    plain = rengine.generate(_req(tiny_sd1_dir, init_image=init, strength=0.7, batch_size=2))
    ref = rengine.generate(_req(tiny_sd1_dir, [ControlLayer("reference", photo(0))],
                                init_image=init, strength=0.7, batch_size=2))
    assert len(ref.images) == 2
    assert np.abs(ref.images[0].astype(int) - plain.images[0].astype(int)).mean() > 0.5


def test_comfyui_layout_and_sdxl_are_found_and_used(rengine, tiny_sdxl_dir):
    found = {i.name: i for i in rengine.controls.references.list()}
    assert set(found) >= {"ip-adapter_tiny-sd1", "ip-adapter_tiny-sd1-b", "ip-adapter_tiny-sdxl"}
    assert found["ip-adapter_tiny-sdxl"].encoder.name == "tiny-vit"  # models/clip_vision
    assert found["ip-adapter_tiny-sd1"].encoder.name == "image_encoder"  # beside it
    plain = rengine.generate(_req(tiny_sdxl_dir)).images[0]
    ref = rengine.generate(_req(tiny_sdxl_dir, [ControlLayer("reference", photo(0))])).images[0]
    assert np.abs(ref.astype(int) - plain.astype(int)).mean() > 0.5
    assert "reference" not in dict(rengine.features.why_not)


def test_an_adapter_of_another_family_is_refused_in_one_line_before_loading(
        rengine, tiny_sd1_dir, tiny_sdxl_dir, ref_root, tmp_path):
    from studio.engine.engine import Engine

    fresh = Engine(device="cpu", dtype="float32",
                   model_dirs=[tiny_sd1_dir, tiny_sdxl_dir, ref_root],
                   embedded_dir=tmp_path, hf_cache=False)
    ref = ControlLayer("reference", photo(0), model="ip-adapter_tiny-sdxl")
    with pytest.raises(InvalidRequestError) as err:
        fresh.generate(_req(tiny_sd1_dir, [ref]))
    text = str(err.value)
    assert "ip-adapter_tiny-sdxl" in text and "tiny-sd1" in text and "\n" not in text
    assert "nothing was loaded" in text
    assert len(fresh.pipelines) == 0  # refused before the diffusion model loaded
    # The model still generates as before.
    assert rengine.generate(_req(tiny_sd1_dir)).images[0].shape == (64, 64, 3)


def test_a_missing_image_encoder_and_no_adapter_are_one_line_each(
        tmp_path, tiny_sd1_dir, tmp_path_factory):
    from diffusers import UNet2DConditionModel

    from studio.engine.engine import Engine
    from studio.engine.reference import REFERENCE_OFF
    from tests.engine.reference_models import save_ip_adapter

    bare = Engine(device="cpu", dtype="float32", model_dirs=[tiny_sd1_dir, tmp_path],
                  embedded_dir=tmp_path_factory.mktemp("none"), hf_cache=False)
    assert dict(bare.features.why_not)["reference"] == REFERENCE_OFF
    with pytest.raises(StudioError, match="No IP-Adapter") as err:
        bare.generate(_req(tiny_sd1_dir, [ControlLayer("reference", photo(0))]))
    assert "\n" not in str(err.value)
    unet = UNet2DConditionModel.from_pretrained(tiny_sd1_dir / "unet")
    save_ip_adapter(unet, tmp_path / "models" / "ipadapter" / "lonely.safetensors", 24)
    bare.controls.references.list(refresh=True)
    with pytest.raises(StudioError, match="image encoder") as err:
        bare.generate(_req(tiny_sd1_dir, [ControlLayer("reference", photo(0))]))
    assert "clip_vision" in (err.value.hint or "") and "\n" not in str(err.value)
    assert dict(bare.features.why_not)["reference"] == REFERENCE_OFF


def test_regions_and_references_together_are_refused_in_one_line(rengine, tiny_sd1_dir):
    from studio.core.jobs.request import Region

    mask = Pixels.from_array(np.full((64, 64), 255, np.uint8))
    req = _req(tiny_sd1_dir, [ControlLayer("reference", photo(0))],
               regions=(Region(mask, "a hat"),))
    with pytest.raises(InvalidRequestError, match="Regional prompts and reference images"):
        rengine.generate(req)


def test_an_adapter_made_for_another_unet_of_the_same_width_is_refused(
        rengine, tiny_sd1_dir, tmp_path):
    """Same text width, other attention layers (another model of the family's size): one
    line, before diffusers would fail on the shapes."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    from tests.engine.reference_models import ip_adapter_state

    state = ip_adapter_state(UNet2DConditionModel.from_pretrained(tiny_sd1_dir / "unet"), 24)
    last = max(int(k.split(".")[1]) for k in state if k.startswith("ip_adapter."))
    state = {k: v for k, v in state.items() if not k.startswith(f"ip_adapter.{last}.")}
    path = tmp_path / "cut.safetensors"
    save_file(state, str(path))
    ref = ControlLayer("reference", photo(0), model=str(path))
    with pytest.raises(StudioError, match="does not fit") as err:
        rengine.generate(_req(tiny_sd1_dir, [ref]))
    assert "nothing was loaded" in str(err.value) and "\n" not in str(err.value)


def test_an_ip_adapter_plus_reads_hidden_states_as_diffusers_does(rengine, ref_root,
                                                                   tiny_sd1_dir):
    info = next(i for i in rengine.controls.references.list()
                if i.name == "ip-adapter-plus_tiny-sd1")
    assert (info.projection, info.embed_dim, info.encoder.name) == ("plus", 32, "image_encoder")
    image = photo(3)
    plain = rengine.generate(_req(tiny_sd1_dir)).images[0]
    res = rengine.generate(_req(tiny_sd1_dir, [ControlLayer("reference", image, strength=0.9,
                                                              model=info.name)]))
    bare = _bare(rengine, tiny_sd1_dir, ref_root / "ipadapter" / "IP-Adapter" / "models",
                 "ip-adapter-plus_tiny-sd1.safetensors", image, 0.9)
    assert np.array_equal(res.images[0], bare)
    assert np.abs(res.images[0].astype(int) - plain.astype(int)).mean() > 0.5
    # Its resampler's attention layers come out too: the model is as it was loaded.
    assert np.array_equal(rengine.generate(_req(tiny_sd1_dir)).images[0], plain)


def test_a_faceid_adapter_is_refused_in_one_line(rengine, tiny_sd1_dir, tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "ip-adapter-faceid_sd15.safetensors"
    save_file({"image_proj.proj.0.weight": torch.zeros(64, 512),
               "image_proj.proj.2.weight": torch.zeros(128, 64),
               "image_proj.norm.weight": torch.zeros(32),
               "ip_adapter.1.to_k_ip.weight": torch.zeros(32, 32),
               "ip_adapter.1.to_k_lora.down.weight": torch.zeros(4, 32)}, str(path))
    with pytest.raises(InvalidRequestError, match="FaceID") as err:
        rengine.generate(_req(tiny_sd1_dir, [ControlLayer("reference", photo(0),
                                                            model=str(path))]))
    assert "\n" not in str(err.value)
