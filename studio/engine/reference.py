"""Reference images: IP-Adapters from the user's folders, found, loaded and applied to a call.

A ``reference`` control layer is an image whose look steers the generation through an
IP-Adapter (SD 1.x, SD 2.x and SDXL UNets). Its strength is the adapter's scale
(diffusers' ``set_ip_adapter_scale``), its range the share of the steps it acts on (outside
it the scale is 0 for that step, as a ControlNet's ``control_guidance_start``/``end``).

Where they are found, below every model folder the engine scans:

* IP-Adapter weights: ``.safetensors`` files in ``models/ipadapter`` (ComfyUI), ``ip-adapter``
  or ``ip_adapter`` folders, at any depth below them (the ``h94/IP-Adapter`` download keeps
  ``models/ip-adapter_sd15.safetensors`` beside ``models/image_encoder``). Identified by
  their tensor table, never by name: the width of the text features they attend with (768:
  SD 1.x, 1024: SD 2.x, 2048: SDXL) and their image projection (plain, Plus, full face).
* Image encoders (CLIP vision models): an ``image_encoder`` folder beside the adapter (the
  diffusers layout), else ``models/clip_vision`` (ComfyUI): transformers folders
  (``CLIPVisionModelWithProjection``) or single ``.safetensors`` files of the standard CLIP
  vision sizes (ViT-L, ViT-H, ViT-bigG). Each adapter takes the first encoder whose width
  is what it reads (image embeddings for a plain one, hidden states for Plus).

``ReferencePlan.applied`` loads the adapters into the model's UNet for one call with
diffusers' own loader (``UNet2DConditionModel._load_ip_adapter_weights``, what
``load_ip_adapter`` runs), registers the image encoder on the pipeline, and puts everything
back afterwards (attention processors, projection, encoder): the cached pipeline stays as
it was loaded. The weights and the encoder are kept in the engine's cache, in its budget.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.errors import CorruptModelError, InvalidRequestError, ModelNotFoundError
from studio.engine.control_models import named_dirs, with_article
from studio.engine.models.discovery import safetensors_keys
from studio.engine.models.families import read_json

log = logging.getLogger(__name__)

REFERENCE_DIRS = ("ipadapter", "ip-adapter", "ip_adapter", "ipadapters", "ip-adapters",
                  "ip_adapters")
ENCODER_DIRS = ("clip_vision", "clip-vision", "clipvision", "image_encoder")
# The diffusion families by the width of the text features their cross-attention reads.
FAMILY_BY_DIM = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}
# Why the "reference" kind is off where no IP-Adapter is found (engine features).
REFERENCE_OFF = ("Reference images need an IP-Adapter (.safetensors) in models/ipadapter of "
                 "your model folders, with its image encoder (image_encoder/ beside it, or "
                 "models/clip_vision); none was found.")
# Heads of the standard CLIP vision towers by width (not in the weights' shapes).
_HEADS = {768: 12, 1024: 16, 1280: 16, 1664: 16}
_PROJECTIONS = {"image": "plain", "plus": "Plus", "full": "full face"}


@dataclass(frozen=True)
class ImageEncoderInfo:
    """A CLIP vision model (nothing loaded): ``projection_dim`` is the width of its image
    embeddings, ``hidden_size`` of its hidden states."""

    name: str
    path: str
    projection_dim: int
    hidden_size: int
    image_size: int = 224


@dataclass(frozen=True)
class IPAdapterInfo:
    """An IP-Adapter file (nothing loaded).

    ``cross_dim`` is the width of the text features of the UNets it fits; ``projection``
    how it reads the image (``image``: the encoder's image embedding, ``plus`` and ``full``:
    its penultimate hidden states), ``embed_dim`` the width it reads; ``encoder`` the image
    encoder found for it (``None``: none fits).
    """

    id: str
    name: str
    path: str
    cross_dim: int
    projection: str
    embed_dim: int
    encoder: ImageEncoderInfo | None = None
    source: str = "folder"
    layers: tuple[int, ...] = ()  # the width of each cross-attention layer it adds to

    @property
    def family_label(self) -> str:
        return FAMILY_BY_DIM.get(self.cross_dim, f"{self.cross_dim}-wide-text")

    @property
    def label(self) -> str:
        return f"IP-Adapter {self.name} ({self.family_label})"

    @property
    def reads(self) -> str:
        what = "image embeddings" if self.projection == "image" else "hidden states"
        return f"{self.embed_dim}-wide {what}"

    def fits(self, encoder: ImageEncoderInfo) -> bool:
        width = encoder.projection_dim if self.projection == "image" else encoder.hidden_size
        return width == self.embed_dim


def family_of(cross_dim: int) -> str:
    """The name of the models whose cross-attention reads ``cross_dim``-wide text."""
    return FAMILY_BY_DIM.get(int(cross_dim), f"{cross_dim}-wide-text")


def text_width(model: Any) -> int | None:
    """The width of the text features a diffusion model's UNet attends with, before it
    loads: its diffusers folder's ``unet/config.json``, else its family's (``None``: not
    known)."""
    path = Path(str(getattr(model, "path", "") or ""))
    config = read_json(path / "unet" / "config.json") if path.is_dir() else {}
    dim = config.get("cross_attention_dim")
    if isinstance(dim, list | tuple):
        dim = dim[0] if dim else None
    if isinstance(dim, int):
        return dim
    family = str(getattr(model, "family", "") or "")
    return next((w for prefix, w in (("sdxl", 2048), ("sd2", 1024), ("sd1", 768))
                 if family.startswith(prefix)), None)


# -- discovery -------------------------------------------------------------------------------
def adapter_layout(keys: dict[str, dict]) -> tuple[str, int, int] | None:
    """(projection, width it reads, cross-attention width) of an IP-Adapter's tensor table,
    or ``None`` where it is none (diffusers' key layout: ``image_proj.*``, ``ip_adapter.*``)."""
    first = keys.get("ip_adapter.1.to_k_ip.weight")
    if first is None or len(first.get("shape", ())) != 2:
        return None
    cross = int(first["shape"][1])

    def shape(name: str) -> list[int]:
        return list(keys[name]["shape"])

    if any(".to_k_lora." in k for k in keys) or \
            "image_proj.perceiver_resampler.proj_in.weight" in keys:
        return "faceid", 0, cross
    if "image_proj.proj.weight" in keys:
        return "image", shape("image_proj.proj.weight")[-1], cross
    if "image_proj.proj.3.weight" in keys and "image_proj.proj.0.weight" in keys:
        return "full", shape("image_proj.proj.0.weight")[-1], cross
    if "image_proj.proj_in.weight" in keys:
        return "plus", shape("image_proj.proj_in.weight")[-1], cross
    return None


def adapter_file_info(path: Path, source: str = "folder") -> IPAdapterInfo | None:
    """The IP-Adapter in ``path`` (a ``.safetensors`` file), or ``None`` where it is none."""
    try:
        layout = adapter_layout(safetensors_keys(path))
    except (OSError, ValueError):
        return None
    if layout is None:
        return None
    projection, embed, cross = layout
    keys = safetensors_keys(path)
    layers, n = [], 1
    while f"ip_adapter.{n}.to_k_ip.weight" in keys:
        layers.append(int(keys[f"ip_adapter.{n}.to_k_ip.weight"]["shape"][0]))
        n += 2
    return IPAdapterInfo(id=str(path), name=path.stem, path=str(path), cross_dim=cross,
                         projection=projection, embed_dim=embed, source=source,
                         layers=tuple(layers))


def unet_layers(unet: Any) -> tuple[int, ...]:
    """The width of each cross-attention layer of ``unet``, in the order an IP-Adapter's
    weights are numbered (its attention processors' order)."""
    out = []
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            attn = unet.get_submodule(name.rsplit(".processor", 1)[0])
            out.append(int(attn.to_out[0].out_features))
    return tuple(out)


def encoder_info(path: Path) -> ImageEncoderInfo | None:
    """The CLIP vision model at ``path``: a transformers folder or a single ``.safetensors``
    file in its key layout (``vision_model.*``, ``visual_projection.weight``), or ``None``."""
    if path.is_dir():
        config = read_json(path / "config.json")
        archs = [str(a) for a in config.get("architectures") or []]
        if config.get("model_type") != "clip_vision_model" and \
                "CLIPVisionModelWithProjection" not in archs:
            return None
        if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
            return None
        hidden = int(config.get("hidden_size", 768))
        return ImageEncoderInfo(name=path.name, path=str(path),
                                projection_dim=int(config.get("projection_dim", 512)),
                                hidden_size=hidden, image_size=int(config.get("image_size", 224)))
    if path.suffix.lower() != ".safetensors":
        return None
    try:
        keys = safetensors_keys(path)
    except (OSError, ValueError):
        return None
    config = _file_encoder_config(keys)
    if config is None:
        return None
    return ImageEncoderInfo(name=path.stem, path=str(path),
                            projection_dim=config["projection_dim"],
                            hidden_size=config["hidden_size"], image_size=config["image_size"])


def _file_encoder_config(keys: dict[str, dict]) -> dict[str, Any] | None:
    """A ``CLIPVisionConfig``'s fields read from a single file's tensor shapes."""
    cls = keys.get("vision_model.embeddings.class_embedding")
    proj = keys.get("visual_projection.weight")
    patch = keys.get("vision_model.embeddings.patch_embedding.weight")
    pos = keys.get("vision_model.embeddings.position_embedding.weight")
    fc1 = keys.get("vision_model.encoder.layers.0.mlp.fc1.weight")
    if None in (cls, proj, patch, pos, fc1):
        return None
    hidden = int(cls["shape"][0])
    patch_size = int(patch["shape"][-1])
    grid = round((int(pos["shape"][0]) - 1) ** 0.5)
    layers = 1 + max(int(k.split(".")[3]) for k in keys
                     if k.startswith("vision_model.encoder.layers."))
    return {"hidden_size": hidden, "projection_dim": int(proj["shape"][0]),
            "intermediate_size": int(fc1["shape"][0]), "num_hidden_layers": layers,
            "num_attention_heads": _HEADS.get(hidden, max(1, hidden // 64)),
            "patch_size": patch_size, "image_size": grid * patch_size,
            "num_channels": int(patch["shape"][1]),
            # OpenAI's ViT-L uses quick GELU; the LAION towers (ViT-H, bigG) GELU.
            "hidden_act": "quick_gelu" if hidden == 1024 else "gelu"}




def _walk(folder: Path, depth: int = 3) -> Iterator[Path]:
    """Files and folders below ``folder`` (itself first), up to ``depth`` levels."""
    yield folder
    if depth <= 0 or not folder.is_dir():
        return
    try:
        children = sorted(folder.iterdir())
    except OSError:
        return
    for child in children:
        if child.is_dir():
            yield from _walk(child, depth - 1)
        else:
            yield child


def scan_encoders(roots: list[Path]) -> list[ImageEncoderInfo]:
    """Every image encoder in the clip_vision (and image_encoder) folders below ``roots``."""
    found: list[ImageEncoderInfo] = []
    for root in roots:
        for folder in named_dirs(Path(root), ENCODER_DIRS):
            for path in _walk(folder, 2):
                info = encoder_info(path)
                if info is not None:
                    found.append(info)
    seen: set[str] = set()
    return [e for e in found if not (e.path in seen or seen.add(e.path))]  # type: ignore[func-returns-value]


def _beside(adapter: Path) -> list[ImageEncoderInfo]:
    """The image encoders in the diffusers layout: ``image_encoder`` beside the file, or
    beside its folder."""
    out = []
    for folder in (adapter.parent / "image_encoder", adapter.parent.parent / "image_encoder"):
        info = encoder_info(folder) if folder.is_dir() else None
        if info is not None:
            out.append(info)
    return out


def with_encoder(info: IPAdapterInfo, encoders: list[ImageEncoderInfo]) -> IPAdapterInfo:
    """``info`` with the first encoder that fits it (beside it first, then ``encoders``)."""
    from dataclasses import replace

    for encoder in (*_beside(Path(info.path)), *encoders):
        if info.fits(encoder):
            return replace(info, encoder=encoder)
    return info


def scan_references(roots: list[Path]) -> list[IPAdapterInfo]:
    """Every IP-Adapter in the IP-Adapter folders below ``roots``, with its encoder."""
    encoders = scan_encoders(roots)
    found: list[IPAdapterInfo] = []
    for root in roots:
        for folder in named_dirs(Path(root), REFERENCE_DIRS):
            for path in _walk(folder, 3):
                if path.is_file() and path.suffix.lower() == ".safetensors":
                    info = adapter_file_info(path)
                    if info is not None:
                        found.append(with_encoder(info, encoders))
    seen: set[str] = set()
    return [m for m in found if not (m.id in seen or seen.add(m.id))]  # type: ignore[func-returns-value]


# -- loading ---------------------------------------------------------------------------------
def load_adapter_state(info: IPAdapterInfo) -> dict[str, dict[str, Any]]:
    """The adapter's weights as diffusers' ``load_ip_adapter`` reads a ``.safetensors`` file:
    ``{"image_proj": {...}, "ip_adapter": {...}}``; a damaged file is one clear error."""
    from safetensors import safe_open

    state: dict[str, dict[str, Any]] = {"image_proj": {}, "ip_adapter": {}}
    try:
        with safe_open(info.path, framework="pt", device="cpu") as f:
            for key in f.keys():
                if key.startswith("image_proj."):
                    state["image_proj"][key.replace("image_proj.", "")] = f.get_tensor(key)
                elif key.startswith("ip_adapter."):
                    state["ip_adapter"][key.replace("ip_adapter.", "")] = f.get_tensor(key)
    except Exception as err:
        raise CorruptModelError(f"{Path(info.path).name} is damaged: it is not a readable "
                                f".safetensors file ({type(err).__name__}).") from err
    return state


def load_encoder(info: ImageEncoderInfo, torch_dtype: Any) -> Any:
    """The ``CLIPVisionModelWithProjection`` of ``info`` (on the CPU, eval mode)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    path = Path(info.path)
    try:
        if path.is_dir():
            model = CLIPVisionModelWithProjection.from_pretrained(
                path, dtype=torch_dtype, local_files_only=True)
        else:
            from safetensors.torch import load_file

            config = _file_encoder_config(safetensors_keys(path))
            if config is None:
                raise ValueError("not a CLIP vision model's tensor layout")
            model = CLIPVisionModelWithProjection(CLIPVisionConfig(**config))
            state = {k: v for k, v in load_file(path).items()
                     if k.startswith(("vision_model.", "visual_projection."))}
            missing, unexpected = model.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.endswith("position_ids")]
            if missing or unexpected:
                raise ValueError(f"{len(missing)} weights missing, {len(unexpected)} unknown")
            model = model.to(torch_dtype)
    except Exception as err:
        raise CorruptModelError(
            f"Could not load the image encoder {info.name}: its files are damaged or not a "
            f"CLIP vision model ({type(err).__name__}: {str(err)[:160]}).",
            hint="Use the image_encoder folder that came with the IP-Adapter.") from err
    return model.eval()


@dataclass
class _Weights:
    """Loaded weights as the engine's cache holds them: ``pipe`` is what it weighs."""

    pipe: Any
    value: Any = None


class _Tensors:
    """A state dict weighed as a module is (``parameters``/``buffers``)."""

    def __init__(self, state: dict[str, dict[str, Any]]) -> None:
        self.tensors = [t for part in state.values() for t in part.values()]

    def parameters(self) -> list[Any]:
        return self.tensors

    def buffers(self) -> list[Any]:
        return []


# -- a call's references ---------------------------------------------------------------------
@dataclass
class ReferencePlan:
    """The reference images of one call: adapters' weights, the encoder, images, scales."""

    infos: list[IPAdapterInfo]
    states: list[dict[str, dict[str, Any]]]
    encoder: Any
    image_size: int
    images: list[Any]  # PIL RGB
    scales: list[float]
    starts: list[float]
    ends: list[float]
    notes: list[str] = field(default_factory=list)

    def kwargs(self) -> dict[str, Any]:
        """The pipeline call's reference arguments (one image per adapter)."""
        return {"ip_adapter_image": self.images[0] if len(self.images) == 1
                else list(self.images)}

    def check_pipeline(self, pipe: Any) -> None:
        """Refuse in one line a pipeline that takes no reference images."""
        import inspect

        if "ip_adapter_image" not in inspect.signature(pipe.__call__).parameters or \
                getattr(pipe, "unet", None) is None:
            raise InvalidRequestError(
                f"Reference images cannot be used with {type(pipe).__name__} (diffusers "
                "takes no IP-Adapter there); use a ControlNet instead of a T2I-Adapter.")

    @contextmanager
    def applied(self, pipe: Any) -> Iterator[None]:
        """The adapters in ``pipe``'s UNet and the encoder on ``pipe`` for one call, all put
        back as it was afterwards (also when the call fails or is cancelled)."""
        self.check_pipeline(pipe)
        unet = pipe.unet
        processors = dict(unet.attn_processors)
        hid_proj, hid_type = unet.encoder_hid_proj, unet.config.encoder_hid_dim_type
        encoder, extractor = pipe.image_encoder, getattr(pipe, "feature_extractor", None)
        hook = None
        try:
            try:
                unet._load_ip_adapter_weights(list(self.states),
                                              low_cpu_mem_usage=_low_cpu_mem_usage())
            except Exception as err:  # shapes the header check let through: one line
                names = ", ".join(info.name for info in self.infos)
                raise CorruptModelError(
                    f"Could not load the IP-Adapter {names} into the model: its weights do "
                    f"not fit it ({type(err).__name__}: {str(err)[:160]}).",
                    hint="Pick an IP-Adapter made for this model.") from err
            pipe.register_modules(image_encoder=self.encoder)
            size = _crop_size(extractor)
            if extractor is None or size != self.image_size:
                from transformers import CLIPImageProcessor

                pipe.register_modules(feature_extractor=CLIPImageProcessor(
                    size=self.image_size, crop_size=self.image_size))
            pipe.set_ip_adapter_scale(list(self.scales))
            if any(s > 0 or e < 1 for s, e in zip(self.starts, self.ends, strict=True)):
                hook = unet.register_forward_pre_hook(self._step_range(pipe))
            yield
        finally:
            if hook is not None:
                hook.remove()
            unet.encoder_hid_proj = hid_proj  # first: a Plus adapter's has attention layers
            unet.config.encoder_hid_dim_type = hid_type
            unet.set_attn_processor(processors)
            pipe.register_modules(image_encoder=encoder)
            pipe.register_modules(feature_extractor=extractor)

    def _step_range(self, pipe: Any) -> Any:
        """A UNet pre-hook that sets each adapter's scale for the step about to run: its
        strength inside its range, 0 outside (the step counted as diffusers counts a
        ControlNet's ``control_guidance_start``/``end``)."""
        from diffusers.models.attention_processor import (
            IPAdapterAttnProcessor,
            IPAdapterAttnProcessor2_0,
        )

        def hook(unet: Any, _args: Any) -> None:
            scheduler = pipe.scheduler
            begin = getattr(scheduler, "begin_index", None) or 0
            index = getattr(scheduler, "step_index", None)
            i = (begin if index is None else int(index)) - begin
            n = max(1, int(getattr(pipe, "_num_timesteps", 0) or 1))
            scales = [0.0 if (i / n < s or (i + 1) / n > e) else scale
                      for scale, s, e in zip(self.scales, self.starts, self.ends, strict=True)]
            for proc in unet.attn_processors.values():
                if isinstance(proc, IPAdapterAttnProcessor | IPAdapterAttnProcessor2_0):
                    proc.scale = list(scales)

        return hook


def _low_cpu_mem_usage() -> bool:
    """What diffusers' ``load_ip_adapter`` uses by default (no random init first)."""
    try:
        from diffusers.models.modeling_utils import _LOW_CPU_MEM_USAGE_DEFAULT
        from diffusers.utils import is_accelerate_available
    except ImportError:
        return False
    return bool(_LOW_CPU_MEM_USAGE_DEFAULT and is_accelerate_available())


def _crop_size(extractor: Any) -> int | None:
    crop = getattr(extractor, "crop_size", None)
    if isinstance(crop, dict):
        return int(crop.get("height", 0)) or None
    return int(crop) if isinstance(crop, int) else None


class ReferenceModels:
    """The IP-Adapters an engine can use, and their loaded weights (in the engine's cache)."""

    def __init__(self, registry: Any, cache: Any, choice: Any) -> None:
        self._registry = registry
        self._cache = cache
        self._choice = choice
        self._found: list[IPAdapterInfo] | None = None
        self._dirs: tuple[Path, ...] = ()

    def list(self, refresh: bool = False) -> list[IPAdapterInfo]:
        """Every IP-Adapter found in the user's folders (with its encoder where one fits)."""
        dirs = tuple(self._registry.model_dirs)
        if self._found is None or refresh or dirs != self._dirs:
            self._dirs = dirs
            self._found = scan_references([Path(d) for d in dirs])
        return list(self._found)

    def fitting(self, model: Any) -> list[IPAdapterInfo]:
        """The usable IP-Adapters (with their image encoder) that fit diffusion ``model`` (a
        ``ModelInfo``) by the width of the text features its UNet reads (all of them where
        that is not known; checked again when it runs): what the window offers for it."""
        try:
            found = [i for i in self.list() if i.encoder is not None
                     and i.projection != "faceid"]
        except (OSError, ValueError):  # a folder that cannot be read: nothing to offer
            return []
        width = text_width(model) if model is not None else None
        return [i for i in found if width is None or i.cross_dim == width]

    def kinds_off(self) -> tuple[tuple[str, str], ...]:
        """("reference", why) where no IP-Adapter with its image encoder is found."""
        usable = [i for i in self.list() if i.encoder is not None and i.projection != "faceid"]
        return () if usable else (("reference", REFERENCE_OFF),)

    def resolve(self, name: str, cross_dim: int, model_name: str) -> IPAdapterInfo:
        """The IP-Adapter ``name`` names (id, name or path), or the first that fits a UNet
        of ``cross_dim`` where ``name`` is empty."""
        found = self.list()
        if name:
            for info in found:
                if name in (info.id, info.name, info.path):
                    return info
            path = Path(name).expanduser()
            if path.is_file():
                info = adapter_file_info(path, "file")
                if info is None:
                    raise InvalidRequestError(f"{path.name} is not an IP-Adapter (no "
                                              "image_proj/ip_adapter weights).")
                return with_encoder(info, scan_encoders([Path(d) for d in
                                                         self._registry.model_dirs]))
            names = ", ".join(i.name for i in found) or "none found"
            raise ModelNotFoundError(f"No IP-Adapter named {name!r}.",
                                     hint=f"IP-Adapters found: {names}.")
        for info in sorted(found, key=lambda i: i.projection != "image"):  # plain first
            if info.cross_dim == cross_dim and info.projection != "faceid":
                return info
        raise ModelNotFoundError(
            f"No IP-Adapter for {family_of(cross_dim)} models like {model_name} was found "
            "for the reference image.",
            hint="Put one in models/ipadapter of a model folder (with its image encoder in "
                 "models/clip_vision), or name one as the layer's model.")

    def check_before_load(self, controls: list[Any], model: Any) -> None:
        """Refuse in one line, before the diffusion model ``model`` (a ``ModelInfo``)
        loads, a reference whose IP-Adapter is missing or made for another family (where
        the width of the model's text features is known from its folder or family)."""
        from studio.core.control import is_empty

        width = text_width(model)
        if width is None:
            return
        for control in controls:
            if is_empty(control.image):
                continue
            info = self.resolve(control.model, width, str(getattr(model, "name", "")))
            if info.cross_dim != width:
                raise _wrong_family(info, width, str(getattr(model, "name", "")))

    def _state(self, info: IPAdapterInfo) -> dict[str, dict[str, Any]]:
        key = ("ip-adapter", info.path)

        def loader() -> _Weights:
            state = load_adapter_state(info)
            return _Weights(_Tensors(state), state)

        size = Path(info.path).stat().st_size
        return self._cache.get_or_load(key, loader, expected=size).value

    def _encoder(self, info: ImageEncoderInfo) -> Any:
        key = ("image-encoder", info.path, self._choice.device, self._choice.weight_dtype)

        def loader() -> _Weights:
            model = load_encoder(info, self._choice.torch_dtype())
            return _Weights(model.to(self._choice.torch_device()))

        return self._cache.get_or_load(key, loader).pipe

    def plan(self, loaded: Any, controls: list[Any], width: int, height: int) -> ReferencePlan:
        """The reference layers ``controls`` for the loaded model: every adapter checked
        against its UNet and given its encoder before anything loads."""
        from PIL import Image

        unet = getattr(loaded.pipe, "unet", None)
        if unet is None:
            raise InvalidRequestError(f"{loaded.info.name}: reference images (IP-Adapter) "
                                      "need a UNet model (SD 1.x, 2.x or SDXL).")
        cross = unet.config.cross_attention_dim
        cross = int(cross[0] if isinstance(cross, list | tuple) else cross)
        model_name = loaded.info.name
        infos = [self.resolve(c.model, cross, model_name) for c in controls]
        for info in infos:
            if info.projection == "faceid":
                raise InvalidRequestError(
                    f"{info.label} is a FaceID adapter: it reads face embeddings "
                    "(insightface), which the studio does not make; use a plain or Plus "
                    "IP-Adapter.")
            if info.cross_dim != cross:
                raise _wrong_family(info, cross, model_name)
            if info.layers and info.layers != unet_layers(unet):
                raise InvalidRequestError(
                    f"{info.label} does not fit {model_name}: it was made for a UNet with "
                    f"other attention layers ({len(info.layers)} against "
                    f"{len(unet_layers(unet))}, or of other widths): nothing was loaded.",
                    hint="Pick an IP-Adapter made for this model.")
            if info.encoder is None:
                raise ModelNotFoundError(
                    f"{info.label} needs its image encoder (a CLIP vision model with "
                    f"{info.reads}); none was found: nothing was loaded.",
                    hint="Put the encoder as image_encoder/ beside the adapter, or in "
                         "models/clip_vision of a model folder.")
        encoders = {info.encoder.path for info in infos if info.encoder is not None}
        if len(encoders) > 1:
            raise InvalidRequestError(
                "These IP-Adapters read different image encoders "
                f"({', '.join(sorted(Path(p).name for p in encoders))}); diffusers runs one "
                "per generation: use adapters that share one.")
        first = infos[0].encoder
        assert first is not None
        states = [self._state(info) for info in infos]
        encoder = self._encoder(first)
        images, notes = [], []
        for control in controls:
            rgba = Image.fromarray(control.image.to_array())
            if rgba.mode == "RGBA":  # transparent parts read as white paper
                paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                rgba = Image.alpha_composite(paper, rgba)
            images.append(rgba.convert("RGB"))
        return ReferencePlan(infos=infos, states=states, encoder=encoder,
                             image_size=first.image_size, images=images,
                             scales=[float(c.strength) for c in controls],
                             starts=[float(c.start) for c in controls],
                             ends=[float(c.end) for c in controls], notes=notes)


def _wrong_family(info: IPAdapterInfo, cross: int, model_name: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"{info.label} is for {info.family_label} models; {model_name} is "
        f"{with_article(family_of(cross))} model: nothing was loaded.",
        hint="Pick an IP-Adapter made for this model's family.")

