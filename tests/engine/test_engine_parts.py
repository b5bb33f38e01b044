"""The local engine as a whole: what it offers, and requests that leave no trace on the
cached pipeline (LoRAs and schedulers are set for one call and undone)."""

from __future__ import annotations

import numpy as np

from studio.core.engines import Engine as EngineProtocol
from studio.core.engines import EngineFeatures
from studio.core.jobs.request import GenerationRequest, LoraWeight
from studio.engine.lora import lora_state
from studio.engine.schedulers import SCHEDULERS


def _write_lora(pipe, path, seed):
    """A kohya-layout LoRA on the UNet's attention queries and the text encoder's."""
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    state = {}
    for prefix, model, suffix in (("lora_unet_", pipe.unet, "to_q"),
                                  ("lora_te_", pipe.text_encoder, "q_proj")):
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and name.endswith(suffix):
                base = prefix + name.replace(".", "_")
                state[base + ".lora_down.weight"] = torch.randn(4, module.in_features,
                                                                generator=gen) * 0.5
                state[base + ".lora_up.weight"] = torch.randn(module.out_features, 4,
                                                              generator=gen) * 0.5
    save_file(state, str(path))
    return path


def _req(model_dir, **kw):
    base = dict(model=str(model_dir), width=32, height=32, steps=2, seed=5, guidance=5.0)
    base.update(kw)
    return GenerationRequest("a portrait of a person with red hair", **base)


def test_the_local_engine_implements_the_protocol_and_says_what_it_can_do(engine):
    assert isinstance(engine, EngineProtocol)
    features = engine.features
    assert isinstance(features, EngineFeatures) and features.backend == "local"
    assert features.schedulers == tuple(SCHEDULERS)
    assert {"sd1", "sdxl", "studio-tiny"} <= set(features.families)
    assert features.inpainting and features.img2img and features.lora and features.upscaling
    assert features.prompt_sliders and features.latent_sliders and features.example_directions
    assert features.model_management
    assert features.control and not features.reason("control")  # control layers (issue 23)
    assert features.live_mode and not features.reason("live_mode")  # too slow: LiveSession


def test_a_lora_or_another_scheduler_leaves_no_trace_on_the_next_request(
        engine, tiny_sd1_dir, tmp_path):
    pipe = engine.load(str(tiny_sd1_dir)).pipe
    loaded_scheduler = pipe.scheduler
    lora = _write_lora(pipe, tmp_path / "style.safetensors", 3)
    plain = engine.generate(_req(tiny_sd1_dir)).images[0]
    with_lora = engine.generate(_req(tiny_sd1_dir, loras=(LoraWeight(str(lora), 1.5),)))
    assert not np.array_equal(with_lora.images[0], plain)
    assert lora_state(pipe).active == ()  # undone after the call
    assert np.array_equal(engine.generate(_req(tiny_sd1_dir)).images[0], plain)
    other = engine.generate(_req(tiny_sd1_dir, scheduler="DPM++ 2M Karras"))
    assert not np.array_equal(other.images[0], plain)
    assert pipe.scheduler is loaded_scheduler
    assert np.array_equal(engine.generate(_req(tiny_sd1_dir)).images[0], plain)


def test_img2img_after_a_lora_is_as_without_it(engine, tiny_sd1_dir, tmp_path):
    from studio.core.document.pixels import Pixels

    pipe = engine.load(str(tiny_sd1_dir)).pipe
    lora = _write_lora(pipe, tmp_path / "style2.safetensors", 4)
    init = Pixels.from_array(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8))
    req = _req(tiny_sd1_dir, task="img2img", init_image=init, strength=0.6)
    plain = engine.generate(req).images[0]
    engine.generate(req.replace(loras=(LoraWeight(str(lora), -2.0),), scheduler="DDIM"))
    assert np.array_equal(engine.generate(req).images[0], plain)
