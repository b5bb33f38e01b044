"""VAE and GAN slider mode on small random flat-latent models (the real ones are measured
by SliderBench)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from studio.core.document.pixels import Pixels
from studio.core.errors import InvalidRequestError
from studio.core.jobs.request import GenerationRequest, SliderValue
from studio.core.sliders.specs import apply_sliders, latent_slider


@pytest.fixture(scope="module")
def latent_engine(tmp_path_factory):
    import torch

    from studio.engine.engine import Engine
    from studio.engine.nets.gan import Generator
    from studio.engine.nets.vae import FlatVAE
    from studio.training.common import save_module

    root = tmp_path_factory.mktemp("embedded")
    torch.manual_seed(0)
    vae = FlatVAE(latent_dim=16, widths=(16, 16, 16, 16))
    save_module(vae, vae.config, root / "studio-tiny-vae", half=False)
    gen = Generator(z_dim=8, widths=(16, 16, 16, 16)).eval()
    save_module(gen, gen.config, root / "studio-tiny-gan" / "generator", name="generator",
                half=False)
    return Engine(device="cpu", dtype="float32", embedded_dir=root, hf_cache=False)


def _req(model, **kw):
    return GenerationRequest("", model=model, width=64, height=64, steps=1, seed=3, **kw)


def test_vae_sliders_are_exact_at_zero_and_move_the_image(latent_engine, monkeypatch, tmp_path):
    from studio.engine import latent_models

    monkeypatch.setattr(latent_models, "DIRECTION_SAMPLES", 64)
    base = latent_engine.generate(_req("studio-tiny-vae"))
    assert base.images[0].shape == (64, 64, 3)
    glasses = latent_slider("vae", "glasses", method="mean")
    assert apply_sliders(_req("studio-tiny-vae"), [(glasses, 0.0)]) == _req("studio-tiny-vae")
    images = [latent_engine.generate(apply_sliders(_req("studio-tiny-vae"), [(glasses, v)]))
              for v in (1.0, 3.0)]
    assert not np.array_equal(images[0].images[0], base.images[0])
    diffs = [np.abs(r.images[0].astype(int) - base.images[0]).mean() for r in images]
    assert diffs[0] < diffs[1]
    # The recorded request reproduces the edit.
    again = latent_engine.generate(images[0].request)
    assert np.array_equal(again.images[0], images[0].images[0])
    # Directions were cached on disk per model hash: a fresh instance reads them back.
    fresh = latent_models.LatentModels(latent_engine)
    monkeypatch.setattr(latent_models, "DIRECTION_SAMPLES", 10**9)  # would be far too slow
    info = latent_engine.resolve_model("studio-tiny-vae")
    assert set(fresh.directions(info, "mean")) >= {"glasses", "smile", "hair=red"}


def test_vae_encodes_the_canvas_image(latent_engine):
    rng = np.random.default_rng(0)
    canvas = Pixels.from_array(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))
    req = _req("studio-tiny-vae", task="img2img", init_image=canvas)
    a = latent_engine.generate(req).images[0]
    assert a.shape == (64, 64, 3)
    assert not np.array_equal(a, latent_engine.generate(_req("studio-tiny-vae")).images[0])


def test_a_canvas_edit_carries_only_what_the_slider_changed(latent_engine, monkeypatch):
    """On a canvas image the decoder's own picture of it (a reconstruction; the GAN's
    inversion, checked on the shipped GAN below) is never drawn: at 0 the canvas comes back
    bit for bit, and an edit adds to the canvas what the slider changed in the decoder's
    picture."""
    from studio.engine import latent_models

    monkeypatch.setattr(latent_models, "DIRECTION_SAMPLES", 64)
    monkeypatch.setattr(latent_models, "PAIR_SAMPLES", 16)
    model = "studio-tiny-vae"
    rng = np.random.default_rng(1)
    canvas = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    req = _req(model, task="img2img", init_image=Pixels.from_array(canvas))
    from studio.core.sliders.specs import example_slider

    space = model.removeprefix("studio-tiny-")
    lm = latent_engine.latent_models
    info = latent_engine.resolve_model(model)
    slider = example_slider(space, "a direction", rng.standard_normal(lm.model(info).latent_dim))
    assert np.array_equal(latent_engine.generate(req).images[0], canvas)
    assert np.array_equal(latent_engine.generate(req.replace(sliders=(
        SliderValue(slider.slider_id, 0.0, space, (("attribute", "smile"),)),))).images[0],
        canvas)
    edited = latent_engine.generate(apply_sliders(req, [(slider, 2.0)])).images[0]
    z0 = lm.latents(info, req)
    z1 = lm.edit(info, z0, apply_sliders(req, [(slider, 2.0)]))
    lm_model = lm.model(info)
    change = lm_model.decode(z1).astype(int)[0] - lm_model.decode(z0).astype(int)[0]
    assert np.abs(change).max() > 0
    # Where the decoder's picture did not change, the canvas is untouched; where it changed
    # most, the change is carried whole; faint changes (a fraction of the main one) are
    # dropped (``change_mask``).
    untouched = np.abs(change).max(2) == 0
    np.testing.assert_array_equal(edited[untouched], canvas[untouched])
    size = np.abs(change).max(2)
    whole = latent_models.change_mask(change[None].astype(np.float32))[0, ..., 0] == 1.0
    assert whole.any() and size[whole].mean() > size.mean()
    np.testing.assert_array_equal(edited[whole].astype(int),
                                  np.clip(canvas.astype(int) + change, 0, 255)[whole])
    # A larger canvas keeps its own pixels too: the change is scaled up, not the picture.
    big = np.kron(canvas, np.ones((2, 2, 1), np.uint8))
    big_req = req.replace(init_image=Pixels.from_array(big), width=128, height=128)
    assert np.array_equal(latent_engine.generate(big_req).images[0], big)
    # And so does an edit of it (what the Sliders panel keeps, drawn at the layer's size):
    # the large canvas changes by the slider's change alone, where the 64 px edit scaled up
    # would have blurred away the canvas's own fine detail everywhere.
    from PIL import Image

    big_edit = latent_engine.generate(apply_sliders(big_req, [(slider, 2.0)])).images[0]
    scaled_up = np.asarray(Image.fromarray(edited).resize((128, 128), Image.Resampling.LANCZOS))
    assert not np.array_equal(big_edit, big)
    off = np.abs(big_edit.astype(int) - big).mean()
    assert off < 0.5 * np.abs(scaled_up.astype(int) - big).mean()
    assert off < np.abs(change).mean() + 1  # the change, scaled up: nothing else


def test_paired_directions_are_built_from_the_renderers_pairs(latent_engine, monkeypatch):
    """The VAE's default directions come from the same portrait drawn with and without the
    attribute: every starter attribute gets one (colours one step per source colour), they
    move the image and are exact at 0; the embedded VAE's ship with it, for its weights."""
    from studio.engine import latent_models
    from studio.paths import resources_dir

    monkeypatch.setattr(latent_models, "PAIR_SAMPLES", 16)
    lm = latent_engine.latent_models
    info = latent_engine.resolve_model("studio-tiny-vae")
    found = lm.directions(info, "paired")
    assert {"smile", "glasses", "hair=red", "hair=blonde", "background=blue"} <= set(found)
    # Colours: the few dimensions the colour varies in, and where red lies in them.
    assert found["hair=red"].basis.shape == (3, 16) and found["hair=red"].anchor is not None
    assert all(np.linalg.norm(d.vector) > 0 for d in found.values())
    spec = latent_slider("vae", "glasses")
    assert spec.method == "paired"
    base = latent_engine.generate(_req("studio-tiny-vae")).images[0]
    assert np.array_equal(latent_engine.generate(
        apply_sliders(_req("studio-tiny-vae"), [(spec, 0.0)])).images[0], base)
    assert not np.array_equal(latent_engine.generate(
        apply_sliders(_req("studio-tiny-vae"), [(spec, 2.0)])).images[0], base)
    with pytest.raises(InvalidRequestError, match="encoder"):
        lm.directions(latent_engine.resolve_model("studio-tiny-gan"), "paired")
    # The shipped file is for the shipped weights (else it would be rebuilt on first use).
    from studio.engine.models.hashing import model_hash

    shipped = resources_dir() / "sliders" / "latent" / "studio-tiny-vae-paired.json"
    assert latent_models._read_directions(shipped, model_hash(SHIPPED / "studio-tiny-vae"))


