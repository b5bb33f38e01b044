"""Issue 29, point 4: a result for a large region is resized into its layer a strip of rows
at a time (off the GUI thread, no call holding the GIL for long); grown, Pillow's row pass
(its coefficients are computed with the GIL held) is made once, not once a strip. The
layer is what one resize of the whole image gives."""

from __future__ import annotations

import numpy as np
from PIL import Image

from studio.core.document import edits


def one_resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], 2)
    return np.asarray(Image.fromarray(rgba).resize((width, height), Image.Resampling.LANCZOS))


def test_a_large_result_is_what_one_resize_gives_when_it_grows_or_shrinks(monkeypatch):
    rows_made: list[tuple[int, int]] = []
    resize = Image.Image.resize

    def counted(self, size, *args, **kwargs):
        if kwargs.get("box") is None and size[1] == self.height:
            rows_made.append(size)  # a row pass alone
        return resize(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", counted)
    rng = np.random.default_rng(5)
    for shape, (width, height) in (((40, 36, 3), (2100, 2300)),  # a result grown (usual)
                                   ((2150, 2200, 3), (2100, 2050))):  # shrunk (rare)
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        assert width * height > edits._STRIPS_FROM
        rows_made.clear()
        got = edits.generated_pixels(image, width, height)
        assert got.shape == (height, width, 4)
        grown = width >= shape[1] and height >= shape[0]
        assert rows_made == ([(width, shape[0])] if grown else [])  # once, not once a strip
        if grown:  # (shrunk, each strip is resized whole, as before this change)
            diff = np.abs(got.astype(np.int16) - one_resize(image, width, height))
            assert int(diff.max()) <= 1  # no seam between the strips
