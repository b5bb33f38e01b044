"""SliderBench: how well latent sliders edit, keep and respond, on the embedded models.

For each slider and value in ``VALUES`` it measures, with the shipped attribute classifier
(``studio-tiny-attributes``):

* gain: mean change of the target attribute's probability against the value-0 image;
* others kept: share of the other attributes whose decision is unchanged;
* SSIM of the edited image to the value-0 image;
* monotonicity: Spearman correlation of value against mean gain;
* edit success: share of images without the attribute that have it at value 2, and
  removal: share of images with it that lack it at value -2 (each "n/a" where the held-out
  images give none to try: all of a short bench's prompts may name glasses);
* latency from a slider event to its preview and to its final image (p50, p95), through
  the ``JobRunner`` channels the UI uses.

The same edits are judged again by the oracle (``studio.core.portraits.oracle``), which reads
the renderer's layout and palette and was trained on nothing, so it cannot share the
classifier's blind spots (the classifier also built the sliders' directions): oracle edit
success, others kept (background, hair, glasses, smile bin) and monotonicity of the
oracle's own measure (mouth curvature, frame share, closeness to the hair colour).

The ``dit`` mode measures the same prompt sliders on ``studio-tiny-dit`` (a diffusion
transformer in the SD3 format: its CLIP embeddings and pooled embeddings move), beside the
UNet model's (``diffusion``), with a background slider that the DiT draws well.

Everything runs on the CPU, offline, on held-out portraits (never trained on).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from studio.core.jobs.events import JobFailed, JobFinished
from studio.core.jobs.request import GenerationRequest
from studio.core.jobs.runner import JobRunner
from studio.core.portraits.attributes import BACKGROUNDS
from studio.core.sliders.specs import (
    LATENT_METHODS,
    SliderSpec,
    apply_sliders,
    latent_slider,
    preview_steps,
    prompt_pair,
    starter_sliders,
)

VALUES = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)
FLOW_FAMILIES = ("sd3", "flux", "sana", "auraflow")  # their schedulers: Flow Euler
HELD_OUT_SEED = 1_000_003
LATENT_ATTRIBUTES = ("smile", "glasses", "hair=red", "hair=blonde")
DIFFUSION_SLIDERS = ("smile", "glasses", "hair-red", "hair-blonde")
DIT_SLIDERS = ("smile", "glasses", "hair-red", "hair-blonde", "background-blue")
MODELS = {"vae": "studio-tiny-vae", "gan": "studio-tiny-gan",
          "diffusion": "studio-tiny-diffusion", "dit": "studio-tiny-dit"}
KINDS = ("hair", "glasses", "skin", "background", "smile")
ORACLE_KINDS = ("hair", "glasses", "background", "smile")  # what the oracle reads


# -- measures ---------------------------------------------------------------------------
def ssim(a: np.ndarray, b: np.ndarray, window: int = 7) -> float:
    """Mean structural similarity of two uint8 RGB images (grey, box window)."""
    def grey(x: np.ndarray) -> np.ndarray:
        return x[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])

    x, y = grey(a), grey(b)

    def box(img: np.ndarray) -> np.ndarray:
        c = np.cumsum(np.cumsum(np.pad(img, ((1, 0), (1, 0))), 0), 1)
        w = window
        s = c[w:, w:] - c[:-w, w:] - c[w:, :-w] + c[:-w, :-w]
        return s / (w * w)

    mx, my = box(x), box(y)
    vx = box(x * x) - mx * mx
    vy = box(y * y) - my * my
    cxy = box(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    def ranks(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        order = v.argsort()
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        for val in np.unique(v):
            m = v == val
            r[m] = r[m].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1000.0, q)) if seconds else float("nan")


@dataclass
class SliderResult:
    """The figures of one slider in one mode."""

    mode: str
    slider: str
    attribute: str
    gain: dict[float, float] = field(default_factory=dict)
    kept: dict[float, float] = field(default_factory=dict)
    ssim: dict[float, float] = field(default_factory=dict)
    monotonicity: float = 0.0
    success: float = math.nan  # nan: no image without the attribute to add it to
    removal: float = math.nan  # nan: no image with the attribute to take it from
    n: int = 0
    oracle_gain: dict[float, float] = field(default_factory=dict)
    oracle_kept: float = 0.0
    oracle_success: float = math.nan
    oracle_removal: float = math.nan
    oracle_monotonicity: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "slider": self.slider, "attribute": self.attribute,
                "gain": {str(k): v for k, v in self.gain.items()},
                "others_kept": {str(k): v for k, v in self.kept.items()},
                "ssim": {str(k): v for k, v in self.ssim.items()},
                "monotonicity": self.monotonicity, "edit_success": self.success,
                "removal": self.removal, "n": self.n,
                "oracle_gain": {str(k): v for k, v in self.oracle_gain.items()},
                "oracle_others_kept": self.oracle_kept,
                "oracle_edit_success": self.oracle_success,
                "oracle_removal": self.oracle_removal,
                "oracle_monotonicity": self.oracle_monotonicity}


def _kind(attribute: str) -> str:
    return attribute.partition("=")[0]


def score_slider(scorer: Any, mode: str, slider: str, attribute: str,
                 images: dict[float, np.ndarray]) -> SliderResult:
    """Figures of one slider from its images per value (each (n, h, w, 3), same order)."""
    res = SliderResult(mode, slider, attribute, n=len(images[0.0]))
    scores = {v: scorer.scores(imgs) for v, imgs in images.items()}
    decisions = {v: scorer.decisions(s) for v, s in scores.items()}
    p0 = scorer.probability(scores[0.0], attribute)
    others = [k for k in KINDS if k != _kind(attribute)]
    for v in VALUES:
        res.gain[v] = float((scorer.probability(scores[v], attribute) - p0).mean())
        same = np.mean([decisions[v][k] == decisions[0.0][k] for k in others], axis=0)
        res.kept[v] = float(same.mean())
        res.ssim[v] = float(np.mean([ssim(a, b) for a, b in zip(images[v], images[0.0],
                                                                  strict=True)]))
    res.monotonicity = spearman(np.array(VALUES), np.array([res.gain[v] for v in VALUES]))
    with_it = scorer.has(scores[0.0], attribute)
    if (~with_it).any():
        res.success = float(scorer.has(scores[2.0], attribute)[~with_it].mean())
    if with_it.any():
        res.removal = float((~scorer.has(scores[-2.0], attribute))[with_it].mean())
    # "kept" counts every image (edited or not) and every other kind of attribute.
    oracle_score(res, images)
    return res


def _oracle_measure(readings: list[Any], attribute: str) -> np.ndarray:
    """The oracle's continuous measure of ``attribute`` per reading: the mouth's curvature,
    the share of frame pixels, or minus the delta E to the asked hair colour."""
    if attribute == "smile":
        return np.array([np.nan if r.smile is None else r.smile for r in readings])
    if attribute == "glasses":
        return np.array([r.glasses_score for r in readings])
    kind, _, value = attribute.partition("=")
    return np.array([-getattr(r, f"{kind}_distances")[value] for r in readings])


def _oracle_decisions(readings: list[Any]) -> dict[str, np.ndarray]:
    from studio.core.portraits.attributes import smile_bin_index

    smile = np.array([np.nan if r.smile is None else r.smile for r in readings])
    return {"hair": np.array([r.hair for r in readings]),
            "background": np.array([r.background for r in readings]),
            "glasses": np.array([r.glasses for r in readings]),
            "smile": np.where(np.isnan(smile), -1, smile_bin_index(np.nan_to_num(smile)))}


def oracle_score(res: SliderResult, images: dict[float, np.ndarray]) -> SliderResult:
    """Fill ``res``'s oracle figures from its images per value (see the module docstring)."""
    from studio.core.portraits.oracle import read_portraits

    readings = {v: read_portraits(imgs) for v, imgs in images.items()}
    m0 = _oracle_measure(readings[0.0], res.attribute)
    for v in VALUES:
        res.oracle_gain[v] = float(np.nanmean(_oracle_measure(readings[v], res.attribute) - m0))
    gains = np.nan_to_num(np.array([res.oracle_gain[v] for v in VALUES]))
    res.oracle_monotonicity = spearman(np.array(VALUES), gains)
    d0, d2 = _oracle_decisions(readings[0.0]), _oracle_decisions(readings[2.0])
    others = [k for k in ORACLE_KINDS if k != _kind(res.attribute)]
    res.oracle_kept = float(np.mean([d2[k] == d0[k] for k in others]))
    with_it = np.array([r.has(res.attribute) for r in readings[0.0]])
    if (~with_it).any():
        res.oracle_success = float(np.mean([r.has(res.attribute) for r in readings[2.0]],
                                           where=~with_it))
    if with_it.any():
        res.oracle_removal = float(np.mean([not r.has(res.attribute) for r in readings[-2.0]],
                                           where=with_it))
    return res


