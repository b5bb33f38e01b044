"""Control layers: an image the generation must follow (ControlNet, T2I-Adapter).

A ``ControlLayer`` is a value in the request: its kind, its image (by content hash on disk,
as the init image), its strength and the range of the steps it acts on, and the control
model that reads it. ``control_map`` turns the layer's image into the map the model reads
(the preprocessors), at the request's size. Only numpy, scipy and Pillow are imported.

The kinds and what their preprocessor does:

* ``scribble`` and ``lineart``: the strokes as drawn, as white lines on black (what the
  scribble and line-art ControlNets read). Strokes on a transparent layer are its alpha;
  dark strokes on light paper are inverted; light strokes on black are kept.
* ``edges``: Canny edges of the layer's image (thresholds ``low``/``high`` on 0-255).
* ``depth``: a depth image as is (near is light), as a grey image.
* ``depth-estimate``: a depth map estimated from a photo by a depth-estimation model in the
  user's folders (transformers' DPT, Depth Anything ...; the engine passes its estimator as
  ``depth``), then read as ``depth``. Without one the kind is off (``DEPTH_ESTIMATE_OFF``).
* ``tile``: the image itself (detail and colour guidance).
* ``pose``: an image of a skeleton as is (OpenPose colours).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from studio.core.document.pixels import Pixels

CONTROL_KINDS: tuple[str, ...] = ("scribble", "lineart", "edges", "depth", "depth-estimate",
                                  "tile", "pose", "reference")
KIND_LABELS = {"scribble": "Scribble", "lineart": "Line art", "edges": "Edges (Canny)",
               "depth": "Depth", "depth-estimate": "Depth from a photo",
               "tile": "Tile / detail", "pose": "Pose", "reference": "Reference image"}
# Kinds the studio names but cannot run yet, with the reason the UI shows.
KINDS_OFF: dict[str, str] = {}
# "reference": an image whose look steers the generation through an IP-Adapter (the local
# engine, ``studio.engine.reference``); its strength is the adapter's scale. Its image is
# read whole by the adapter's image encoder (not scaled to the request, no preprocessor).
REFERENCE_KINDS = ("reference",)
# Why reference images are off on a backend other than the local engine.
REFERENCE_REMOTE_OFF = ("Reference images (IP-Adapter) on a ComfyUI server need the custom "
                        "node ComfyUI_IPAdapter_plus (IPAdapterModelLoader, IPAdapterAdvanced), "
                        "and Latent Studio does not send them to servers yet: use the local "
                        "engine.")
REFERENCE_LOCAL_ONLY = "Reference images (IP-Adapter) run on the local engine only."


def reference_off_reason(features: Any) -> str:
    """Why a backend with ``features`` (``EngineFeatures``) cannot take reference images now
    ("" when it can): only the local engine runs them, where it found an IP-Adapter (with
    local and server models together, a server model's request is refused on its way)."""
    backends = str(getattr(features, "backend", "")).split("+")  # "local+comfyui": both
    if "local" not in backends:
        return REFERENCE_REMOTE_OFF if "comfyui" in backends else REFERENCE_LOCAL_ONLY
    return dict(getattr(features, "why_not", ()) or ()).get("reference", "")


# Why "depth-estimate" is off where no depth-estimation model is found (engine features).
DEPTH_ESTIMATE_OFF = ("Depth from a photo needs a depth-estimation model (a transformers DPT "
                      "or Depth Anything folder) in models/depth or models/annotators of "
                      "your model folders; none was found. A depth image can still be used "
                      "as is (Depth).")
# The control kind whose control models read a kind's map.
MODEL_KIND = {"depth-estimate": "depth"}
MAX_CONTROLS = 8
EDGE_LOW, EDGE_HIGH = 100, 200  # A1111's Canny defaults


@dataclass(frozen=True)
class ControlLayer:
    """One control of a generation.

    ``image`` is the layer's image as drawn (RGB, RGBA or L); the engine preprocesses it
    by ``kind`` and scales it to the request's size. ``strength`` scales the control's
    residuals (0: no effect at all); it acts from fraction ``start`` to ``end`` of the
    steps. ``model`` names the control model (id, name or path; "" picks the one that fits
    the kind and the diffusion model).
    """

    kind: str
    image: Pixels = field(repr=False)
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    model: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "image": {"sha256": self.image.sha256,
                                             "width": self.image.width,
                                             "height": self.image.height,
                                             "mode": self.image.mode},
                "strength": self.strength, "start": self.start, "end": self.end,
                "model": self.model}

    @classmethod
    def from_dict(cls, data: dict[str, Any], images: dict[str, Pixels]) -> ControlLayer | None:
        """The control, or ``None`` when its image is not in ``images``."""
        ref = data.get("image")
        image = images.get(ref.get("sha256", "")) if isinstance(ref, dict) else None
        if image is None:
            return None
        return cls(str(data.get("kind", "scribble")), image,
                   float(data.get("strength", 1.0)), float(data.get("start", 0.0)),
                   float(data.get("end", 1.0)), str(data.get("model", "")))


