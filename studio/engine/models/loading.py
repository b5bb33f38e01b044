"""Loading pipelines safely, once, and sharing weights between task variants.

* diffusers folders and HF cache snapshots: ``DiffusionPipeline.from_pretrained`` offline.
* single-file ``.safetensors`` checkpoints: bundled configs (``studio.engine.models.single_file``).
* pickles (``.ckpt``/``.pt``/``.bin`` files) are refused.
Img2img and inpainting variants are made with ``from_pipe``: the same modules, never loaded twice.

A load can be cancelled: the libraries are imported on a helper thread (an import cannot be
interrupted, and the next load needs it anyway) while the job waits in slices of 0.1 s, and the
weights are loaded one component at a time (text encoder, UNet or transformer, VAE...), the
job's cancel token checked between them. A cancelled load raises ``CancelledError`` and leaves
nothing behind: the cache only ever holds a whole pipeline.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.errors import (
    CancelledError,
    CorruptModelError,
    InvalidRequestError,
    ModelNotFoundError,
    OutOfMemoryError,
    UnsafeModelFileError,
    WrongModelKindError,
)
from studio.core.jobs.cancel import CancelToken, active_token
from studio.core.models import ModelInfo
from studio.engine.device import DeviceChoice
from studio.engine.models.discovery import PICKLE_SUFFIXES
from studio.engine.models.hashing import model_hash
from studio.engine.previews import LatentPreviewer, fit_latent_rgb
from studio.engine.tuning import cpu_layout, cpu_threads_for, place_pipeline

log = logging.getLogger(__name__)


def quiet_libraries() -> None:
    """Keep library chatter (progress bars, optional-dependency notes) off the user's terminal."""
    import os
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*torchvision.*")
    from studio.engine.lazy_imports import collector_paused

    try:
        with collector_paused():  # the imports' objects live on: nothing to collect
            import diffusers
            import transformers

        diffusers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except Exception:
        pass


_IMPORTS: Future[None] | None = None
_IMPORTS_LOCK = threading.Lock()
_WAIT_SLICE_S = 0.1


def _import_libraries() -> None:
    from studio.engine.lazy_imports import collector_paused

    quiet_libraries()
    with collector_paused():  # the imports' objects live on: nothing to collect
        import diffusers.pipelines.pipeline_utils  # noqa: F401  (diffusers' models come with it)
        import transformers.modeling_utils  # noqa: F401


def import_libraries(cancel: CancelToken | None = None) -> None:
    """Import diffusers and transformers (10 to 40 s the first time on a slow CPU), waiting
    for them in slices: a cancel ends the wait at once with ``CancelledError``.

    The import runs once per process, on a helper thread that goes on after a cancel: an
    import cannot be stopped halfway, and the next load needs it.
    """
    global _IMPORTS
    with _IMPORTS_LOCK:
        future = _IMPORTS
        if future is None:
            future = _IMPORTS = Future()

            def run() -> None:
                try:
                    _import_libraries()
                except BaseException as err:  # a broken install: every load says so
                    future.set_exception(err)
                else:
                    future.set_result(None)

            threading.Thread(target=run, name="studio-imports", daemon=True).start()
    while True:
        try:
            future.result(timeout=_WAIT_SLICE_S if cancel is not None else None)
            return
        except FutureTimeout:
            assert cancel is not None
            cancel.raise_if_cancelled()


def _check(cancel: CancelToken | None) -> None:
    if cancel is not None:
        cancel.raise_if_cancelled()


@dataclass
class LoadedModel:
    """A loaded pipeline and what the engine needs to run it."""

    info: ModelInfo
    pipe: Any
    family: str
    hash: str
    choice: DeviceChoice
    previewer: LatentPreviewer
    scheduler_config: dict[str, Any]
    variants: dict[str, Any] = field(default_factory=dict)
    cpu_threads: int | None = None  # torch threads to run it with (None: the default)

    def for_task(self, task: str) -> Any:
        """The pipeline for ``txt2img``, ``img2img`` or ``inpaint``, sharing the weights."""
        if task == "txt2img":
            return self.pipe
        from studio.engine.edit import is_edit_family

        if task == "img2img" and is_edit_family(self.family):  # its own call edits
            return self.pipe
        if task not in self.variants:
            from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

            maker = AutoPipelineForImage2Image if task == "img2img" else AutoPipelineForInpainting
            try:  # diffusers' auto-pipeline maps: SD3 and Flux have both, PixArt neither
                variant = maker.from_pipe(self.pipe)
            except (ValueError, KeyError) as err:
                raise InvalidRequestError(
                    f"This model ({self.family}) cannot do {task}: {err}") from err
            variant.set_progress_bar_config(disable=True)
            self.variants[task] = variant
        return self.variants[task]