def _mean(values: list[float]) -> float:
    """The mean of the figures that were measured (nan ones left out; nan if none was)."""
    measured = [v for v in values if not math.isnan(v)]
    return float(np.mean(measured)) if measured else math.nan


def _pct(value: float, width: int = 7) -> str:
    return "n/a".rjust(width) if math.isnan(value) else f"{value:{width}.1%}"


def background_slider(colour: str) -> SliderSpec:
    """A prompt slider from a grey background to ``colour`` (placed in the prompt where it
    names a background; the whole picture may change: not local)."""
    others = tuple(f"{b} background" for b in BACKGROUNDS if b not in (colour, "grey"))
    spec = prompt_pair(f"{colour} background", "grey background",
                       templates=("a person on a {}", "a person with brown hair on a {}",
                                  "a smiling person with round glasses on a {}"), local=False)
    return replace(spec, slider_id=f"background-{colour}", label=f"{colour.title()} background",
                   attribute=f"background={colour}", alternatives=others)


# -- latency through the job runner -----------------------------------------------------
def runner_latency(runner: JobRunner, requests: list[GenerationRequest],
                   channel: str) -> list[float]:
    """Seconds from submitting each request (a slider event) to its result, one at a time."""
    times: list[float] = []
    done = threading.Event()
    state: dict[str, Any] = {}

    def listen(ev: Any) -> None:
        if isinstance(ev, JobFinished | JobFailed) and ev.job_id == state.get("id"):
            state["t"] = time.perf_counter()
            state["failed"] = isinstance(ev, JobFailed) and ev.message
            done.set()

    runner.add_listener(listen)
    try:
        for req in requests:
            done.clear()
            t0 = time.perf_counter()
            state["id"] = runner.submit(req, channel)
            if not done.wait(120):
                raise TimeoutError("a bench job did not finish")
            if state.get("failed"):
                raise RuntimeError(str(state["failed"]))
            times.append(state["t"] - t0)
    finally:
        runner.remove_listener(listen)
    return times


