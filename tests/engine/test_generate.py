"""The engine on tiny real diffusers pipelines: tasks, determinism, previews, cancel."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.document.pixels import Pixels
from studio.core.errors import CancelledError, InvalidRequestError
from studio.core.jobs.cancel import CancelToken
from studio.core.jobs.request import GenerationRequest
from studio.core.samplers import SCHEDULER_LEAST_STEPS

KINDS = ["tiny_sd1_dir", "tiny_sdxl_dir"]


def _req(model_dir, **kw):
    base = dict(model=str(model_dir), width=64, height=64, steps=3, seed=11, guidance=5.0)
    base.update(kw)
    return GenerationRequest("a portrait with red hair", **base)


@pytest.fixture(params=KINDS)
def model_dir(request):
    return request.getfixturevalue(request.param)


def test_txt2img_makes_images_and_records_what_made_them(engine, model_dir):
    res = engine.generate(_req(model_dir, batch_size=2))
    assert len(res.images) == 2
    assert all(img.shape == (64, 64, 3) and img.dtype == np.uint8 for img in res.images)
    assert not np.array_equal(res.images[0], res.images[1])  # seeds 11 and 12
    assert res.images[0].std() > 1  # not a flat image
    r = res.request
    assert len(r.model_hash) == 64 and r.family in ("sd1", "sdxl")
    assert r.device == "cpu" and r.dtype == "float32" and r.scheduler == "Euler"


def test_same_request_gives_the_same_pixels(engine, model_dir):
    a = engine.generate(_req(model_dir, scheduler="euler_a"))
    b = engine.generate(_req(model_dir, scheduler="Euler a"))
    assert np.array_equal(a.images[0], b.images[0])
    c = engine.generate(_req(model_dir, scheduler="Euler a", seed=12))
    assert not np.array_equal(a.images[0], c.images[0])


def test_img2img_and_inpaint_share_the_weights_of_txt2img(engine, model_dir):
    base = engine.generate(_req(model_dir)).images[0]
    init = Pixels.from_array(base)
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 255
    img2img = engine.generate(_req(model_dir, task="img2img", init_image=init, strength=0.5))
    inpaint = engine.generate(_req(model_dir, task="inpaint", init_image=init,
                                   mask=Pixels.from_array(mask), strength=0.9))
    assert img2img.images[0].shape == inpaint.images[0].shape == (64, 64, 3)
    assert not np.array_equal(img2img.images[0], base)
    loaded = engine.load(str(model_dir))
    for variant in loaded.variants.values():
        assert variant.unet is loaded.pipe.unet and variant.vae is loaded.pipe.vae
        assert variant.text_encoder is loaded.pipe.text_encoder
    # Inpainting repaints the masked half far more than the kept half.
    diff = np.abs(inpaint.images[0].astype(int) - base.astype(int)).mean(axis=2)
    assert diff[:, 32:].mean() > diff[:, :32].mean()


def test_progress_reports_every_step_with_a_small_preview(engine, tiny_sd1_dir):
    events = []
    engine.generate(_req(tiny_sd1_dir, steps=4), on_step=events.append)
    assert [e.phase for e in events] == ["loading", "encoding", *["sampling"] * 4, "decoding"]
    events = [e for e in events if e.phase == "sampling"]
    assert [(e.step, e.total) for e in events] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    for e in events:
        assert e.preview is not None and e.preview.dtype == np.uint8
        assert e.preview.shape == (32, 32, 3)  # latent resolution, not full size


def test_cancel_mid_run_stops_within_a_step_and_skips_the_decode(engine, tiny_sd1_dir,
                                                                 monkeypatch):
    loaded = engine.load(str(tiny_sd1_dir))
    decodes = []
    original = loaded.pipe.vae.decode
    monkeypatch.setattr(loaded.pipe.vae, "decode",
                        lambda *a, **k: decodes.append(1) or original(*a, **k))
    token = CancelToken()
    steps = []

    def on_step(p):
        if p.phase != "sampling":
            return
        steps.append(p.step)
        if p.step == 2:
            token.cancel()

    with pytest.raises(CancelledError):
        engine.generate(_req(tiny_sd1_dir, steps=20), on_step=on_step, cancel=token)
    assert steps == [1, 2]
    assert decodes == []


def test_cancel_while_the_model_loads_runs_no_step(engine, tiny_sd1_dir):
    token = CancelToken()
    phases = []

    def on_step(p):
        phases.append(p.phase)
        if p.phase == "loading":
            token.cancel()  # the user pressed Cancel during "Loading model…"

    with pytest.raises(CancelledError):
        engine.generate(_req(tiny_sd1_dir, steps=20), on_step=on_step, cancel=token)
    assert phases == ["loading"]  # no encoding, no step, no decode


def test_variation_strength_zero_is_the_base_image_and_grows_away(engine, tiny_sd1_dir):
    base = engine.generate(_req(tiny_sd1_dir)).images[0].astype(int)
    zero = engine.generate(_req(tiny_sd1_dir, variation_seed=99, variation_strength=0.0))
    assert np.array_equal(zero.images[0], base)
    small = engine.generate(_req(tiny_sd1_dir, variation_seed=99, variation_strength=0.1))
    big = engine.generate(_req(tiny_sd1_dir, variation_seed=99, variation_strength=0.9))
    d_small = np.abs(small.images[0] - base).mean()
    d_big = np.abs(big.images[0] - base).mean()
    assert 0 < d_small < d_big


@pytest.mark.parametrize("name", ["Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DDIM",
                                  "UniPC", "Heun", "LMS", "PNDM", "DPM++ 2M SDE"])
def test_every_named_scheduler_runs_and_is_recorded(engine, tiny_sd1_dir, name):
    res = engine.generate(_req(tiny_sd1_dir, scheduler=name, steps=max(3, SCHEDULER_LEAST_STEPS.get(name, 0))))
    assert res.request.scheduler == name
    assert np.isfinite(res.images[0]).all()


def test_pndm_below_its_warm_up_is_refused_in_one_line(engine, tiny_sd1_dir):
    with pytest.raises(InvalidRequestError, match="PNDM cannot run fewer than 4 steps.*PLMS"):
        engine.generate(_req(tiny_sd1_dir, scheduler="PNDM", steps=3))


def test_unknown_scheduler_is_a_clear_error(engine, tiny_sd1_dir):
    with pytest.raises(InvalidRequestError, match="Unknown scheduler 'Eulr'"):
        engine.generate(_req(tiny_sd1_dir, scheduler="Eulr"))


def test_engine_gives_the_pixels_of_a_bare_diffusers_call(engine, model_dir):
    """Our path (own prompt embeddings, callbacks, previews) changes nothing in the image.

    The bare call runs with the thread count the engine picks for this model: float sums
    in another order may move a pixel by one level, which is not our path's doing."""
    import torch

    from studio.engine.tuning import cpu_threads_for, torch_threads

    req = _req(model_dir, negative_prompt="blurry", steps=4)
    ours = engine.generate(req).images[0]
    pipe = engine.load(str(model_dir)).pipe
    with torch.inference_mode(), torch_threads(cpu_threads_for(pipe, engine.choice)):
        bare = pipe(req.prompt, negative_prompt=req.negative_prompt, num_inference_steps=4,
                    guidance_scale=req.guidance, height=64, width=64, output_type="np",
                    generator=[torch.Generator("cpu").manual_seed(req.seed)]).images[0]
    bare = (np.clip(bare, 0, 1) * 255).round().astype(np.uint8)
    assert np.array_equal(ours, bare)


def test_scheduler_names_in_other_spellings():
    from studio.engine.schedulers import canonical_name

    assert canonical_name("EulerDiscreteScheduler") == "Euler"
    assert canonical_name("dpmpp_2m_karras") == "DPM++ 2M Karras"
    assert canonical_name("euler_a") == "Euler a"
