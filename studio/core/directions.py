"""One direction builder for every latent space (pure numpy).

Given example vectors of one space (a VAE latent, a GAN ``z``, a pooled text embedding) and
whether each has an attribute, build the direction that adds the attribute:

* ``"mean"``: the difference of the class means (White 2016, "Sampling generative networks");
* ``"logistic"`` / ``"svm"``: the normal of a linear boundary between the classes
  (InterFaceGAN, Shen et al. 2020), fitted by Newton steps with an L2 penalty;
* ``"pca"``: a principal component of the examples (GANSpace, Härkönen et al. 2020), signed
  so that it points towards the examples with the attribute when labels are given.

Every direction is as long as the difference of the class means: at value 1 a typical
example without the attribute moves as far as the typical one with it lies away, and value 0
adds exactly nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

METHODS = ("mean", "logistic", "svm", "pca")


@dataclass(frozen=True)
class Direction:
    """A direction in one latent space; ``vector`` is the step of value 1."""

    vector: np.ndarray = field(repr=False)
    method: str = "mean"
    space: str = ""
    attribute: str = ""

    @property
    def unit(self) -> np.ndarray:
        norm = float(np.linalg.norm(self.vector))
        return self.vector / norm if norm > 0 else self.vector

    def to_dict(self) -> dict[str, object]:
        return {"vector": [float(v) for v in self.vector], "method": self.method,
                "space": self.space, "attribute": self.attribute}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Direction:
        vec = np.asarray(data["vector"], dtype=np.float32)
        return cls(vec, str(data.get("method", "mean")), str(data.get("space", "")),
                   str(data.get("attribute", "")))


def _split(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError("examples must be (n, dim) with one label each")
    if y.all() or not y.any():
        raise ValueError("a direction needs examples with and without the attribute")
    return x[y], x[~y]


def mean_difference(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean of the positive examples minus the mean of the negative ones."""
    pos, neg = _split(x, labels)
    return pos.mean(0) - neg.mean(0)


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mu = x.mean(0)
    sd = x.std(0) + 1e-8
    return (x - mu) / sd, mu, sd


def linear_boundary(x: np.ndarray, labels: np.ndarray, method: str = "logistic",
                    l2: float = 1e-2, iters: int = 25) -> np.ndarray:
    """Unit normal of a linear boundary separating the classes (points to the positives).

    ``method="logistic"`` fits logistic regression, ``"svm"`` a linear L2-SVM (squared
    hinge), both by Newton's method on standardised features.
    """
    _split(x, labels)  # validates
    xs, _mu, sd = _standardise(np.asarray(x, dtype=np.float64))
    y = np.asarray(labels).astype(bool)
    n, dim = xs.shape
    a = np.hstack([xs, np.ones((n, 1))])
    w = np.zeros(dim + 1)
    reg = l2 * n * np.eye(dim + 1)
    reg[-1, -1] = 0.0
    t = np.where(y, 1.0, -1.0)
    for _ in range(iters):
        m = a @ w
        if method == "logistic":
            p = 1.0 / (1.0 + np.exp(-np.clip(m, -30, 30)))
            grad = a.T @ (p - y) + reg @ w
            hess = (a * (p * (1 - p))[:, None]).T @ a + reg + 1e-9 * np.eye(dim + 1)
        elif method == "svm":
            margin = 1.0 - t * m
            active = margin > 0
            grad = -2.0 * a[active].T @ (t[active] * margin[active]) + reg @ w
            hess = 2.0 * a[active].T @ a[active] + reg + 1e-9 * np.eye(dim + 1)
        else:
            raise ValueError(f"unknown boundary method {method!r}")
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    normal = w[:dim] / sd  # back to the original coordinates
    return normal / (np.linalg.norm(normal) + 1e-12)


def principal_directions(x: np.ndarray, k: int = 10) -> np.ndarray:
    """The first ``k`` principal components (rows, unit norm) of the examples (GANSpace)."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(0)
    _u, _s, vt = np.linalg.svd(centred, full_matrices=False)
    return vt[:k]


def _pca_for(x: np.ndarray, labels: np.ndarray, k: int = 20) -> np.ndarray:
    """The principal component that best separates the classes, signed towards them."""
    comps = principal_directions(x, k)
    diff = mean_difference(x, labels)
    scores = comps @ diff
    best = int(np.argmax(np.abs(scores)))
    return comps[best] * np.sign(scores[best] or 1.0)


def orthogonalize(vector: np.ndarray, others: Sequence[np.ndarray]) -> np.ndarray:
    """``vector`` with its components along ``others`` removed (conditional editing).

    Keeps the length along the original direction's own axis meaningful: the result is
    rescaled so that its dot product with the unit of ``vector`` is unchanged.
    """
    v = np.asarray(vector, dtype=np.float64)
    basis: list[np.ndarray] = []
    for o in others:
        o = np.asarray(o, dtype=np.float64)
        for b in basis:
            o = o - (o @ b) * b
        norm = np.linalg.norm(o)
        if norm > 1e-9:
            basis.append(o / norm)
    out = v.copy()
    for b in basis:
        out = out - (out @ b) * b
    unit = v / (np.linalg.norm(v) + 1e-12)
    along = out @ unit
    if abs(along) > 1e-9:
        out = out * ((v @ unit) / along)
    return out


def build_direction(x: np.ndarray, labels: np.ndarray, method: str = "mean",
                    space: str = "", attribute: str = "",
                    condition_on: Sequence[np.ndarray] = ()) -> Direction:
    """The direction adding an attribute, as long as the difference of the class means.

    Parameters
    ----------
    x
        Example vectors (n, dim) in one latent space.
    labels
        Whether each example has the attribute (n,) bool.
    method
        ``"mean"``, ``"logistic"``, ``"svm"`` or ``"pca"``.
    condition_on
        Directions of attributes to keep: their components are projected out.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} (one of {', '.join(METHODS)})")
    diff = mean_difference(x, labels)
    if method == "mean":
        vec = diff
    else:
        unit = _pca_for(x, labels) if method == "pca" else linear_boundary(x, labels, method)
        # As long as the mean difference: a boundary normal is the better-disentangled
        # direction, but the class means' gap along it alone is too short a step to edit.
        vec = unit * float(np.linalg.norm(diff)) * float(np.sign(unit @ diff) or 1.0)
    if len(condition_on):
        vec = orthogonalize(vec, condition_on)
    return Direction(vec.astype(np.float32), method, space, attribute)


def apply_directions(z: np.ndarray, steps: Sequence[tuple[np.ndarray, float]]) -> np.ndarray:
    """``z`` moved by ``value * vector`` for each step; values of 0 leave it bit for bit."""
    out = np.array(z, copy=True)
    for vector, value in steps:
        if value != 0:
            out = out + np.asarray(value, dtype=out.dtype) * np.asarray(vector, dtype=out.dtype)
    return out
