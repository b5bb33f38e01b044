"""Model discovery: embedded models, model folders (A1111/ComfyUI layouts), the HF cache.

Discovery only reads configs and safetensors headers; nothing is loaded.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Iterable
from pathlib import Path

from studio.core.errors import ModelNotFoundError
from studio.core.models import ModelInfo
from studio.engine.models.families import UNKNOWN, detect_folder_family, read_json, spec_for

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
# Sub-folders of A1111 (models/Stable-diffusion, models/Lora ...) and ComfyUI
# (models/checkpoints, models/loras ...) and the kind of file each holds.
LAYOUT_KINDS = {
    "stable-diffusion": "diffusion", "checkpoints": "diffusion", "diffusers": "diffusion",
    "unet": "diffusion", "lora": "lora", "loras": "lora", "lycoris": "lora",
    "vae": "vae", "esrgan": "upscaler", "realesrgan": "upscaler", "upscale_models": "upscaler",
    "swinir": "upscaler",
}


def safetensors_keys(path: Path) -> dict[str, dict]:
    """The tensor table of a ``.safetensors`` header (names, dtypes, shapes): no weights read."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError("file too short")
        (n,) = struct.unpack("<Q", head)
        if n > 100_000_000:
            raise ValueError("header too large")
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header


def classify_safetensors(path: Path) -> str:
    """``diffusion`` (a checkpoint), ``lora``, ``vae``, ``upscaler`` or ``unknown``."""
    try:
        keys = list(safetensors_keys(path))
    except (OSError, ValueError):
        return "unknown"
    if any("lora_down" in k or "lora_A" in k or ".lora." in k or k.startswith("lora_")
           for k in keys[:2000]):
        return "lora"
    if any(k.startswith(("model.diffusion_model.", "conditioner.", "cond_stage_model."))
           for k in keys):
        return "diffusion"
    from studio.engine.models.transformer_files import lone_family

    if lone_family(path, keys):  # Flux or SD 3.x alone (ComfyUI's diffusion_models/)
        return "diffusion"
    if any(k.startswith(("encoder.down", "decoder.up", "first_stage_model.")) for k in keys):
        return "vae"
    if any(k.startswith(("conv_first.", "body.", "model.0.", "RRDB")) for k in keys[:50]):
        return "upscaler"
    return "unknown"


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _recommended(folder: Path, family: str) -> tuple[tuple[str, object], ...]:
    studio = read_json(folder / "studio.json")
    rec = dict(studio.get("recommended", {}))
    if family and family != UNKNOWN:
        spec = spec_for(family)
        defaults = spec.defaults
        for key, value in (("width", defaults.width), ("height", defaults.height),
                           ("steps", defaults.steps), ("guidance", defaults.guidance),
                           ("scheduler", defaults.scheduler)):
            rec.setdefault(key, value)
        from studio.core.samplers import SCHEDULER_NAMES

        # The schedulers that fit, so that a model switch can leave one that does not.
        rec["schedulers"] = spec.scheduler_names(SCHEDULER_NAMES)
        if spec.edit:  # edit with words (Flux Kontext): the window offers that mode
            rec["edit"] = True
            if not spec.txt2img:  # Qwen-Image-Edit: it cannot draw from words alone
                rec["edit_only"] = True
    return tuple(sorted(rec.items()))


def diffusers_info(folder: Path, source: str, model_id: str | None = None) -> ModelInfo:
    family = detect_folder_family(folder)
    return ModelInfo(id=model_id or str(folder), name=folder.name, kind="diffusion",
                     family=family, source=source, path=str(folder), size_bytes=_size(folder),
                     recommended=_recommended(folder, family))


def embedded_info(folder: Path) -> ModelInfo | None:
    """An embedded model folder in ``resources/models``: its kind comes from its files."""
    if (folder / "model_index.json").is_file():
        return diffusers_info(folder, "embedded", model_id=folder.name)
    studio = read_json(folder / "studio.json")
    kind = studio.get("kind")
    if kind is None:
        for candidate in ("vae", "gan", "attributes", "classifier", "upscaler"):
            if folder.name.endswith(candidate):
                kind = "classifier" if candidate == "attributes" else candidate
    if kind is None:
        return None
    rec = dict(studio.get("recommended", {}))
    if kind in ("vae", "gan"):  # they draw 64 x 64 portraits in one pass
        rec = {"width": 64, "height": 64, "steps": 1, **rec}
    return ModelInfo(id=folder.name, name=folder.name, kind=str(kind),
                     family=str(studio.get("family", "studio-tiny")), source="embedded",
                     path=str(folder), size_bytes=_size(folder),
                     recommended=tuple(sorted(rec.items())))


