"""The procedural portrait generator: determinism, labels, captions, coverage."""

from __future__ import annotations

import numpy as np

from studio.core.portraits.attributes import (
    BACKGROUNDS,
    CLASS_ATTRIBUTES,
    GLASSES,
    HAIR_COLOURS,
    SKIN_TONES,
)
from studio.core.portraits.render import caption_for, make_batch, render_sample


def test_same_seed_same_pixels_and_captions() -> None:
    a = make_batch(seed=7, start=10, n=6)
    b = make_batch(seed=7, start=10, n=6)
    assert np.array_equal(a.images, b.images)
    assert a.captions == b.captions
    # A slice of the stream is the same sample whatever the batch boundaries.
    image, attrs, caption = render_sample(7, 13)
    assert np.array_equal(image, a.images[3]) and caption == a.captions[3]
    assert attrs == a.attributes[3]


def test_other_seed_other_samples() -> None:
    a = make_batch(seed=1, start=0, n=8)
    b = make_batch(seed=2, start=0, n=8)
    assert not np.array_equal(a.images, b.images)


def test_images_are_64px_rgb_and_not_flat() -> None:
    batch = make_batch(seed=0, start=0, n=8)
    assert batch.images.shape == (8, 64, 64, 3) and batch.images.dtype == np.uint8
    assert all(img.std() > 20 for img in batch.images)


def test_caption_names_every_labelled_attribute() -> None:
    batch = make_batch(seed=3, start=0, n=200)
    for attrs, caption in zip(batch.attributes, batch.captions, strict=True):
        assert f"{attrs.hair} hair" in caption
        assert f"on a {attrs.background} background" in caption
        glasses = "no glasses" if attrs.glasses == "none" else f"{attrs.glasses} glasses"
        assert glasses in caption
        assert ("smiling" in caption) == (attrs.smile_bin == "smiling")
        assert ("frowning" in caption) == (attrs.smile_bin == "frowning")
        if "skin" in caption:
            assert f"{attrs.skin} skin" in caption
        # Exactly one colour word before "hair" and one before "background".
        assert sum(f"{h} hair" in caption for h in HAIR_COLOURS) == 1
        assert sum(f"{b} background" in caption for b in BACKGROUNDS) == 1


def test_canonical_caption() -> None:
    batch = make_batch(seed=0, start=0, n=50)
    attrs = next(a for a in batch.attributes if a.smile_bin == "smiling" and a.glasses == "round")
    assert caption_for(attrs) == (
        f"a smiling person with {attrs.hair} hair and round glasses "
        f"on a {attrs.background} background")


def test_labels_match_attributes_and_every_value_appears() -> None:
    batch = make_batch(seed=5, start=0, n=400)
    for name, values in CLASS_ATTRIBUTES.items():
        decoded = [values[i] for i in batch.labels[name]]
        assert decoded == [getattr(a, name) for a in batch.attributes]
        assert set(decoded) == set(values), name
    assert len(HAIR_COLOURS) >= 6 and len(GLASSES) == 3 and len(BACKGROUNDS) >= 8
    assert len(SKIN_TONES) >= 3
    assert batch.smile.min() < -0.8 and batch.smile.max() > 0.8


def test_attributes_are_visible_in_pixels() -> None:
    # The background colour fills the top corners; a different background changes them.
    batch = make_batch(seed=11, start=0, n=300)
    corners = batch.images[:, :4, :4].reshape(len(batch.images), -1, 3).mean(1)
    bg = batch.labels["background"]
    means = np.stack([corners[bg == k].mean(0) for k in range(len(BACKGROUNDS))])
    dists = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert dists[~np.eye(len(BACKGROUNDS), dtype=bool)].min() > 40


def test_a_small_change_of_smile_shows_in_the_image() -> None:
    """The smile label is in the pixels: 0.02 apart, the mouth differs (it was drawn on whole
    pixels, and smiles up to 0.07 apart came out the same, so no classifier could tell the
    caption's smile bins apart near their edges)."""
    from dataclasses import replace

    from studio.core.portraits.attributes import SMILE_THRESHOLD, sample_attributes
    from studio.core.portraits.render import render_portrait

    for i in range(12):
        attrs = sample_attributes(np.random.default_rng(i))
        images = [render_portrait(replace(attrs, smile=s), np.random.default_rng((5, i)))
                  for s in (SMILE_THRESHOLD - 0.01, SMILE_THRESHOLD + 0.01)]
        assert not np.array_equal(images[0], images[1])
