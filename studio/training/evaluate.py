"""``python -m studio.training eval``: the figures of the model cards, on held-out seeds."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studio.core.portraits.attributes import CLASS_ATTRIBUTES
from studio.core.portraits.oracle import read_portraits
from studio.core.portraits.prompts import NAMEABLE, adherence, partial_prompts
from studio.core.portraits.render import make_batch
from studio.engine.nets.shipped import (
    CLASSIFIER,
    CONFIDENT,
    DIFFUSION,
    GAN,
    VAE,
    classify,
    load_classifier,
    load_diffusion,
    load_generator,
    load_vae,
    model_dir,
    recommended_settings,
)
from studio.engine.nets.tensors import psnr, to_tensor, to_uint8
from studio.training.common import HELD_OUT_SEED, log, setup_torch
from studio.training.train_gan import sample_z

ADHERENCE_ATTRIBUTES = ("hair", "glasses", "background")
# The partial-prompt settings: the recommended sampling, and fast ones at 4 steps (none of
# them has a minimum: see ``studio.core.samplers.SCHEDULER_MIN_STEPS``). Euler a and DPM++ 2M
# call the model once a step, DPM++ SDE twice.
# (scheduler or None for the recommended one, steps[, guidance if not the recommended]).
# DPM++ 2M at 4 steps also at guidance 3.5, the model's "fast" setting (studio.json): chosen
# on other prompts than these (HELD_OUT_SEED + 99: 2.5 / 3 / 3.5 / 4 / 4.5 gave the smile
# 74.8 / 77.0 / 77.7 / 76.3 / 76.3 % and hair, background, glasses 95 % or more).
PARTIAL_SETTINGS: tuple[tuple[str | None, int] | tuple[str | None, int, float], ...] = (
    (None, 20), ("Euler a", 4), ("DPM++ 2M", 4), ("DPM++ SDE", 4), ("DPM++ 2M", 4, 3.5))
ORACLE_CONFIDENT_MARGIN = 5.0
"""Delta E by which the read colour must be nearer its palette entry than the next one for
the oracle to call a background or hair colour confident (2.3 is a just-noticeable
difference; rendered portraits read with margins of 20 or more)."""


def oracle_kept(readings: list[Any], truth: list[Any]) -> dict[str, float]:
    """Share of portraits whose oracle reading keeps each attribute of ``truth``
    (``PortraitAttributes``): background, hair, glasses (present or not), smile bin."""
    from studio.core.portraits.attributes import smile_bin_index

    out = {}
    for k in ("background", "hair"):
        out[f"oracle_kept_{k}"] = float(np.mean([getattr(r, k) == getattr(t, k)
                                                 for r, t in zip(readings, truth, strict=True)]))
    out["oracle_kept_glasses"] = float(np.mean([r.glasses == (t.glasses != "none")
                                                for r, t in zip(readings, truth, strict=True)]))
    read = np.array([np.nan if r.smile is None else r.smile for r in readings])
    want = np.array([t.smile for t in truth])
    ok = ~np.isnan(read)
    out["oracle_kept_smile_bin"] = float(np.mean(
        ok & (smile_bin_index(np.nan_to_num(read)) == smile_bin_index(want))))
    out["oracle_smile_corr"] = float(np.corrcoef(read[ok], want[ok])[0, 1]) if ok.sum() > 2 else 0.0
    return out


def oracle_distribution(readings: list[Any]) -> dict[str, Any]:
    """What the oracle reads in unconditional samples: the share read confidently (margin of
    at least ``ORACLE_CONFIDENT_MARGIN`` delta E) per colour, the median margins, how often
    it sees glasses and a mouth, and the distributions of the colours."""
    out: dict[str, Any] = {}
    both = np.ones(len(readings), bool)
    for k in ("background", "hair"):
        margins = np.array([r.margin(k) for r in readings])
        confident = margins >= ORACLE_CONFIDENT_MARGIN
        both &= confident
        out[f"oracle_{k}_confident_share"] = float(confident.mean())
        out[f"oracle_{k}_median_margin"] = float(np.median(margins))
        names, counts = np.unique([getattr(r, k) for r in readings], return_counts=True)
        out[f"oracle_{k}_distribution"] = {str(a): int(c) for a, c in zip(names, counts,
                                                                         strict=True)}
    out["oracle_colours_confident_share"] = float(both.mean())
    out["oracle_glasses_share"] = float(np.mean([r.glasses for r in readings]))
    out["oracle_mouth_read_share"] = float(np.mean([r.smile is not None for r in readings]))
    return out


def eval_classifier(root: Path, n: int) -> dict[str, Any]:
    """Per-attribute accuracy on ``n`` held-out real portraits."""
    batch = make_batch(HELD_OUT_SEED, 0, n)
    pred = classify(batch.images, load_classifier(root))
    out: dict[str, Any] = {"n": n}
    for k, values in CLASS_ATTRIBUTES.items():
        truth = [values[i] for i in batch.labels[k]]
        out[f"{k}_accuracy"] = float(np.mean([p == t for p, t in zip(pred[k], truth, strict=True)]))
    bins = [a.smile_bin for a in batch.attributes]
    out["smile_bin_accuracy"] = float(np.mean([p == t for p, t in
                                               zip(pred["smile_bin"], bins, strict=True)]))
    out["smile_mae"] = float(np.abs(pred["smile"] - batch.smile).mean())
    out["confident_share"] = float((pred["confidence"] >= CONFIDENT).mean())
    return out


@torch.no_grad()
def eval_vae(root: Path, n: int) -> dict[str, Any]:
    """Reconstruction PSNR of held-out portraits through ``decode(encode(x))``, and whether
    the classifier still reads each attribute of the portrait in its reconstruction."""
    vae = load_vae(root)
    batch = make_batch(HELD_OUT_SEED, 0, n)
    x = to_tensor(batch.images)
    rec = torch.cat([vae.decode(vae.encode(x[s:s + 128])) for s in range(0, n, 128)])
    p = psnr(rec, x)
    out: dict[str, Any] = {"n": n, "psnr_mean_db": float(p.mean()), "psnr_min_db": float(p.min())}
    pred = classify(to_uint8(rec), load_classifier(root))
    for k, values in CLASS_ATTRIBUTES.items():
        truth = [values[i] for i in batch.labels[k]]
        out[f"kept_{k}"] = float(np.mean([a == b for a, b in zip(pred[k], truth, strict=True)]))
    out["kept_smile_mae"] = float(np.abs(pred["smile"] - batch.smile).mean())
    out["kept_smile_corr"] = float(np.corrcoef(pred["smile"], batch.smile)[0, 1])
    # The same by the oracle, which no model trained (see oracle_kept).
    out.update(oracle_kept(read_portraits(to_uint8(rec)), batch.attributes))
    return out


@torch.no_grad()
def gan_samples(root: Path, n: int, seed: int = HELD_OUT_SEED) -> np.ndarray:
    g = load_generator(root)
    return to_uint8(g(sample_z(n, seed)))


def eval_gan(root: Path, n: int) -> dict[str, Any]:
    """Share of generator samples the classifier labels confidently, and what the oracle
    reads in them (``oracle_distribution``; the GAN is unconditional, so no truth)."""
    images = gan_samples(root, n)
    pred = classify(images)
    out: dict[str, Any] = {"n": n, "confident_share": float((pred["confidence"] >= CONFIDENT).mean())}
    for k in CLASS_ATTRIBUTES:
        out[f"{k}_confident_share"] = float((pred[f"{k}_prob"].max(1) >= CONFIDENT).mean())
        counts = {str(v): int(c) for v, c in zip(*np.unique(pred[k], return_counts=True), strict=True)}
        out[f"{k}_distribution"] = counts
    readings = read_portraits(images)
    out.update(oracle_distribution(readings))
    # Where both read a colour confidently, how often they name the same palette entry.
    for k in ("background", "hair"):
        sure = np.array([r.margin(k) >= ORACLE_CONFIDENT_MARGIN for r in readings])
        sure &= pred[f"{k}_prob"].max(1) >= CONFIDENT
        same = np.array([getattr(r, k) for r in readings]) == np.asarray(pred[k])
        out[f"oracle_{k}_agrees_with_classifier"] = float(same[sure].mean()) if sure.any() else 0.0
    return out


def diffusion_generate(pipe: Any, prompts: list[str], seeds: list[int], steps: int,
                       guidance: float, batch_size: int = 50) -> np.ndarray:
    """uint8 NHWC images, one per prompt, seeded per image (reproducible per prompt). The
    DiT's zero "T5" tokens run as one, as in the studio (``studio.engine.joint_context``)."""
    from studio.engine.joint_context import identical_context_once

    images = []
    for s in range(0, len(prompts), batch_size):
        gens = [torch.Generator().manual_seed(seed) for seed in seeds[s:s + batch_size]]
        with identical_context_once(getattr(pipe, "transformer", None)):
            out = pipe(prompts[s:s + batch_size], num_inference_steps=steps,
                       guidance_scale=guidance, generator=gens, height=64, width=64,
                       output_type="np").images
        images.append((np.clip(out, 0, 1) * 255).round().astype(np.uint8))
    return np.concatenate(images)