def control_problems(controls: tuple[ControlLayer, ...]) -> list[str]:
    """What is wrong with a request's controls, one phrase each (empty: nothing)."""
    problems = []
    if len(controls) > MAX_CONTROLS:
        problems.append(f"at most {MAX_CONTROLS} control layers")
    for i, c in enumerate(controls, 1):
        if not isinstance(c, ControlLayer):
            problems.append(f"control {i} is not a ControlLayer")
            continue
        if c.kind not in CONTROL_KINDS:
            why = KINDS_OFF.get(c.kind, "")
            problems.append(f"control {i}: unknown kind {c.kind!r} (one of "
                            f"{', '.join(CONTROL_KINDS)})" + (f": {why}" if why else ""))
        if not 0.0 <= c.strength <= 2.0:
            problems.append(f"control {i}: strength must be between 0 and 2")
        if not 0.0 <= c.start < c.end <= 1.0:
            problems.append(f"control {i}: the step range needs 0 <= start < end <= 1")
    return problems


def control_notes(controls: tuple[ControlLayer, ...], width: int, height: int) -> list[str]:
    """What the user should be told about a request's controls before it runs: empty
    layers (skipped) and images of another size (scaled), one line each."""
    notes = []
    for i, c in enumerate(controls, 1):
        label = KIND_LABELS.get(c.kind, c.kind).lower()
        if is_empty(c.image):
            notes.append(f"control layer {i} ({label}) is empty: skipped")
        elif c.kind in REFERENCE_KINDS:  # read whole by the image encoder: not scaled
            continue
        elif (c.image.width, c.image.height) != (width, height):
            notes.append(f"the {label} control image ({c.image.width}x{c.image.height}) "
                         f"will be scaled to {width}x{height}")
    return notes


def control_refs(data: dict[str, Any]) -> list[str]:
    """Content hashes of the control images a serialised request refers to."""
    controls = data.get("controls")
    if not isinstance(controls, list):
        return []
    refs = []
    for entry in controls:
        ref = entry.get("image") if isinstance(entry, dict) else None
        if isinstance(ref, dict) and isinstance(ref.get("sha256"), str) and ref["sha256"]:
            refs.append(ref["sha256"])
    return refs


