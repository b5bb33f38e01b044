"""Shared helpers of the training commands: seeding, the cached data set, saving modules."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from studio.core.portraits.attributes import CLASS_ATTRIBUTES
from studio.core.portraits.render import DATA_VERSION, make_batch
from studio.engine.nets.tensors import load_state

TRAIN_SEED = 0  # data seed of every training set
HELD_OUT_SEED = 1_000_003  # data seed of every evaluation (never trained on)
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "resources" / "models"
CACHE_DIR = Path(os.environ.get("STUDIO_TRAINING_CACHE", "/tmp/studio-training-cache"))


def setup_torch(seed: int, threads: int | None = None) -> None:
    """Seed torch and numpy and pin the thread count (2: the reference machine has 2 cores).

    ``STUDIO_TRAIN_THREADS`` overrides it (1 per process when several trainings share the CPU).
    """
    torch.set_num_threads(threads or int(os.environ.get("STUDIO_TRAIN_THREADS", "2")))
    torch.manual_seed(seed)
    np.random.seed(seed)


@dataclass(frozen=True)
class ArrayDataset:
    """A materialised slice of the portrait stream."""

    images: np.ndarray  # (n, 64, 64, 3) uint8
    labels: dict[str, np.ndarray]
    smile: np.ndarray
    captions: list[str]

    def __len__(self) -> int:
        return len(self.images)


def _chunk(args: tuple[int, int, int]) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray,
                                                 list[str]]:
    seed, start, n = args
    b = make_batch(seed, start, n)
    return b.images, b.labels, b.smile, b.captions


def build_dataset(seed: int, n: int, workers: int = 2) -> ArrayDataset:
    """Render samples ``0 .. n - 1`` of the data set ``seed`` (cached on disk)."""
    path = CACHE_DIR / f"portraits_v{DATA_VERSION}_seed{seed}_n{n}.npz"
    if path.exists():
        z = np.load(path, allow_pickle=False)
        labels = {k: z[f"label_{k}"] for k in CLASS_ATTRIBUTES}
        return ArrayDataset(z["images"], labels, z["smile"], [str(c) for c in z["captions"]])
    step = 2000
    jobs = [(seed, s, min(step, n - s)) for s in range(0, n, step)]
    if workers > 1 and len(jobs) > 1:
        with get_context("fork").Pool(workers) as pool:
            parts = pool.map(_chunk, jobs)
    else:
        parts = [_chunk(j) for j in jobs]
    images = np.concatenate([p[0] for p in parts])
    labels = {k: np.concatenate([p[1][k] for p in parts]) for k in CLASS_ATTRIBUTES}
    smile = np.concatenate([p[2] for p in parts])
    captions = [c for p in parts for c in p[3]]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, images=images, smile=smile, captions=np.array(captions),
             **{f"label_{k}": v for k, v in labels.items()})
    tmp.replace(path)
    return ArrayDataset(images, labels, smile, captions)


def batches(n: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """Endless shuffled index batches over ``range(n)`` (epoch after epoch)."""
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(n)
        for s in range(0, n - batch_size + 1, batch_size):
            yield perm[s:s + batch_size]


def save_module(module: torch.nn.Module, config: dict[str, Any], out_dir: Path,
                name: str = "model", half: bool = True) -> Path:
    """Save ``module`` as ``<name>.safetensors`` (fp16 by default) plus ``config.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous()
             for k, v in module.state_dict().items()}
    path = out_dir / f"{name}.safetensors"
    save_file(state, str(path))
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return path


def save_pretrained_folder(out_dir: Path, save: Callable[[Path], None], studio: dict[str, Any],
                           keep: tuple[str, ...] = ("README.md", "contact_sheet.png",
                                                    "training.json", "eval.json")) -> None:
    """Write a diffusers folder plus ``studio.json`` atomically (beside it, then renamed).

    ``save(tmp)`` writes the model's own files (``save_pretrained``); the configs and the
    pipeline index lose the training machine's ``_name_or_path``; the files named in ``keep`` that the old folder had
    (card, contact sheet, records) are carried into the new one.
    """
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save(tmp)
    for config in [*tmp.glob("config.json"), *tmp.glob("model_index.json"),
                   *tmp.glob("*/config.json")]:
        data = json.loads(config.read_text())
        if data.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    (tmp / "studio.json").write_text(json.dumps(studio, indent=2) + "\n")
    for name in keep:
        if (out_dir / name).exists() and not (tmp / name).exists():
            shutil.copy2(out_dir / name, tmp / name)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)


def ema_update(ema: list[torch.Tensor], params: list[torch.Tensor], decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * params``, in place."""
    with torch.no_grad():
        torch._foreach_lerp_(ema, params, 1.0 - decay)


@contextlib.contextmanager
def ema_weights(params: list[torch.Tensor], ema: list[torch.Tensor]) -> Iterator[None]:
    """``params`` hold the ``ema`` values inside the block (to save them) and their own
    values again after it (training goes on)."""
    live = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, e in zip(params, ema, strict=True):
            p.copy_(e)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, v in zip(params, live, strict=True):
                p.copy_(v)


class Stopwatch:
    """Wall-clock budget of one training run."""

    def __init__(self, minutes: float) -> None:
        self.start = time.monotonic()
        self.budget = minutes * 60.0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    @property
    def fraction(self) -> float:
        return min(1.0, self.elapsed / self.budget)

    def done(self) -> bool:
        return self.elapsed >= self.budget


def write_training_record(out_dir: Path, record: dict[str, Any]) -> None:
    """Append-merge ``training.json`` (command, seconds, steps, final losses) of a model."""
    path = out_dir / "training.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    old.update(record)
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(old, indent=2) + "\n")


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def resume_from(folder: Path, module: torch.nn.Module | None = None,
                weights: str = "model.safetensors") -> dict[str, Any]:
    """Load the weights saved in ``folder`` into ``module``; return its training record."""
    if module is not None:
        module.load_state_dict(load_state(folder / weights))
    return json.loads((folder / "training.json").read_text())


def resume_seed(seed: int, previous: dict[str, Any]) -> int:
    """The seed of a resumed run: other batches and noise than each run before it."""
    return seed + 1000 * (1 + str(previous.get("command", "")).count("--resume"))


def chained_record(previous: dict[str, Any], command: str, seconds: float, steps: int,
                   steps_key: str = "steps") -> dict[str, Any]:
    """Command, seconds and steps of a run, added to those of the runs it resumed."""
    chain = f"{previous['command']} && {command}" if previous.get("command") else command
    return {"command": chain, "seconds": previous.get("seconds", 0) + round(seconds),
            steps_key: previous.get(steps_key, 0) + steps}


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor,
                   clip: list[torch.Tensor] | None = None) -> None:
    """Backward and step, clipping the gradient norm of ``clip`` at 1 first."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(clip, 1.0)
    opt.step()
