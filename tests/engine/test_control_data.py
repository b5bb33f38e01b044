"""The embedded control model's data and measures (studio.training.train_control): the line
art is the renderer's own drawing of the same portrait, and the layout reader that judges
the model reads rendered portraits right (so its figures measure the model, not itself)."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.portraits.render import render_sample
from studio.training.common import HELD_OUT_SEED
from studio.training.train_control import (
    SHAPES,
    _alternatives,
    edge_f1,
    edge_map,
    read_layout,
    sample,
)

# Part of the model-card tier: it checks the measures of studio-tiny-control's card (runs
# with --full, or when studio/training/ or the shipped weights change).
pytestmark = pytest.mark.models


def test_the_line_art_is_drawn_from_the_same_portrait():
    for index in range(4):
        colour, lines, attrs, style = sample(HELD_OUT_SEED, index)
        image, truth, _ = render_sample(HELD_OUT_SEED, index)
        assert np.array_equal(colour, image) and attrs == truth
        assert style in (0, 1, 2)
        # White lines on black, where the portrait's own edges are.
        assert 0.04 < (lines > 127).mean() < 0.3
        assert edge_f1(edge_map(colour), lines > 127) > 0.8
    # Another hair style changes the lines, not the rest of the drawing's randomness.
    _, short, _, _ = sample(HELD_OUT_SEED, 0, style=0)
    _, long, _, _ = sample(HELD_OUT_SEED, 0, style=1)
    assert not np.array_equal(short, long)
    assert np.array_equal(short[:20], long[:20])  # the crown of the head is the same


def test_the_layout_reader_reads_rendered_portraits_right():
    right_style = right_shape = seen = 0
    for index in range(30):
        colour, _, attrs, style = sample(HELD_OUT_SEED, index)
        if attrs.glasses == "none":
            continue
        styles, shapes = _alternatives(HELD_OUT_SEED, index, style, attrs.glasses)
        right_style += read_layout(colour, styles) == style
        right_shape += read_layout(colour, shapes, by="dark") == SHAPES.index(attrs.glasses)
        seen += 1
    assert seen >= 10 and right_style == seen and right_shape == seen
