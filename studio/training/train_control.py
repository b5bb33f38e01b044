"""Train ``studio-tiny-control``: a ControlNet for ``studio-tiny-diffusion`` that follows
line art, and measure how well it does with the portrait oracle.

The data: the procedural portraits (``studio.core.portraits.render``), each drawn twice from
the same random stream, once in colour and once with every fill white
(``line_art``): the second is the exact line art of the first (outlines, eyes, glasses,
nose, mouth), as white lines on black. Hair style (short, long, bob), glasses shape (round,
square), head position and size vary as the renderer varies them.

The model: ``ControlNetModel.from_unet`` of the diffusion model's UNet (its encoder copied,
zero convolutions), trained with the UNet, VAE and text encoder frozen, epsilon loss, 30 %
empty prompts (the control alone must place things), half of each batch at the noisier half
of the schedule (where the layout is decided). A ControlNet is tied to its UNet:
retrain it whenever ``studio-tiny-diffusion`` is retrained.

The evaluation (``evaluate``), on held-out layouts (data seed ``HELD_OUT_SEED``), each
generation with the same seed with and without the control:

* layout followed: hair style and glasses shape read from the image by which of the
  renderer's line arts of the alternatives (same geometry, another style or shape) its
  edges match best, where the alternatives differ. The layouts are chosen to differ from
  what the seed alone gives, so the uncontrolled reading scores 0 on them by construction;
  the uncontrolled rate on all layouts is the chance rate.
* edge F1 (1 px tolerance) of the image's edges against the control's lines, beside the
  same seeds without control.
* the prompt's attributes (hair colour, glasses, background) read by the oracle, with and
  without control.

Run: ``python -m studio.training.train_control train --minutes 20`` then ``... eval``.
"""

from __future__ import annotations

import argparse
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from studio.training.common import (
    DEFAULT_OUT,
    HELD_OUT_SEED,
    TRAIN_SEED,
    log,
    save_pretrained_folder,
)

NAME = "studio-tiny-control"
BASE = "studio-tiny-diffusion"
CONTROL_KINDS = ["lineart", "scribble", "edges"]
STYLES = ("short", "long", "bob")
SHAPES = ("round", "square")
CONDITIONING = (8, 16, 32)  # three levels: the VAE's factor 4 (narrow: a third faster)


# -- data ------------------------------------------------------------------------------------
class _Forced:
    """A numpy Generator whose hair-style draw (the renderer's only ``integers(3)``) returns
    ``style``; the draw is still made, so the rest of the stream is unchanged."""

    def __init__(self, rng: np.random.Generator, style: int | None) -> None:
        self._rng, self._style = rng, style
        self.drawn: int | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rng, name)

    def integers(self, *args: Any, **kwargs: Any) -> Any:
        value = self._rng.integers(*args, **kwargs)
        if args and args[0] == 3:
            self.drawn = int(value)
            if self._style is not None:
                return self._style
        return value


@contextmanager
def _white_fills() -> Any:
    from studio.core.portraits import render

    saved = (dict(render._BG_RGB), dict(render._HAIR_RGB), dict(render._SKIN_RGB),
             render._SHIRT_RGB)
    white = (250, 250, 250)
    try:
        for table in (render._BG_RGB, render._HAIR_RGB, render._SKIN_RGB):
            for key in table:
                table[key] = white
        render._SHIRT_RGB = (white,) * len(saved[3])
        yield
    finally:
        render._BG_RGB.update(saved[0])
        render._HAIR_RGB.update(saved[1])
        render._SKIN_RGB.update(saved[2])
        render._SHIRT_RGB = saved[3]


def _lines(rgb: np.ndarray) -> np.ndarray:
    lum = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip((215.0 - lum) * (255.0 / 150.0), 0, 255).round().astype(np.uint8)