def check_model_path(info: ModelInfo) -> Path:
    """Refuse what must not or cannot be loaded, with a message that says why."""
    path = Path(info.path)
    if not path.exists():
        raise ModelNotFoundError(f"The model {info.name!r} is no longer at {path}.")
    if path.is_file() and path.suffix.lower() == ".gguf":  # a quantized transformer
        return path
    if path.is_file():
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise UnsafeModelFileError(
                f"{path.name} is a pickle file, which can run code when opened; "
                "Latent Studio only loads .safetensors files.",
                hint="Convert it to .safetensors with a tool you trust, or find a "
                     ".safetensors download of the same model.")
        if path.suffix.lower() != ".safetensors":
            raise WrongModelKindError(f"{path.name} is not a model file Latent Studio knows.")
        if info.kind not in ("diffusion", "unknown"):
            raise WrongModelKindError(
                f"{path.name} is a {info.kind} file, not a checkpoint that generates images.",
                hint="Load LoRAs from the Sliders panel and VAEs from the model manager.")
        return path
    if not (path / "model_index.json").is_file():
        what = "an empty folder" if not any(path.iterdir()) else "not a diffusers pipeline"
        if (path / "config.json").is_file():
            what = "a single model component, not a whole pipeline"
        raise WrongModelKindError(
            f"The folder {path} is {what} (it has no model_index.json).",
            hint="Point to a diffusers pipeline folder or a .safetensors checkpoint.")
    return path


def _component_class(library: str, class_name: str) -> Any:
    """The class a ``model_index.json`` entry names (``None`` if it cannot be imported: then
    diffusers loads it, and says what is wrong)."""
    import importlib

    from diffusers import pipelines

    try:
        module = (getattr(pipelines, library) if hasattr(pipelines, library)
                  else importlib.import_module(library))
        return getattr(module, class_name, None)
    except Exception:
        return None


_READ = threading.local()  # this thread's diffusers component load: (dtype, cancel, keep)
_READ_HOOKED = False
_READ_LOCK = threading.Lock()


def _hook_state_dict_reads() -> None:
    """Route diffusers' reads of a ``.safetensors`` weights file, on a thread inside
    ``_reading_in``, through ``single_file._read_checkpoint``: plain reads, each tensor
    converted to the load dtype as it is read. diffusers maps the file instead and holds
    the whole state dict in the file's dtype while it builds the model, so an fp32 folder
    loaded in bf16 had the fp32 weights resident beside the bf16 ones (SD 1.5 size: 5.46 GB
    peak). Other threads, and files of other kinds, go to diffusers' own reader."""
    global _READ_HOOKED
    with _READ_LOCK:
        if _READ_HOOKED:
            return
        from diffusers.models import model_loading_utils, modeling_utils

        original = model_loading_utils.load_state_dict

        @functools.wraps(original)
        def load_state_dict(checkpoint_file: Any, *args: Any, **kwargs: Any) -> Any:
            active = getattr(_READ, "active", None)
            if active is None or isinstance(checkpoint_file, dict) \
                    or not str(checkpoint_file).endswith(".safetensors"):
                return original(checkpoint_file, *args, **kwargs)
            from studio.engine.models.single_file import _read_checkpoint

            dtype, cancel, keep = active
            return _read_checkpoint(Path(checkpoint_file), cancel, dtype, keep)

        from diffusers.loaders import single_file_utils  # from_single_file's own reference

        for module in (model_loading_utils, modeling_utils, single_file_utils):
            if getattr(module, "load_state_dict", None) is original:
                module.load_state_dict = load_state_dict
        _READ_HOOKED = True


@contextlib.contextmanager
def _reading_in(dtype: Any, cancel: CancelToken | None,
                keep: Callable[[str], bool] | None = None) -> Iterator[None]:
    """diffusers' component loads on this thread read their weights in ``dtype`` (None:
    as stored), tensor by tensor (``_hook_state_dict_reads``); with ``keep``, only the
    tensors whose names it accepts (one part of a file that holds several)."""
    _hook_state_dict_reads()
    previous = getattr(_READ, "active", None)
    _READ.active = (dtype, cancel, keep)
    try:
        yield
    finally:
        _READ.active = previous