def scan_folder(root: Path, kind_hint: str | None = None, depth: int = 3) -> list[ModelInfo]:
    """Models in a user folder: diffusers folders, checkpoints, LoRAs, VAEs, upscalers."""
    found: list[ModelInfo] = []
    if not root.is_dir() or depth < 0:
        return found
    if (root / "model_index.json").is_file():
        return [diffusers_info(root, "diffusers")]
    try:
        children = sorted(root.iterdir())
    except OSError:
        return found
    for child in children:
        hint = LAYOUT_KINDS.get(child.name.lower(), kind_hint)
        if child.is_dir():
            found.extend(scan_folder(child, hint, depth - 1))
        elif child.suffix.lower() == ".safetensors":
            kind = classify_safetensors(child)
            if kind == "unknown":
                kind = hint or "unknown"
            if kind == "unknown":
                continue
            family = _checkpoint_family(child) if kind == "diffusion" else ""
            found.append(ModelInfo(id=str(child), name=child.stem, kind=kind, family=family,
                                   source="single-file", path=str(child),
                                   size_bytes=child.stat().st_size,
                                   recommended=(_recommended(child, family)
                                                if family.startswith(("flux", "sd3")) else ())))
        elif child.suffix.lower() == ".gguf":  # a quantized transformer (Flux, SD 3.x)
            from studio.engine.models.gguf import gguf_info

            if (info := gguf_info(child)) is not None:
                found.append(info)
        elif child.suffix.lower() in (".pth",) and hint == "upscaler":
            found.append(ModelInfo(id=str(child), name=child.stem, kind="upscaler", family="",
                                   source="single-file", path=str(child),
                                   size_bytes=child.stat().st_size))
    return found


def _checkpoint_family(path: Path) -> str:
    try:
        from studio.engine.models.transformer_files import lone_family

        if family := lone_family(path, safetensors_keys(path)):
            return family
    except (OSError, ValueError):
        return "unknown"
    try:
        from studio.engine.models.single_file import detect_checkpoint_family

        return detect_checkpoint_family(path)
    except Exception:
        return "unknown"


def scan_hf_cache() -> list[ModelInfo]:
    """Diffusers pipelines in the Hugging Face cache (works offline)."""
    try:
        from huggingface_hub import constants, scan_cache_dir

        # The cache named now (``HF_HUB_CACHE``), not the one bound when huggingface_hub's
        # cache module was first imported.
        info = scan_cache_dir(constants.HF_HUB_CACHE)
    except Exception:  # no cache yet, or an unreadable one
        return []
    found = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        for rev in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):
            snap = Path(rev.snapshot_path)
            if (snap / "model_index.json").is_file():
                found.append(diffusers_info(snap, "hf-cache", model_id=repo.repo_id))
                found[-1] = ModelInfo(**{**found[-1].__dict__, "name": repo.repo_id,
                                         "size_bytes": repo.size_on_disk})
                break
    return found


def discover(embedded_dir: Path | None, folders: Iterable[Path] = (),
             hf_cache: bool = True) -> list[ModelInfo]:
    """Every model found: embedded first, then the user's folders, then the HF cache."""
    models: list[ModelInfo] = []
    if embedded_dir is not None and embedded_dir.is_dir():
        for child in sorted(embedded_dir.iterdir()):
            if child.is_dir():
                info = embedded_info(child)
                if info is not None:
                    models.append(info)
    for folder in folders:
        models.extend(scan_folder(Path(folder)))
    if hf_cache:
        models.extend(scan_hf_cache())
    seen: set[str] = set()
    unique = []
    for m in models:
        if m.id not in seen:
            seen.add(m.id)
            unique.append(m)
    return unique


def resolve(model_id: str, models: list[ModelInfo]) -> ModelInfo:
    """The model a request names: an id or name from discovery, a path, or a cached hub id."""
    for m in models:
        if model_id in (m.id, m.name, m.path):
            return m
    path = Path(model_id).expanduser()
    if path.exists():
        if path.is_dir():
            if (path / "model_index.json").is_file():
                return diffusers_info(path, "diffusers")
            return ModelInfo(id=str(path), name=path.name, kind="unknown", family="",
                             source="folder", path=str(path))
        if path.suffix.lower() == ".gguf":  # one line where it cannot be read or used
            from studio.engine.models.gguf import gguf_info

            return gguf_info(path, strict=True)  # type: ignore[return-value]
        kind = classify_safetensors(path) if path.suffix == ".safetensors" else "unknown"
        family = _checkpoint_family(path) if kind == "diffusion" else ""
        return ModelInfo(id=str(path), name=path.stem, kind=kind, family=family,
                         source="single-file", path=str(path), size_bytes=path.stat().st_size,
                         recommended=(_recommended(path, family)
                                      if family.startswith(("flux", "sd3")) else ()))
    if model_id.count("/") == 1 and not model_id.startswith(("/", ".")):
        try:
            from huggingface_hub import snapshot_download

            snap = Path(snapshot_download(model_id, local_files_only=True))
        except Exception:
            snap = None
        if snap is not None and (snap / "model_index.json").is_file():
            return diffusers_info(snap, "hf-cache", model_id=model_id)
        raise ModelNotFoundError(
            f"The model {model_id!r} is not in the Hugging Face cache, and this machine is "
            "offline.", hint="Download it once while online, or point --model at a folder.")
    names = ", ".join(m.name for m in models if m.kind == "diffusion") or "none found"
    raise ModelNotFoundError(f"No model named {model_id!r}.",
                             hint=f"Models found: {names}. See `studio models`.")
