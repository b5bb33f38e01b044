"""The generation call builders: a pipeline's arguments per task, from the request alone."""

from __future__ import annotations

import numpy as np
import torch

from studio.core.document.pixels import Pixels
from studio.core.jobs.request import GenerationRequest, SliderValue
from studio.engine import calls


def _req(**kw) -> GenerationRequest:
    base = dict(model="m", width=32, height=48, steps=4, seed=7, guidance=6.5)
    base.update(kw)
    return GenerationRequest("a portrait", **base)


def _image(w: int, h: int) -> Pixels:
    return Pixels.from_array(np.full((h, w, 3), 90, np.uint8))


def test_sampling_arguments_seed_one_generator_per_image():
    args = calls.sampling_args(_req(batch_size=2))
    assert (args["num_inference_steps"], args["guidance_scale"],
            args["num_images_per_prompt"], args["output_type"]) == (4, 6.5, 2, "np")
    first, second = (g.initial_seed() for g in args["generator"])
    assert (first, second) == (7, 8)


def test_txt2img_gives_the_size_and_only_the_latents_it_gets():
    assert calls.txt2img_args(_req()) == {"height": 48, "width": 32}
    latents = torch.zeros(1, 4, 6, 4)
    assert calls.txt2img_args(_req(), latents)["latents"] is latents


def test_img2img_resizes_the_init_image_to_the_request():
    args = calls.img2img_args(_req(task="img2img", init_image=_image(16, 16), strength=0.4))
    assert args["image"].size == (32, 48) and args["image"].mode == "RGB"
    assert args["strength"] == 0.4 and "mask_image" not in args


def test_inpaint_adds_the_mask_at_the_request_size():
    mask = Pixels.from_array(np.full((16, 16), 255, np.uint8))
    req = _req(task="inpaint", init_image=_image(32, 48), mask=mask, strength=0.9)
    args = calls.task_args(req, "inpaint")
    assert args["mask_image"].size == (32, 48) and args["mask_image"].mode == "L"
    assert (args["height"], args["width"], args["strength"]) == (48, 32, 0.9)
    assert np.asarray(args["image"]).mean() == 90


def test_inversion_starts_from_the_inverted_latents():
    inverted = torch.ones(1, 4, 6, 4)
    args = calls.inversion_args(_req(), inverted)
    assert args["latents"] is inverted and (args["height"], args["width"]) == (48, 32)


class _Pipe:
    vae_scale_factor = 8

    class unet:  # noqa: N801 - stands in for pipe.unet
        class config:  # noqa: N801
            in_channels = 4


def test_latent_slider_latents_move_only_when_a_slider_asks():
    pipe = _Pipe()
    assert calls.latent_slider_latents(pipe, _req(), None, "cpu", torch.float32) is None
    plain = torch.randn((1, 4, 6, 4), generator=torch.Generator("cpu").manual_seed(7))
    # Variation strength 0 is the seed's own noise; full strength is the variation seed's.
    none = calls.variation_latents(pipe, _req(variation_seed=99, variation_strength=1e-9))
    assert torch.allclose(none, plain, atol=1e-6)
    varied = calls.latent_slider_latents(pipe, _req(variation_seed=99, variation_strength=0.5),
                                         None, "cpu", torch.float32)
    assert varied.shape == (1, 4, 6, 4) and not torch.allclose(varied, plain)
    interp = SliderValue("seed-ab", 0.5, "interp", (("seed_b", 3),))
    towards = calls.latent_slider_latents(pipe, _req(), interp, "cpu", torch.float32)
    assert towards.shape == (1, 4, 6, 4) and not torch.allclose(towards, plain)