def test_gan_mode_and_wrong_space(latent_engine):
    base = latent_engine.generate(_req("studio-tiny-gan"))
    zero = latent_engine.generate(_req("studio-tiny-gan").replace(sliders=(
        SliderValue("gan:smile", 0.0, "gan", (("attribute", "smile"),)),)))
    assert np.array_equal(base.images[0], zero.images[0])
    wrong = apply_sliders(_req("studio-tiny-gan"), [(latent_slider("vae", "smile"), 1.0)])
    with pytest.raises(InvalidRequestError):
        latent_engine.generate(wrong)


SHIPPED = Path(__file__).resolve().parents[2] / "resources" / "models"


@pytest.fixture(scope="module")
def shipped_engine():
    from studio.engine.engine import Engine

    return Engine(device="cpu", dtype="float32", embedded_dir=SHIPPED, hf_cache=False)


def test_gan_sliders_follow_the_curved_path_of_its_attribute_reader(shipped_engine):
    """GAN sliders default to the "flow" method: exact at 0, different from the straight
    class step, reproducible from the recorded request."""
    latent_engine = shipped_engine
    spec = latent_slider("gan", "hair=red")
    assert spec.method == "flow" and latent_slider("vae", "hair=red").method == "paired"
    base = latent_engine.generate(_req("studio-tiny-gan")).images[0]
    assert np.array_equal(latent_engine.generate(
        apply_sliders(_req("studio-tiny-gan"), [(spec, 0.0)])).images[0], base)
    curved = latent_engine.generate(apply_sliders(_req("studio-tiny-gan"), [(spec, 2.0)]))
    straight = latent_engine.generate(apply_sliders(_req("studio-tiny-gan"), [(
        latent_slider("gan", "hair=red", method="class-cond"), 2.0)]))
    assert not np.array_equal(curved.images[0], base)
    assert not np.array_equal(curved.images[0], straight.images[0])
    # The oracle (the renderer's hair region, not the reader that steered the path nor the
    # classifier that built the straight direction) sees the hair turn red both ways.
    from studio.core.portraits.oracle import read_portrait

    assert read_portrait(base).hair == "blonde"
    assert read_portrait(curved.images[0]).hair == "red"
    assert read_portrait(straight.images[0]).hair == "red"
    assert dict(curved.request.sliders[0].payload)["method"] == "flow"
    with pytest.raises(InvalidRequestError, match="made for the GAN"):
        latent_engine.generate(apply_sliders(_req("studio-tiny-vae"), [(
            latent_slider("vae", "smile", method="flow"), 1.0)]))
    again = latent_engine.generate(GenerationRequest.from_json(curved.request.to_json()))
    assert np.array_equal(again.images[0], curved.images[0])


