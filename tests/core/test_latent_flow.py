"""Curved latent slider paths (``studio.core.sliders.latent_flow``) on small random readers."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from studio.core.sliders.latent_flow import LatentAttributeReader, flow

CLASSES = {"hair": ("black", "red", "blonde"), "glasses": ("none", "round"),
           "background": ("white", "grey", "blue")}
HEADS = (("hair", 3), ("glasses", 2), ("background", 3), ("smile", 1))


def _reader(seed: int = 0, dim: int = 12, hidden: int = 24) -> LatentAttributeReader:
    rng = np.random.default_rng(seed)
    sizes = [dim, hidden, hidden, sum(n for _, n in HEADS)]
    weights = tuple(rng.standard_normal((o, i)) / np.sqrt(i) for i, o in pairwise(sizes))
    biases = tuple(0.1 * rng.standard_normal(o) for o in sizes[1:])
    return LatentAttributeReader(weights, biases, HEADS)


def _log_probs(reader: LatentAttributeReader, z: np.ndarray, kind: str) -> np.ndarray:
    return np.log(reader.read(z)[kind])


def test_the_jacobian_matches_finite_differences():
    reader = _reader()
    z = np.random.default_rng(1).standard_normal((3, reader.dim))
    _out, jac = reader.forward(z, jacobian=True)
    eps = 1e-6
    numeric = np.stack([(reader.forward(z + eps * e)[0] - reader.forward(z - eps * e)[0])
                        / (2 * eps) for e in np.eye(reader.dim)], axis=-1)
    assert jac is not None and jac.shape == numeric.shape
    np.testing.assert_allclose(jac, numeric, atol=1e-7)


def test_value_zero_and_zero_length_leave_the_latent_bit_for_bit():
    reader = _reader()
    z = np.random.default_rng(2).standard_normal((4, reader.dim)).astype(np.float32)
    assert np.array_equal(flow(z, reader, "smile", 0.0, 1.0, CLASSES), z)
    moved = flow(z, reader, "hair=red", 1.0, np.array([1.0, 0.0, 1.0, 0.0]), CLASSES)
    assert np.array_equal(moved[[1, 3]], z[[1, 3]])
    assert not np.array_equal(moved[[0, 2]], z[[0, 2]])
    assert moved.dtype == z.dtype


@pytest.mark.parametrize("attribute", ["hair=red", "glasses", "smile"])
def test_the_path_raises_the_target_and_keeps_the_others(attribute):
    """The reader's target score rises with the value (falls below 0) while the other
    attributes' readings stay, much closer than along the plain target gradient."""
    reader = _reader()
    z = np.random.default_rng(3).standard_normal((16, reader.dim))
    kind = attribute.partition("=")[0]
    others = [k for k in ("hair", "glasses", "background") if k != kind]

    def target(x: np.ndarray) -> np.ndarray:
        r = reader.read(x)
        if attribute == "smile":
            return r["smile"]
        p = r["glasses"][:, 1] if attribute == "glasses" else r["hair"][:, 1]
        return np.log(p) - np.log1p(-p)

    def drift(x: np.ndarray) -> float:
        d = [np.abs(_log_probs(reader, x, k) - _log_probs(reader, z, k)).max() for k in others]
        if kind != "smile":
            d.append(np.abs(reader.read(x)["smile"] - reader.read(z)["smile"]).max())
        return float(max(d))

    scores = [target(flow(z, reader, attribute, v, 1.0, CLASSES)).mean()
              for v in (-2.0, -1.0, 0.0, 1.0, 2.0)]
    assert all(a < b for a, b in pairwise(scores)), scores
    kept = flow(z, reader, attribute, 2.0, 1.0, CLASSES)

    # The same path with nothing kept: a plain ascent.
    plain = flow(z, reader, attribute, 2.0, 1.0, CLASSES, keep_others=False)
    assert drift(kept) < 0.25 * drift(plain), (drift(kept), drift(plain))
    # The path is |value| * length long; it bends, so the latent lands a little nearer.
    chord = np.linalg.norm(kept - z, axis=1)
    assert np.all(chord <= 2.0 + 1e-9) and np.all(chord > 1.5)


def test_a_pixel_metric_steers_the_path_away_from_costly_directions():
    """With the generator's pixel metric the path moves little along directions that
    change many pixels, and still raises the target while keeping the others."""
    import dataclasses

    reader = _reader()
    z = np.random.default_rng(4).standard_normal((8, reader.dim))
    costly = np.zeros(reader.dim)
    costly[:4] = 1.0  # the first four axes redraw the whole image
    metric = np.diag(1.0 + 400.0 * costly)
    weighted = dataclasses.replace(reader, pixel_metric=metric)
    assert weighted.whitening is not None and reader.whitening is None
    plain_path = flow(z, reader, "hair=red", 1.0, 1.0, CLASSES) - z
    cheap_path = flow(z, weighted, "hair=red", 1.0, 1.0, CLASSES) - z

    def share(d: np.ndarray) -> float:
        return float((np.linalg.norm(d[:, :4], axis=1) / np.linalg.norm(d, axis=1)).mean())

    assert share(cheap_path) < 0.5 * share(plain_path), (share(cheap_path), share(plain_path))

    def red(x: np.ndarray) -> np.ndarray:
        return reader.read(x)["hair"][:, 1]

    assert np.all(red(z + cheap_path) > red(z))
