"""Quantized transformers in GGUF files (Flux, SD 3.x, Qwen-Image and Qwen-Image-Edit as
shared on the hub), so a 12 B model fits a 12 GB GPU.

A ``.gguf`` file holds only the transformer. It is loaded with diffusers' own
``from_single_file(..., quantization_config=GGUFQuantizationConfig(compute_dtype=...))``
(the weights stay quantized; each layer dequantizes as it runs) and the rest of the
pipeline, its text encoders, tokenizers, VAE and scheduler, comes from a *base folder*: a
diffusers folder of the same family beside the file (in the same folder, or one up), as
``models/FLUX.1-dev/`` beside ``models/flux1-dev-Q8_0.gguf``. The base folder's transformer
config describes the file; its transformer weights are not read. The base folder also says
what the pipeline is: a Qwen-Image transformer beside a Qwen-Image-Edit folder edits, beside
a Qwen-Image folder it draws from words (both releases share the transformer's shape).

The family is read from the file's tensor names (the original layout, ``double_blocks.``
and ``joint_blocks.``, or diffusers', both as real files have them) and its
``general.architecture``; a GGUF of anything else (a language model ...) is refused in one
line. Reading GGUF needs the ``gguf`` package (``pip install gguf``: the ``gguf`` extra).
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any

from studio.core.errors import CorruptModelError, ModelNotFoundError, WrongModelKindError
from studio.core.models import ModelInfo

SUFFIX = ".gguf"
# GGUF family -> (transformer class, the families of base folders that fit it). Flux
# Kontext has Flux's transformer: a Kontext GGUF goes with a Kontext folder.
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "flux": ("FluxTransformer2DModel", ("flux", "flux-kontext")),
    "sd3": ("SD3Transformer2DModel", ("sd3",)),
    "qwen": ("QwenImageTransformer2DModel", ("qwenimage", "qwen-image-edit")),
}
LABELS = {"flux": "Flux", "sd3": "SD 3.x", "qwen": "Qwen-Image (or Qwen-Image-Edit)"}
INSTALL = "pip install gguf"
BASE_EXAMPLES = {  # a base folder to download for a family's GGUF (the hint's example)
    "flux": "black-forest-labs/FLUX.1-dev --local-dir models/FLUX.1-dev",
    "sd3": "stabilityai/stable-diffusion-3.5-medium --local-dir models/sd3.5-medium",
    "qwen": "Qwen/Qwen-Image-Edit-2509 --local-dir models/Qwen-Image-Edit-2509",
}
log = logging.getLogger(__name__)
_told_missing = False  # the log says once that GGUF files are skipped for want of gguf


def _reader(path: Path) -> Any:
    try:
        import gguf
    except ImportError:
        raise WrongModelKindError(
            f"{path.name} is a GGUF file: reading it needs the gguf package "
            f"(`{INSTALL}`, or `pip install 'latent-studio[gguf]'`).") from None
    try:
        return gguf.GGUFReader(str(path))
    except Exception as err:  # truncated, not GGUF at all, a newer format
        raise CorruptModelError(f"{path.name} is not a readable GGUF file: it is damaged or "
                                f"incomplete ({type(err).__name__}: {str(err)[:120]}).",
                                hint="Download it again.") from err


def _architecture(reader: Any) -> str:
    field = reader.fields.get("general.architecture")
    if field is None:
        return ""
    try:
        return str(field.contents())
    except Exception:
        try:
            return bytes(field.parts[field.data[0]]).decode("utf-8", "replace")
        except Exception:
            return ""


def family_from_names(names: list[str], architecture: str = "") -> str:
    """``flux``, ``sd3`` or ``qwen`` from a transformer's tensor names (original or
    diffusers layout), else ``""``."""
    keys = [n.removeprefix("model.diffusion_model.") for n in names]

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if has("txt_norm.") and has("img_in.") and has("transformer_blocks."):  # Qwen-Image
        return "qwen"
    if has("double_blocks.") or has("single_transformer_blocks."):
        return "flux"
    if has("joint_blocks.") or (has("transformer_blocks.") and has("pos_embed.")):
        return "sd3"
    return ""


def gguf_family(path: str | Path) -> str:
    """The family of a GGUF transformer (``flux``, ``sd3``, ``qwen``); anything else is
    refused in one line naming what the file is."""
    path = Path(path)
    reader = _reader(path)
    arch = _architecture(reader)
    family = family_from_names([t.name for t in reader.tensors], arch)
    if family:
        return family
    what = f"a {arch} model" if arch else "no transformer Latent Studio recognizes"
    raise WrongModelKindError(
        f"{path.name} holds {what}, not a Flux, SD 3.x or Qwen-Image transformer: those are "
        "the GGUF files Latent Studio loads.")


def gguf_info(path: Path, strict: bool = False) -> ModelInfo | None:
    """The model a ``.gguf`` file is (a listing skips what cannot be read: ``None``;
    ``strict`` raises the one-line reason instead)."""
    global _told_missing
    try:
        family = gguf_family(path)
    except (WrongModelKindError, CorruptModelError) as err:
        if strict:
            raise
        if INSTALL in err.message and not _told_missing:
            _told_missing = True
            log.warning("GGUF files such as %s are not listed: %s", path.name, err.message)
        return None
    from studio.engine.models.discovery import _recommended  # the family's defaults
    from studio.engine.models.families import detect_folder_family

    try:  # the pipeline its base folder makes (Kontext, Qwen-Image-Edit: edit with words)
        family = detect_folder_family(base_folder(path, family))
    except ModelNotFoundError:
        pass  # said when it loads
    return ModelInfo(id=str(path), name=path.stem, kind="diffusion", family=family,
                     source="gguf", path=str(path), size_bytes=path.stat().st_size,
                     recommended=_recommended(path, family))


def base_folder(path: Path, family: str) -> Path:
    """The diffusers folder that gives a GGUF transformer its text encoders and VAE: one of
    ``family`` beside the file or one folder up (the name closest to the file's if several)."""
    from studio.engine.models.families import detect_folder_family

    fits = FAMILIES[family][1]
    seen: set[Path] = set()
    found: list[Path] = []
    for root in (path.parent, path.parent.parent):
        try:
            children = sorted(root.iterdir())
        except OSError:
            continue
        for child in children:
            if child in seen or not (child / "model_index.json").is_file():
                continue
            seen.add(child)
            if detect_folder_family(child) in fits and (child / "transformer").is_dir():
                found.append(child)
    if not found:
        raise ModelNotFoundError(
            f"{path.name} holds only a {LABELS[family]} transformer: put a {LABELS[family]} "
            f"diffusers folder (its text encoders and VAE) beside it in {path.parent}.",
            hint="e.g. huggingface-cli download " + BASE_EXAMPLES.get(family, BASE_EXAMPLES["flux"])
                 + " --exclude 'transformer/*.safetensors'")
    stem = path.stem.lower()
    return max(found, key=lambda f: difflib.SequenceMatcher(None, stem, f.name.lower()).ratio())


def load_transformer(path: Path, family: str, base: Path, compute_dtype: Any) -> Any:
    """The GGUF transformer, quantized, with ``base``'s transformer config."""
    import diffusers
    from diffusers import GGUFQuantizationConfig

    cls = getattr(diffusers, FAMILIES[family][0])
    return cls.from_single_file(
        str(path), quantization_config=GGUFQuantizationConfig(compute_dtype=compute_dtype),
        config=str(base), subfolder="transformer", torch_dtype=compute_dtype,
        local_files_only=True)


def load_gguf(path: str | Path, torch_dtype: Any = None, base: str | Path | None = None,
              cancel: Any = None) -> Any:
    """A pipeline whose transformer is the GGUF file at ``path`` and whose other parts come
    from ``base`` (default: ``base_folder``). ``cancel`` is checked between the parts."""
    import torch
    from diffusers import DiffusionPipeline

    path = Path(path)
    dtype = torch_dtype or torch.float32
    family = gguf_family(path)
    folder = Path(base) if base is not None else base_folder(path, family)
    if cancel is not None:
        cancel.raise_if_cancelled()
    transformer = load_transformer(path, family, folder, dtype)
    if cancel is not None:
        cancel.raise_if_cancelled()
    from studio.engine.models.families import read_json
    from studio.engine.models.processors import processors_without_video

    parts = processors_without_video(folder, read_json(folder / "model_index.json"))
    pipe = DiffusionPipeline.from_pretrained(folder, transformer=transformer,
                                             torch_dtype=dtype, local_files_only=True, **parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe
