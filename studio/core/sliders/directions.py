"""One direction builder for every latent space (pure numpy).

Given example vectors of one space (a VAE latent, a GAN ``z``, a pooled text embedding) and
whether each has an attribute, build the direction that adds the attribute:

* ``"mean"``: the difference of the class means (White 2016, "Sampling generative networks");
* ``"logistic"`` / ``"svm"``: the normal of a linear boundary between the classes
  (InterFaceGAN, Shen et al. 2020), fitted by Newton steps with an L2 penalty;
* ``"pca"``: a principal component of the examples (GANSpace, Härkönen et al. 2020), signed
  so that it points towards the examples with the attribute when labels are given;
* ``class_direction``: for one value of a categorical attribute (hair colour), a step per
  source class, from the mean of the latent's own class to the mean of the target class
  (latent analogies, as in White 2016): one vector for every class cannot turn both black
  and white hair blonde, since "blonde minus the rest" is mostly "lighter". The latent's
  class is read by linear discriminant analysis in the same space.

Every direction is as long as the difference of the class means: at value 1 a typical
example without the attribute moves as far as the typical one with it lies away, and value 0
adds exactly nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

METHODS = ("mean", "logistic", "svm", "pca")
# Latent sliders only (the engine builds it from class labels, see ``class_direction``):
# categorical attributes step from the latent's own class, binary ones use "mean".
CLASS_METHOD = "class"


@dataclass(frozen=True)
class SourceClasses:
    """Linear discriminant of a categorical attribute's classes: ``argmax(z @ w.T + b)``."""

    names: tuple[str, ...]
    w: np.ndarray = field(repr=False)  # (k, dim)
    b: np.ndarray = field(repr=False)  # (k,)

    def predict(self, z: np.ndarray) -> np.ndarray:
        """Class index of each latent (n,)."""
        return np.asarray(np.atleast_2d(z) @ self.w.T + self.b).argmax(1)

    def to_dict(self) -> dict[str, object]:
        return {"names": list(self.names), "w": self.w.astype(float).tolist(),
                "b": self.b.astype(float).tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> SourceClasses:
        return cls(tuple(str(n) for n in data["names"]),  # type: ignore[attr-defined]
                   np.asarray(data["w"], dtype=np.float64), np.asarray(data["b"], dtype=np.float64))


@dataclass(frozen=True)
class Direction:
    """A direction in one latent space; ``vector`` is the step of value 1.

    A class direction also has ``from_class``: the step of value 1 for a latent of each
    other class (``source`` tells which class a latent is); ``vector`` serves latents that
    already have the target class.

    A colour direction (see ``subspace_direction``) has ``basis``, the few dimensions in
    which that kind of colour varies, and ``anchor``, where the target colour lies in them:
    above 0 the slider moves a latent's component in ``basis`` towards the anchor's (the
    whole way at ``reach``), whatever colour the latent had; below 0 it moves along
    ``vector``.
    """

    vector: np.ndarray = field(repr=False)
    method: str = "mean"
    space: str = ""
    attribute: str = ""
    from_class: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    source: SourceClasses | None = field(default=None, repr=False)
    basis: np.ndarray | None = field(default=None, repr=False)  # (k, dim), orthonormal rows
    anchor: np.ndarray | None = field(default=None, repr=False)  # (dim,)
    reach: float = 2.0

    @property
    def unit(self) -> np.ndarray:
        norm = float(np.linalg.norm(self.vector))
        return self.vector / norm if norm > 0 else self.vector

    def steps_for(self, z: np.ndarray, value: float | None = None) -> np.ndarray:
        """The step of value 1 for each latent: (n, dim), or ``vector`` (dim,) for all.

        With a ``value`` above 0, a latent already of the target class stays where it is
        (further along the target-vs-rest difference a colour leaves its class: blonde turns
        white half way); below 0 it moves away along that difference. A colour direction
        (``basis``) steps, for values above 0, from the latent's own colour component to the
        anchor's."""
        if self.basis is not None and self.anchor is not None and (value is None or value > 0):
            z2 = np.atleast_2d(np.asarray(z, dtype=np.float64))
            b = np.asarray(self.basis, dtype=np.float64)
            return (((self.anchor[None, :] - z2) @ b.T) @ b / self.reach).astype(np.float32)
        if not self.from_class or self.source is None:
            return self.vector
        z2 = np.atleast_2d(np.asarray(z, dtype=np.float64))
        out = np.repeat(self.vector[None, :], len(z2), axis=0)
        for i, c in enumerate(self.source.predict(z2)):
            step = self.from_class.get(self.source.names[c])
            if step is not None:
                out[i] = step
            elif value is not None and value > 0:
                out[i] = 0.0
        return out

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"vector": [float(v) for v in self.vector],
                                  "method": self.method, "space": self.space,
                                  "attribute": self.attribute}
        if self.from_class and self.source is not None:
            out["from_class"] = {k: [float(v) for v in vec] for k, vec in self.from_class.items()}
            out["source"] = self.source.to_dict()
        if self.basis is not None and self.anchor is not None:
            out["basis"] = np.asarray(self.basis, dtype=float).tolist()
            out["anchor"] = [float(v) for v in self.anchor]
            out["reach"] = float(self.reach)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Direction:
        vec = np.asarray(data["vector"], dtype=np.float32)
        raw = data.get("from_class") or {}
        from_class = {str(k): np.asarray(v, dtype=np.float32)
                      for k, v in raw.items()}  # type: ignore[attr-defined]
        source = data.get("source")
        basis = data.get("basis")
        anchor = data.get("anchor")
        return cls(vec, str(data.get("method", "mean")), str(data.get("space", "")),
                   str(data.get("attribute", "")), from_class,
                   SourceClasses.from_dict(source) if isinstance(source, dict) else None,
                   None if basis is None else np.asarray(basis, dtype=np.float64),
                   None if anchor is None else np.asarray(anchor, dtype=np.float64),
                   float(data.get("reach", 2.0)))  # type: ignore[arg-type]


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