def _load_components(path: Path, index: dict[str, Any], dtype: Any,
                     skip: dict[str, Any], cancel: CancelToken | None) -> dict[str, Any]:
    """The weighted components of a diffusers folder (text encoders, UNet or transformer,
    VAE...), loaded one at a time as ``DiffusionPipeline.from_pretrained`` would, with
    ``cancel`` checked before each. Tokenizers and schedulers (no weights) are left to it."""
    import torch
    from diffusers import ModelMixin
    from transformers import PreTrainedModel

    loaded: dict[str, Any] = {}
    for name, value in index.items():
        if name.startswith("_") or name in skip or not isinstance(value, list) \
                or len(value) != 2 or None in value or not (path / name).is_dir():
            continue
        cls = _component_class(*value)
        if not isinstance(cls, type) or not issubclass(cls, torch.nn.Module):
            continue
        safetensors = any((path / name).glob("*.safetensors"))
        kwargs: dict[str, Any] = {"local_files_only": True}
        if safetensors:
            kwargs["use_safetensors"] = True
        if issubclass(cls, ModelMixin):
            kwargs.update(torch_dtype=dtype, low_cpu_mem_usage=True)
        elif issubclass(cls, PreTrainedModel):
            kwargs["dtype"] = dtype
        else:
            continue
        _check(cancel)
        if issubclass(cls, ModelMixin):
            # Read in the load dtype, once (not mapped beside it); a model that keeps some
            # modules in fp32 gets its tensors as stored, diffusers casting them as before.
            read_dtype = None if getattr(cls, "_keep_in_fp32_modules", None) else dtype
            with _reading_in(read_dtype, cancel):
                loaded[name] = cls.from_pretrained(path / name, **kwargs)
        else:
            loaded[name] = cls.from_pretrained(path / name, **kwargs)
    return loaded


def _load_folder(path: Path, choice: DeviceChoice, cancel: CancelToken | None = None) -> Any:
    from diffusers import DiffusionPipeline

    index = (path / "model_index.json").read_text(encoding="utf-8")
    kwargs: dict[str, Any] = {"torch_dtype": choice.load_dtype(), "local_files_only": True}
    if '"safety_checker"' in index:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    has_safetensors = any(path.rglob("*.safetensors"))
    if has_safetensors:
        kwargs["use_safetensors"] = True
    # Components the folder declares absent (``[null, null]``, e.g. SD3 without T5:
    # ``text_encoder_3``) are passed as None, as diffusers documents for such folders.
    try:
        import json

        for key, value in json.loads(index).items():
            if value == [None, None]:
                kwargs.setdefault(key, None)
    except ValueError:
        pass
    import json

    try:
        components = json.loads(index)
    except ValueError:
        components = {}
    if isinstance(components, dict):
        from studio.engine.models.processors import processors_without_video

        kwargs.update(processors_without_video(path, components))  # Qwen-Image-Edit
        kwargs.update(_load_components(path, components, kwargs["torch_dtype"], kwargs, cancel))
    _check(cancel)
    return DiffusionPipeline.from_pretrained(path, **kwargs)


LATENT_RGB_VERSION = 1  # bump when ``fit_latent_rgb``'s probes or method change
_LATENT_RGB_LOCK = threading.Lock()


def latent_rgb_factors(vae: Any, path: Path) -> Any:
    """``fit_latent_rgb(vae)``, kept on disk (``latent-rgb.json`` in the user cache) for
    the VAE file it came from: the fit is a VAE encode at every load otherwise (SD 1.5's
    VAE: 1.5 s), before the first image of every start. The key is the VAE's weights file
    (or the checkpoint) by path, size and modification time, its class, dtype and config, so
    a changed file or a VAE swapped in fits anew."""
    import hashlib
    import json
    import os

    import numpy as np

    from studio.paths import user_cache_dir

    if path.is_file():
        source: Path | None = path
    else:
        vae_files = sorted((path / "vae").glob("*.safetensors")) if (path / "vae").is_dir() \
            else []
        source = vae_files[0] if vae_files else None
    try:
        stat = source.stat() if source is not None else None
        param = next(vae.parameters())
        config = json.dumps(dict(vae.config), sort_keys=True, default=str)
    except (OSError, StopIteration, TypeError, ValueError):
        stat = None
    if stat is None:
        return fit_latent_rgb(vae)
    key = hashlib.sha256(
        f"{LATENT_RGB_VERSION}|{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|"
        f"{type(vae).__name__}|{param.dtype}|{param.device.type}|{config}".encode()
    ).hexdigest()[:32]
    cache_file = user_cache_dir() / "latent-rgb.json"
    with _LATENT_RGB_LOCK:
        try:
            cache = json.loads(cache_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cache = {}
        cached = cache.get(key) if isinstance(cache, dict) else None
        if isinstance(cached, list):
            try:
                factors = np.asarray(cached, np.float32)
                if factors.ndim == 2 and factors.shape[1] == 3 and np.isfinite(factors).all():
                    return factors
            except (TypeError, ValueError):
                pass
    factors = fit_latent_rgb(vae)
    with _LATENT_RGB_LOCK:
        try:
            try:
                cache = json.loads(cache_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                cache = {}
            if not isinstance(cache, dict) or len(cache) > 200:
                cache = {}
            cache[key] = factors.tolist()
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache), encoding="utf-8")
            tmp.replace(cache_file)
        except OSError:  # a read-only cache: fit again next time
            pass
    return factors