def test_the_gan_edits_the_canvas_image_through_inversion(shipped_engine):
    """A canvas image in GAN mode: its latent is found by optimisation (once; the slider
    events reuse it), the value-0 image looks like it, and sliders move it."""
    from studio.core.portraits.render import make_batch

    engine = shipped_engine
    portrait = make_batch(1_000_003, 0, 1).images[0]
    req = _req("studio-tiny-gan", task="img2img", init_image=Pixels.from_array(portrait))
    again = engine.generate(req).images[0]
    other = engine.generate(_req("studio-tiny-gan")).images[0]

    def error(a: np.ndarray) -> float:
        return float(np.abs(a.astype(float) - portrait.astype(float)).mean())

    assert error(again) < 0.6 * error(other), (error(again), error(other))
    # At 0 the canvas itself comes back (not the inversion's picture of it, which adds
    # glasses to some portraits).
    assert np.array_equal(again, portrait)
    lm = engine.latent_models
    calls = []
    info = engine.resolve_model("studio-tiny-gan")
    model = lm.model(info)
    original = model.invert
    model.invert = lambda images: calls.append(1) or original(images)  # type: ignore[method-assign]
    try:
        edited = engine.generate(apply_sliders(req, [(latent_slider("gan", "smile"), 2.0)]))
        assert np.array_equal(engine.generate(req).images[0], again)  # deterministic
    finally:
        del model.invert
    assert calls == []  # the inversion was cached per image
    assert not np.array_equal(edited.images[0], again)


