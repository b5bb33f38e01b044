"""VAE and GAN slider mode: move a flat latent along attribute vectors and decode.

``studio-tiny-vae`` encodes an image (the canvas, or the noise of a seed) to a flat latent
``z``; ``studio-tiny-gan`` draws ``z`` from the seed, or finds the ``z`` of the canvas image by
optimisation (once per image, about 1.5 s). Sliders add ``value * direction`` (or follow
a curved path, see ``studio.core.sliders.latent_flow``) and the decoder draws the result: a few
milliseconds on the CPU, so every slider event can be answered at once.

Directions come from the one builder in ``studio.core.sliders.directions``: for the VAE from the
labels of the embedded portraits (rendered and encoded), for the GAN from the shipped
attribute classifier's labels of generated samples; the VAE's default (``paired``) from the
renderer's pairs of the same portrait with and without the attribute. They are cached on
disk per model hash (the VAE's shipped in ``resources/sliders/latent``).

On a canvas image the result is the canvas plus what the slider changed in the decoder's
picture (``transfer_edit``), never the decoder's picture itself: the canvas comes back bit
for bit at 0, and the model's reconstruction error stays off the canvas.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from studio.core.errors import CorruptModelError, InvalidRequestError, ModelNotFoundError
from studio.core.jobs.cancel import CancelToken
from studio.core.jobs.events import GenerationResult, StepProgress
from studio.core.jobs.request import GenerationRequest
from studio.core.models import ModelInfo
from studio.core.portraits.attributes import CLASS_ATTRIBUTES, SMILE_THRESHOLD, smile_bin_index
from studio.core.sliders.directions import (
    Direction,
    apply_directions,
    build_direction,
    class_direction,
    colour_basis,
    fit_source_classes,
    subspace_direction,
)
from studio.core.sliders.latent_flow import PATH_SCALE, LatentAttributeReader, flow
from studio.core.sliders.specs import (
    FLOW_METHOD,
    LATENT_METHOD,
    LATENT_SPACES,
    PAIRED_METHOD,
    PORTRAIT_ATTRIBUTES,
)
from studio.engine.conditioning import LRUCache

log = logging.getLogger(__name__)

DIRECTION_SEED = 424_242  # portraits used to find directions (neither train nor eval data)
DIRECTION_SAMPLES = 1024
PAIR_SAMPLES = 512  # portraits drawn in pairs for ``paired`` directions (VAE)
DIRECTIONS_VERSION = 6  # bump when the way directions are built changes (cache files)
CLASSIFIER = "studio-tiny-attributes"
LATENT_PRIOR_FILE = "latent_prior.safetensors"  # a VAE's Gaussian fit of its latents
ATTRIBUTE_READER_DIR = "latent-attributes"  # a GAN's latent attribute reader (flow sliders)
# GAN inversion by optimisation: the best of INVERSION_STARTS random latents, then Adam on
# the pixel error. On 32 held-out portraits the classifier reads hair / glasses / skin /
# background back in 100 / 78 / 94 / 100% (mean error 12 of 255; 8 starts and 200 steps:
# 84 / 75 / 97 / 69%, the optimiser stuck in another background; a loss on the classifier's
# features as well gave no better). About 1.5 s per image on 2 cores.
INVERSION_STARTS = 256
INVERSION_STEPS = 400
INVERSION_LR = 0.05
# The canvas edit's mask (``change_mask``), relative to the change's 99th percentile. On 8
# canvas portraits of the diffusion model (GAN, value 2, oracle; others kept): none 7/8
# glasses, 6/8 red, 3/8 blonde; 0.15-0.3: 7, 7, 7; 0.25-0.5: 8, 8, 8; 0.35-0.7: 8, 8, 8 but
# smile 2/8 against 3/8.
CHANGE_LOW, CHANGE_HIGH = 0.25, 0.5
# A colour slider's correction of the decoder's colour error (``transfer_edit``): only in
# the core of the change (relative to its 99th percentile, as ``change_mask``), smoothed by
# a Gaussian of this sigma (64 px units) so the canvas's own detail stays.
RECOLOUR_MASK = (0.5, 0.8)
RECOLOUR_SIGMA = 1.5
INVERSION_PRIOR = 1e-3  # weight of |z|^2: keeps z where the generator was trained


def _load_module(folder: Path, cls_name: str, weights: str) -> Any:
    from studio.engine.nets import classifier, gan, vae
    from studio.engine.nets.tensors import load_net

    classes = {"FlatVAE": vae.FlatVAE, "Generator": gan.Generator,
               "AttributeClassifier": classifier.AttributeClassifier}
    return load_net(classes[cls_name], folder, weights, frozen=True)


def _to_tensor(images: np.ndarray) -> Any:
    from studio.engine.nets.tensors import to_tensor

    return to_tensor(images)


def _to_uint8(x: Any) -> np.ndarray:
    from studio.engine.nets.tensors import to_uint8

    return to_uint8(x)


def _resize(images: np.ndarray, size: int = 64) -> np.ndarray:
    from PIL import Image

    out = []
    for im in images:
        pil = Image.fromarray(np.ascontiguousarray(im[..., :3]))
        if pil.size != (size, size):
            pil = pil.resize((size, size), Image.Resampling.LANCZOS)
        out.append(np.asarray(pil))
    return np.stack(out)


@dataclass
class LatentModel:
    """A loaded flat-latent model: ``kind`` is ``"vae"`` or ``"gan"``."""

    info: ModelInfo
    kind: str
    module: Any
    latent_dim: int
    hash: str = ""
    prior: LatentPrior | None = None  # what a seed is drawn from (VAE)
    reader: LatentAttributeReader | None = None  # attributes read from z (GAN flow sliders)

    @classmethod
    def load(cls, info: ModelInfo) -> LatentModel:
        from safetensors import SafetensorError

        from studio.engine.models.hashing import model_hash

        folder = Path(info.path)
        try:
            prior = None
            if info.kind == "vae":
                module = _load_module(folder, "FlatVAE", "model.safetensors")
                dim = int(module.latent_dim)
                prior = _load_prior(folder / LATENT_PRIOR_FILE, dim)
            else:
                sub = folder / "generator" if (folder / "generator").is_dir() else folder
                module = _load_module(sub, "Generator", "generator.safetensors")
                dim = int(module.z_dim)
            reader = None
            if (folder / ATTRIBUTE_READER_DIR).is_dir():
                reader = LatentAttributeReader.load(folder / ATTRIBUTE_READER_DIR,
                                                    CLASS_ATTRIBUTES)
                if reader.dim != dim:
                    raise ValueError(f"its {ATTRIBUTE_READER_DIR} reads {reader.dim}-d "
                                     f"latents, not {dim}-d")
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
            raise CorruptModelError(f"{info.name} could not be loaded: {err}") from err
        return cls(info, info.kind, module, dim, model_hash(folder), prior, reader)

    def sample(self, seed: int, n: int = 1) -> np.ndarray:
        """Latents of ``seed`` (n, dim), float32: standard normal noise, through the VAE's
        latent prior when it has one (see ``LatentPrior``)."""
        rng = np.random.default_rng(int(seed))
        noise = rng.standard_normal((n, self.latent_dim)).astype(np.float32)
        if self.prior is None:
            return noise
        return self.prior.draw(noise, rng)

    def encode(self, images: np.ndarray, batch: int = 256) -> np.ndarray:
        """Latents of uint8 RGB images (n, h, w, 3): the VAE's posterior means, or for the
        GAN (which has no encoder) the latents found by ``invert``."""
        import torch

        if self.kind != "vae":
            return self.invert(images)
        out = []
        with torch.inference_mode():
            for s in range(0, len(images), batch):
                out.append(self.module.encode(_to_tensor(_resize(images[s:s + batch]))).numpy())
        return np.concatenate(out).astype(np.float32)

    def invert(self, images: np.ndarray) -> np.ndarray:
        """The GAN latents whose images look most like ``images`` (uint8 RGB, (n, h, w, 3)).

        GAN inversion by optimisation (Zhu et al. 2016, "Generative Visual Manipulation on the
        Natural Image Manifold"): the best of ``INVERSION_STARTS`` fixed random latents, then
        ``INVERSION_STEPS`` Adam steps on the pixel error. Deterministic: the same image
        gives the same latent.
        """
        import torch

        target = _to_tensor(_resize(images))
        gen = torch.Generator().manual_seed(0)
        with torch.inference_mode(False), torch.enable_grad():
            target = target.clone()
            starts = torch.randn(INVERSION_STARTS, len(target), self.latent_dim, generator=gen)
            with torch.no_grad():
                errors = torch.stack([((self.module(c) - target) ** 2).mean((1, 2, 3))
                                      for c in starts])
            z = starts[errors.argmin(0), torch.arange(len(target))].clone().requires_grad_(True)
            opt = torch.optim.Adam([z], lr=INVERSION_LR)
            params = list(self.module.parameters())
            flags = [p.requires_grad for p in params]
            for p in params:
                p.requires_grad_(False)
            try:
                for _ in range(INVERSION_STEPS):
                    loss = (((self.module(z) - target) ** 2).mean()
                            + INVERSION_PRIOR * (z ** 2).mean())
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            finally:
                for p, flag in zip(params, flags, strict=True):
                    p.requires_grad_(flag)
            return z.detach().numpy().astype(np.float32)

    def decode(self, z: np.ndarray, batch: int = 256) -> np.ndarray:
        """uint8 RGB images (n, 64, 64, 3) of latents (n, dim)."""
        import torch

        out = []
        with torch.inference_mode():
            for s in range(0, len(z), batch):
                zt = torch.from_numpy(np.ascontiguousarray(z[s:s + batch], dtype=np.float32))
                x = self.module.decode(zt) if self.kind == "vae" else self.module(zt)
                out.append(_to_uint8(x))
        return np.concatenate(out)


@dataclass(frozen=True)
class LatentPrior:
    """Where a VAE seed's latent comes from (the VAE's ``LATENT_PRIOR_FILE``).

    The KL term is kept small for sharp reconstructions, so the latents are not standard
    normal. ``mean``/``chol`` are a Gaussian fit of encoded training portraits. With
    ``anchors`` (encoded training portraits) a seed picks one and adds ``bandwidth * chol @
    noise`` (a kernel density estimate): one Gaussian puts many draws between the classes
    (a hair colour between two), while the anchored draws stay near real portraits (0.35:
    about half way to the nearest other portrait) so each attribute reads clearly.
    """

    mean: np.ndarray  # (dim,)
    chol: np.ndarray  # (dim, dim)
    anchors: np.ndarray | None = None  # (n, dim)
    bandwidth: float = 1.0

    def draw(self, noise: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.anchors is None:
            return (self.mean[None, :] + noise @ self.chol.T).astype(np.float32)
        pick = rng.integers(0, len(self.anchors), len(noise))
        return (self.anchors[pick] + self.bandwidth * noise @ self.chol.T).astype(np.float32)


def _load_prior(path: Path, dim: int) -> LatentPrior | None:
    """A VAE's ``LATENT_PRIOR_FILE``; None if it has none."""
    if not path.is_file():
        return None
    from safetensors.numpy import load_file

    data = load_file(str(path))
    mean, chol = data["mean"].astype(np.float32), data["chol"].astype(np.float32)
    if mean.shape != (dim,) or chol.shape != (dim, dim):
        raise ValueError(f"{path.name} does not fit a {dim}-d latent")
    anchors = data["anchors"].astype(np.float32) if "anchors" in data else None
    if anchors is not None and (anchors.ndim != 2 or anchors.shape[1] != dim or not len(anchors)):
        raise ValueError(f"{path.name}: its anchors do not fit a {dim}-d latent")
    bandwidth = float(data["bandwidth"].reshape(-1)[0]) if "bandwidth" in data else 1.0
    return LatentPrior(mean, chol, anchors, bandwidth)


