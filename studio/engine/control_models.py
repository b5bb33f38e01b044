"""Control models in the user's folders: ControlNets and T2I-Adapters, found and loaded.

Found in the A1111 and ComfyUI layouts (``models/ControlNet``, ``models/controlnet``,
``models/t2i_adapter``) below every model folder the engine scans, and among the embedded
models (``studio-tiny-control``): diffusers folders (a ``config.json`` naming
``ControlNetModel`` or ``T2IAdapter``) and single ``.safetensors`` files (diffusers' or the
original ControlNet key layout). Each is identified by the family of diffusion models it
was trained for (SD 1.x, SD 2.x, SDXL, studio-tiny), read from its config or its tensor
shapes, never from its name; discovery reads configs and safetensors headers only.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core.errors import CorruptModelError, ModelNotFoundError, WrongModelKindError
from studio.engine.control_dit import config_arch, file_arch, kinds_for
from studio.engine.models.discovery import safetensors_keys
from studio.engine.models.families import read_json

log = logging.getLogger(__name__)

CONTROL_DIRS = ("controlnet", "t2i_adapter", "t2i-adapter", "t2iadapter", "adapters")
FAMILY_LABELS = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL",
                 "studio-tiny": "studio-tiny", "unknown": "an unknown family"}
FAMILY_LABELS.update({"sd3": "SD 3.x", "flux": "Flux"})  # SD3/Flux ControlNets (control_dit)
# The kinds a control model is for, read from its name where its studio.json does not say.
_KIND_WORDS = (("edges", ("canny", "edge")), ("lineart", ("lineart", "line_art")),
               ("scribble", ("scribble", "sketch")), ("depth", ("depth",)),
               ("tile", ("tile",)), ("pose", ("pose",)))


@dataclass(frozen=True)
class ControlModelInfo:
    """A control model found on disk (nothing loaded).

    ``kind`` is ``"controlnet"`` or ``"t2i-adapter"``; ``family`` the base family it fits
    (``base_family`` of a diffusion family); ``kinds`` the control kinds it is for (empty:
    not known, any).
    """

    id: str
    name: str
    kind: str
    family: str
    path: str
    source: str = "folder"
    kinds: tuple[str, ...] = ()
    # SD3/Flux/union ControlNets (studio.engine.control_dit): the diffusers class ("" for a
    # ControlNetModel or T2IAdapter), a union's number of control modes (and its studio.json
    # modes per kind), the transformer width it fits (0: any).
    arch: str = ""
    modes: int = 0
    width: int = 0
    mode_overrides: tuple[tuple[str, int], ...] = ()

    @property
    def label(self) -> str:
        what = "ControlNet" if self.kind == "controlnet" else "T2I-Adapter"
        if self.arch == "ControlNetUnionModel" or (self.arch and self.modes):
            what = "ControlNet-Union"
        return f"{what} {self.name} ({FAMILY_LABELS.get(self.family, self.family)})"


def base_family(family: str) -> str:
    """The family a control model must be made for to fit a diffusion model of ``family``."""
    if family.startswith("sdxl"):
        return "sdxl"
    if family.startswith("sd2"):
        return "sd2"
    if family.startswith("sd1"):
        return "sd1"
    return family


def _kinds_from_name(name: str) -> tuple[str, ...]:
    low = name.lower()
    return tuple(kind for kind, words in _KIND_WORDS if any(w in low for w in words))


def _config_family(config: dict[str, Any]) -> str:
    cls = str(config.get("_class_name", ""))
    if cls == "T2IAdapter":
        if config.get("adapter_type") == "full_adapter_xl":
            return "sdxl"
        channels = config.get("channels") or [0]
        return "sd1" if channels[0] == 320 else "unknown"
    dim = config.get("cross_attention_dim", 768)
    if isinstance(dim, list | tuple):
        dim = dim[0]
    if config.get("addition_embed_type") == "text_time" or dim == 2048:
        return "sdxl"
    return {768: "sd1", 1024: "sd2"}.get(int(dim or 0), "unknown")


def folder_info(folder: Path, source: str = "folder") -> ControlModelInfo | None:
    """A diffusers control model folder, or ``None`` where ``folder`` is none."""
    config = read_json(folder / "config.json")
    cls = str(config.get("_class_name", ""))
    dit = config_arch(config)  # SD3, Flux or union ControlNet
    if dit is not None:
        return _dit_info(folder, source, config, dit)
    if cls not in ("ControlNetModel", "T2IAdapter"):
        return None
    studio = read_json(folder / "studio.json")
    family = str(studio.get("family") or _config_family(config))
    kinds = tuple(studio.get("control_kinds") or _kinds_from_name(folder.name))
    return ControlModelInfo(id=str(folder) if source != "embedded" else folder.name,
                            name=folder.name,
                            kind="controlnet" if cls == "ControlNetModel" else "t2i-adapter",
                            family=family, path=str(folder), source=source, kinds=kinds)


def _file_layout(keys: dict[str, dict]) -> tuple[str, str, str]:
    """(kind, key layout, family) of a single-file control model from its tensor table."""
    names = list(keys)
    if any(k.startswith(("controlnet_cond_embedding.", "controlnet_down_blocks.")) for k in names):
        layout, kind = "diffusers", "controlnet"
        attn = next((k for k in names if k.endswith("attn2.to_k.weight")), None)
        xl = any(k.startswith("add_embedding.") for k in names)
    elif any("input_hint_block" in k for k in names):
        layout, kind = "original", "controlnet"
        attn = next((k for k in names if k.endswith("attn2.to_k.weight")), None)
        xl = any("label_emb" in k for k in names)
    elif any(k.startswith(("adapter.", "body.", "conv_in.")) for k in names):
        kind = "t2i-adapter"
        layout = "diffusers" if any(k.startswith("adapter.") for k in names) else "original"
        conv = next((k for k in names if k.endswith("conv_in.weight")), None)
        width = int(keys[conv]["shape"][0]) if conv else 0
        xl = False
        family = "sd1" if width == 320 else "unknown"
        return kind, layout, family
    else:
        return "", "", ""
    family = "unknown"
    if attn is not None:
        dim = int(keys[attn]["shape"][1])
        family = {768: "sd1", 1024: "sd2", 2048: "sdxl"}.get(dim, "unknown")
    if xl:
        family = "sdxl"
    return kind, layout, family


def file_info(path: Path) -> ControlModelInfo | None:
    """A single-file control model, or ``None`` where the file is no control model."""
    try:
        keys = safetensors_keys(path)
    except (OSError, ValueError):
        return None
    dit = file_arch(keys)  # SD3, Flux or union ControlNet
    if dit is not None:
        arch, family, modes, width = dit
        family = family or _file_layout(keys)[2]
        return ControlModelInfo(id=str(path), name=path.stem, kind="controlnet",
                                family=family, path=str(path), source="single-file",
                                kinds=kinds_for(arch, family, modes)
                                or _kinds_from_name(path.stem),
                                arch=arch, modes=modes, width=width)
    kind, _layout, family = _file_layout(keys)
    if not kind:
        return None
    return ControlModelInfo(id=str(path), name=path.stem, kind=kind, family=family,
                            path=str(path), source="single-file",
                            kinds=_kinds_from_name(path.stem))


def scan(roots: list[Path], embedded_dir: Path | None) -> list[ControlModelInfo]:
    """Every control model below ``roots`` (in their control sub-folders) and among the
    embedded models."""
    found: list[ControlModelInfo] = []
    if embedded_dir is not None and embedded_dir.is_dir():
        for child in sorted(embedded_dir.iterdir()):
            info = folder_info(child, "embedded") if child.is_dir() else None
            if info is not None:
                found.append(info)
    for root in roots:
        for folder in _control_dirs(Path(root), depth=3):
            found.extend(_scan_control_dir(folder))
    seen: set[str] = set()
    return [m for m in found if not (m.id in seen or seen.add(m.id))]  # type: ignore[func-returns-value]


def named_dirs(root: Path, names: tuple[str, ...], depth: int = 3) -> list[Path]:
    """The folders under ``root`` (down to ``depth`` levels) whose name is one of ``names``
    (lower case): where A1111 and ComfyUI keep control models, IP-Adapters, encoders."""
    if not root.is_dir() or depth < 0:
        return []
    if root.name.lower() in names:
        return [root]
    try:
        children = sorted(c for c in root.iterdir() if c.is_dir())
    except OSError:
        return []
    return [d for child in children for d in named_dirs(child, names, depth - 1)]


def _control_dirs(root: Path, depth: int, names: tuple[str, ...] = CONTROL_DIRS) -> list[Path]:
    return named_dirs(root, names, depth)


def with_article(label: str) -> str:
    """``a`` or ``an`` before a family's label ("an SD 1.x", "a Flux")."""
    return ("an " if label[:1].lower() in "aeiou" or label.startswith("SD") else "a ") + label