# -- the modes --------------------------------------------------------------------------
class SliderBench:
    """Runs the measurements on an ``Engine`` (which knows the embedded models)."""

    def __init__(self, engine: Any, n_images: int = 48, n_prompts: int = 16,
                 latency_events: int = 40, log: Callable[[str], None] = print,
                 diffusion_model: str = "studio-tiny-diffusion",
                 method: str | None = None, in_prompt: bool = True,
                 dit_model: str = "studio-tiny-dit") -> None:
        self.engine = engine
        self.dit_model = dit_model
        self.in_prompt = in_prompt  # False: prompt directions from the templates only
        self.method = method  # None: the latent sliders' own (``LATENT_METHODS``)
        self.diffusion_model = diffusion_model
        self.n_images = n_images
        self.n_prompts = n_prompts
        self.latency_events = latency_events
        self.log = log
        self.results: list[SliderResult] = []
        self.latency: dict[str, dict[str, float]] = {}

    def _has(self, model_id: str) -> bool:
        try:
            self.engine.resolve_model(model_id)
        except Exception:
            return False
        return True

    def run(self, modes: tuple[str, ...] = ("vae", "gan", "diffusion")) -> dict[str, Any]:
        runner = JobRunner(self.engine, name="studio-engine-sliderbench")
        try:
            for mode in modes:
                model = {**MODELS, "diffusion": self.diffusion_model,
                         "dit": self.dit_model}[mode]
                if not self._has(model):
                    self.log(f"{model}: not found, skipped")
                    continue
                t0 = time.perf_counter()
                if mode == "diffusion":
                    self._diffusion(runner)
                elif mode == "dit":
                    self._diffusion(runner, mode="dit", model=self.dit_model,
                                    sliders=DIT_SLIDERS, drag="hair-red")
                else:
                    self._latent(mode, runner)
                self.log(f"{mode}: measured in {time.perf_counter() - t0:.0f} s")
        finally:
            runner.shutdown(30)
        return self.summary()

    def _latent(self, mode: str, runner: JobRunner) -> None:
        from studio.core.portraits.render import make_batch

        lm = self.engine.latent_models
        info = self.engine.resolve_model(f"studio-tiny-{mode}")
        model = lm.model(info)
        scorer = lm.scorer()
        specs = [latent_slider(mode, a, **({"method": self.method} if self.method else {}))
                 for a in LATENT_ATTRIBUTES]
        for method in {s.method for s in specs}:
            lm.directions(info, method)  # built before the clock starts
        if mode == "vae":
            batch = make_batch(HELD_OUT_SEED, 0, self.n_images)
            z0 = model.encode(batch.images)
        else:
            z0 = np.concatenate([model.sample(HELD_OUT_SEED + i) for i in range(self.n_images)])
        for attribute, spec in zip(LATENT_ATTRIBUTES, specs, strict=True):
            images = {}
            for v in VALUES:
                req = apply_sliders(GenerationRequest("", model=info.id, width=64, height=64,
                                                      steps=1), [(spec, v)])
                images[v] = model.decode(lm.edit(info, z0, req))
            self.results.append(score_slider(scorer, mode, spec.slider_id, attribute, images))
        # Latency: a drag over one slider, each event a preview-channel request.
        spec = specs[LATENT_ATTRIBUTES.index("smile")]
        values = np.linspace(-2, 2, self.latency_events)
        base = GenerationRequest("", model=info.id, width=64, height=64, steps=1,
                                 seed=HELD_OUT_SEED)
        reqs = [apply_sliders(base, [(spec, float(v))]) for v in values]
        runner_latency(runner, reqs[:3], "preview")  # warm-up
        preview = runner_latency(runner, reqs, "preview")
        final = runner_latency(runner, reqs[:: max(1, len(reqs) // 10)], "render")
        self.latency[mode] = {"preview_p50_ms": percentile_ms(preview, 50),
                              "preview_p95_ms": percentile_ms(preview, 95),
                              "final_p50_ms": percentile_ms(final, 50),
                              "final_p95_ms": percentile_ms(final, 95)}

    def diffusion_requests(self, model: str | None = None) -> list[GenerationRequest]:
        from studio.core.portraits.render import caption_for, make_batch

        info = self.engine.resolve_model(model or self.diffusion_model)
        rec = dict(info.recommended)
        batch = make_batch(HELD_OUT_SEED, 0, self.n_prompts)
        extra = {"scheduler": "Flow Euler"} if info.family in FLOW_FAMILIES else {}
        return [GenerationRequest(caption_for(a), model=info.id, seed=HELD_OUT_SEED + i,
                                  steps=int(rec.get("steps", 25)),  # type: ignore[call-overload]
                                  guidance=float(rec.get("guidance", 5.0)),  # type: ignore[arg-type]
                                  width=64, height=64, **extra)  # type: ignore[arg-type]
                for i, a in enumerate(batch.attributes)]

    def _diffusion(self, runner: JobRunner, mode: str = "diffusion", model: str | None = None,
                   sliders: tuple[str, ...] = DIFFUSION_SLIDERS, drag: str = "smile") -> None:
        scorer = self.engine.latent_models.scorer()
        bases = self.diffusion_requests(model)
        starters = {**starter_sliders(), "background-blue": background_slider("blue")}
        base_images = [self.engine.generate(r).images[0] for r in bases]
        for sid in sliders:
            spec = replace(starters[sid], in_prompt=self.in_prompt)
            images = {0.0: np.stack(base_images)}
            for v in VALUES:
                if v == 0:
                    continue
                images[v] = np.stack([self.engine.generate(apply_sliders(r, [(spec, v)]))
                                      .images[0] for r in bases])
            self.results.append(score_slider(scorer, mode, sid, spec.attribute, images))
            self.log(f"{mode} {sid}: done")
        spec = replace(starters[drag], in_prompt=self.in_prompt)
        values = np.linspace(-2, 2, max(6, self.latency_events // 4))
        preview_base = bases[0].replace(steps=preview_steps(bases[0].steps))
        reqs = [apply_sliders(preview_base, [(spec, float(v))]) for v in values]
        runner_latency(runner, reqs[:2], "preview")
        preview = runner_latency(runner, reqs, "preview")
        finals = [apply_sliders(bases[0], [(spec, float(v))]) for v in values[::2]]
        final = runner_latency(runner, finals, "render")
        self.latency[mode] = {"preview_p50_ms": percentile_ms(preview, 50),
                                     "preview_p95_ms": percentile_ms(preview, 95),
                                     "final_p50_ms": percentile_ms(final, 50),
                                     "final_p95_ms": percentile_ms(final, 95),
                                     "preview_steps": float(preview_base.steps),
                                     "final_steps": float(bases[0].steps)}

    # -- report --------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        import torch

        out: dict[str, Any] = {"values": list(VALUES), "torch_threads": torch.get_num_threads(),
                               "sliders": [r.to_dict() for r in self.results],
                               "latency": self.latency,
                               "latent_method": self.method or dict(LATENT_METHODS),
                               "prompt_directions": "in-prompt" if self.in_prompt
                               else "templates"}
        for mode in ("vae", "gan", "diffusion", "dit"):
            rs = [r for r in self.results if r.mode == mode]
            if rs:
                out[f"{mode}_edit_success"] = _mean([r.success for r in rs])
                out[f"{mode}_others_kept"] = float(np.mean([r.kept[2.0] for r in rs]))
                out[f"{mode}_monotonicity_min"] = float(min(r.monotonicity for r in rs))
                out[f"{mode}_oracle_edit_success"] = _mean([r.oracle_success for r in rs])
                out[f"{mode}_oracle_removal"] = _mean([r.oracle_removal for r in rs])
                out[f"{mode}_oracle_others_kept"] = float(np.mean([r.oracle_kept for r in rs]))
                out[f"{mode}_oracle_monotonicity_min"] = float(
                    min(r.oracle_monotonicity for r in rs))
        latent = [r for r in self.results if r.mode in ("vae", "gan")]
        ranked = latent or self.results
        if ranked:
            out["edit_success"] = _mean([r.success for r in ranked])
            out["others_kept"] = float(np.mean([r.kept[2.0] for r in ranked]))
            out["oracle_edit_success"] = _mean([r.oracle_success for r in ranked])
            out["oracle_others_kept"] = float(np.mean([r.oracle_kept for r in ranked]))
        if self.results:
            out["monotonicity_min"] = float(min(r.monotonicity for r in self.results))
        for mode, key in (("vae", "vae_update_p95_ms"), ("gan", "gan_update_p95_ms"),
                          ("diffusion", "diffusion_preview_p95_ms"),
                          ("dit", "dit_preview_p95_ms")):
            if mode in self.latency:
                out[key] = self.latency[mode]["preview_p95_ms"]
        for mode in ("diffusion", "dit"):
            if mode in self.latency:
                out[f"{mode}_final_p95_ms"] = self.latency[mode]["final_p95_ms"]
        return out


def format_table(summary: dict[str, Any]) -> str:
    """The printed SliderBench table."""
    head = (f"{'mode':<9} {'slider':<16} " + " ".join(f"g@{v:+g}".rjust(7) for v in VALUES)
            + f" {'kept@2':>7} {'ssim@1':>7} {'spear':>6} {'succ@2':>7} {'n':>4}"
            + f" | {'o.kept':>7} {'o.spear':>7} {'o.succ':>7} {'o.rm@-2':>7}")
    lines = [head, "-" * len(head)]
    for r in summary["sliders"]:
        gains = " ".join(f"{r['gain'][str(v)]:+7.3f}" for v in VALUES)
        lines.append(f"{r['mode']:<9} {r['slider']:<16} {gains} {r['others_kept']['2.0']:7.1%} "
                     f"{r['ssim']['1.0']:7.3f} {r['monotonicity']:6.2f} "
                     f"{_pct(r['edit_success'])} {r['n']:4d}"
                     + (f" | {r['oracle_others_kept']:7.1%} {r['oracle_monotonicity']:7.2f} "
                        f"{_pct(r['oracle_edit_success'])} "
                        f"{_pct(r.get('oracle_removal', math.nan))}"
                        if "oracle_edit_success" in r else ""))
    lines.append("")
    for mode, lat in summary.get("latency", {}).items():
        extra = (f" (preview {lat['preview_steps']:.0f} steps, final {lat['final_steps']:.0f})"
                 if "preview_steps" in lat else "")
        lines.append(f"latency {mode:<9} preview p50 {lat['preview_p50_ms']:7.1f} ms  p95 "
                     f"{lat['preview_p95_ms']:7.1f} ms | final p50 {lat['final_p50_ms']:7.1f} ms"
                     f"  p95 {lat['final_p95_ms']:7.1f} ms{extra}")
    keys = ("vae_update_p95_ms", "gan_update_p95_ms", "diffusion_preview_p95_ms",
            "edit_success", "others_kept", "monotonicity_min", "vae_edit_success",
            "gan_edit_success", "diffusion_edit_success", "oracle_edit_success",
            "oracle_others_kept", "vae_oracle_edit_success", "gan_oracle_edit_success",
            "diffusion_oracle_edit_success", "vae_oracle_others_kept", "gan_oracle_others_kept",
            "diffusion_oracle_others_kept", "vae_oracle_monotonicity_min",
            "gan_oracle_monotonicity_min", "diffusion_oracle_monotonicity_min",
            "dit_preview_p95_ms", "dit_edit_success", "dit_others_kept",
            "dit_monotonicity_min", "dit_oracle_edit_success", "dit_oracle_others_kept",
            "dit_oracle_monotonicity_min", "vae_oracle_removal", "gan_oracle_removal",
            "diffusion_oracle_removal", "dit_oracle_removal")
    lines.append("")
    lines += [f"{k:<26} {summary[k]:.3f}" for k in keys if k in summary]
    return "\n".join(lines)


def slider_latency_ms(quick: bool = True) -> float | None:
    """VAE slider update p95 in ms (for ``studio bench``), or None without the models."""
    from studio.engine.engine import Engine

    bench = SliderBench(Engine(device="cpu", dtype="float32", hf_cache=False),
                        n_images=8 if quick else 48, latency_events=20 if quick else 40,
                        log=lambda _t: None)
    if not bench._has("studio-tiny-vae") or not bench._has("studio-tiny-attributes"):
        return None
    bench.run(("vae",))
    return bench.latency.get("vae", {}).get("preview_p95_ms")
