"""Train ``studio-tiny-upscaler``: a compact 2x super-resolution CNN (SRVGGNetCompact layout).

Data: the procedural portraits of ``studio.core.portraits.render`` plus procedural textures (shapes,
stripes, text, noise, gradients), as high-resolution patches; the low-resolution input is the
bicubic (antialiased) half-size image, as most resizers make it. Trained a few minutes on the
CPU, evaluated on held-out samples against Lanczos, saved as safetensors with a model card.

    python -m studio.training.train_upscaler --minutes 6 --out resources/models
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from safetensors.torch import save_file

from studio.core.portraits.render import make_batch
from studio.engine.nets.upscaler import CompactSR

NAME = "studio-tiny-upscaler"
TRAIN_SEED, HELD_OUT_SEED = 0, 1_000_003
REPO_ROOT = Path(__file__).resolve().parents[2]
PATCH = 48  # high-resolution training patch


def texture(seed: int, index: int, size: int = 96) -> np.ndarray:
    """A procedural texture: shapes, lines, stripes, text and noise over a gradient."""
    rng = np.random.default_rng((int(seed), int(index), 7))
    k = 2
    s = size * k
    base = rng.integers(0, 256, 3)
    other = rng.integers(0, 256, 3)
    t = np.linspace(0, 1, s, dtype=np.float32)
    grad = t[:, None, None] if rng.random() < 0.5 else t[None, :, None]
    arr = (base * (1 - grad) + other * grad) * np.ones((s, s, 1), np.float32)
    img = Image.fromarray(arr.astype(np.uint8))
    d = ImageDraw.Draw(img)

    def colour() -> tuple[int, int, int]:
        return tuple(int(c) for c in rng.integers(0, 256, 3))  # type: ignore[return-value]

    if rng.random() < 0.4:  # stripes
        step = int(rng.integers(4, 16)) * k
        for x in range(-s, 2 * s, step * 2):
            off = int(rng.integers(-s // 2, s // 2))
            d.polygon([(x, 0), (x + step, 0), (x + step + off, s), (x + off, s)], fill=colour())
    for _ in range(int(rng.integers(3, 12))):
        x0, y0 = (int(v) for v in rng.integers(-s // 4, s, 2))
        w, h = (int(v) for v in rng.integers(6 * k, s // 2, 2))
        kind = rng.integers(5)
        if kind == 0:
            d.ellipse([x0, y0, x0 + w, y0 + h], fill=colour(), outline=colour(),
                      width=int(rng.integers(1, 4)) * k)
        elif kind == 1:
            d.rectangle([x0, y0, x0 + w, y0 + h], fill=colour())
        elif kind == 2:
            d.line([(x0, y0), (x0 + w, y0 + h)], fill=colour(), width=int(rng.integers(1, 5)) * k)
        elif kind == 3:
            pts = [(int(a), int(b)) for a, b in rng.integers(0, s, (int(rng.integers(3, 6)), 2))]
            d.polygon(pts, fill=colour())
        else:
            d.text((x0, y0), "".join(chr(c) for c in rng.integers(65, 91, 5)), fill=colour(),
                   font_size=int(rng.integers(8, 24)) * k)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.0))))
    small = np.asarray(img.resize((size, size), Image.Resampling.BOX), np.float32)
    if rng.random() < 0.5:  # fine grain, which SR must not invent nor smear too much
        small = small + rng.normal(0, rng.uniform(1, 8), small.shape)
    return np.clip(small, 0, 255).astype(np.uint8)


def degrade(hr: np.ndarray) -> np.ndarray:
    """The low-resolution input: half size, bicubic with antialiasing."""
    h, w = hr.shape[:2]
    return np.asarray(Image.fromarray(hr).resize((w // 2, h // 2), Image.Resampling.BICUBIC))


def hr_images(seed: int, n: int) -> list[np.ndarray]:
    """``n`` high-resolution samples: 64 px portraits and 96 px textures, alternating."""
    out: list[np.ndarray] = []
    for p in make_batch(seed, 0, n // 2).images:
        out.append(np.ascontiguousarray(p))
        out.append(texture(seed, len(out)))
    return out


def random_patches(images: list[np.ndarray], rng: np.random.Generator, n: int) -> np.ndarray:
    batch = np.empty((n, PATCH, PATCH, 3), np.uint8)
    for i in range(n):
        img = images[int(rng.integers(len(images)))]
        y = int(rng.integers(0, img.shape[0] - PATCH + 1)) // 2 * 2
        x = int(rng.integers(0, img.shape[1] - PATCH + 1)) // 2 * 2
        patch = img[y:y + PATCH, x:x + PATCH]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        if rng.random() < 0.5:
            patch = np.rot90(patch)
        batch[i] = patch
    return batch


def to_t(batch: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(batch, copy=True)).permute(0, 3, 1, 2).float() / 255.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def upscale_np(model: CompactSR, lr: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        out = model(to_t(lr[None]))[0].clamp(0, 1).permute(1, 2, 0).numpy()
    return (out * 255).round().astype(np.uint8)


def evaluate(model: CompactSR, images: list[np.ndarray]) -> dict[str, float]:
    """Mean PSNR (dB) of the model and of Lanczos against the originals, per data kind."""
    scores: dict[str, list[float]] = {"model_portraits": [], "lanczos_portraits": [],
                                      "model_textures": [], "lanczos_textures": []}
    model.eval()
    for i, hr in enumerate(images):
        kind = "portraits" if i % 2 == 0 else "textures"
        lr = degrade(hr)
        lz = np.asarray(Image.fromarray(lr).resize(hr.shape[1::-1], Image.Resampling.LANCZOS))
        scores[f"model_{kind}"].append(psnr(upscale_np(model, lr), hr))
        scores[f"lanczos_{kind}"].append(psnr(lz, hr))
    model.train()
    return {k: round(float(np.mean(v)), 2) for k, v in scores.items()}


def figure(model: CompactSR, images: list[np.ndarray], path: Path) -> None:
    """Before/after: low-res input (nearest), Lanczos, the model, the original."""
    rows = []
    for hr in images[:4]:
        lr = degrade(hr)
        size = hr.shape[1::-1]
        cells = [np.asarray(Image.fromarray(lr).resize(size, Image.Resampling.NEAREST)),
                 np.asarray(Image.fromarray(lr).resize(size, Image.Resampling.LANCZOS)),
                 upscale_np(model, lr), hr]
        cells = [np.asarray(Image.fromarray(c).resize((128, 128), Image.Resampling.NEAREST))
                 for c in cells]
        rows.append(np.concatenate(cells, axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def train(minutes: float, out_root: Path, seed: int = 0, threads: int = 1) -> dict[str, float]:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_set = hr_images(TRAIN_SEED, 512)
    held_out = hr_images(HELD_OUT_SEED, 64)
    model = CompactSR(num_feat=32, num_conv=6, upscale=2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    deadline = time.monotonic() + minutes * 60
    step = 0
    start = time.monotonic()
    while time.monotonic() < deadline:
        hr = random_patches(train_set, rng, 16)
        lr = np.stack([degrade(p) for p in hr])
        frac = (time.monotonic() - start) / (minutes * 60)
        for g in opt.param_groups:
            g["lr"] = 2e-3 * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(frac, 1.0))))
        loss = torch.nn.functional.l1_loss(model(to_t(lr)), to_t(hr))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 200 == 0:
            print(f"step {step}  L1 {loss.item():.4f}  {time.monotonic() - start:.0f}s",
                  flush=True)
    scores = evaluate(model, held_out)
    scores["steps"] = step
    print(json.dumps(scores), flush=True)
    folder = out_root / NAME
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"),
              metadata={"architecture": "SRVGGNetCompact", "scale": "2"})
    (folder / "studio.json").write_text(json.dumps({
        "kind": "upscaler", "family": "compact", "scale": 2, "architecture": "SRVGGNetCompact",
        "num_feat": 32, "num_conv": 6, "evaluation": scores}, indent=2) + "\n")
    figure(model, held_out, folder / "before_after.png")
    return scores


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--minutes", type=float, default=6.0)
    p.add_argument("--out", type=Path, default=REPO_ROOT / "resources" / "models")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="1 is fastest on a shared 2-core machine")
    a = p.parse_args(argv)
    train(a.minutes, a.out, a.seed, a.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
