"""Contact sheets sized to their images and captioned with the prompt."""

from __future__ import annotations

import numpy as np

from studio.core.formats.contact_sheet import caption_with_prompt, contact_sheet
from studio.core.jobs.request import GenerationRequest


def _portraits(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(40, 255, (64, 64, 3), dtype=np.uint8) for _ in range(n)]


def test_small_images_fill_their_cells_instead_of_a_quarter_of_them():
    images = _portraits(4)
    sheet = contact_sheet(images, padding=8, background=(0, 0, 0))
    # 2 x 2 cells of 192 px (64 px enlarged 3x, pixels kept sharp) plus the padding
    assert sheet.shape == (2 * 200 + 8, 2 * 200 + 8, 3)
    cell = sheet[8:8 + 192, 8:8 + 192]
    assert (cell.max(axis=2) > 0).mean() == 1.0  # the image fills the whole cell
    assert np.array_equal(cell[::3, ::3], images[0])  # each pixel drawn as a 3x3 block


def test_big_images_are_scaled_down_to_the_largest_cell():
    big = np.full((1024, 512, 3), 200, np.uint8)
    sheet = contact_sheet([big, big], padding=0)
    assert sheet.shape == (256, 2 * 128, 3)


def test_caption_holds_the_prompt_then_the_settings():
    request = GenerationRequest("a person with red hair on a blue background", seed=3,
                                steps=25, guidance=5.0, scheduler="Euler")
    assert caption_with_prompt(request) == ("a person with red hair on a blue background\n"
                                            "seed 3 · Euler · 25 steps · CFG 5")
    plain = contact_sheet(_portraits(1), padding=4, background=(0, 0, 0))
    sheet = contact_sheet(_portraits(1), [caption_with_prompt(request)], caption_lines=4,
                          padding=4, background=(0, 0, 0), text_color=(255, 255, 255))
    text = sheet[4 + 192:, :]
    rows = np.flatnonzero(text.max(axis=(1, 2)) > 128)
    assert sheet.shape[0] > plain.shape[0] and rows.size
    # Two paragraphs: the prompt's lines, then the settings on a line of their own.
    gaps = np.flatnonzero(np.diff(rows) > 1)
    assert len(gaps) >= 1
