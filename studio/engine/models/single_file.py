"""Single-file ``.safetensors`` checkpoints (CompVis/LDM, A1111 layout): detect, load, save.

Loading never touches the network: each family has a diffusers config folder bundled in
``resources/configs`` (the CLIP tokenizer is stored once and composed into a temporary copy
of the folder), handed to diffusers' ``from_single_file(config=..., local_files_only=True)``.
Saving writes the original key layout (see :mod:`studio.engine.models.checkpoint_keys`), which
A1111, ComfyUI and diffusers itself read.

Pickled checkpoints (``.ckpt``, ``.pt``, ``.bin``) are refused unless the caller allows them,
and then only read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from studio.core.errors import (
    CorruptModelError,
    ModelNotFoundError,
    StudioError,
    UnsafeModelFileError,
    WrongModelKindError,
)
from studio.engine.models import checkpoint_keys as ck

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")

# Family -> bundled config folder. SD2 v-prediction and epsilon weights look the same, so
# plain "sd2" gets the 768 v-prediction config (SD 2.0-v / 2.1): pass "sd2-512" for the base.
CONFIG_FOLDERS = {
    "sd1": "sd15", "sd1-inpaint": "sd15",
    "sd2": "sd2-768-v", "sd2-v": "sd2-768-v", "sd2-768-v": "sd2-768-v",
    "sd2-512": "sd2-512", "sd2-inpaint": "sd2-512",
    "sdxl": "sdxl-base", "sdxl-inpaint": "sdxl-base",
}
# The family detect_checkpoint_family reports for each name load_single_file accepts.
_BASE_FAMILY = {"sd2-v": "sd2", "sd2-768-v": "sd2", "sd2-512": "sd2"}
# Text-encoder keys a full checkpoint of the family must hold.
_TEXT_PREFIXES = {
    "sd1": (ck.SD1_CLIP_PREFIX,),
    "sd2": (ck.SD2_OPENCLIP_PREFIX,),
    "sdxl": (ck.SDXL_CLIP_PREFIX, ck.SDXL_OPENCLIP_PREFIX),
}
_LORA_MARKERS = ("lora_down", "lora_up", "lora_A", "lora_B", ".lora.", "hada_w1", "lokr_w1",
                 "oft_blocks", ".alpha")


# ----------------------------------------------------------------------------- reading


def _looks_like_pickle(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    if head[8:9] == b"{":  # safetensors: 8-byte header length, then the JSON header
        return False
    # torch.save zip archives start with "PK\x03\x04"; legacy pickles with PROTO (0x80, 2..5).
    return head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05")


def _refuse_pickle(path: Path) -> UnsafeModelFileError:
    return UnsafeModelFileError(
        f"{path.name} is a pickled checkpoint, which can run code when opened; "
        "Latent Studio only loads .safetensors files.",
        hint="Convert it to .safetensors with a tool you trust, or find a .safetensors "
             "download of the same model.")


def _load_pickle_state_dict(path: Path) -> dict[str, Any]:
    """Tensors of a pickled checkpoint, read with ``weights_only=True`` (no code runs)."""
    import pickle

    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) format cannot be memory-mapped
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise UnsafeModelFileError(
                f"{path.name} holds objects other than tensors and was not opened.") from err
        except Exception as err:
            raise CorruptModelError(f"{path.name} could not be read: it is damaged or "
                                    "incomplete.") from err
    except pickle.UnpicklingError as err:
        raise UnsafeModelFileError(
            f"{path.name} holds objects other than tensors and was not opened.") from err
    except Exception as err:
        raise CorruptModelError(f"{path.name} could not be read: it is damaged or "
                                "incomplete.") from err
    while isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise CorruptModelError(f"{path.name} does not hold a state dict.")
    return {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}


def _read_header(path: Path, allow_pickle: bool) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """``({key: shape}, metadata)`` of a checkpoint, without reading the weights of a
    safetensors file."""
    if not path.is_file():
        raise ModelNotFoundError(f"There is no model file at {path}.")
    if path.suffix.lower() in PICKLE_SUFFIXES or _looks_like_pickle(path):
        if not allow_pickle:
            raise _refuse_pickle(path)
        state = _load_pickle_state_dict(path)
        return {k: tuple(v.shape) for k, v in state.items()}, {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as err:  # SafetensorError, OSError, header JSON errors
        raise CorruptModelError(
            f"{path.name} is not a readable .safetensors file: it is damaged or incomplete "
            f"({str(err)[:120]}).", hint="Download it again.") from err
    if not shapes:
        raise CorruptModelError(f"{path.name} holds no tensors.")
    return shapes, metadata


# ----------------------------------------------------------------------------- detection


def _has_prefix(keys: Any, prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)


def _unet_family(shapes: Mapping[str, tuple[int, ...]]) -> str:
    """SD1 / SD2 / SDXL from the UNet alone (files whose text encoders were stripped)."""
    p = ck.UNET_PREFIX
    label = shapes.get(p + "label_emb.0.0.weight")
    if label is not None:
        return "sdxl-refiner" if label[-1] == 2560 else "sdxl"
    context = next((s[-1] for k, s in shapes.items()
                    if k.startswith(p) and k.endswith("attn2.to_k.weight")), None)
    if context == 1024:
        return "sd2"
    if context == 768:
        return "sd1"
    # Unusual widths: SD2 projects in and out of attention with linear layers, SD1 with 1x1 convs.
    proj_in = next((s for k, s in shapes.items()
                    if k.startswith(p) and k.endswith(".proj_in.weight")), None)
    return "sd2" if proj_in is not None and len(proj_in) == 2 else "sd1"


def _not_a_checkpoint(name: str, keys: list[str]) -> WrongModelKindError:
    def has(*parts: str) -> bool:
        return any(part in k for k in keys for part in parts)

    if has(*_LORA_MARKERS) or any(k.startswith(("lora_", "lycoris_")) for k in keys):
        return WrongModelKindError(f"{name} is a LoRA, not a full checkpoint.",
                                   hint="Load it from the LoRA panel.")
    if has("string_to_param", "emb_params") or set(keys) <= {"clip_l", "clip_g"}:
        return WrongModelKindError(f"{name} is a textual-inversion embedding, not a checkpoint.",
                                   hint="Put it in the embeddings folder and use it in a prompt.")
    if has("control_model.", "controlnet_cond_embedding", "input_hint_block"):
        return WrongModelKindError(f"{name} is a ControlNet, not a checkpoint.")
    if all(k.startswith(("encoder.", "decoder.", "quant_conv.", "post_quant_conv.",
                         "first_stage_model.", "vae.")) for k in keys):
        return WrongModelKindError(f"{name} is a VAE only, not a full checkpoint.",
                                   hint="Choose it as the VAE of a model in the model manager.")
    if has("joint_blocks.", "double_blocks.", "single_blocks."):
        return WrongModelKindError(
            f"{name} is an SD3 or Flux transformer alone: Latent Studio loads SD3 only as a "
            "diffusers folder, Flux with its text encoders and VAE beside it (ComfyUI's "
            "models/text_encoders/ and models/vae/).")
    if any(k.startswith(("down_blocks.", "conv_in.", "time_embedding.")) for k in keys):
        return WrongModelKindError(
            f"{name} is a UNet in diffusers layout, not a full checkpoint.",
            hint="Load the whole diffusers pipeline folder instead.")
    if any(k.startswith(("text_model.", "embeddings.", "encoder.layers.")) for k in keys):
        return WrongModelKindError(f"{name} is a text encoder only, not a full checkpoint.")
    return WrongModelKindError(f"{name} is not a Stable Diffusion checkpoint Latent Studio "
                               "recognizes.")


def family_from_shapes(shapes: Mapping[str, tuple[int, ...]], name: str = "This file") -> str:
    """The family of a checkpoint from its tensor names and shapes (see
    :func:`detect_checkpoint_family`)."""
    keys = list(shapes)
    p = ck.UNET_PREFIX
    if not _has_prefix(keys, p):
        raise _not_a_checkpoint(name, keys)
    if _has_prefix(keys, p + "joint_blocks.") or _has_prefix(keys, p + "double_blocks."):
        raise _not_a_checkpoint(name, [k[len(p):] for k in keys if k.startswith(p)])
    first = shapes.get(p + "input_blocks.0.0.weight")
    if first is None or len(first) != 4:
        raise WrongModelKindError(f"{name} has a UNet Latent Studio does not recognize.")
    if _has_prefix(keys, "conditioner.embedders.1.") or _has_prefix(keys, ck.SDXL_CLIP_PREFIX):
        family = "sdxl"
    elif _has_prefix(keys, "conditioner.embedders.0.model."):
        family = "sdxl-refiner"
    elif _has_prefix(keys, ck.SD2_OPENCLIP_PREFIX):
        family = "sd2"
    elif _has_prefix(keys, ck.SD1_CLIP_PREFIX):
        family = "sd1"
    else:
        family = _unet_family(shapes)
    in_channels = first[1]
    if in_channels == 9 and family != "sdxl-refiner":
        return family + "-inpaint"
    if in_channels == 8:
        raise WrongModelKindError(f"{name} is an InstructPix2Pix model, which Latent Studio "
                                  "does not load from a single file.")
    if in_channels == 7:
        raise WrongModelKindError(f"{name} is an upscaler model, not a checkpoint.")
    if in_channels != 4:
        raise WrongModelKindError(f"{name} has a UNet with {in_channels} input channels, "
                                  "which Latent Studio does not recognize.")
    return family


def detect_checkpoint_family(path: str | os.PathLike[str], *, allow_pickle: bool = False) -> str:
    """Family of a single-file checkpoint from its tensor names and shapes only.

    Returns ``"sd1"``, ``"sd2"``, ``"sdxl"``, ``"sdxl-refiner"`` or an inpainting variant
    (``"sd1-inpaint"``, ``"sd2-inpaint"``, ``"sdxl-inpaint"``: UNet with 9 input channels).
    SD2 v-prediction and epsilon weights cannot be told apart: both are ``"sd2"``.

    Raises
    ------
    WrongModelKindError
        A LoRA, VAE, embedding, ControlNet or anything else that is not a full checkpoint.
    UnsafeModelFileError
        A pickled file, unless ``allow_pickle`` (then read with ``weights_only=True``).
    CorruptModelError
        A truncated or damaged file.
    """
    path = Path(path)
    shapes, _ = _read_header(path, allow_pickle)
    return family_from_shapes(shapes, path.name)


# ----------------------------------------------------------------------------- configs

_COMPOSED: dict[tuple[str, int], Path] = {}
_COMPOSED_LOCK = threading.Lock()


def _cleanup_composed() -> None:
    for folder in _COMPOSED.values():
        shutil.rmtree(folder, ignore_errors=True)


atexit.register(_cleanup_composed)


def bundled_config_dir(name: str, *, in_channels: int = 4) -> Path:
    """A complete diffusers config folder for a bundled family (``sd15``, ``sd2-512``,
    ``sd2-768-v``, ``sdxl-base``), with the CLIP tokenizer files in place.

    The folder is a temporary copy made once per process; ``in_channels`` 9 gives the
    inpainting UNet.
    """
    from studio.paths import bundled_configs_dir

    with _COMPOSED_LOCK:
        cached = _COMPOSED.get((name, in_channels))
        if cached is not None and cached.is_dir():
            return cached
        source = bundled_configs_dir() / name
        tokenizer = bundled_configs_dir() / "clip-tokenizer"
        if not (source / "model_index.json").is_file():
            raise ModelNotFoundError(f"The bundled configuration {name!r} is missing.",
                                     hint="Reinstall Latent Studio.")
        folder = Path(tempfile.mkdtemp(prefix=f"studio-config-{name}-"))
        shutil.copytree(source, folder, dirs_exist_ok=True)
        for sub in folder.glob("tokenizer*"):
            for file in ("vocab.json", "merges.txt"):
                shutil.copyfile(tokenizer / file, sub / file)
        if in_channels != 4:
            unet_config = folder / "unet" / "config.json"
            data = json.loads(unet_config.read_text(encoding="utf-8"))
            data["in_channels"] = in_channels
            unet_config.write_text(json.dumps(data, indent=2), encoding="utf-8")
        _COMPOSED[(name, in_channels)] = folder
        return folder


# ----------------------------------------------------------------------------- loading


def _pipeline_class(family: str) -> Any:
    import diffusers

    names = {"sd1": "StableDiffusionPipeline", "sd2": "StableDiffusionPipeline",
             "sdxl": "StableDiffusionXLPipeline", "sd1-inpaint": "StableDiffusionInpaintPipeline",
             "sd2-inpaint": "StableDiffusionInpaintPipeline",
             "sdxl-inpaint": "StableDiffusionXLInpaintPipeline"}
    return getattr(diffusers, names[family])


def resolve_family(requested: str | None, detected: str, metadata: Mapping[str, str],
                    name: str) -> tuple[str, str]:
    """``(base family, config folder name)`` for a load."""
    if requested is None:
        requested = detected
        if detected == "sd2":
            # Weights cannot tell v from epsilon; a modelspec header (ours, kohya's) can.
            prediction = metadata.get("modelspec.prediction_type", "").lower()
            requested = "sd2-512" if prediction == "epsilon" else "sd2"
    if requested == "sdxl-refiner" or detected == "sdxl-refiner":
        raise WrongModelKindError(
            f"{name} is an SDXL refiner, which Latent Studio does not load from a single file.",
            hint="Use an SDXL base checkpoint, or the refiner's diffusers folder.")
    if requested not in CONFIG_FOLDERS:
        raise WrongModelKindError(f"Unknown checkpoint family {requested!r}.")
    base = _BASE_FAMILY.get(requested, requested)
    if base != detected:
        raise WrongModelKindError(f"{name} is a {detected} checkpoint, not {requested}.")
    return base, CONFIG_FOLDERS[requested]


def _openclip_text_encoder(path: Path, config_dir: Path, torch_dtype: Any) -> Any:
    """SDXL's second text encoder built from ``text_encoder_2/config.json`` and the
    ``conditioner.embedders.1.model.*`` weights.

    diffusers picks the CLIP weights for a text encoder by its width, so it cannot tell the two
    encoders apart when they have the same width (tiny test models do): load this one here.
    """
    from safetensors import safe_open
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    config = CLIPTextConfig.from_pretrained(config_dir / "text_encoder_2", local_files_only=True)
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys() if k.startswith(ck.SDXL_OPENCLIP_PREFIX)}
    model = CLIPTextModelWithProjection(config)
    state = ck.from_openclip(tensors, ck.SDXL_OPENCLIP_PREFIX, wrapped=True)
    model.load_state_dict(state, strict=True)
    if torch_dtype is not None:
        model.to(torch_dtype)
    return model.eval()


def _same_text_widths(config_dir: Path) -> bool:
    def width(sub: str) -> int | None:
        try:
            data = json.loads((config_dir / sub / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data.get("hidden_size")

    return width("text_encoder") == width("text_encoder_2")


def _pickle_to_safetensors(path: Path) -> Path:
    from safetensors.torch import save_file

    state = _load_pickle_state_dict(path)
    seen: set[int] = set()
    tensors = {}
    for key, tensor in state.items():
        ptr = tensor.untyped_storage().data_ptr()
        tensor = tensor.contiguous()
        tensors[key] = tensor.clone() if ptr in seen else tensor
        seen.add(ptr)
    fd, tmp = tempfile.mkstemp(prefix="studio-ckpt-", suffix=".safetensors")
    os.close(fd)
    save_file(tensors, tmp)
    return Path(tmp)


_READ_CHECK_BYTES = 64 * 1024**2  # a cancel is checked after each 64 MB read


def _check(cancel: Any) -> None:
    if cancel is not None:
        cancel.raise_if_cancelled()


_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16",
                       "BF16": "bfloat16", "I64": "int64", "I32": "int32", "I16": "int16",
                       "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def _read_checkpoint(path: Path, cancel: Any, torch_dtype: Any = None,
                     keep: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """Every tensor of a ``.safetensors`` file (those whose name ``keep`` accepts, where
    given: the others are not read), read one by one with ``cancel`` checked between them
    (each 64 MB).

    Floating-point tensors are converted to ``torch_dtype`` as they are read (the one
    conversion the loaded model makes anyway: the same values), and the file is read with
    plain reads rather than mapped: a mapped file's pages count in the process's memory
    until it is closed, so an fp16 SD 1.5 file loaded in bf16 peaked at the file plus the
    model (4.5 GB); read so, it peaks at about the model. The layout read is safetensors'
    documented one (a little-endian u64 header size, a JSON header of dtype, shape and data
    offsets, then the data); a dtype it does not list (fp8 ...) is read through
    ``safe_open``."""
    import struct

    import torch
    from safetensors import safe_open

    tensors: dict[str, Any] = {}
    read = 0
    with open(path, "rb") as raw:
        (header_size,) = struct.unpack("<Q", raw.read(8))
        header = json.loads(raw.read(header_size))
        header.pop("__metadata__", None)
        base = 8 + header_size
        others: list[str] = []
        scratch: Any = None
        for key, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            if keep is not None and not keep(key):
                continue
            dtype_name = _SAFETENSORS_DTYPES.get(info["dtype"])
            if dtype_name is None:
                others.append(key)
                continue
            begin, end = info["data_offsets"]
            dtype = getattr(torch, dtype_name)
            raw.seek(base + begin)
            if torch_dtype is not None and dtype.is_floating_point and dtype != torch_dtype \
                    and end > begin:
                # Converted as read: the bytes go to one scratch buffer reused for every
                # tensor (fresh pages for each would be faulted in and zeroed, then freed:
                # that made a folder load 1.5-2x slower than diffusers' mapped read).
                if scratch is None or scratch.numel() < end - begin:
                    scratch = torch.empty(end - begin, dtype=torch.uint8)
                view = scratch[:end - begin]
                if raw.readinto(memoryview(view.numpy())) != end - begin:
                    raise ValueError(f"{key}: the file ends inside its data")
                tensor = view.view(dtype).reshape(info["shape"]).to(torch_dtype)
            else:
                buffer = bytearray(end - begin)
                if raw.readinto(buffer) != len(buffer):
                    raise ValueError(f"{key}: the file ends inside its data")
                tensor = (torch.frombuffer(buffer, dtype=dtype) if buffer
                          else torch.empty(0, dtype=dtype)).reshape(info["shape"])
            tensors[key] = tensor
            read += end - begin
            if read >= _READ_CHECK_BYTES:
                _check(cancel)
                read = 0
    if others:
        with safe_open(str(path), framework="pt") as f:
            for key in others:
                tensor = f.get_tensor(key)
                if torch_dtype is not None and tensor.is_floating_point() \
                        and tensor.dtype != torch_dtype:
                    tensor = tensor.to(torch_dtype)
                tensors[key] = tensor
    return tensors


def _assemble(pipeline_class: Any, source: Path, config: Path, torch_dtype: Any,
              given: dict[str, Any], cancel: Any) -> Any:
    """The pipeline of a single file, built as diffusers' ``from_single_file`` builds it
    (each component with ``load_single_file_sub_model``), but with ``cancel`` checked while
    the file is read and between components (UNet, VAE, text encoders)."""
    from diffusers import pipelines
    from diffusers.loaders.single_file import load_single_file_sub_model

    config_dict = dict(pipeline_class.load_config(str(config)))
    config_dict.pop("_ignore_files", None)
    expected, optional = pipeline_class._get_signature_keys(pipeline_class)
    init_dict, _, _ = pipeline_class.extract_init_dict(config_dict)
    init_kwargs = {k: init_dict.pop(k) for k in optional if k in init_dict}
    checkpoint = _read_checkpoint(source, cancel, torch_dtype)
    for name, (library, class_name) in sorted(init_dict.items()):
        if name in given:
            init_kwargs[name] = given[name]
            continue
        if library is None or name == "safety_checker":
            continue
        _check(cancel)
        init_kwargs[name] = load_single_file_sub_model(
            library_name=library, class_name=class_name, name=name, checkpoint=checkpoint,
            pipelines=pipelines, is_pipeline_module=hasattr(pipelines, library),
            cached_model_config_path=str(config), torch_dtype=torch_dtype,
            local_files_only=True)
    del checkpoint
    _check(cancel)
    for module in set(expected) - set(init_kwargs):
        init_kwargs[module] = None
    return pipeline_class(**init_kwargs)


def load_single_file(path: str | os.PathLike[str], family: str | None = None,
                     config_dir: str | os.PathLike[str] | None = None, torch_dtype: Any = None,
                     *, allow_pickle: bool = False, cancel: Any = None) -> Any:
    """Load a single-file checkpoint as a diffusers pipeline, with no network access.

    Parameters
    ----------
    path
        A ``.safetensors`` checkpoint in the original (LDM/A1111) layout.
    family
        ``None`` to detect it. Also ``"sd2-512"`` (epsilon, 512) or ``"sd2"`` / ``"sd2-768-v"``
        (v-prediction, 768: the default for SD2 unless the file's metadata says epsilon).
    config_dir
        A diffusers folder whose configs and tokenizers describe the checkpoint, instead of the
        bundled one.
    torch_dtype
        dtype of the loaded weights (default float32).
    allow_pickle
        Accept ``.ckpt``/``.pt`` files, read with ``torch.load(weights_only=True)``.
    cancel
        A ``CancelToken`` checked while the file is read and between components: a cancelled
        load raises ``CancelledError`` (a ``StudioError``) and returns nothing.

    Returns
    -------
    A ``StableDiffusionPipeline``, ``StableDiffusionXLPipeline`` or their inpainting variants.
    """
    path = Path(path)
    shapes, metadata = _read_header(path, allow_pickle)
    detected = family_from_shapes(shapes, path.name)
    base, folder_name = resolve_family(family, detected, metadata, path.name)
    text_family = base.removesuffix("-inpaint")
    missing = [p for p in _TEXT_PREFIXES[text_family] if not _has_prefix(shapes, p)]
    if missing:
        raise WrongModelKindError(
            f"{path.name} holds only part of a {text_family} model (no text encoder).",
            hint="Load the full checkpoint or the model's diffusers folder.")
    if not _has_prefix(shapes, ck.VAE_PREFIX):
        raise WrongModelKindError(
            f"{path.name} has no VAE weights (a checkpoint saved without its VAE).",
            hint="Load a full checkpoint, or the model's diffusers folder.")
    if config_dir is not None:
        config = Path(config_dir)
    else:
        in_channels = shapes[ck.UNET_PREFIX + "input_blocks.0.0.weight"][1]
        config = bundled_config_dir(folder_name, in_channels=in_channels)

    source, temporary = path, False
    if path.suffix.lower() in PICKLE_SUFFIXES or _looks_like_pickle(path):
        source, temporary = _pickle_to_safetensors(path), True
    try:
        given: dict[str, Any] = {}
        if text_family == "sdxl" and _same_text_widths(config):
            given["text_encoder_2"] = _openclip_text_encoder(source, config, torch_dtype)
        pipe = _assemble(_pipeline_class(base), source, config, torch_dtype, given, cancel)
    except (StudioError, MemoryError):
        raise
    except Exception as err:
        if type(err).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError and kin
            raise
        raise CorruptModelError(
            f"{path.name} could not be loaded as {base}: its weights do not match the "
            f"architecture ({type(err).__name__}: {str(err)[:200]}).",
            hint="Choose another family for it, or download it again.") from err
    finally:
        if temporary:
            source.unlink(missing_ok=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ----------------------------------------------------------------------------- saving


def _pipeline_family(pipe: Any) -> str:
    if getattr(pipe, "text_encoder_2", None) is not None:
        return "sdxl"
    text_encoder = getattr(pipe, "text_encoder", None)
    if text_encoder is None:
        raise WrongModelKindError("This pipeline has no text encoder to save in a checkpoint.")
    if pipe.unet.config.cross_attention_dim == 1024 or text_encoder.config.hidden_size == 1024:
        return "sd2"
    return "sd1"


_ARCHITECTURES = {"sd1": "stable-diffusion-v1", "sd2": "stable-diffusion-v2",
                  "sdxl": "stable-diffusion-xl-v1-base"}


def checkpoint_state_dict(pipe: Any, family: str | None = None) -> dict[str, Any]:
    """A diffusers SD1/SD2/SDXL pipeline's weights under their original (LDM) names."""
    family = family or _pipeline_family(pipe)
    if family not in _ARCHITECTURES:
        raise WrongModelKindError(f"Saving a {family} pipeline as one file is not supported.")
    out: dict[str, Any] = {}
    unet_sd = pipe.unet.state_dict()
    for key, new in ck.unet_key_map(pipe.unet.config, unet_sd).items():
        out[ck.UNET_PREFIX + new] = unet_sd[key]
    vae_sd = pipe.vae.state_dict()
    for key, new in ck.vae_key_map(pipe.vae.config, vae_sd).items():
        tensor = vae_sd[key]
        if ck.is_vae_attention_matrix(new) and tensor.ndim == 2:
            tensor = tensor[:, :, None, None]  # linear -> 1x1 conv
        out[ck.VAE_PREFIX + new] = tensor
    text_sd = pipe.text_encoder.state_dict()
    if family == "sd2":
        for key, tensor in ck.to_openclip(text_sd).items():
            out[ck.SD2_OPENCLIP_PREFIX + key] = tensor
    else:
        prefix = ck.SDXL_CLIP_PREFIX if family == "sdxl" else ck.SD1_CLIP_PREFIX
        for key, new in ck.clip_key_map(text_sd).items():
            out[prefix + new] = text_sd[key]
    if family == "sdxl":
        for key, tensor in ck.to_openclip(pipe.text_encoder_2.state_dict()).items():
            out[ck.SDXL_OPENCLIP_PREFIX + key] = tensor
    return out


def save_single_file(pipe: Any, path: str | os.PathLike[str], *, family: str | None = None,
                     dtype: Any = None) -> Path:
    """Save a diffusers SD1/SD2/SDXL pipeline as one ``.safetensors`` in the original layout.

    The file is written next to ``path`` and renamed into place, so a crash never leaves a
    half-written checkpoint under that name. Its metadata records the architecture and the
    scheduler's prediction type (``modelspec.*``), which :func:`load_single_file` reads to
    choose the SD2 variant. SD2's OpenCLIP tower is saved with the 23 layers diffusers keeps
    (the original's unused 24th layer and projection are not restored).
    """
    from safetensors.torch import save_file

    path = Path(path)
    family = family or _pipeline_family(pipe)
    tensors: dict[str, Any] = {}
    seen: set[int] = set()
    for key, tensor in checkpoint_state_dict(pipe, family).items():
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        ptr = tensor.untyped_storage().data_ptr()
        # safetensors refuses tensors that share memory (views of one fused weight).
        tensor = tensor.contiguous().clone() if ptr in seen else tensor.contiguous()
        seen.add(ptr)
        tensors[key] = tensor
    prediction = getattr(getattr(pipe, "scheduler", None), "config", {}).get(
        "prediction_type", "epsilon")
    metadata = {"format": "pt", "modelspec.sai_model_spec": "1.0.0",
                "modelspec.architecture": _ARCHITECTURES[family],
                "modelspec.prediction_type": "v" if prediction == "v_prediction" else "epsilon"}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