def pipeline_family(pipe: Any, path: Path) -> str:
    """The family of a loaded pipeline, from its own configs (and ``studio.json``)."""
    from studio.engine.models.families import detect_family, read_json

    unet = getattr(pipe, "unet", None)
    studio = read_json(path / "studio.json") if path.is_dir() else {}
    return detect_family({"_class_name": type(pipe).__name__},
                         dict(unet.config) if unet is not None else {},
                         dict(pipe.scheduler.config), studio)


def load_model(info: ModelInfo, choice: DeviceChoice,
               cancel: CancelToken | None = None) -> LoadedModel:
    """Load a model for ``choice``; every failure a user can cause becomes a StudioError.

    ``cancel`` (default: the token of the job this thread runs) is checked between the parts
    of the load; a cancelled load raises ``CancelledError`` and keeps nothing.
    """
    cancel = cancel if cancel is not None else active_token()
    import_libraries(cancel)
    import torch

    from studio.engine.models.families import UNKNOWN, detect_folder_family

    path = check_model_path(info)
    if path.is_dir() and detect_folder_family(path) == UNKNOWN:
        raise WrongModelKindError(
            f"{info.name} is not a text-to-image pipeline the installed diffusers knows "
            "(see _class_name in its model_index.json).",
            hint="Update diffusers, or pick another model (see `studio models`).")
    quiet_libraries()
    engine_choice, choice = choice, choice.for_model(info.size_bytes)  # small models: fp32
    try:
        if path.is_file() and path.suffix.lower() == ".gguf":
            from studio.engine.models.gguf import load_gguf

            pipe = load_gguf(path, torch_dtype=choice.load_dtype(), cancel=cancel)
        elif path.is_file() and info.family.startswith(("flux", "sd3")):  # a lone transformer
            from studio.engine.models.transformer_files import load_transformer_file

            pipe = load_transformer_file(path, torch_dtype=choice.load_dtype(), cancel=cancel)
        elif path.is_file():
            from studio.engine.models.single_file import load_single_file

            pipe = load_single_file(path, torch_dtype=choice.load_dtype(), cancel=cancel)
        else:
            pipe = _load_folder(path, choice, cancel)
        _check(cancel)
        place_pipeline(pipe, choice)
        log.info("%s on %s: %s", info.name, choice.device, cpu_layout(pipe, engine_choice, choice))
    except (torch.cuda.OutOfMemoryError, MemoryError) as err:
        raise OutOfMemoryError(f"Not enough memory to load {info.name} on {choice.device}.",
                               hint="Close other programs or choose a smaller model.") from err
    except CancelledError:  # the components loaded so far go with the exception
        raise
    except (WrongModelKindError, UnsafeModelFileError, CorruptModelError, ModelNotFoundError):
        raise
    except Exception as err:
        raise CorruptModelError(
            f"Could not load {info.name}: its files are damaged or incomplete "
            f"({type(err).__name__}: {str(err)[:200]}).",
            hint="Download it again or check the folder.") from err
    pipe.set_progress_bar_config(disable=True)
    _check(cancel)
    family = pipeline_family(pipe, path)
    vae = getattr(pipe, "vae", None)
    if vae is None:
        raise WrongModelKindError(f"{info.name} has no VAE; it is not an image pipeline.")
    factors = latent_rgb_factors(vae, path)
    previewer = LatentPreviewer(factors, getattr(vae.config, "scaling_factor", 1.0) or 1.0,
                                getattr(vae.config, "shift_factor", 0.0) or 0.0)
    return LoadedModel(info=info, pipe=pipe, family=family, hash=model_hash(path),
                       choice=choice, previewer=previewer,
                       scheduler_config=dict(pipe.scheduler.config),
                       cpu_threads=cpu_threads_for(pipe, choice))
