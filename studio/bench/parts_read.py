"""Peak memory of loading a lone SD 3.x or Flux transformer file that holds other parts (its
VAE, all-in-one text encoders), each part read on its own against every tensor read for each
part (as before): ``python -m studio.bench.parts_read FILE [--rounds 2]``.

Each load runs in its own process (its peak RSS, ``ru_maxrss``, is its own), the two ways
interleaved (before, now, now, before, ...); the table gives each run and the ratio of the
medians. The file is any Flux or SD 3.x file Latent Studio lists (an SD 3.5 file with its VAE
inside, SD 3 Medium's ``incl_clips``, a ComfyUI Flux checkpoint).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from studio.bench.measure import median


def _child(mode: str, path: str) -> dict[str, float]:
    """Load ``path`` in float32 once: ``mode`` "now" reads each part's tensors only,
    "before" every tensor for each part. Prints one JSON line."""
    import resource

    import studio.engine  # noqa: F401  (its thread policy must be set before torch loads)

    if mode == "before":
        from studio.engine.models import loading

        own = loading._reading_in
        loading._reading_in = lambda dtype, cancel, keep=None: own(dtype, cancel, None)
    import torch

    from studio.engine.models.transformer_files import load_transformer_file

    start = time.perf_counter()
    load_transformer_file(Path(path), torch.float32)
    return {"seconds": time.perf_counter() - start,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run(path: Path, rounds: int = 2) -> dict[str, list[dict[str, float]]]:
    order = [m for r in range(rounds) for m in (("before", "now") if r % 2 == 0
                                                else ("now", "before"))]
    out: dict[str, list[dict[str, float]]] = {"before": [], "now": []}
    for mode in order:
        done = subprocess.run([sys.executable, "-m", "studio.bench.parts_read", "--child",
                               mode, str(path)], capture_output=True, text=True, check=True)
        out[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.bench.parts_read",
                                     description=__doc__)
    parser.add_argument("file", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", choices=("before", "now"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, str(args.file))))
        return 0
    runs = run(args.file, args.rounds)
    print(f"{args.file.name} ({args.file.stat().st_size / 1e9:.2f} GB), float32, "
          f"{args.rounds} interleaved rounds")
    print(f"{'':14s}{'every tensor each read (before)':>34s}{'each part its own (now)':>28s}"
          f"{'ratio':>8s}")
    for key, label, unit in (("peak_rss_mb", "peak RSS", "MB"), ("seconds", "load", "s")):
        before = [r[key] for r in runs["before"]]
        now = [r[key] for r in runs["now"]]
        print(f"{label:14s}{', '.join(f'{v:.0f}' if unit == 'MB' else f'{v:.2f}' for v in before) + ' ' + unit:>34s}"
              f"{', '.join(f'{v:.0f}' if unit == 'MB' else f'{v:.2f}' for v in now) + ' ' + unit:>28s}"
              f"{median(now) / median(before):8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