def eval_diffusion(root: Path, n: int, steps: int | None = None,
                   guidance: float | None = None, scheduler: str | None = None) -> dict[str, Any]:
    """Prompt adherence on ``n`` held-out captions (classifier vs the caption's labels)."""
    pipe = load_diffusion(root)
    rec = recommended_settings(root)
    steps = steps or int(rec["steps"])
    guidance = guidance if guidance is not None else float(rec["guidance"])
    if scheduler:
        import diffusers

        pipe.scheduler = getattr(diffusers, scheduler).from_config(pipe.scheduler.config)
    batch = make_batch(HELD_OUT_SEED + 1, 0, n)
    t0 = time.monotonic()
    images = diffusion_generate(pipe, batch.captions, list(range(n)), steps, guidance)
    seconds = time.monotonic() - t0
    pred = classify(images)
    out: dict[str, Any] = {"n": n, "steps": steps, "guidance": guidance,
                           "scheduler": type(pipe.scheduler).__name__,
                           "seconds_per_image": seconds / n}
    for k in ADHERENCE_ATTRIBUTES:
        values = CLASS_ATTRIBUTES[k]
        truth = [values[i] for i in batch.labels[k]]
        out[f"{k}_match"] = float(np.mean([p == t for p, t in zip(pred[k], truth, strict=True)]))
    out["all_three_match"] = float(np.mean([
        all(pred[k][i] == CLASS_ATTRIBUTES[k][batch.labels[k][i]] for k in ADHERENCE_ATTRIBUTES)
        for i in range(n)]))
    out["smile_bin_match"] = float(np.mean([p == a.smile_bin for p, a in
                                            zip(pred["smile_bin"], batch.attributes, strict=True)]))
    out["confident_share"] = float((pred["confidence"] >= CONFIDENT).mean())
    # How sharp samples can be: the autoencoder's round trip of held-out portraits.
    x = to_tensor(make_batch(HELD_OUT_SEED, 0, n).images)
    with torch.no_grad():
        rec = pipe.vae.decode(pipe.vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    out["autoencoder_psnr_db"] = float(psnr(rec, x).mean())
    return out


def eval_partial_prompts(root: Path, n: int,
                         settings: tuple[tuple[str | None, int] | tuple[str | None, int, float],
                                         ...] = PARTIAL_SETTINGS, seed: int = HELD_OUT_SEED + 27,
                         guidance: float | None = None, pipe: Any = None,
                         rec: dict[str, Any] | None = None) -> dict[str, Any]:
    """Adherence to ``n`` held-out prompts as people write them (``partial_prompts``: one, two
    or all attributes named, varied wording), judged by the oracle on the named attributes
    only, one image per prompt (seeds 0 .. n-1), for each (scheduler, steps[, guidance]) of
    ``settings`` (None: the recommended scheduler). Keys ``<scheduler>@<steps>/<attribute>``,
    ``<scheduler>@<steps> cfg <guidance>/<attribute>`` where a setting has its own guidance."""
    from studio.engine.schedulers import make_scheduler

    # ``pipe`` and ``rec``: another model's pipeline and recommended settings (the DiT's)
    pipe = pipe if pipe is not None else load_diffusion(root)
    rec = rec if rec is not None else recommended_settings(root)
    guidance = guidance if guidance is not None else float(rec["guidance"])
    base = dict(pipe.scheduler.config)
    prompts = partial_prompts(n, seed)
    out: dict[str, Any] = {"n": n, "guidance": guidance, "prompt_seed": seed}
    for name, steps, *own in settings:
        cfg = float(own[0]) if own else guidance
        if name is None:
            label = str(rec["scheduler"]).removesuffix("Scheduler")
            pipe.scheduler = type(pipe.scheduler).from_config(base)
        else:
            label = name
            pipe.scheduler = make_scheduler(name, base)
        t0 = time.monotonic()
        images = diffusion_generate(pipe, [p.text for p in prompts], list(range(n)), steps,
                                    cfg)
        seconds = time.monotonic() - t0
        figures = adherence(prompts, read_portraits(images))
        key = f"{label}@{steps}" + (f" cfg {cfg:g}" if own else "")
        for attribute, (share, count) in figures.items():
            out[f"{key}/{attribute}"] = share
            out.setdefault(f"named/{attribute}", count)
        out[f"{key}/seconds_per_image"] = seconds / n
    return out


DIT = "studio-tiny-dit"
# The DiT's partial-prompt setting: its recommended Flow Euler at 20 steps.
DIT_SETTINGS: tuple[tuple[str | None, int], ...] = ((None, 20),)


def dit_recommended(root: Path) -> dict[str, Any]:
    return dict(json.loads((model_dir(DIT, root) / "studio.json").read_text())["recommended"])


def eval_dit_captions(pipe: Any, rec: dict[str, Any], n: int,
                      seed: int = HELD_OUT_SEED + 1) -> dict[str, Any]:
    """Full held-out captions (every attribute named), judged by the oracle: hair,
    background, glasses (present or not) and the smile bin of each image, the recommended
    sampling, seeds 0 .. n-1."""
    from studio.core.portraits.attributes import smile_bin_index

    batch = make_batch(seed, 0, n)
    t0 = time.monotonic()
    images = diffusion_generate(pipe, batch.captions, list(range(n)), int(rec["steps"]),
                                float(rec["guidance"]))
    seconds = time.monotonic() - t0
    read = read_portraits(images)
    pairs = list(zip(read, batch.attributes, strict=True))
    smile = [r.smile is not None and smile_bin_index(np.array([r.smile]))[0]
             == smile_bin_index(np.array([a.smile]))[0] for r, a in pairs]
    return {"n": n, "steps": int(rec["steps"]), "guidance": float(rec["guidance"]),
            "seconds_per_image": seconds / n,
            "oracle_hair_match": float(np.mean([r.hair == a.hair for r, a in pairs])),
            "oracle_background_match": float(np.mean([r.background == a.background
                                                      for r, a in pairs])),
            "oracle_glasses_match": float(np.mean([r.glasses == (a.glasses != "none")
                                                   for r, a in pairs])),
            "oracle_smile_bin_match": float(np.mean(smile))}


def eval_dit(root: Path, n: int, n_partial: int) -> dict[str, Any]:
    """``studio-tiny-dit``: full captions and prompts as people write them, by the oracle."""
    from studio.training.train_dit import load_pipeline

    pipe = load_pipeline(model_dir(DIT, root))
    rec = dit_recommended(root)
    out = eval_dit_captions(pipe, rec, n)
    out["partial_prompts"] = eval_partial_prompts(root, n_partial, DIT_SETTINGS, pipe=pipe,
                                                  rec=rec)
    return out


def format_partial_table(figures: dict[str, Any]) -> str:
    """The partial-prompt adherence as a table: one row per setting, one column per named
    attribute (how many prompts named it in the header)."""
    keys = [*NAMEABLE, "all_named"]
    settings = list(dict.fromkeys(k.split("/")[0] for k in figures
                                  if "@" in k.split("/")[0]))
    head = f"{'setting':<22}" + "".join(
        f"{k} ({figures.get(f'named/{k}', 0)})".rjust(16) for k in keys)
    lines = [head, "-" * len(head)]
    for s in settings:
        lines.append(f"{s:<22}" + "".join(
            f"{100 * figures[f'{s}/{k}']:15.1f}%" if f"{s}/{k}" in figures else " " * 16
            for k in keys))
    return "\n".join(lines)


def _store(root: Path, name: str, figures: dict[str, Any]) -> None:
    path = model_dir(name, root) / "eval.json"
    path.write_text(json.dumps(figures, indent=2) + "\n")


def run_eval(root: Path, quick: bool = False, only: list[str] | None = None) -> dict[str, Any]:
    """Evaluate every shipped model found under ``root``; print and store ``eval.json``."""
    setup_torch(0)
    results: dict[str, Any] = {}
    n_real = 500 if quick else 2000
    # The classifier's smile bins need many portraits: 1000 held-out sets scatter by +-0.5%.
    jobs = [(CLASSIFIER, lambda: eval_classifier(root, 5 * n_real // 2)),
            (VAE, lambda: eval_vae(root, n_real // 2)),
            (GAN, lambda: eval_gan(root, n_real // 2)),
            (DIFFUSION, lambda: {**eval_diffusion(root, 50 if quick else 200),
                                 "partial_prompts": eval_partial_prompts(
                                     root, 60 if quick else 240)}),
            (DIT, lambda: eval_dit(root, 50 if quick else 100, 60 if quick else 240))]
    for name, job in jobs:
        if only and name not in only:
            continue
        if not model_dir(name, root).exists():
            log(f"{name}: not found under {root}, skipped")
            continue
        t0 = time.monotonic()
        figures = job()
        figures["eval_seconds"] = round(time.monotonic() - t0)
        results[name] = figures
        if not quick:
            _store(root, name, figures)
        print(f"== {name}")
        for k, v in figures.items():
            if k == "partial_prompts":
                continue
            print(f"   {k}: {round(v, 4) if isinstance(v, float) else v}")
        if "partial_prompts" in figures:
            print("   partial prompts (named attributes only, by the oracle):")
            print("   " + format_partial_table(figures["partial_prompts"]).replace("\n", "\n   "))
    return results


def sweep_diffusion(root: Path, n: int = 48,
                    settings: tuple[tuple[str, int, float], ...] = (
                        ("EulerDiscreteScheduler", 25, 3.0), ("EulerDiscreteScheduler", 25, 5.0),
                        ("EulerDiscreteScheduler", 25, 7.5), ("DDIMScheduler", 25, 5.0),
                    )) -> list[dict[str, Any]]:
    """Adherence of a few (scheduler, steps, guidance) settings, to pick the recommended one."""
    setup_torch(0)
    rows = []
    for scheduler, steps, guidance in settings:
        figures = eval_diffusion(root, n, steps, guidance, scheduler)
        rows.append(figures)
        print(f"{scheduler} steps={steps} guidance={guidance}: " + " ".join(
            f"{k}={figures[k]:.3f}" for k in ("hair_match", "glasses_match",
                                               "background_match", "confident_share")))
    return rows


def set_recommended(root: Path, scheduler: str, steps: int, guidance: float) -> None:
    """Record the recommended sampling settings in ``studio.json`` and the saved scheduler."""
    import diffusers

    folder = model_dir(DIFFUSION, root)
    studio = json.loads((folder / "studio.json").read_text())
    studio["recommended"].update(scheduler=scheduler, steps=steps, guidance=guidance)
    (folder / "studio.json").write_text(json.dumps(studio, indent=2) + "\n")
    sched_dir = folder / "scheduler"
    config = json.loads((sched_dir / "scheduler_config.json").read_text())
    new = getattr(diffusers, scheduler).from_config(config)
    new.save_pretrained(sched_dir)
    index = json.loads((folder / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", scheduler]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