def _scan_control_dir(folder: Path) -> list[ControlModelInfo]:
    out = []
    for child in sorted(folder.iterdir()):
        info = (folder_info(child) if child.is_dir()
                else file_info(child) if child.suffix.lower() == ".safetensors" else None)
        if info is not None:
            out.append(info)
    return out


def info_for_path(path: Path) -> ControlModelInfo:
    """The control model at ``path`` (a folder or a file), or one clear error."""
    if not path.exists():
        raise ModelNotFoundError(f"No control model at {path}.")
    info = folder_info(path) if path.is_dir() else (
        file_info(path) if path.suffix.lower() == ".safetensors" else None)
    if info is None:
        if path.is_file() and path.suffix.lower() == ".safetensors":
            try:
                safetensors_keys(path)
            except (OSError, ValueError) as err:
                raise CorruptModelError(f"{path.name} is damaged: it is not a readable "
                                        f".safetensors file ({err}).") from err
        raise WrongModelKindError(f"{path.name} is not a ControlNet or T2I-Adapter "
                                  "(no ControlNetModel/T2IAdapter config or weights).")
    return info


# -- depth estimation models -----------------------------------------------------------------
# Folders a depth-estimation model is kept in (ComfyUI's and A1111's annotator folders too).
DEPTH_DIRS = ("depth", "depth_estimation", "depth-estimation", "depth_anything",
              "depth-anything", "depthanything", "annotators", "annotator", "midas", "dpt")