def fit_source_classes(x: np.ndarray, classes: np.ndarray, names: Sequence[str],
                       shrinkage: float = 0.1) -> SourceClasses:
    """Linear discriminant analysis (shared, shrunk covariance) of the classes in ``x``.

    ``classes`` are indices into ``names``; classes without examples are never predicted.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(classes, dtype=np.int64)
    k, dim = len(names), x.shape[1]
    means = np.zeros((k, dim))
    present = np.zeros(k, bool)
    centred = np.empty_like(x)
    for c in range(k):
        m = y == c
        if m.any():
            present[c] = True
            means[c] = x[m].mean(0)
            centred[m] = x[m] - means[c]
    cov = centred.T @ centred / max(1, len(x) - int(present.sum()))
    cov = (1 - shrinkage) * cov + shrinkage * np.trace(cov) / dim * np.eye(dim)
    w = np.linalg.solve(cov, means.T).T  # (k, dim)
    prior = np.array([max(np.mean(y == c), 1e-12) for c in range(k)])
    b = -0.5 * np.einsum("kd,kd->k", w, means) + np.log(prior)
    b[~present] = -np.inf
    return SourceClasses(tuple(names), w, b)


def class_direction(x: np.ndarray, classes: np.ndarray, names: Sequence[str], target: str,
                    space: str = "", attribute: str = "", method: str = "class",
                    source: SourceClasses | None = None,
                    condition_on: Sequence[np.ndarray] = (), reach: float = 2.0) -> Direction:
    """The step to the ``target`` class of a categorical attribute, per source class.

    From a latent of class ``s`` the step of value ``reach`` is ``mean(target) - mean(s)``:
    there the latent lies where the typical target-class latent lies relative to its own
    class; with the default ``reach`` of 2, the sliders' end, the whole slider travels from
    the image's own class to the target and 1 is halfway (beyond the target a colour leaves
    its class: blonde turns white). A latent already of the target class moves along the
    mean difference of the target class and all the others, on the same scale.
    ``condition_on`` directions are projected out of every step, as in ``build_direction``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(classes, dtype=np.int64)
    t = list(names).index(target)
    is_target = y == t
    if not is_target.any() or is_target.all():
        raise ValueError("a direction needs examples with and without the attribute")
    source = source or fit_source_classes(x, y, names)
    mean_t = x[is_target].mean(0)
    vector = mean_difference(x, is_target) / reach
    from_class: dict[str, np.ndarray] = {}
    for c, name in enumerate(names):
        if c != t and (y == c).any():
            from_class[name] = (mean_t - x[y == c].mean(0)) / reach
    if len(condition_on):
        vector = orthogonalize(vector, condition_on)
        from_class = {k: orthogonalize(v, condition_on) for k, v in from_class.items()}
    return Direction(vector.astype(np.float32), method, space, attribute,
                     {k: v.astype(np.float32) for k, v in from_class.items()}, source)


def colour_basis(groups: np.ndarray, k: int = 3) -> np.ndarray:
    """The ``k`` dimensions (rows, orthonormal) in which one kind of colour varies.

    ``groups`` (n, c, dim) holds ``n`` portraits each drawn in ``c`` colours of that kind,
    all else the same (the renderer's pairs, encoded): the principal components of each
    portrait's latents about its own mean are what the colour alone moves. Three by default:
    a colour is three numbers (on the embedded VAE, 3 components hold 98 % of the
    background colours' variance; 10 or more also flatten the hair and the glasses).
    """
    g = np.asarray(groups, dtype=np.float64)
    if g.ndim != 3 or g.shape[1] < 2:
        raise ValueError("colour groups must be (n, colours >= 2, dim)")
    deviations = (g - g.mean(1, keepdims=True)).reshape(-1, g.shape[2])
    return principal_directions(deviations, k)


def subspace_direction(groups: np.ndarray, target: int, basis: np.ndarray, space: str = "",
                       attribute: str = "", method: str = "paired",
                       reach: float = 2.0) -> Direction:
    """A colour direction from renderer groups (see ``colour_basis``): the step (at
    ``reach``) sets a latent's component in ``basis`` to the mean of the portraits drawn in
    colour ``target``; the other components (face, pose, the other attributes) stay.

    The latent's own colour is never read, so a colour the model draws poorly (a canvas's
    warm grey that it reconstructs as purple) still ends at the target; ``vector`` (for
    values below 0) is the mean step from the other colours to the target.
    """
    g = np.asarray(groups, dtype=np.float64)
    anchor = g[:, target].mean(0)
    others = np.delete(g, target, axis=1)
    vector = (anchor - others.reshape(-1, g.shape[2]).mean(0)) / reach
    return Direction(vector.astype(np.float32), method, space, attribute,
                     basis=np.asarray(basis, dtype=np.float64), anchor=anchor, reach=reach)


def apply_directions(z: np.ndarray, steps: Sequence[tuple[np.ndarray, float]]) -> np.ndarray:
    """``z`` moved by ``value * vector`` for each step; values of 0 leave it bit for bit.

    A vector is one step for every latent (dim,) or one per latent (n, dim)."""
    out = np.array(z, copy=True)
    for vector, value in steps:
        if value != 0:
            out = out + np.asarray(value, dtype=out.dtype) * np.asarray(vector, dtype=out.dtype)
    return out