def test_a_gan_without_its_attribute_reader_says_how_to_make_one(tmp_path):
    import shutil

    from studio.core.errors import CorruptModelError
    from studio.engine.engine import Engine

    root = tmp_path / "embedded"
    for name in ("studio-tiny-gan", "studio-tiny-attributes"):
        shutil.copytree(SHIPPED / name, root / name)
    reader = root / "studio-tiny-gan" / "latent-attributes"
    shutil.rmtree(reader)
    engine = Engine(device="cpu", dtype="float32", embedded_dir=root, hf_cache=False)
    req = apply_sliders(_req("studio-tiny-gan"), [(latent_slider("gan", "smile"), 1.0)])
    with pytest.raises(InvalidRequestError, match="no latent attribute reader") as err:
        engine.generate(req)
    assert "gan-attributes" in (err.value.hint or "")
    # The straight sliders still work without it.
    engine.generate(apply_sliders(_req("studio-tiny-gan"), [(
        latent_slider("gan", "smile", method="class-cond"), 1.0)]))
    # A damaged reader: one clear message naming the model.
    shutil.copytree(SHIPPED / "studio-tiny-gan" / "latent-attributes", reader)
    (reader / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CorruptModelError, match="studio-tiny-gan"):
        Engine(device="cpu", dtype="float32", embedded_dir=root, hf_cache=False).generate(req)


def test_a_direction_from_marked_examples(latent_engine):
    from studio.core.portraits.render import make_batch
    from studio.core.sliders.specs import example_slider

    batch = make_batch(7, 0, 24)
    has = batch.labels["glasses"] != 0
    info = latent_engine.resolve_model("studio-tiny-vae")
    d = latent_engine.latent_models.direction_from_images(info, batch.images[has],
                                                          batch.images[~has])
    spec = example_slider("vae", "my glasses", d.vector)
    req = apply_sliders(_req("studio-tiny-vae"), [(spec, 1.5)])
    assert GenerationRequest.from_json(req.to_json()) == req
    base = latent_engine.generate(_req("studio-tiny-vae")).images[0]
    assert not np.array_equal(latent_engine.generate(req).images[0], base)


@pytest.mark.parametrize("damaged", ["model.safetensors", "latent_prior.safetensors"])
def test_a_damaged_vae_file_gives_one_clear_message(tmp_path, damaged):
    import shutil

    from studio.core.errors import CorruptModelError
    from studio.core.models import ModelInfo
    from studio.engine.latent_models import LatentModel
    from studio.paths import resources_dir

    folder = tmp_path / "my-vae"
    shutil.copytree(resources_dir() / "models" / "studio-tiny-vae", folder)
    (folder / damaged).write_bytes(b"not a safetensors file")
    info = ModelInfo(id="my-vae", name="my-vae", kind="vae", family="", source="user",
                     path=str(folder), size_bytes=0, recommended={})
    with pytest.raises(CorruptModelError, match="my-vae could not be loaded"):
        LatentModel.load(info)


def test_a_flat_models_hash_is_its_own_weights():
    """The "Model hash" of the embedded VAE and GAN is the sha256 of the VAE's and the
    generator's weights, not of a side file that happens to sort first (the VAE's latent
    prior, the GAN's discriminator or attribute reader)."""
    import hashlib

    from studio.engine.models.hashing import model_hash

    for folder, weights in ((SHIPPED / "studio-tiny-vae", "model.safetensors"),
                            (SHIPPED / "studio-tiny-gan", "generator/generator.safetensors")):
        digest = hashlib.sha256((folder / weights).read_bytes()).hexdigest()
        assert model_hash(folder) == digest