# transformers' depth-estimation model types (``MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES``,
# kept here: importing transformers to scan folders costs seconds).
DEPTH_MODEL_TYPES = frozenset({"dpt", "depth_anything", "depth_pro", "glpn", "zoedepth",
                               "prompt_depth_anything"})


@dataclass(frozen=True)
class DepthModelInfo:
    """A transformers depth-estimation model folder (DPT, Depth Anything ...)."""

    name: str
    path: str
    model_type: str


def depth_folder_info(folder: Path) -> DepthModelInfo | None:
    """The depth-estimation model in ``folder`` (a transformers folder whose config names a
    ``...ForDepthEstimation`` architecture or a depth model type), or ``None``."""
    config = read_json(folder / "config.json")
    model_type = str(config.get("model_type", ""))
    archs = [str(a) for a in config.get("architectures") or []]
    if archs:
        if not any(a.endswith("ForDepthEstimation") for a in archs):
            return None
    elif model_type not in DEPTH_MODEL_TYPES:
        return None
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        return None
    return DepthModelInfo(name=folder.name, path=str(folder), model_type=model_type)


def scan_depth(roots: list[Path]) -> list[DepthModelInfo]:
    """Every depth-estimation model in the depth and annotator folders below ``roots`` (the
    folder itself, or up to two levels below it)."""
    found: list[DepthModelInfo] = []
    for root in roots:
        for folder in _control_dirs(Path(root), depth=3, names=DEPTH_DIRS):
            level = [folder]
            for _ in range(3):
                nxt = []
                for candidate in level:
                    info = depth_folder_info(candidate)
                    if info is not None:
                        found.append(info)
                        continue
                    try:
                        nxt.extend(sorted(c for c in candidate.iterdir() if c.is_dir()))
                    except OSError:
                        pass
                level = nxt
    seen: set[str] = set()
    return [m for m in found if not (m.path in seen or seen.add(m.path))]  # type: ignore[func-returns-value]


