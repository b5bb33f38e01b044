"""The SHIPPED studio-tiny weights do what their cards say (CPU, a few seconds each)."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch

from studio.core.portraits.attributes import CLASS_ATTRIBUTES, smile_bin_index
from studio.core.portraits.oracle import read_portraits
from studio.core.portraits.render import make_batch
from studio.engine.nets.shipped import (
    CLASSIFIER,
    DIFFUSION,
    GAN,
    VAE,
    classify,
    load_diffusion,
    load_generator,
    load_vae,
    model_dir,
    recommended_settings,
)
from studio.engine.nets.tensors import psnr, to_tensor, to_uint8
from studio.training.common import DEFAULT_OUT, HELD_OUT_SEED

NAMES = (CLASSIFIER, VAE, GAN, DIFFUSION)

# Model-card evaluations: the full run, or a change to the weights or training code
# (tests/conftest.py decides).
pytestmark = pytest.mark.models

# The targets are asserted on the shipped weights (classifier 98%, VAE 24 dB, GAN
# 80% confident samples, diffusion adherence); a retrained model must meet them too.
# What a generated image shows is judged by the oracle (studio.core.portraits.oracle: the
# renderer's layout and palette in CIELAB, no learned model), not by the attribute
# classifier, which was trained on the same renderer's labels and built the sliders'
# directions. Each threshold states the value measured on the shipped weights beside it.
# The mouth test below: of the pairs of one seed with "smiling" and "frowning" whose two
# mouths the oracle reads, the share where the smiling one curves up more. Measured on the
# shipped weights: 61 of 61 pairs (before the mouth fine-tune: 23 of 57, i.e. 40 %).
MOUTH_PAIRS_AT_LEAST = 0.9
ORACLE_SURE = 5.0  # delta E margin for a confidently read colour (evaluate.ORACLE_CONFIDENT_MARGIN)


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


def test_shipped_models_are_small_and_complete() -> None:
    total = sum(p.stat().st_size for p in DEFAULT_OUT.rglob("*") if p.is_file())
    assert total < 40e6, f"shipped models take {total / 1e6:.1f} MB"
    for name in NAMES:
        folder = model_dir(name)
        assert (folder / "README.md").is_file() and (folder / "contact_sheet.png").is_file()
        assert list(folder.rglob("*.safetensors")), name
        assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt")), name


def test_classifier_reads_held_out_portraits() -> None:
    batch = make_batch(HELD_OUT_SEED + 7, 0, 64)
    pred = classify(batch.images)
    for name, values in CLASS_ATTRIBUTES.items():
        truth = [values[i] for i in batch.labels[name]]
        acc = np.mean([p == t for p, t in zip(pred[name], truth, strict=True)])
        assert acc >= 0.9, (name, acc)
    assert np.corrcoef(pred["smile"], batch.smile)[0, 1] > 0.9


def test_classifier_meets_the_98_percent_target_on_every_attribute() -> None:
    """The issue's target, smile bins included (the captions' frowning / neutral / smiling)."""
    batch = make_batch(HELD_OUT_SEED + 11, 0, 3000)
    pred = classify(batch.images)
    for name, values in CLASS_ATTRIBUTES.items():
        truth = [values[i] for i in batch.labels[name]]
        assert np.mean([p == t for p, t in zip(pred[name], truth, strict=True)]) >= 0.98, name
    bins = [a.smile_bin for a in batch.attributes]
    assert np.mean([p == t for p, t in zip(pred["smile_bin"], bins, strict=True)]) >= 0.98


def test_classifier_rejects_wrong_input() -> None:
    with pytest.raises(ValueError):
        classify(np.zeros((2, 32, 32, 3), np.uint8))


@torch.no_grad()
def _vae_round_trip(n: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, object]:
    vae = load_vae()
    batch = make_batch(HELD_OUT_SEED + 8, 0, n)
    x = to_tensor(batch.images)
    mu = vae.encode(x)
    assert mu.shape == (n, vae.latent_dim)
    return x, vae.decode(mu), vae.decode(mu.flip(0)), batch


def test_vae_round_trip_resembles_the_portrait() -> None:
    x, rec, other, batch = _vae_round_trip()
    assert rec.shape == x.shape
    # Its own latent reconstructs a portrait clearly better than another portrait's latent.
    assert psnr(rec, x).mean() > 15.0
    assert psnr(rec, x).mean() > psnr(other, x).mean() + 2.0
    # The background colour survives the round trip, by the oracle (measured: 16 of 16).
    read = read_portraits(to_uint8(rec))
    kept = np.mean([r.background == a.background for r, a in zip(read, batch.attributes,
                                                                   strict=True)])
    assert kept >= 0.9, kept


def test_vae_round_trip_keeps_the_face() -> None:
    # What an artist sees: the glasses and the mouth's expression come back, not an average face.
    # By the oracle (64 portraits): measured glasses and hair kept 100 %, a mouth found in
    # 100 %, smile correlation 0.970 (the classifier read 0.997: the oracle reads the softer
    # reconstructed mouth flatter).
    x, rec, _, batch = _vae_round_trip(64)
    read = read_portraits(to_uint8(rec))
    pairs = list(zip(read, batch.attributes, strict=True))
    assert np.mean([r.glasses == (a.glasses != "none") for r, a in pairs]) >= 0.95
    assert np.mean([r.hair == a.hair for r, a in pairs]) >= 0.95
    smile = np.array([np.nan if r.smile is None else r.smile for r, _ in pairs])
    assert np.isfinite(smile).mean() >= 0.95  # a mouth is found
    ok = np.isfinite(smile)
    assert np.corrcoef(smile[ok], batch.smile[ok])[0, 1] >= 0.9


def test_vae_reaches_the_psnr_target() -> None:
    x, rec, _, _ = _vae_round_trip(256)  # enough portraits for a stable mean (about 0.1 dB)
    assert psnr(rec, x).mean() >= 24.0


@torch.no_grad()
def _gan_images(n: int = 32) -> np.ndarray:
    g = load_generator()
    z = torch.from_numpy(np.random.default_rng(5).standard_normal((n, g.z_dim)).astype(np.float32))
    images = to_uint8(g(z))
    assert images.shape == (n, 64, 64, 3)
    return images


def _noise_margin() -> float:
    rng = np.random.default_rng(0)
    read = read_portraits(rng.integers(0, 256, (32, 64, 64, 3), dtype=np.uint8))
    return float(np.mean([r.margin("background") for r in read]))


def test_gan_samples_are_varied_and_more_portrait_like_than_noise() -> None:
    images = _gan_images()
    read = read_portraits(images)
    assert len({r.background for r in read}) >= 3 and len({r.hair for r in read}) >= 3
    # The oracle reads the background far more clearly than in noise (measured: median
    # margin 39.7 delta E on average against 31.4 for uniform noise, whose median colour is
    # near the palette's grey).
    assert np.mean([r.margin("background") for r in read]) > _noise_margin() + 5.0
    assert images.std(axis=(1, 2, 3)).min() > 10  # no blank images


def test_gan_makes_portraits_the_oracle_reads() -> None:
    """1000 samples (a share known to about +-1.5 %): background and hair colours read as a
    palette entry with a clear margin, and a mouth found. Measured on the shipped GAN (z
    seed 5): both colours 95.1 %, a mouth 44.9 % (GAN textures break the thin mouth line the
    oracle fits; the classifier's 'confident on every attribute', the figure this test asked
    before, is 83.5 %)."""
    read = read_portraits(_gan_images(1000))
    sure = np.mean([r.margin("background") >= ORACLE_SURE and r.margin("hair") >= ORACLE_SURE
                    for r in read])
    assert sure >= 0.92, sure
    assert np.mean([r.smile is not None for r in read]) >= 0.35


def test_gan_attribute_reader_reads_fresh_samples_like_the_image_classifier() -> None:
    """The reader the GAN's sliders steer by agrees with the image classifier on samples it
    never saw (its training record's figures, re-measured on other latents)."""
    from studio.core.sliders.latent_flow import LatentAttributeReader

    reader = LatentAttributeReader.load(model_dir(GAN) / "latent-attributes", CLASS_ATTRIBUTES)
    g = load_generator()
    z = np.random.default_rng(11).standard_normal((1000, g.z_dim)).astype(np.float32)
    with torch.no_grad():
        pred = classify(to_uint8(g(torch.from_numpy(z))))
    read = reader.read(z)
    for kind in CLASS_ATTRIBUTES:
        agree = np.mean(read[kind].argmax(1) == pred[f"{kind}_prob"].argmax(1))
        assert agree >= 0.8, (kind, agree)


def _oracle_decisions(read: list) -> dict[str, np.ndarray]:  # type: ignore[type-arg]
    smile = np.array([np.nan if r.smile is None else r.smile for r in read])
    return {"hair": np.array([r.hair for r in read]),
            "background": np.array([r.background for r in read]),
            "glasses": np.array([r.glasses for r in read]),
            "smile": np.where(np.isnan(smile), -1, smile_bin_index(np.nan_to_num(smile)))}


def gan_slider_figures(edit=None) -> dict[str, tuple[float, float]]:  # type: ignore[no-untyped-def]
    """(others kept, edit success) by the oracle of the GAN's curved ("flow") and straight
    ("class-cond") sliders at value 2 on 48 fresh seeds, over smile, glasses, red and blonde
    hair. ``edit(lm, info, z, req)`` replaces the engine's edit (a random direction, to check
    that the thresholds catch a slider that does nothing right)."""
    from studio.core.jobs.request import GenerationRequest
    from studio.core.sliders.specs import apply_sliders, latent_slider
    from studio.engine.engine import Engine

    engine = Engine(device="cpu", dtype="float32", embedded_dir=DEFAULT_OUT, hf_cache=False)
    lm = engine.latent_models
    info = engine.resolve_model(GAN)
    model = lm.model(info)
    z = np.concatenate([model.sample(7_000_000 + i) for i in range(48)])
    r0 = read_portraits(model.decode(z))
    d0 = _oracle_decisions(r0)
    figures = {}
    for method in ("flow", "class-cond"):
        kept, success = [], []
        for attribute in ("smile", "glasses", "hair=red", "hair=blonde"):
            req = apply_sliders(GenerationRequest("", model=info.id, width=64, height=64, steps=1),
                                [(latent_slider("gan", attribute, method=method), 2.0)])
            z2 = lm.edit(info, z, req) if edit is None else edit(lm, info, z, req)
            r2 = read_portraits(model.decode(z2))
            d2 = _oracle_decisions(r2)
            kept.append(np.mean([d2[k] == d0[k] for k in d0
                                 if k != attribute.partition("=")[0]]))
            without = ~np.array([r.has(attribute) for r in r0])
            # The oracle sees "glasses" on nearly every GAN sample (its textures darken the
            # frame band): a slider with no sample to edit is left out, not counted.
            if without.any():
                success.append(np.mean(np.array([r.has(attribute) for r in r2])[without]))
        figures[method] = (float(np.mean(kept)), float(np.mean(success)))
    return figures


def test_gan_sliders_change_their_attribute_and_keep_the_others() -> None:
    """On the shipped GAN at value 2 (48 fresh seeds), by the oracle: the curved sliders
    edit and keep the other attributes (background, hair, glasses, smile bin) at least as
    well as the straight class directions. Measured: curved kept 0.898, success 0.740;
    straight 0.833, 0.627 (the classifier read 0.88+ and 0.8+ here before). Success counts
    smile and the hair colours: the oracle sees glasses on nearly every GAN sample, so the
    glasses slider has none to edit by it. A random direction as long as each edit
    (``gan_slider_figures(edit=...)``, checked by hand): kept 0.714, success 0.063, failing
    both bounds."""
    figures = gan_slider_figures()
    (kept, success), (kept_straight, success_straight) = figures["flow"], figures["class-cond"]
    assert kept >= 0.86 and kept >= kept_straight - 0.02, figures
    assert success >= 0.65 and success >= success_straight - 0.05, figures


PROMPTS = [
    ("red", "round", "blue"), ("black", "none", "yellow"), ("blonde", "square", "green"),
    ("blue", "none", "pink"), ("white", "round", "purple"), ("brown", "square", "white"),
    ("red", "none", "grey"), ("blonde", "round", "red"),
]


def _prompt(hair: str, glasses: str, background: str) -> str:
    g = "no glasses" if glasses == "none" else f"{glasses} glasses"
    return f"a person with {hair} hair and {g} on a {background} background"


def test_diffusion_folder_is_a_standard_sd_folder() -> None:
    folder = model_dir(DIFFUSION)
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["safety_checker"] == [None, None] and index["requires_safety_checker"] is False
    rec = recommended_settings()
    assert rec["height"] == rec["width"] == 64 and 10 <= rec["steps"] <= 50


@functools.lru_cache(maxsize=1)
def _adherence() -> dict[str, float]:
    """Share of 64 held-out captions whose hair, glasses and background the shipped model
    draws (seeds 200-263, the recommended sampling settings), read by the oracle (glasses:
    present or not)."""
    pipe = load_diffusion()
    rec = recommended_settings()
    batch = make_batch(HELD_OUT_SEED + 7, 0, 64)
    gens = [torch.Generator().manual_seed(200 + i) for i in range(64)]
    with torch.no_grad():
        out = pipe(batch.captions, num_inference_steps=int(rec["steps"]),
                   guidance_scale=float(rec["guidance"]), generator=gens,
                   output_type="np").images
    assert out.shape == (64, 64, 64, 3)
    read = read_portraits((np.clip(out, 0, 1) * 255).round().astype(np.uint8))
    pairs = list(zip(read, batch.attributes, strict=True))
    return {"hair": float(np.mean([r.hair == a.hair for r, a in pairs])),
            "glasses": float(np.mean([r.glasses == (a.glasses != "none") for r, a in pairs])),
            "background": float(np.mean([r.background == a.background for r, a in pairs]))}


def test_diffusion_follows_the_prompt() -> None:
    """The adherence target (85 % on each of hair colour, glasses and background; chance is
    1/6, 1/2 and 1/8), on full captions the model never saw, by the oracle. Measured: hair
    100 %, glasses 93.8 %, background 100 % (the classifier read 100 % on all three)."""
    share = _adherence()
    assert min(share.values()) >= 0.85, share


@torch.no_grad()
def test_diffusion_is_reproducible_from_the_seed() -> None:
    pipe = load_diffusion()
    kw = dict(num_inference_steps=8, guidance_scale=5.0, output_type="np")
    a = pipe(_prompt("red", "round", "blue"), generator=torch.Generator().manual_seed(3), **kw)
    b = pipe(_prompt("red", "round", "blue"), generator=torch.Generator().manual_seed(3), **kw)
    assert np.array_equal(a.images, b.images)


# PNDM is left out: on this small model it follows prompts less (hair colour 70% on 200
# held-out captions against 100% with Euler), a limit stated on the model card rather than
# a wiring fault.
@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M", "DDIM", "UniPC", "LMS"])
@torch.no_grad()
def test_every_common_sampler_of_the_app_draws_the_asked_hair(sampler: str) -> None:
    """The app's sampler menu on the shipped model: each keeps following the prompt (DDIM
    once clipped the latents as if they were pixels, and lost the prompt entirely)."""
    from studio.engine.schedulers import make_scheduler

    pipe = load_diffusion()
    pipe.scheduler = make_scheduler(sampler, dict(pipe.scheduler.config))
    prompts = [_prompt(*p) for p in PROMPTS]
    gens = [torch.Generator().manual_seed(100 + i) for i in range(len(prompts))]
    out = pipe(prompts, num_inference_steps=25, guidance_scale=5.0, generator=gens,
               output_type="np").images
    read = read_portraits((np.clip(out, 0, 1) * 255).round().astype(np.uint8))
    hits = sum(read[i].hair == p[0] for i, p in enumerate(PROMPTS))
    assert hits >= 5, (sampler, [r.hair for r in read])


def test_vae_seeds_draw_portraits_whose_attributes_read_clearly() -> None:
    """A seed starts near an encoded training portrait (the anchors of its latent prior):
    with one Gaussian fit, 62% of seed portraits were labelled confidently (hair colours
    between two), and a hair slider missed more often from them."""
    from studio.engine.engine import Engine
    from studio.engine.latent_models import LatentModel

    model = LatentModel.load(Engine(device="cpu", dtype="float32",
                                    hf_cache=False).resolve_model(VAE))
    assert model.prior is not None and model.prior.anchors is not None
    drawn = np.concatenate([model.sample(s) for s in range(128)])
    read = read_portraits(model.decode(drawn))
    # By the oracle: both colours read with a clear margin (measured 95.3 %).
    assert np.mean([r.margin("background") >= ORACLE_SURE and r.margin("hair") >= ORACLE_SURE
                    for r in read]) >= 0.9
    # And they vary: every background and hair colour, glasses and none.
    assert {r.background for r in read} == set(CLASS_ATTRIBUTES["background"])
    assert {r.hair for r in read} == set(CLASS_ATTRIBUTES["hair"])
    assert {r.glasses for r in read} == {True, False}
    # New portraits, not copies: each is far from its nearest anchor, yet nearer than a
    # typical training portrait to its own nearest neighbour.
    anchors = model.prior.anchors
    nearest = np.linalg.norm(drawn[:, None] - anchors[None], axis=2).min(1)
    between = np.linalg.norm(anchors[:128, None] - anchors[None, 128:], axis=2).min(1)
    assert 0.3 * np.median(between) < np.median(nearest) < np.median(between)


def test_a_vae_seed_draws_latents_like_an_encoded_portraits() -> None:
    # Generating "from a seed" on the VAE: its latents are not standard normal (small KL),
    # so the app draws them from the Gaussian fit it ships (noise as it is decodes to blobs).
    from dataclasses import replace

    from studio.engine.engine import Engine
    from studio.engine.latent_models import LatentModel

    info = Engine(device="cpu", dtype="float32", hf_cache=False).resolve_model(VAE)
    model = LatentModel.load(info)
    assert model.prior is not None
    encoded = model.encode(make_batch(HELD_OUT_SEED + 9, 0, 256).images)
    drawn = np.concatenate([model.sample(s) for s in range(256)])
    assert np.array_equal(model.sample(7), model.sample(7))  # a seed is reproducible
    raw = replace(model, prior=None)
    noise = np.concatenate([raw.sample(s) for s in range(256)])

    def gap(z: np.ndarray) -> float:  # distance of the mean and spread per dimension
        return float(np.abs(z.mean(0) - encoded.mean(0)).mean()
                     + np.abs(np.log(z.std(0) / encoded.std(0))).mean())

    assert gap(drawn) < 0.3 < gap(noise)


@functools.lru_cache(maxsize=1)
def _partial_figures() -> dict[str, float]:
    from studio.training.evaluate import eval_partial_prompts

    return eval_partial_prompts(DEFAULT_OUT, 60)


def test_diffusion_follows_prompts_as_people_write_them() -> None:
    """The issue's target on 60 held-out partial prompts (one, two or all attributes named,
    varied words; ``studio.core.portraits.prompts``), judged by the oracle on the named
    attributes only: 90 % per attribute at 20 steps of the recommended scheduler, 80 % at 4
    steps of each fast sampler (Euler a, DPM++ 2M, DPM++ SDE; DPM++ 2M also at the fast
    setting's guidance 3.5). Measured on the shipped weights: hair / background / glasses
    100 / 100 / 100 % at 20 steps; at 4 steps Euler a 100 / 92.7 / 100 %, DPM++ 2M
    100 / 97.6 / 100 % (at guidance 3.5: 100 / 100 / 100 %), DPM++ SDE 96.8 / 95.1 / 100 %
    (before the retrain, Euler a: 80.6 / 48.8 / 88.2 % and 71.0 / 56.1 / 85.3 %). The smile
    is the next test."""
    figures = _partial_figures()
    for setting, least in (("EulerDiscrete@20", 0.9), ("Euler a@4", 0.8), ("DPM++ 2M@4", 0.8),
                           ("DPM++ SDE@4", 0.8), ("DPM++ 2M@4 cfg 3.5", 0.8)):
        for kind in ("hair", "background", "glasses"):
            assert figures[f"{setting}/{kind}"] >= least, (setting, kind, figures)


@pytest.mark.xfail(strict=True, reason="issue 27 point 3: after the autoencoder's mouth "
                   "fine-tune and the UNet's on its latents the smile is followed at 20 steps "
                   "in 92.0 % of the eval's 240 held-out prompts (target 90 %; before: 83.3 %), "
                   "but in 88.2 % of these 60 (30 of 34 prompts, one short of 90 %); remove "
                   "this mark when a model meets it here too")
def test_diffusion_follows_smiling_and_frowning_as_people_write_them() -> None:
    """The same target for the smile: a prompt saying "smiling" ("frowning") must give a
    mouth the oracle reads above +0.35 (below -0.35) in 90 % of the prompts at 20 steps.
    Measured on these 60: see the mark; before the mouth fine-tunes 5.9 % (the mouth came
    out whatever the words)."""
    figures = _partial_figures()
    assert figures["EulerDiscrete@20/smile"] >= 0.9, figures


def test_diffusion_follows_smiling_and_frowning_at_4_steps() -> None:
    """The 4-step target for the smile: 80 % at 4 steps of a fast sampler (the best of those
    measured). Measured on these 60 after the autoencoder's mouth fine-tune, by the oracle
    since its mouth-line fix: DPM++ 2M 88.2 %, 82.4 % at guidance 3.5, DPM++ SDE 88.2 %,
    Euler a 76.5 % (on the eval's 240: 87.7, 91.3, 88.4, 77.5 %; before the fix 82.4, 79.4,
    79.4, 70.6 % here); before it the best was 73.5 % here (80.4 % on the 240)."""
    figures = _partial_figures()
    fast = max(figures[f"{s}/smile"] for s in ("Euler a@4", "DPM++ 2M@4", "DPM++ SDE@4",
                                               "DPM++ 2M@4 cfg 3.5"))
    assert fast >= 0.8, figures


@torch.no_grad()
def test_the_same_seed_smiles_or_frowns_as_the_words_say() -> None:
    """What an artist sees first (issue 27): the same seed with "smiling" and then
    "frowning" in the prompt gives a smile and then a frown. Before the mouth fine-tune
    (``python -m studio.training diffusion-mouth``) both prompts drew the same mouth, the
    one the noise decided. The oracle reads the two mouths of each of 24 seeds, on three
    prompts; where it finds both (not on every dark-skinned face, see the card), the
    smiling one must curve up more than the frowning one in at least MOUTH_PAIRS_AT_LEAST of
    the pairs (measured on the shipped weights: 61 of 61; before: 23 of 57)."""
    pipe = load_diffusion()
    rec = recommended_settings()
    pairs = []
    for template in ("a {} person", "a {} woman with red hair on a blue background",
                     "{} man, black hair, glasses"):
        images = {}
        for mood in ("smiling", "frowning"):
            gens = [torch.Generator().manual_seed(300 + i) for i in range(24)]
            out = pipe([template.format(mood)] * 24, num_inference_steps=20,
                       guidance_scale=float(rec["guidance"]), generator=gens,
                       output_type="np").images
            images[mood] = read_portraits((np.clip(out, 0, 1) * 255).round().astype(np.uint8))
        pairs += [(a.smile, b.smile) for a, b in zip(images["smiling"], images["frowning"],
                                                     strict=True)
                  if a.smile is not None and b.smile is not None]
    assert len(pairs) >= 36, len(pairs)
    share = float(np.mean([a > b for a, b in pairs]))
    assert share >= MOUTH_PAIRS_AT_LEAST, (share, len(pairs))
