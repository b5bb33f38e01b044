"""What one save costs as the undo history grows: after 1, 100 and 1000 edits.

Each edit is a brush stroke (a 128x128 ``PaintPixels`` diff) on a 1024x1024 layer; the project
is saved in place after every edit, as autosave does. The figure is the time of the save
that follows edit N. Two ways side by side in one run, on the same history:

* ``rehash``: every array of the history hashed again at each save (the old way:
  ``blobs.HASHES`` disabled);
* ``cached``: the hashes of the history's frozen diffs remembered, so a save hashes and
  writes what changed.

Run: ``python -m studio.bench.save_cost [--edits 1000] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from studio.bench.measure import interleaved, median

CHECKPOINTS = (1, 100, 1000)
STROKE = 128  # the box a brush stroke touches, in pixels


def _history(edits: int, side: int = 1024):  # type: ignore[no-untyped-def]
    """A document, its stack, and a function that makes one more stroke."""
    from studio.core.document.edits import AddLayer, PaintPixels
    from studio.core.document.layers import Document, Layer
    from studio.core.document.undo import UndoStack

    rng = np.random.default_rng(0)
    doc = Document(side, side)
    stack = UndoStack(doc, memory_limit=0)
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    base = np.empty((side, side, 4), np.uint8)
    base[..., 0], base[..., 1] = ramp[None, :], ramp[:, None]
    base[..., 2], base[..., 3] = 128, 255
    stack.push(AddLayer(Layer(name="paint", pixels=base)))
    layer_id = doc.layers[0].id
    yy, xx = np.mgrid[:STROKE, :STROKE]
    dab = ((yy - STROKE / 2) ** 2 + (xx - STROKE / 2) ** 2) < (STROKE / 2) ** 2

    def stroke() -> None:  # a round dab of one colour, like a brush
        x, y = (int(v) for v in rng.integers(0, side - STROKE, 2))
        patch = doc.layers[0].pixels[y:y + STROKE, x:x + STROKE].copy()
        patch[dab] = (*rng.integers(0, 256, 3), 255)
        stack.push(PaintPixels.from_patch(doc, layer_id, x, y, patch))

    return doc, stack, stroke


def measure(checkpoints: tuple[int, ...] = CHECKPOINTS, repeats: int = 3) -> list[dict[str, float]]:
    """Seconds of one save after each checkpoint's number of edits, both ways."""
    from studio.core.project.blobs import HASHES
    from studio.core.project.store import ProjectStore

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.studio"
        doc, stack, stroke = _history(max(checkpoints))
        ProjectStore.save(path, doc, stack)
        done = 0
        for target in checkpoints:
            while done < target:  # build the history; save now and then, as autosave would
                stroke()
                done += 1
                if done % 50 == 0:
                    ProjectStore.save(path, doc, stack)
            ProjectStore.save(path, doc, stack)

            def save(cached: bool) -> None:
                stroke()  # what a save after one more stroke costs
                HASHES.enabled = cached
                try:
                    ProjectStore.save(path, doc, stack)
                finally:
                    HASHES.enabled = True

            times = interleaved({"rehash": lambda: save(False), "cached": lambda: save(True)},
                                repeats=repeats)
            done += 2 * (repeats + 1)
            rows.append({"edits": target, "rehash": median(times["rehash"]),
                         "cached": median(times["cached"]),
                         "file_mb": path.stat().st_size / 1e6})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, nargs="*", default=list(CHECKPOINTS))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = measure(tuple(sorted(args.edits)), args.repeats)
    print(f"{'edits':>6} {'rehash ms':>10} {'cached ms':>10} {'ratio':>6} {'file MB':>8}")
    for row in rows:
        print(f"{row['edits']:>6} {row['rehash'] * 1e3:>10.1f} {row['cached'] * 1e3:>10.1f} "
              f"{row['rehash'] / row['cached']:>6.2f} {row['file_mb']:>8.1f}")
    print(f"(one {STROKE}x{STROKE} stroke on a 1024x1024 layer before each save; "
          f"{time.perf_counter() - start:.0f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