class AttributeScorer:
    """The shipped attribute classifier (``studio-tiny-attributes``) on uint8 images."""

    def __init__(self, folder: Path) -> None:
        self.module = _load_module(folder, "AttributeClassifier", "model.safetensors")
        self.classes = CLASS_ATTRIBUTES

    def scores(self, images: np.ndarray, batch: int = 256) -> dict[str, np.ndarray]:
        """Class probabilities per categorical attribute (n, k) and ``smile`` (n,) in [-1, 1]."""
        import torch

        parts: list[dict[str, np.ndarray]] = []
        with torch.inference_mode():
            for s in range(0, len(images), batch):
                out = self.module(_to_tensor(_resize(images[s:s + batch])))
                parts.append({k: (v.softmax(1) if k != "smile" else v).numpy()
                              for k, v in out.items()})
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def probability(self, scores: dict[str, np.ndarray], attribute: str) -> np.ndarray:
        """Probability-like score in [0, 1] of one attribute (``smile``, ``glasses``,
        ``hair=red`` ...)."""
        if attribute == "smile":
            return (scores["smile"] + 1.0) / 2.0
        if attribute == "glasses":
            return 1.0 - scores["glasses"][:, 0]
        name, _, value = attribute.partition("=")
        return scores[name][:, self.classes[name].index(value)]

    def has(self, scores: dict[str, np.ndarray], attribute: str) -> np.ndarray:
        """Whether the classifier sees the attribute (its decision, not a probability)."""
        if attribute == "smile":
            return scores["smile"] > SMILE_THRESHOLD
        if attribute == "glasses":
            return scores["glasses"].argmax(1) != 0
        name, _, value = attribute.partition("=")
        return scores[name].argmax(1) == self.classes[name].index(value)

    def decisions(self, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The classifier's decision for every attribute kind (smile binned in three)."""
        out = {k: v.argmax(1) for k, v in scores.items() if k != "smile"}
        out["smile"] = smile_bin_index(scores["smile"])
        return out


def portrait_labels(attribute: str, labels: dict[str, np.ndarray],
                    smile: np.ndarray) -> np.ndarray:
    """Ground-truth labels of the embedded portraits for one attribute."""
    if attribute == "smile":
        return smile > 0
    if attribute == "glasses":
        return labels["glasses"] != 0
    name, _, value = attribute.partition("=")
    return labels[name] == CLASS_ATTRIBUTES[name].index(value)


class LatentModels:
    """Loaded VAE/GAN models, their attribute directions, and generation with sliders."""

    def __init__(self, engine: Any, cache_dir: Path | None = None) -> None:
        self._engine = engine
        self._models: dict[str, LatentModel] = {}
        self._directions: dict[tuple[str, str], dict[str, Direction]] = {}
        self._scorer: AttributeScorer | None = None
        self._inverted = LRUCache(8)  # GAN latents of init images (an inversion takes ~1.5 s)
        self._lock = threading.RLock()
        self._cache_dir = cache_dir

    # -- models --------------------------------------------------------------------------
    def model(self, info: ModelInfo) -> LatentModel:
        with self._lock:
            if info.path not in self._models:
                self._models[info.path] = LatentModel.load(info)
            return self._models[info.path]

    def scorer(self) -> AttributeScorer:
        """The attribute classifier (needed for GAN directions and SliderBench)."""
        with self._lock:
            if self._scorer is None:
                found = [m for m in self._engine.list_models("classifier") if m.id == CLASSIFIER]
                if not found:
                    raise ModelNotFoundError(f"The attribute classifier {CLASSIFIER} is missing.")
                self._scorer = AttributeScorer(Path(found[0].path))
            return self._scorer

    # -- directions ----------------------------------------------------------------------
    def _cache_file(self, model: LatentModel, method: str) -> Path:
        from studio.paths import user_cache_dir

        root = self._cache_dir or user_cache_dir() / "latent-directions"
        return root / f"{model.info.name}-{model.hash[:16]}-{method}-v{DIRECTIONS_VERSION}.json"

    def _shipped_file(self, model: LatentModel, method: str) -> Path:
        from studio.paths import resources_dir

        return resources_dir() / "sliders" / "latent" / f"{model.info.name}-{method}.json"

    def directions(self, info: ModelInfo, method: str = "mean") -> dict[str, Direction]:
        """Directions of every portrait attribute in the model's latent space (a "flow"
        slider's path is as long as its class direction: those)."""
        if method == FLOW_METHOD:
            method = LATENT_METHOD
        model = self.model(info)
        key = (info.path, method)
        with self._lock:
            if key in self._directions:
                return self._directions[key]
            for path in (self._shipped_file(model, method), self._cache_file(model, method)):
                found = _read_directions(path, model.hash)
                if found is not None:
                    self._directions[key] = found
                    return found
            if method == PAIRED_METHOD:
                found = self.paired_directions(model)
                _write_directions(self._cache_file(model, method), model.hash, found)
                self._directions[key] = found
                return found
            z, labels, kinds = self.examples(model)
            base = method.removesuffix("-cond")
            binary = "mean" if base == "class" else base
            found = {a: build_direction(z, labels[a], binary, model.kind, a)
                     for a in PORTRAIT_ATTRIBUTES if 0 < labels[a].sum() < len(z)}
            plain = dict(found)

            def others(a: str) -> list[np.ndarray]:
                if not method.endswith("-cond"):
                    return []
                # Conditional editing (InterFaceGAN): project out the directions of the
                # other kinds of attribute, so moving one keeps the others.
                return [d.unit for b, d in plain.items()
                        if b.partition("=")[0] != a.partition("=")[0]]

            if base == "class":
                sources = {k: fit_source_classes(z, kinds[k], CLASS_ATTRIBUTES[k])
                           for k in kinds}
                for a in list(found):
                    kind, _, value = a.partition("=")
                    if value and kind in kinds:
                        found[a] = class_direction(z, kinds[kind], CLASS_ATTRIBUTES[kind], value,
                                                   model.kind, a, method, sources[kind],
                                                   others(a))
                    elif method.endswith("-cond"):
                        found[a] = build_direction(z, labels[a], "mean", model.kind, a,
                                                   condition_on=others(a))
            elif method.endswith("-cond"):
                found = {a: build_direction(z, labels[a], base, model.kind, a,
                                            condition_on=others(a)) for a in found}
            _write_directions(self._cache_file(model, method), model.hash, found)
            self._directions[key] = found
            return found

    def paired_directions(self, model: LatentModel, n: int | None = None
                          ) -> dict[str, Direction]:
        """Directions from renderer-labelled pairs: the same portrait (same face, pose,
        shirt, jitter) drawn with and without the attribute, both encoded; the direction is
        the mean of the pairs' latent differences.

        Built from class means of different portraits, a direction also carries whatever
        came with the attribute in those portraits (a VAE "glasses" that turned a grey
        background purple); a pair differs in the attribute alone, so its difference is the
        attribute alone. Colours (hair, background) are drawn in every colour of their kind:
        the few latent dimensions those vary in (``colour_basis``) and where each colour
        lies in them give a step that ends at the target colour whatever colour the image
        had (``subspace_direction``; a step per source colour missed when the model read a
        canvas's warm grey as purple: blue background 4 of 8 canvas portraits, now 8).

        Needs an encoder (the VAE). The GAN's were tried from inverted renders and did not
        work on canvas portraits (oracle, value 2): a smile from 16 pairs, each smiling
        render found from its base's latent, moved 1 mouth of 8; a blue background from 16
        renders inverted in full, 1 of 8 (its colours are not a subspace of its z). Its
        sliders keep their flow path; those two starters are greyed on it.
        """
        from studio.core.portraits.attributes import GLASSES, sample_attributes
        from studio.core.portraits.render import render_portrait

        if model.kind != "vae":
            raise InvalidRequestError(f"Paired directions need an encoder; {model.info.name} "
                                      "has none.", hint="Use the flow or class-cond method.")
        n = n or PAIR_SAMPLES
        wanted = set(PORTRAIT_ATTRIBUTES)
        bases, states, attrs_list = [], [], []
        for i in range(n):
            rng = np.random.default_rng((DIRECTION_SEED, i))
            attrs = sample_attributes(rng)
            states.append(rng.bit_generator.state)
            bases.append(render_portrait(attrs, rng))
            attrs_list.append(attrs)
        z_base = model.encode(np.stack(bases))

        def encode_changed(change: Callable[[Any, int], Any]) -> tuple[np.ndarray, np.ndarray]:
            """Rows changed and their latents' differences from their bases'."""
            idx, images = [], []
            for i, attrs in enumerate(attrs_list):
                other = change(attrs, i)
                if other is None:
                    continue
                rng = np.random.default_rng(0)
                rng.bit_generator.state = states[i]
                images.append(render_portrait(other, rng))
                idx.append(i)
            if not idx:
                return np.zeros((0,), np.int64), np.zeros((0, model.latent_dim), np.float32)
            ix = np.asarray(idx)
            return ix, model.encode(np.stack(images)) - z_base[ix]

        found: dict[str, Direction] = {}
        # Binary attributes: value 1 is the pairs' mean step (a smile one unit of the
        # renderer's [-1, 1] scale wider, glasses put on a face without).
        if "smile" in wanted:
            _, d = encode_changed(lambda a, i: replace(a, smile=float(np.clip(a.smile + 1.0,
                                                                             -1.0, 1.0))))
            found["smile"] = Direction(d.mean(0).astype(np.float32), PAIRED_METHOD,
                                       model.kind, "smile")
        if "glasses" in wanted:
            _, d = encode_changed(lambda a, i: replace(a, glasses=GLASSES[1 + i % 2])
                                  if a.glasses == "none" else None)
            found["glasses"] = Direction(d.mean(0).astype(np.float32), PAIRED_METHOD,
                                         model.kind, "glasses")
        kinds = {a.partition("=")[0] for a in wanted if "=" in a}
        for kind in sorted(kinds & set(CLASS_ATTRIBUTES)):
            names = CLASS_ATTRIBUTES[kind]
            # Each portrait in every colour of the kind (its own colour is its base).
            groups = np.repeat(z_base[:, None, :], len(names), axis=1)
            for c, colour in enumerate(names):
                ix, d = encode_changed(lambda a, i, k=kind, v=colour:
                                       replace(a, **{k: v}) if getattr(a, k) != v else None)
                groups[ix, c] = z_base[ix] + d
            basis = colour_basis(groups)
            for c, colour in enumerate(names):
                attribute = f"{kind}={colour}"
                if attribute in wanted:
                    found[attribute] = subspace_direction(groups, c, basis, model.kind,
                                                          attribute, PAIRED_METHOD)
        return found

    def examples(self, model: LatentModel, n: int | None = None
                 ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Latents, attribute labels and the class index of each categorical attribute
        (hair, glasses, skin, background) to build directions from."""
        n = n or DIRECTION_SAMPLES
        if model.kind == "vae":
            from studio.core.portraits.render import make_batch

            batch = make_batch(DIRECTION_SEED, 0, n)
            z = model.encode(batch.images)
            labels = {a: portrait_labels(a, batch.labels, batch.smile)
                      for a in PORTRAIT_ATTRIBUTES}
            kinds = {k: batch.labels[k].copy() for k in CLASS_ATTRIBUTES}
            try:
                scorer = self.scorer()
            except ModelNotFoundError:
                return z, labels, kinds
            # Label what the decoder draws, not what the portrait had: a VAE that loses a
            # detail (a mouth, a colour) in some reconstructions would otherwise learn a
            # direction that does not show. Ground truth stays where the decoder never
            # draws an attribute at all.
            scores = scorer.scores(model.decode(z))
            for a in PORTRAIT_ATTRIBUTES:
                drawn = scorer.has(scores, a)
                if 0 < drawn.sum() < len(z):
                    labels[a] = drawn
            decided = scorer.decisions(scores)
            return z, labels, {k: decided[k] for k in CLASS_ATTRIBUTES}
        z = model.sample(DIRECTION_SEED, n)
        scorer = self.scorer()
        scores = scorer.scores(model.decode(z))
        decided = scorer.decisions(scores)
        return (z, {a: scorer.has(scores, a) for a in PORTRAIT_ATTRIBUTES},
                {k: decided[k] for k in CLASS_ATTRIBUTES})

    def direction_from_images(self, info: ModelInfo, with_attribute: np.ndarray,
                              without: np.ndarray, method: str = "mean") -> Direction:
        """A direction from images the user marked (uint8 RGB), built in the model's space.

        The VAE encodes them; the GAN inverts them (about 1.5 s each)."""
        model = self.model(info)
        z = model.encode(np.concatenate([with_attribute, without]))
        labels = np.arange(len(z)) < len(with_attribute)
        return build_direction(z, labels, method, model.kind, "example")

    # -- generation ----------------------------------------------------------------------
    def latents(self, info: ModelInfo, request: GenerationRequest) -> np.ndarray:
        """The starting latents: the encoded init image (VAE; the GAN inverts it once per
        image, then every slider event reuses it) or the seeds' noise."""
        model = self.model(info)
        if request.task != "txt2img" and request.init_image is not None:
            image = request.init_image
            if model.kind == "vae":
                return model.encode(image.to_array()[None, ..., :3])
            z = self._inverted.get_or_make(
                (model.hash, image.sha256),
                lambda: model.encode(image.to_array()[None, ..., :3]))
            return np.array(z, copy=True)
        return np.concatenate([model.sample(s) for s in request.seeds])

    def edit(self, info: ModelInfo, z: np.ndarray, request: GenerationRequest) -> np.ndarray:
        """``z`` moved along the request's latent sliders (values of 0: ``z`` unchanged)."""
        steps = []
        for s in request.sliders:
            if s.space not in LATENT_SPACES or s.value == 0:
                continue
            if s.space != info.kind:
                raise InvalidRequestError(f"A {s.space.upper()} slider cannot move a "
                                          f"{info.kind.upper()} latent.")
            p = dict(s.payload)
            if p.get("vector"):  # a direction from the user's examples
                vector = np.array([float(v) for v in str(p["vector"]).split(",")], np.float32)
                if vector.shape != (z.shape[1],):
                    raise InvalidRequestError("This slider was made for another latent size.")
                steps.append((vector, float(s.value)))
                continue
            method = str(p.get("method", "mean"))
            attribute = str(p.get("attribute", ""))
            dirs = self.directions(info, method)
            if attribute not in dirs:
                raise InvalidRequestError(f"No direction for the attribute {attribute!r}.",
                                          hint=f"Attributes: {', '.join(sorted(dirs))}.")
            value = float(s.value)
            step = dirs[attribute].steps_for(z, value)
            if method == FLOW_METHOD:
                steps.append((self._flow_step(info, z, attribute, value, step), 1.0))
            else:
                steps.append((step, value))
        return apply_directions(z, steps)

    def _flow_step(self, info: ModelInfo, z: np.ndarray, attribute: str, value: float,
                   straight: np.ndarray) -> np.ndarray:
        """The displacement (n, dim) of a curved "flow" slider path: as long as the straight
        class step (``straight``, per unit value) times ``PATH_SCALE``, steered by the
        model's latent attribute reader so the other attributes stay."""
        model = self.model(info)
        reader = model.reader
        if reader is None and model.kind != "gan":
            raise InvalidRequestError("Curved (flow) sliders are made for the GAN.",
                                      hint=f"Use class-cond sliders on {info.name}.")
        if reader is None:
            raise InvalidRequestError(
                f"{info.name} has no latent attribute reader, which its curved sliders need.",
                hint="Train one with: python -m studio.training gan-attributes (or use "
                     "class-cond sliders).")
        lengths = np.linalg.norm(np.broadcast_to(straight, z.shape), axis=1) * PATH_SCALE
        return flow(z, reader, attribute, value, lengths, CLASS_ATTRIBUTES) - z

    def generate(self, info: ModelInfo, request: GenerationRequest,
                 on_step: Callable[[StepProgress], None] | None = None,
                 cancel: CancelToken | None = None) -> GenerationResult:
        """Encode or sample, move along the sliders, decode (one "step")."""
        start = time.perf_counter()
        if cancel is not None:
            cancel.raise_if_cancelled()
        model = self.model(info)
        z0 = self.latents(info, request)
        z = self.edit(info, z0, request)
        canvas = _init_rgb(request)
        if canvas is not None:
            images = transfer_edit(model, z0, z, canvas, (request.width, request.height),
                                   recolour_amount(request, info.kind))
        else:
            images = model.decode(z)
        if (request.width, request.height) != (images.shape[2], images.shape[1]):
            from PIL import Image

            images = np.stack([np.asarray(Image.fromarray(im).resize(
                (request.width, request.height), Image.Resampling.LANCZOS)) for im in images])
        if cancel is not None:
            cancel.raise_if_cancelled()
        if on_step is not None:
            on_step(StepProgress(1, 1, None))
        resolved = request.replace(model_hash=model.hash, family=info.family or "studio-tiny",
                                   device="cpu", dtype="float32")
        return GenerationResult(resolved, tuple(np.ascontiguousarray(im) for im in images),
                                time.perf_counter() - start)


def recolour_amount(request: GenerationRequest, space: str) -> float:
    """How far the request's colour sliders (``hair=...``, ``background=...``) have gone
    towards their colour (0..1, 1 at value 2, their end); 0 without one."""
    amount = 0.0
    for s in request.sliders:
        attribute = str(dict(s.payload).get("attribute", ""))
        if s.space == space and "=" in attribute and s.value > 0:
            amount = max(amount, min(1.0, float(s.value) / 2.0))
    return amount


def _init_rgb(request: GenerationRequest) -> np.ndarray | None:
    """The request's init image as uint8 RGB (h, w, 3), or None (a seed's latent)."""
    if request.task == "txt2img" or request.init_image is None:
        return None
    return np.ascontiguousarray(request.init_image.to_array()[..., :3])


def transfer_edit(model: LatentModel, z0: np.ndarray, z: np.ndarray, canvas: np.ndarray,
                  size: tuple[int, int], recolour: float = 0.0) -> np.ndarray:
    """The canvas image with the edit ``z0 -> z`` carried over: ``canvas + D(z) - D(z0)``
    (n, h, w, 3) uint8 at ``size`` (w, h).

    The decoder's image of the canvas's own latent is only near the canvas (a VAE
    reconstruction, a GAN inversion: a grey background drawn purple, glasses the portrait
    did not have), and drawing ``D(z)`` itself would put all of that on the canvas with the
    slider's edit. Adding only what the slider changed in the decoder's image keeps what
    the slider does not touch as it was: at value 0 the canvas comes back bit for bit, and
    the model's reconstruction error is never drawn (difference transfer, as in the
    "residual" edits of GAN inversion work).

    A colour slider names where it ends (a blue background), which a difference cannot
    say: a grey background the decoder drew purple, plus purple-to-blue, is green. With
    ``recolour`` (0..1: how far a colour slider has gone, 1 at its end) the decoder's colour
    error is taken off where the slider recolours (``change_mask``'s core), smoothed
    (``RECOLOUR_SIGMA``) so the canvas's own detail there stays: at 1 the region takes the
    decoder's colour. On 8 canvas portraits of the diffusion model (VAE, value 2, oracle):
    blue background 8 of 8 with the rest kept, against 4 of 8 by the difference alone."""
    w, h = size
    base = canvas
    if base.shape[:2] != (h, w):
        from PIL import Image

        base = np.asarray(Image.fromarray(base).resize((w, h), Image.Resampling.LANCZOS))
    n = len(z)
    if np.array_equal(z, np.broadcast_to(z0, z.shape)):
        return np.repeat(base[None], n, axis=0)
    import torch
    import torch.nn.functional as F

    drawn = model.decode(np.broadcast_to(z0, z.shape)).astype(np.float32)
    delta = model.decode(z).astype(np.float32) - drawn
    change = delta.copy()
    delta *= change_mask(change)
    if recolour > 0:
        from scipy.ndimage import gaussian_filter

        own = _resize(canvas[None], drawn.shape[1])[0].astype(np.float32)
        error = gaussian_filter(drawn - own[None], sigma=(0, RECOLOUR_SIGMA, RECOLOUR_SIGMA, 0))
        delta += float(min(recolour, 1.0)) * change_mask(change, *RECOLOUR_MASK) * error
    if delta.shape[1:3] != (h, w):
        t = torch.from_numpy(np.ascontiguousarray(delta.transpose(0, 3, 1, 2)))
        delta = F.interpolate(t, size=(h, w), mode="bilinear",
                              align_corners=False).numpy().transpose(0, 2, 3, 1)
    out = base[None].astype(np.float32) + delta
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def change_mask(delta: np.ndarray, low: float = CHANGE_LOW,
                high: float = CHANGE_HIGH) -> np.ndarray:
    """Where the slider's change of the decoder's image is its own (n, h, w, 1) in [0, 1].

    A step in a latent also moves much that it should not, a little: the decoder draws a
    hint of frames round the eyes as the hair turns red, shifts a background. The change's
    size per pixel (the largest channel, averaged over 3 x 3) is taken relative to its 99th
    percentile (what the slider mostly did): below ``low`` of that it is dropped, above
    ``high`` kept whole, linear between. The mask scales with the change, so a small value
    keeps the same place as a large one."""
    from scipy.ndimage import uniform_filter

    size = uniform_filter(np.abs(delta).max(axis=3), size=(1, 3, 3), mode="nearest")
    top = np.percentile(size.reshape(len(size), -1), 99, axis=1)[:, None, None]
    lo, hi = low * top, high * top
    return np.clip((size - lo) / np.maximum(hi - lo, 1e-6), 0.0, 1.0)[..., None]


def _read_directions(path: Path, model_hash: str,
                     version: int = DIRECTIONS_VERSION) -> dict[str, Direction] | None:
    """Directions saved for these weights (``model_hash``) by this way of building them
    (``version``; a shipped file says its own), or None."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("model_hash") != model_hash or data.get("version") != version:
        return None
    return {k: Direction.from_dict(v) for k, v in data["directions"].items()}


def _write_directions(path: Path, model_hash: str, directions: dict[str, Direction]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"model_hash": model_hash, "version": DIRECTIONS_VERSION,
                                   "directions": {k: d.to_dict()
                                                  for k, d in directions.items()}}))
        tmp.replace(path)
    except OSError:
        log.warning("could not cache latent directions at %s", path)