def sample(seed: int, index: int, style: int | None = None, glasses: str | None = None
           ) -> tuple[np.ndarray, np.ndarray, Any, int]:
    """(colour image, line art (64, 64) white on black, attributes, hair style index) of
    sample ``index`` of data set ``seed``, its style or glasses shape replaced if given."""
    import dataclasses

    from studio.core.portraits.attributes import sample_attributes
    from studio.core.portraits.render import render_portrait

    rng = np.random.default_rng((int(seed), int(index)))
    attrs = sample_attributes(rng)
    if glasses is not None:
        attrs = dataclasses.replace(attrs, glasses=glasses)
    state = rng.bit_generator.state
    forced = _Forced(rng, style)
    colour = render_portrait(attrs, forced)
    style = forced.drawn if style is None else style
    rng_lines = np.random.default_rng()
    rng_lines.bit_generator.state = state
    with _white_fills():
        lines = _lines(render_portrait(attrs, _Forced(rng_lines, style)))
    return colour, lines, attrs, style


def _chunk(args: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from studio.core.portraits.render import caption_for

    seed, start, n = args
    images = np.empty((n, 64, 64, 3), np.uint8)
    lines = np.empty((n, 64, 64), np.uint8)
    captions = []
    for j in range(n):
        images[j], lines[j], attrs, _ = sample(seed, start + j)
        captions.append(caption_for(attrs, np.random.default_rng((seed, start + j, 7))))
    return images, lines, captions


def build_data(seed: int, n: int, workers: int = 2) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``n`` (image, line art, caption) samples of data set ``seed`` (cached on disk)."""
    from multiprocessing import get_context

    from studio.core.portraits.render import DATA_VERSION
    from studio.training.common import CACHE_DIR

    path = CACHE_DIR / f"control_v{DATA_VERSION}_seed{seed}_n{n}.npz"
    if path.exists():
        z = np.load(path, allow_pickle=False)
        return z["images"], z["lines"], [str(c) for c in z["captions"]]
    step = 1000
    jobs = [(seed, s, min(step, n - s)) for s in range(0, n, step)]
    with get_context("fork").Pool(workers) as pool:
        parts = pool.map(_chunk, jobs)
    images = np.concatenate([p[0] for p in parts])
    lines = np.concatenate([p[1] for p in parts])
    captions = [c for p in parts for c in p[2]]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, images=images, lines=lines, captions=np.array(captions))
    tmp.replace(path)
    return images, lines, captions


# -- the model -------------------------------------------------------------------------------
def make_controlnet(unet: Any) -> Any:
    """A ControlNet from ``unet`` (its encoder copied, zero convolutions), with the UNet's
    own added-text-embedding heads (``from_unet`` would take diffusers' default)."""
    from diffusers import ControlNetModel

    from studio.engine.control_models import controlnet_config

    net = ControlNetModel.from_config(controlnet_config(dict(unet.config), CONDITIONING))
    copied = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=CONDITIONING)
    net.load_state_dict(copied.state_dict())
    return net


def _cond(lines: np.ndarray) -> Any:
    import torch

    x = torch.from_numpy(np.ascontiguousarray(lines)).float().div(255.0)
    return x[:, None].expand(-1, 3, -1, -1).contiguous()


def train(out_root: Path = DEFAULT_OUT, minutes: float = 20.0, seed: int = 0,
          n_data: int = 12_000, batch_size: int = 64, lr: float = 1e-3,
          base: Path | None = None, out_name: str = NAME, init: Path | None = None) -> Path:
    """Train the ControlNet for ``minutes`` on the model in ``base`` (default: the embedded
    diffusion model in ``out_root``) and save it as ``out_root/out_name``. ``init``: start
    from the weights of an earlier run (its record is chained) instead of the UNet's copy."""
    import torch
    from diffusers import DDPMScheduler, StableDiffusionPipeline
    from torch.nn import functional as F

    from studio.engine.models.hashing import model_hash
    from studio.engine.nets.tensors import to_tensor
    from studio.training.common import Stopwatch, batches, setup_torch

    setup_torch(seed)
    base = base or out_root / BASE
    pipe = StableDiffusionPipeline.from_pretrained(base, local_files_only=True,
                                                   safety_checker=None,
                                                   requires_safety_checker=False)
    unet, vae, text_encoder, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False)
        module.eval()
    log(f"data: {n_data} portraits with line art")
    images, lines, captions = build_data(TRAIN_SEED + seed, n_data)
    scale = float(vae.config.scaling_factor)
    with torch.no_grad():
        latents = torch.cat([vae.encode(to_tensor(images[s:s + 256])).latent_dist.mean
                             for s in range(0, len(images), 256)]) * scale
    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)
    alphas = noise_sched.alphas_cumprod
    previous: dict[str, Any] = {}
    if init is not None:
        from diffusers import ControlNetModel

        net = ControlNetModel.from_pretrained(init, local_files_only=True)
        if (init / "training.json").is_file():
            previous = json.loads((init / "training.json").read_text())
        log(f"starting from {init} ({previous.get('steps', '?')} steps)")
    else:
        net = make_controlnet(unet)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    clock = Stopwatch(minutes)
    rng = np.random.default_rng(seed + 17)
    step, losses = 0, []
    for idx in batches(len(images), batch_size, seed + 5):
        if clock.done():
            break
        x0 = latents[idx]
        noise = torch.randn_like(x0)
        # Half the batch at the noisier half of the schedule, where the layout is decided.
        low = np.where(rng.random(len(idx)) < 0.5, 0, 500)
        t = torch.from_numpy(rng.integers(low, 1000)).long()
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with torch.no_grad():
            texts = [captions[i] if rng.random() > 0.3 else "" for i in idx]
            emb = text_encoder(_ids(tokenizer, texts))[0]
        down, mid = net(xt, t, encoder_hidden_states=emb, controlnet_cond=_cond(lines[idx]),
                        return_dict=False)
        pred = unet(xt, t, encoder_hidden_states=emb, down_block_additional_residuals=down,
                    mid_block_additional_residual=mid).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        if step % 100 == 0:
            log(f"step {step} loss {np.mean(losses[-100:]):.4f} ({clock.elapsed / 60:.1f} min)")
    out = out_root / out_name
    net.eval()
    studio = {"family": "studio-tiny", "control_kinds": CONTROL_KINDS, "base_model": BASE,
              "base_model_hash": model_hash(base)}
    command = (f"python -m studio.training.train_control train --minutes {minutes:g} "
               f"--batch {batch_size}" + (" --init PREVIOUS" if init is not None else ""))
    record = {"command": command, "seconds": round(clock.elapsed), "steps": step,
              "batch_size": batch_size,
              "lr": lr, "train_samples": n_data, "prompt_dropout": 0.3,
              "final_loss": round(float(np.mean(losses[-200:])), 4) if losses else None,
              "base_model_hash": studio["base_model_hash"]}
    if previous:  # what the run it started from did, on which diffusion weights
        record["started_from"] = {k: previous.get(k) for k in
                                  ("command", "seconds", "steps", "base_model_hash",
                                   "final_loss", "started_from") if k in previous}

    def save(tmp: Path) -> None:
        net.save_pretrained(tmp, safe_serialization=True)
        (tmp / "training.json").write_text(json.dumps(record, indent=2) + "\n")

    save_pretrained_folder(out, save, studio, keep=("README.md", "eval.json", "contact_sheet.png"))
    log(f"saved {out} after {step} steps")
    return out