# -- preprocessors ---------------------------------------------------------------------------
def _rgba(image: Pixels | np.ndarray) -> np.ndarray:
    arr = np.asarray(image.to_array() if isinstance(image, Pixels) else image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[2] == 3:
        arr = np.concatenate([arr, np.full(arr.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return arr.astype(np.uint8, copy=False)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def is_empty(image: Pixels | np.ndarray) -> bool:
    """Whether a control image holds nothing to follow: fully transparent, or one flat
    colour (an empty paint layer, a blank canvas)."""
    arr = _rgba(image)
    alpha = arr[..., 3]
    if not alpha.any():
        return True
    seen = arr[alpha > 0][:, :3]
    return bool(alpha.min() == alpha.max() and (seen == seen[0]).all())


def strokes(image: Pixels | np.ndarray) -> np.ndarray:
    """Strokes as white on black (uint8 (H, W)): a transparent layer's alpha where it has
    transparency, else the image's luminance, inverted where the paper is light."""
    arr = _rgba(image)
    alpha = arr[..., 3]
    if alpha.min() < 255:
        return alpha.copy()
    lum = _luminance(arr)
    out = 255.0 - lum if float(np.median(lum)) > 127 else lum
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def canny(gray: np.ndarray, low: float = EDGE_LOW, high: float = EDGE_HIGH,
          sigma: float = 1.0) -> np.ndarray:
    """Canny edges (uint8 (H, W), 255 on edges) of a grey image in 0-255.

    Gaussian smoothing, Sobel gradients, non-maximum suppression along the gradient's
    direction, and hysteresis: weak edges (above ``low``) kept where they touch a strong
    one (above ``high``), as OpenCV's ``Canny`` with L2 gradients.
    """
    from scipy import ndimage

    g = ndimage.gaussian_filter(np.asarray(gray, np.float64), sigma, mode="nearest")
    gx = ndimage.sobel(g, axis=1, mode="nearest")
    gy = ndimage.sobel(g, axis=0, mode="nearest")
    mag = np.hypot(gx, gy)
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    padded = np.pad(mag, 1)
    h, w = mag.shape

    def shifted(dy: int, dx: int) -> np.ndarray:
        return padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    keep = np.zeros(mag.shape, bool)
    for lo, hi, (dy, dx) in ((0, 22.5, (0, 1)), (157.5, 180.1, (0, 1)),
                             (22.5, 67.5, (1, 1)), (67.5, 112.5, (1, 0)),
                             (112.5, 157.5, (1, -1))):
        sector = (angle >= lo) & (angle < hi)
        keep |= sector & (mag >= shifted(dy, dx)) & (mag >= shifted(-dy, -dx))
    thin = np.where(keep, mag, 0.0)
    weak = thin >= low
    strong = thin >= high
    labels, n = ndimage.label(weak, structure=np.ones((3, 3), bool))
    if n == 0:
        return np.zeros(mag.shape, np.uint8)
    connected = np.zeros(n + 1, bool)
    connected[np.unique(labels[strong])] = True
    connected[0] = False
    return np.where(connected[labels], 255, 0).astype(np.uint8)


def control_map(kind: str, image: Pixels | np.ndarray, width: int, height: int,
                low: float = EDGE_LOW, high: float = EDGE_HIGH,
                depth: Callable[[np.ndarray], np.ndarray] | None = None
                ) -> tuple[np.ndarray, str]:
    """The map a control model reads for ``kind`` (uint8 RGB (height, width, 3)) and a
    note ("" or what was changed: a control image of another size is scaled).

    ``depth`` estimates a depth map (uint8 (H, W), near is light) from an RGB photo: the
    ``depth-estimate`` kind needs it (a ``ValueError`` saying why without). A ``reference``
    has no map (an IP-Adapter reads the image whole, on the local engine): a ``ValueError``
    saying so, naming the custom node a ComfyUI server would need."""
    from PIL import Image

    if kind in REFERENCE_KINDS:  # no map: the local engine's IP-Adapter reads it whole, and
        raise ValueError(REFERENCE_REMOTE_OFF)  # a path that wants one (a server's) says why
    arr = _rgba(image)
    h, w = arr.shape[:2]
    note = ""
    if (w, h) != (width, height):
        note = f"the {KIND_LABELS.get(kind, kind).lower()} control image ({w}x{h}) was " \
               f"scaled to {width}x{height}"
        resample = (Image.Resampling.BILINEAR if kind in ("scribble", "lineart", "edges")
                    else Image.Resampling.LANCZOS)
        arr = np.asarray(Image.fromarray(arr, "RGBA").resize((width, height), resample))
    if kind in ("scribble", "lineart"):
        grey = strokes(arr)
    elif kind == "edges":
        grey = canny(_luminance(arr), low, high)
    elif kind == "depth":
        grey = np.clip(np.round(_luminance(arr)), 0, 255).astype(np.uint8)
    elif kind == "depth-estimate":
        if depth is None:
            raise ValueError(DEPTH_ESTIMATE_OFF)
        grey = np.asarray(depth(np.ascontiguousarray(arr[..., :3])), np.uint8)
    elif kind in ("tile", "pose"):
        return np.ascontiguousarray(arr[..., :3]), note
    else:
        raise ValueError(f"unknown control kind {kind!r}")
    return np.repeat(grey[..., None], 3, axis=2), note


# -- A1111's ControlNet fields ---------------------------------------------------------------
_A1111_MODULES = {"scribble": "scribble", "lineart": "lineart", "edges": "canny",
                  "depth": "depth", "depth-estimate": "depth_anything",
                  "tile": "tile_resample", "pose": "openpose",
                  "reference": "ip-adapter-auto"}  # A1111 picks the IP-Adapter encoder
# A1111's depth preprocessors: a depth map estimated from a photo.
_A1111_DEPTH_ESTIMATORS = ("depth_anything", "depth_midas", "depth_zoe", "depth_leres",
                           "depth_hand_refiner")


def _num(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def a1111_control_fields(controls: tuple[ControlLayer, ...]) -> dict[str, str]:
    """``ControlNet 0``, ``ControlNet 1`` ... as A1111's ControlNet extension writes them:
    ``Module: canny, Model: name, Weight: 1, Guidance Start: 0, Guidance End: 1``."""
    out = {}
    for i, c in enumerate(controls):
        model = c.model.replace("\\", "/").rsplit("/", 1)[-1] or "auto"
        for suffix in (".safetensors", ".pth", ".ckpt"):
            model = model.removesuffix(suffix)
        out[f"ControlNet {i}"] = (f"Module: {_A1111_MODULES.get(c.kind, c.kind)}, "
                                  f"Model: {model}, Weight: {_num(c.strength)}, "
                                  f"Guidance Start: {_num(c.start)}, "
                                  f"Guidance End: {_num(c.end)}")
    return out


def _kind_of_module(module: str, model: str) -> str:
    if module.strip().lower().startswith(_A1111_DEPTH_ESTIMATORS):
        return "depth-estimate"
    if module.strip().lower().startswith(("ip-adapter", "ip_adapter")) or \
            model.strip().lower().startswith(("ip-adapter", "ip_adapter")):
        return "reference"
    text = f"{module} {model}".lower()
    for kind, words in (("edges", ("canny", "edge")), ("lineart", ("lineart", "line")),
                        ("scribble", ("scribble", "sketch", "hed")),
                        ("depth", ("depth",)), ("tile", ("tile",)),
                        ("pose", ("pose",))):
        if any(word in text for word in words):
            return kind
    return "scribble"


def read_a1111_controls(params: dict[str, str]) -> list[dict[str, Any]]:
    """The controls written as ``ControlNet N`` fields (ours or A1111's), in order:
    ``kind``, ``model``, ``strength``, ``start``, ``end`` each (the images are not in the
    text). Unreadable entries are left out."""
    found = []
    for key, value in params.items():
        head, _, index = key.partition(" ")
        if head.lower() != "controlnet" or not index.strip().isdigit():
            continue
        fields = {}
        for part in str(value).split(","):
            name, sep, text = part.partition(":")
            if sep:
                fields[name.strip().lower()] = text.strip()
        try:
            entry = {"kind": _kind_of_module(fields.get("module", ""), fields.get("model", "")),
                     "model": "" if fields.get("model") in (None, "auto", "None")
                     else fields["model"],
                     "strength": float(fields.get("weight", 1.0)),
                     "start": float(fields.get("guidance start", 0.0)),
                     "end": float(fields.get("guidance end", 1.0))}
        except ValueError:
            continue
        found.append((int(index), entry))
    return [entry for _, entry in sorted(found, key=lambda item: item[0])]


def parse_control_spec(text: str) -> tuple[str, str, float, float, float]:
    """``KIND=IMAGE[:strength[:start:end]]`` (the CLI's ``--control``) as (kind, image path,
    strength, start, end); numbers are read from the right, so a path may hold colons."""
    from studio.core.errors import InvalidRequestError

    kind, sep, rest = text.partition("=")
    kind = kind.strip().lower()
    if not sep or not rest:
        raise InvalidRequestError(f"--control {text!r}: write KIND=IMAGE, e.g. "
                                  "scribble=sketch.png or edges=photo.png:0.8:0:0.6.")
    if kind not in CONTROL_KINDS:
        why = KINDS_OFF.get(kind, "")
        raise InvalidRequestError(f"--control {text!r}: the kind must be one of "
                                  f"{', '.join(CONTROL_KINDS)}" + (f" ({why.rstrip('.')})" if why else "")
                                  + ".")
    parts = rest.split(":")

    def numbers(items: list[str]) -> list[float] | None:
        try:
            return [float(v) for v in items]
        except ValueError:
            return None

    strength, start, end = 1.0, 0.0, 1.0
    if len(parts) >= 4 and (tail := numbers(parts[-3:])) is not None:
        (strength, start, end), parts = tail, parts[:-3]
    elif len(parts) >= 2 and (tail := numbers(parts[-1:])) is not None:
        (strength,), parts = tail, parts[:-1]
    path = ":".join(parts)
    problems = control_problems((ControlLayer(kind, _PLACEHOLDER, strength, start, end),))
    if problems:
        raise InvalidRequestError(f"--control {text!r}: " + "; ".join(
            p.split(": ", 1)[-1] for p in problems) + ".")
    return kind, path, float(strength), float(start), float(end)


_PLACEHOLDER = Pixels(1, 1, "L", b"\x00")