def load_depth_estimator(info: DepthModelInfo, device: Any) -> tuple[Any, Any]:
    """(model, transformers ``depth-estimation`` pipeline) of ``info``; a damaged folder is
    one clear ``CorruptModelError``."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation, pipeline

    try:
        model = AutoModelForDepthEstimation.from_pretrained(info.path, local_files_only=True)
        processor = AutoImageProcessor.from_pretrained(info.path, local_files_only=True)
    except Exception as err:
        raise CorruptModelError(
            f"Could not load the depth-estimation model {info.name}: its files are damaged "
            f"or incomplete ({type(err).__name__}: {str(err)[:160]}).",
            hint="It needs config.json, preprocessor_config.json and its weights.") from err
    model = model.to(device).eval()
    return model, pipeline("depth-estimation", model=model, image_processor=processor,
                           device=device)


# -- loading ---------------------------------------------------------------------------------
def controlnet_config(unet_config: dict[str, Any],
                      embedding: tuple[int, ...] = (16, 32, 96, 256)) -> dict[str, Any]:
    """A ``ControlNetModel`` config for the UNet of ``unet_config`` (as diffusers'
    ``ControlNetModel.from_unet`` makes it, keeping the added text embedding's heads)."""
    import inspect

    from diffusers import ControlNetModel

    params = set(inspect.signature(ControlNetModel.__init__).parameters) - {"self"}
    config = {k: v for k, v in unet_config.items() if k in params}
    config["conditioning_embedding_out_channels"] = list(embedding)
    return config


def _bundled_controlnet_config(family: str) -> dict[str, Any]:
    from studio.paths import bundled_configs_dir

    folder = {"sd1": "sd15", "sdxl": "sdxl-base"}.get(family)
    if folder is None:
        raise WrongModelKindError(
            f"Single-file ControlNets for {FAMILY_LABELS.get(family, family)} models have "
            "no bundled config; use the model's diffusers folder (config.json beside it).")
    unet = read_json(bundled_configs_dir() / folder / "unet" / "config.json")
    return controlnet_config(unet)


def load_control_model(info: ControlModelInfo, torch_dtype: Any) -> Any:
    """The loaded ``ControlNetModel`` or ``T2IAdapter`` of ``info`` (on the CPU); a damaged
    or unknown file is one clear ``StudioError`` and nothing stays loaded."""
    from diffusers import ControlNetModel, T2IAdapter

    path = Path(info.path)
    cls = ControlNetModel if info.kind == "controlnet" else T2IAdapter
    if info.arch:  # SD3ControlNetModel, FluxControlNetModel, ControlNetUnionModel
        import diffusers

        cls = getattr(diffusers, info.arch)
    try:
        if path.is_dir():
            model = cls.from_pretrained(path, torch_dtype=torch_dtype, local_files_only=True,
                                        use_safetensors=any(path.glob("*.safetensors")))
        else:
            model = _load_file(path, info, torch_dtype)
    except (WrongModelKindError, CorruptModelError):
        raise
    except Exception as err:
        raise CorruptModelError(
            f"Could not load the control model {info.name}: its files are damaged or not a "
            f"layout diffusers reads ({type(err).__name__}: {str(err)[:160]}).",
            hint="Download it again, or use its diffusers folder.") from err
    model.eval()
    return model


def _load_file(path: Path, info: ControlModelInfo, torch_dtype: Any) -> Any:
    from diffusers import ControlNetModel
    from safetensors.torch import load_file

    if info.arch:
        return _load_dit_file(path, info, torch_dtype)
    kind, layout, family = _file_layout(safetensors_keys(path))
    if kind != "controlnet":
        raise WrongModelKindError(
            f"{path.name}: single-file T2I-Adapters are not read yet; use the adapter's "
            "diffusers folder (config.json and diffusion_pytorch_model.safetensors).")
    config = _bundled_controlnet_config(family)
    if layout == "diffusers":
        model = ControlNetModel.from_config(config)
        model.load_state_dict(load_file(path), strict=True)
        return model.to(torch_dtype)
    with tempfile.TemporaryDirectory(prefix="studio-controlnet-") as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(
            {"_class_name": "ControlNetModel", **config}), encoding="utf-8")
        return ControlNetModel.from_single_file(str(path), config=tmp, local_files_only=True,
                                                torch_dtype=torch_dtype)


# -- SD3, Flux and union ControlNets (studio.engine.control_dit) ------------------------------
def _dit_info(folder: Path, source: str, config: dict[str, Any],
              dit: tuple[str, str, int, int]) -> ControlModelInfo:
    arch, family, modes, width = dit
    studio = read_json(folder / "studio.json")
    family = str(studio.get("family") or family or _config_family(config))
    overrides = studio.get("control_modes") if isinstance(studio.get("control_modes"), dict) \
        else {}
    pairs = tuple(sorted((str(k), int(v)) for k, v in overrides.items()))
    kinds = tuple(studio.get("control_kinds") or kinds_for(arch, family, modes, overrides)
                  or _kinds_from_name(folder.name))
    return ControlModelInfo(id=str(folder) if source != "embedded" else folder.name,
                            name=folder.name, kind="controlnet", family=family,
                            path=str(folder), source=source, kinds=kinds, arch=arch,
                            modes=modes, width=width, mode_overrides=pairs)


def _load_dit_file(path: Path, info: ControlModelInfo, torch_dtype: Any) -> Any:
    """A single-file union ControlNet for SDXL (xinsir's promax file: diffusers' keys, its
    modes from ``task_embedding``); SD3 and Flux files need their diffusers folder."""
    from diffusers import ControlNetUnionModel
    from safetensors.torch import load_file

    if info.arch != "ControlNetUnionModel" or info.family != "sdxl":
        raise WrongModelKindError(
            f"{path.name}: single-file {FAMILY_LABELS.get(info.family, info.family)} "
            "ControlNets have no bundled config; use its diffusers folder (config.json and "
            "diffusion_pytorch_model.safetensors).")
    import inspect

    params = set(inspect.signature(ControlNetUnionModel.__init__).parameters)
    config = {k: v for k, v in _bundled_controlnet_config("sdxl").items() if k in params}
    config["num_control_type"] = info.modes  # 6 (union) or 8 (promax), from the file
    model = ControlNetUnionModel.from_config(config)
    model.load_state_dict(load_file(path), strict=True)
    return model.to(torch_dtype)