def _ids(tokenizer: Any, texts: list[str]) -> Any:
    return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids


# -- evaluation ------------------------------------------------------------------------------
def edge_map(image: np.ndarray) -> np.ndarray:
    """Canny edges (bool (64, 64)) of a generated portrait, thresholds for 64 px images."""
    from studio.core.control import canny

    lum = image[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return canny(lum, 40, 80, sigma=0.7) > 0


def _dilate(mask: np.ndarray, px: int = 1) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_dilation(mask, iterations=px) if px else mask


def edge_f1(edges: np.ndarray, target: np.ndarray, tolerance: int = 1) -> float:
    """F1 of ``edges`` against ``target`` lines (bool maps), a match within ``tolerance``."""
    if not target.any() or not edges.any():
        return 0.0
    precision = float((edges & _dilate(target, tolerance)).sum() / edges.sum())
    recall = float((target & _dilate(edges, tolerance)).sum() / target.sum())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def read_layout(image: np.ndarray, alternatives: list[np.ndarray], by: str = "edges") -> int:
    """Which of the ``alternatives`` (line arts, same geometry, one feature varied) the
    image follows, judged only where they differ: by edge F1 (``by="edges"``: hair style,
    an outline between hair and background), or by which one's lines are the darkest
    (``"dark"``: glasses frames, dark on skin, a pixel or two apart)."""
    maps = [a > 127 for a in alternatives]
    differ = np.zeros(maps[0].shape, bool)
    for i, a in enumerate(maps):
        for b in maps[i + 1:]:
            differ |= a ^ b if by == "dark" else _dilate(a, 1) ^ _dilate(b, 1)
    if by == "dark":
        lum = image[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        scores = [float(-lum[a & differ].mean()) if (a & differ).any() else -1e9
                  for a in maps]
        return int(np.argmax(scores))
    edges = edge_map(image) & differ
    return int(np.argmax([edge_f1(edges, a & differ) for a in maps]))


def _alternatives(seed: int, index: int, style: int, shape: str
                  ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    styles = [sample(seed, index, style=s, glasses=shape)[1] for s in range(3)]
    shapes = [sample(seed, index, style=style, glasses=g)[1] for g in SHAPES]
    return styles, shapes


def _prompt(attrs: Any) -> str:
    return f"a person with {attrs.hair} hair and glasses on a {attrs.background} background"


def evaluate(root: Path = DEFAULT_OUT, n: int = 48, steps: int = 25, guidance: float = 5.0,
             name: str = NAME, batch: int = 16, base: Path | None = None,
             write: bool = True) -> dict[str, Any]:
    """The measured figures of the control model in ``root/name`` (see the module doc);
    with ``write`` also its ``eval.json`` and ``contact_sheet.png`` (line art, without
    control, with control: one column per layout)."""
    import torch
    from diffusers import (
        ControlNetModel,
        StableDiffusionControlNetPipeline,
        StableDiffusionPipeline,
    )
    from PIL import Image

    from studio.core.portraits.oracle import read_portrait

    pipe = StableDiffusionPipeline.from_pretrained(base or root / BASE, local_files_only=True,
                                                   safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    net = ControlNetModel.from_pretrained(root / name, local_files_only=True)
    cpipe = StableDiffusionControlNetPipeline.from_pipe(pipe, controlnet=net)
    cpipe.set_progress_bar_config(disable=True)

    def run(prompts: list[str], seeds: list[int], maps: list[np.ndarray] | None) -> np.ndarray:
        out = []
        for s in range(0, len(prompts), batch):
            gens = [torch.Generator().manual_seed(x) for x in seeds[s:s + batch]]
            kw = dict(num_inference_steps=steps, guidance_scale=guidance, generator=gens,
                      height=64, width=64, output_type="np")
            with torch.inference_mode():
                if maps is None:
                    im = pipe(prompts[s:s + batch], **kw).images
                else:
                    cond = [Image.fromarray(np.repeat(m[..., None], 3, 2))
                            for m in maps[s:s + batch]]
                    im = cpipe(prompts[s:s + batch], image=cond, **kw).images
            out.append((np.clip(im, 0, 1) * 255).round().astype(np.uint8))
        return np.concatenate(out)

    # Held-out layouts with glasses (so the shape can be read), and one seed each.
    candidates = []
    index = 0
    while len(candidates) < 4 * n:
        _, lines, attrs, style = sample(HELD_OUT_SEED, index)
        if attrs.glasses != "none":
            candidates.append((index, lines, attrs, style))
        index += 1
    seeds = [5000 + i for i in range(n)]
    prompts = [_prompt(c[2]) for c in candidates[:n]]
    # What each seed gives without control, read against the layouts' alternatives: the
    # chance rate against its own candidate, and a layout that differs from it in both.
    free = run(prompts, seeds, None)
    chosen, chance_style, chance_shape = [], [], []
    used: set[int] = set()
    for i in range(n):
        for j, (index, lines, attrs, style) in enumerate(candidates):
            if j in used and j != i:
                continue
            styles, shapes = _alternatives(HELD_OUT_SEED, index, style, attrs.glasses)
            read_style = read_layout(free[i], styles)
            read_shape = read_layout(free[i], shapes, by="dark")
            if j == i:
                chance_style.append(read_style == style)
                chance_shape.append(read_shape == SHAPES.index(attrs.glasses))
            if j not in used and read_style != style and read_shape != SHAPES.index(
                    attrs.glasses):
                chosen.append((lines, attrs, style, styles, shapes))
                used.add(j)
                break
    ctrl = run(prompts[:len(chosen)], seeds[:len(chosen)], [c[0] for c in chosen])
    style_ok, shape_ok, f1_c, f1_b = [], [], [], []
    kept: dict[str, dict[str, list[bool]]] = {
        "with": {"hair": [], "glasses": [], "background": []},
        "without": {"hair": [], "glasses": [], "background": []}}
    for k, (lines, attrs, style, styles, shapes) in enumerate(chosen):
        style_ok.append(read_layout(ctrl[k], styles) == style)
        shape_ok.append(read_layout(ctrl[k], shapes, by="dark") == SHAPES.index(attrs.glasses))
        target = lines > 127
        f1_c.append(edge_f1(edge_map(ctrl[k]), target))
        f1_b.append(edge_f1(edge_map(free[k]), target))
        asked = candidates[k][2]  # the prompt's attributes (seed k's prompt)
        for label, image in (("with", ctrl[k]), ("without", free[k])):
            r = read_portrait(image)
            kept[label]["hair"].append(r.hair == asked.hair)
            kept[label]["glasses"].append(bool(r.glasses))
            kept[label]["background"].append(r.background == asked.background)
    rate = {side: {k: round(float(np.mean(v)), 3) for k, v in d.items()}
            for side, d in kept.items()}
    figures = {
        "layouts": len(chosen), "steps": steps, "guidance": guidance,
        "hair_style_followed": round(float(np.mean(style_ok)), 3),
        "glasses_shape_followed": round(float(np.mean(shape_ok)), 3),
        "hair_style_chance_without_control": round(float(np.mean(chance_style)), 3),
        "glasses_shape_chance_without_control": round(float(np.mean(chance_shape)), 3),
        "edge_f1_with_control": round(float(np.mean(f1_c)), 3),
        "edge_f1_without_control": round(float(np.mean(f1_b)), 3),
        "prompt_attributes_with_control": rate["with"],
        "prompt_attributes_without_control": rate["without"],
        "prompt_attributes_kept_ratio": {
            k: round(rate["with"][k] / max(rate["without"][k], 1e-9), 3) for k in rate["with"]},
    }
    if not write:
        return figures
    sheet = np.concatenate([np.concatenate([np.repeat(c[0][..., None], 3, 2), b, x], axis=0)
                            for c, b, x in zip(chosen[:8], free[:8], ctrl[:8], strict=False)],
                           axis=1)
    Image.fromarray(sheet).resize((sheet.shape[1] * 2, sheet.shape[0] * 2),
                                  Image.Resampling.NEAREST).save(root / name / "contact_sheet.png")
    (root / name / "eval.json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def format_figures(f: dict[str, Any]) -> str:
    """The figures as the card and the evaluation command print them."""
    keep = f["prompt_attributes_kept_ratio"]
    return "\n".join([
        f"held-out layouts: {f['layouts']} (chosen to differ from what each seed gives "
        f"without control), {f['steps']} steps, guidance {f['guidance']:g}",
        f"hair style followed:    {f['hair_style_followed']:.0%}   (chance without control: "
        f"{f['hair_style_chance_without_control']:.0%})",
        f"glasses shape followed: {f['glasses_shape_followed']:.0%}   (chance without control: "
        f"{f['glasses_shape_chance_without_control']:.0%})",
        f"edge F1 vs the control lines (1 px): {f['edge_f1_with_control']:.3f}   (same seeds "
        f"without control: {f['edge_f1_without_control']:.3f})",
        "prompt attributes with / without control: " + ", ".join(
            f"{k} {f['prompt_attributes_with_control'][k]:.0%} / "
            f"{f['prompt_attributes_without_control'][k]:.0%} (kept {keep[k]:.0%})"
            for k in keep),
    ])


def write_card(root: Path = DEFAULT_OUT, name: str = NAME) -> Path:
    """The model card ``README.md`` from the folder's ``training.json`` and ``eval.json``."""
    folder = root / name
    record = json.loads((folder / "training.json").read_text())
    figures = json.loads((folder / "eval.json").read_text())
    first = record.get("started_from") or {}
    chain, run = [], first
    while run:  # the earlier runs it continued, latest first
        chain.append(run)
        run = run.get("started_from") or {}
    if not first:
        history = "It was trained "
    elif all(r.get("base_model_hash") == record["base_model_hash"] for r in chain):
        steps = record["steps"] + sum(int(r.get("steps") or 0) for r in chain)
        seconds = record["seconds"] + sum(int(r.get("seconds") or 0) for r in chain)
        history = (f"It continued {'an' if len(chain) == 1 else len(chain)} earlier "
                   f"run{'s' if len(chain) > 1 else ''} "
                   f"on the same diffusion weights (" + "; ".join(
                       f"`{r.get('command')}`: {r.get('steps')} steps, {r.get('seconds')} s"
                       for r in reversed(chain)) + f"): {steps} steps in "
                   f"{seconds / 60:.0f} minutes in all, trained ")
    else:
        history = (f"It started from a pilot run of {first.get('steps')} steps "
                   f"({first.get('seconds')} s) trained against the previous diffusion weights "
                   f"(UNet sha256 {str(first.get('base_model_hash', ''))[:12]}), then trained ")
    text = f"""# studio-tiny-control

A ControlNet (diffusers `ControlNetModel`, {_params(folder)} parameters, fp32 safetensors) for
the embedded `studio-tiny-diffusion`: it makes the portrait follow line art, white lines on
black, as the studio's `lineart` and `scribble` control layers give it (draw a head outline,
hair and glasses; the prompt still chooses the colours). It is tied to the diffusion model's
UNet (sha256 `{record['base_model_hash'][:12]}...`, checked by
`tests/engine/test_control_model.py`): retrain it whenever `studio-tiny-diffusion` is
retrained.

## Training

`{record['command']}` on the CPU ({record['seconds']} s, {record['steps']} steps of
{record['batch_size']} portraits, AdamW at {record['lr']:g}, final loss
{record.get('final_loss')}). {history}on the shipped weights.

The data: {record['train_samples']} procedural portraits (`studio/core/portraits/render.py`,
data seed 0), each drawn twice from the same random stream, in colour and with every fill
white: the second is the exact line art of the first (outlines, eyes, glasses, nose,
mouth). Hair style (short, long, bob), glasses (none, round, square), head position and
size vary as the renderer varies them. Captions are the renderer's, with {record['prompt_dropout']:.0%} left
empty so that the control alone places things. The UNet, VAE and text encoder are frozen
(`studio/training/train_control.py`).

## Measured

`python -m studio.training.train_control eval` on held-out layouts (data seed
{HELD_OUT_SEED}), each generated with the same seed with and without the control, prompt
"a person with <hair> hair and glasses on a <background> background", {figures['steps']}
steps, guidance {figures['guidance']:g}. The layouts are chosen to differ from what each
seed gives without control (both hair style and glasses shape), so the uncontrolled images
score 0 on them by construction; the chance rate is the uncontrolled images read against
their own seed's layout. Hair style and glasses shape are read by which of the renderer's
line arts of the alternatives (the same geometry, another style or shape) the image
follows, only where they differ (by edges for the hair, by dark frame pixels for the
glasses; this reading is right on 100 % of rendered portraits). Attributes of the prompt are
read by the oracle (`studio/core/portraits/oracle.py`).

```
{format_figures(figures)}
```

`contact_sheet.png`: for 8 layouts, the control's line art (top), the same seed without
control (middle) and with it (bottom).
"""
    (folder / "README.md").write_text(text)
    return folder / "README.md"


def _params(folder: Path) -> str:
    from safetensors import safe_open

    total = 0
    for path in folder.glob("*.safetensors"):
        with safe_open(str(path), "np") as f:
            for key in f.keys():
                total += int(np.prod(f.get_slice(key).get_shape()))
    return f"{total:,}".replace(",", " ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.training.train_control",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["train", "eval", "card"])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--name", default=NAME)
    parser.add_argument("--n", type=int, default=48, help="eval: held-out layouts")
    parser.add_argument("--data", type=int, default=12_000, help="train: portraits")
    parser.add_argument("--batch", type=int, default=64, help="train: portraits a step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", type=Path, default=None,
                        help="train: start from this control model folder's weights")
    parser.add_argument("--base", type=Path, default=None,
                        help="the diffusion model folder (default: OUT/studio-tiny-diffusion)")
    args = parser.parse_args(argv)
    if args.command == "train":
        train(args.out, args.minutes, args.seed, n_data=args.data, batch_size=args.batch,
              out_name=args.name, base=args.base, init=args.init)
    elif args.command == "eval":
        print(format_figures(evaluate(args.out, args.n, name=args.name, base=args.base)))
    else:
        print(write_card(args.out, args.name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
