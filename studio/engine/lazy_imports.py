"""The engine's start-up imports, made cheaper: the same libraries, less of them, walked less.

``diffusers.models.transformers`` (and ``unets``, ``autoencoders``, ``controlnets``) import
every model of their kind when the package is first touched: loading the UNet of an SD 1.5
model imported AuraFlow, Flux, HunyuanVideo... (131 model modules, 6 of them used). Their
``__init__.py`` is only ``from .module import Name`` lines. ``install()`` puts a finder on
``sys.meta_path`` that gives these packages a module ``__getattr__`` instead: ``Name`` (or
``module``) imports ``.module`` the first time it is asked for, exactly the import the
``__init__`` would have run, so whatever asks gets the same object as before, and what is
never asked for is never imported. A package whose ``__init__`` holds anything else (a
later diffusers) is imported as it is. Measured: 0.75 s less CPU for the engine's imports
(7.36 s -> 6.60 s, 4 runs each, interleaved, load 5).

``collector_paused()`` holds Python's cyclic garbage collector while those libraries are
imported, and, after an import that made many objects (a cold start: about 700 000, every
one of them alive as long as the process), ``gc.freeze()`` moves them out of its sight.
Before, the collector walked them again and again for nothing: about a thousand collections,
six of them full, 0.8 s of CPU spread over the imports and the model's load (measured with
``gc.callbacks``; 0.04 s after). Reference counting frees what it always frees, and a
minute later (``UNFREEZE_AFTER_S``) the frozen objects go back to the collector, so that
what of that time later becomes garbage in a reference cycle is still collected.

transformers' index of its models: ``import transformers`` and ``transformers.models`` each
build a map of every model's exported names (``define_import_structure``) by reading and
parsing the sources of all its models (about 1 700 files in 567 folders), and its cache
(128 folders) is too small to keep the first walk for the second: about 1 s of CPU on this
machine before the first image, for a map that only changes when transformers does. The same
finder gives ``transformers.utils.import_utils`` a ``define_import_structure`` that keeps
transformers' own result for the ``models`` folder in the user cache
(``transformers-models.json``), keyed by the path, size and modification time of every file
under that folder and of ``import_utils.py``: an upgraded or edited transformers builds it
anew, with transformers' own code, and any other folder goes to transformers' own function.

Modules imported at start-up only in case (``DEFERRED_MODULES``: ``scipy.stats``,
``scipy.integrate``, ``scipy.optimize``) are a stand-in until one of their names is used;
then the real module is imported and takes the stand-in's place (``_load_deferred``). A
function a library takes from one by name at import (``DEFERRED_FUNCTIONS``) is a function
that imports the module at its first call. On a 2-core AVX-512 EPYC, a cold process's
imports, model load and first 20-step image on the embedded model: 3.16 s against 3.41 s of
wall time with ``scipy.stats`` alone deferred (CPU 3.28 against 3.62 s; medians of 5
interleaved pairs; 2845 modules against 3235).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import importlib.machinery
import os
import sys
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

#: The packages made lazy (``diffusers.models`` itself is already lazy in diffusers).
LAZY_PACKAGES = frozenset({
    "diffusers.models.transformers",
    "diffusers.models.unets",
    "diffusers.models.autoencoders",
    "diffusers.models.controlnets",
})

#: Modules that libraries import at start-up only in case: diffusers' schedulers import
#: ``scipy.stats`` for their beta-sigma option (``use_beta_sigmas``), which few models use,
#: and it cost 0.4 s of the engine's 4 s of imports on this 2-core AVX2 CPU. The import
#: gives a stand-in module (``_DeferredLoader``) that imports the real one at the first use
#: of one of its names. ``importlib.util.LazyLoader`` does not serve: any attribute loads
#: its module, and torch's custom ops run ``inspect.getmodule``, which reads ``__file__``
#: of every module there is, during diffusers' own import.
#: diffusers' LMS scheduler imports ``scipy.integrate`` for the ``quad`` of its
#: coefficients (which pulls in ``scipy.special``, ``scipy.sparse`` and ``scipy.optimize``:
#: 0.34 s of the engine's imports on a 2-core AVX-512 EPYC), used at its ``set_timesteps``.
DEFERRED_MODULES = frozenset({"scipy.stats", "scipy.optimize", "scipy.integrate"})
#: Functions of a deferred module that libraries import by name at start-up, only in case:
#: transformers' object-detection losses take ``linear_sum_assignment`` (the Hungarian
#: matching of DETR-style training) from ``scipy.optimize``, which cost 0.3 s of the engine's
#: imports on this CPU and is never called by image generation. The stand-in gives a
#: function that imports the real module at its first call and runs the real function.
DEFERRED_FUNCTIONS: dict[str, frozenset[str]] = {
    "scipy.optimize": frozenset({"linear_sum_assignment"}),
}
_deferred_lock = threading.RLock()
_deferred_loading: set[str] = set()  # real imports under way: the finder lets them through

_installed = False
_lock = threading.Lock()
_paused = 0  # ``collector_paused`` blocks running now (on any thread)
_collector_was_enabled = False
#: A paused block that left at least this many new objects (a cold import of torch and
#: diffusers: about 700 000) moves every object there is out of the collector's sight
#: (``gc.freeze``): otherwise the first collections after it walk them all (0.4 s, in the
#: model's load). A block that imported nothing new (a later load) freezes nothing.
FREEZE_AFTER_OBJECTS = 100_000
#: Seconds after a freeze when the frozen objects are given back to the collector: start-up
#: (imports, the first load, the first image) runs without walking them, and whatever of
#: that time later becomes garbage in a reference cycle (a project opened at start and
#: closed) is still collected, by the first full collection after this.
UNFREEZE_AFTER_S = 60.0
_unfreeze_timer: threading.Timer | None = None


def _unfreeze_later() -> None:
    global _unfreeze_timer
    if _unfreeze_timer is not None:
        _unfreeze_timer.cancel()  # a second import: the time counts from the last one
    _unfreeze_timer = threading.Timer(UNFREEZE_AFTER_S, gc.unfreeze)
    _unfreeze_timer.name = "studio-gc-unfreeze"
    _unfreeze_timer.daemon = True
    _unfreeze_timer.start()


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while the block runs (nested, or on several threads at
    once: the collector comes back when the last block ends, as it was before the first)."""
    global _paused, _collector_was_enabled
    with _lock:
        if _paused == 0:
            _collector_was_enabled = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _lock:
            _paused -= 1
            if _paused == 0 and _collector_was_enabled:
                if gc.get_count()[0] >= FREEZE_AFTER_OBJECTS:
                    gc.freeze()  # a library import: its objects live as long as the process
                    _unfreeze_later()
                gc.enable()


def _plan(source: str) -> tuple[dict[str, tuple[str, str]], list[Any]] | None:
    """``{name: (submodule, its name there)}`` for the ``from .submodule import x as name``
    lines, and the other
    (eager) imports to run; ``None`` when the source holds anything else."""
    import ast

    names: dict[str, tuple[str, str]] = {}
    eager: list[ast.stmt] = []

    def visit(body: list[Any]) -> bool:
        for node in body:
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                if "." in node.module or any(a.name == "*" for a in node.names):
                    return False
                for alias in node.names:
                    names[alias.asname or alias.name] = (node.module, alias.name)
            elif isinstance(node, ast.ImportFrom | ast.Import):
                eager.append(node)  # e.g. ``from ...utils import is_torch_available``
            elif isinstance(node, ast.If):  # ``if is_torch_available():`` (torch is)
                if node.orelse or not visit(node.body):
                    return False
            elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue  # a docstring
            else:
                return False
        return True

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    return (names, eager) if visit(tree.body) and names else None


class _LazyPackageLoader:
    """Runs the package's other imports, then gives it the on-demand ``__getattr__``."""

    def __init__(self, names: dict[str, tuple[str, str]], eager: list[Any], filename: str):
        self.names = names
        self.eager = eager
        self.filename = filename

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # the default module

    def exec_module(self, module: ModuleType) -> None:
        if self.eager:
            import ast

            code = compile(ast.Module(body=self.eager, type_ignores=[]), self.filename, "exec")
            exec(code, module.__dict__)  # noqa: S102 (the package's own import lines)
        names = self.names
        submodules = {sub for sub, _ in names.values()}
        package = module.__name__

        def __getattr__(name: str) -> Any:
            if name in names:
                sub, original = names[name]
                value = getattr(importlib.import_module(f"{package}.{sub}"), original)
            elif name in submodules:
                value = importlib.import_module(f"{package}.{name}")
            else:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            setattr(module, name, value)
            return value

        def __dir__() -> list[str]:
            return sorted(set(module.__dict__) | set(names) | submodules)

        module.__getattr__ = __getattr__  # type: ignore[attr-defined]
        module.__dir__ = __dir__  # type: ignore[attr-defined]
        module.__lazy_names__ = dict(names)  # type: ignore[attr-defined]


#: The module whose ``define_import_structure`` gets the on-disk map of transformers' models.
TRANSFORMERS_IMPORT_UTILS = "transformers.utils.import_utils"
#: The file in the user cache that keeps it (one entry per transformers install).
MODELS_STRUCTURE_FILE = "transformers-models.json"
_MODELS_STRUCTURE_VERSION = 1  # bump when what is stored changes
_MODELS_STRUCTURE_ENTRIES = 8  # installs (virtual environments) kept at most
_structure_lock = threading.Lock()


def _models_fingerprint(models_dir: str, import_utils_file: str) -> str:
    """What ``define_import_structure`` reads, by path, size and modification time: every
    file under ``models_dir`` (as transformers walks it, ``__pycache__`` left out) and the
    parser itself (``import_utils.py``, whose rules decide what is exported)."""
    import hashlib

    digest = hashlib.sha256(f"{_MODELS_STRUCTURE_VERSION}|{models_dir}".encode())

    def walk(directory: str) -> None:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if entry.name == "__pycache__":
                continue
            if entry.is_dir():
                walk(entry.path)
            else:
                st = entry.stat()
                digest.update(f"{entry.path}|{st.st_size}|{st.st_mtime_ns}\n".encode())

    st = os.stat(import_utils_file)
    digest.update(f"{import_utils_file}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    walk(models_dir)
    return digest.hexdigest()


def _structure_to_json(structure: dict[Any, Any]) -> list[Any]:
    return [[sorted(backends), {module: sorted(names) for module, names in modules.items()}]
            for backends, modules in structure.items()]


def _structure_from_json(data: Any) -> dict[frozenset[str], dict[str, set[str]]] | None:
    """The map as ``define_import_structure`` returns it; ``None`` for anything malformed."""
    if not isinstance(data, list):
        return None
    structure: dict[frozenset[str], dict[str, set[str]]] = {}
    for item in data:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], list)
                and isinstance(item[1], dict)):
            return None
        backends, modules = item
        if not all(isinstance(b, str) for b in backends):
            return None
        out: dict[str, set[str]] = {}
        for module, names in modules.items():
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                return None
            out[module] = set(names)
        structure[frozenset(backends)] = out
    return structure


def _models_structure(original: Any, models_dir: str, import_utils_file: str
                      ) -> dict[frozenset[str], dict[str, set[str]]]:
    """``original(models_dir)`` (transformers' map of its models, no prefix), from the user
    cache when the files it reads are the ones it was built from; built by ``original`` and
    stored otherwise. Any trouble with the cache: ``original``'s own answer."""
    import json

    try:
        from studio.paths import user_cache_dir

        cache_file = user_cache_dir() / MODELS_STRUCTURE_FILE
        key = _models_fingerprint(models_dir, import_utils_file)
    except Exception:  # an unreadable folder, no cache folder: transformers' own walk
        return original(models_dir)
    with _structure_lock:
        try:
            cache = json.loads(cache_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cache = {}
        if not isinstance(cache, dict):
            cache = {}
        cached = _structure_from_json(cache.get(key))
        if cached is not None:
            return cached
        structure = original(models_dir)
        try:
            data = _structure_to_json(structure)
            while len(cache) >= _MODELS_STRUCTURE_ENTRIES:
                cache.pop(next(iter(cache)))  # the oldest install's
            cache[key] = data
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache), encoding="utf-8")
            tmp.replace(cache_file)
        except (OSError, TypeError, ValueError):  # a read-only cache: built again next time
            pass
        return structure


def _cache_models_structure(module: ModuleType) -> None:
    """Give transformers' ``import_utils`` a ``define_import_structure`` that keeps the map
    of the ``models`` folder on disk (the module docstring says why)."""
    original = getattr(module, "define_import_structure", None)
    module_file = getattr(module, "__file__", None)
    if original is None or not module_file or getattr(original, "__studio_cached__", False):
        return
    models_dir = os.path.normpath(os.path.join(os.path.dirname(module_file), "..", "models"))
    if not os.path.isdir(models_dir):
        return

    loaded: list[dict[frozenset[str], dict[str, set[str]]]] = []  # this process's map

    @functools.lru_cache  # as transformers' own: one call, one map, the same object after
    def define_import_structure(module_path: Any, prefix: str | None = None) -> Any:
        path = os.path.normpath(os.path.abspath(os.fspath(module_path)))
        directory = os.path.dirname(path) if os.path.isfile(path) else path
        if directory != models_dir:
            return original(module_path, prefix)
        if not loaded:
            loaded.append(_models_structure(original, models_dir, module_file))
        start = f"{prefix}." if prefix is not None else ""
        return {backends: {start + m: set(names) for m, names in modules.items()}
                for backends, modules in loaded[0].items()}  # each call its own sets

    define_import_structure.__doc__ = original.__doc__
    define_import_structure.__wrapped__ = original  # type: ignore[attr-defined]
    define_import_structure.__studio_cached__ = True  # type: ignore[attr-defined]
    module.define_import_structure = define_import_structure  # type: ignore[attr-defined]


class _AfterExecLoader:
    """The module's own loader, with ``after(module)`` run once the module has run."""

    def __init__(self, loader: Any, after: Any):
        self._loader = loader
        self._after = after

    def __getattr__(self, name: str) -> Any:  # get_source, get_code, is_package...
        return getattr(self._loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        try:
            self._after(module)
        except Exception:  # a later transformers laid out otherwise: left as it is
            pass


def _is_stand_in(module: Any) -> bool:
    return getattr(module, "__dict__", {}).get("__studio_deferred__", False) is True


def _load_deferred(name: str, stand_in: ModuleType) -> ModuleType:
    """The real module ``name`` for its stand-in: imported now, in ``sys.modules`` and on
    its parent package from then on (the stand-in still answers for code that holds it)."""
    with _deferred_lock:
        module = sys.modules.get(name)
        if module is not None and not _is_stand_in(module):
            return module  # imported already (another thread, a submodule's import)
        _deferred_loading.add(name)
        sys.modules.pop(name, None)
        try:
            real = importlib.import_module(name)
        except BaseException:
            sys.modules[name] = stand_in  # as before: the next use tries again
            raise
        finally:
            _deferred_loading.discard(name)
        parent, _, child = name.rpartition(".")
        if parent in sys.modules:
            setattr(sys.modules[parent], child, real)
        return real


def _deferred_function(name: str, attr: str, stand_in: ModuleType) -> Any:
    """A function ``attr`` of the deferred module ``name`` that imports it at its first call
    (``DEFERRED_FUNCTIONS``); the same object for every import of it."""
    cache = stand_in.__dict__.setdefault("__studio_functions__", {})
    if attr not in cache:
        @functools.wraps(lambda *a, **k: None)
        def function(*args: Any, **kwargs: Any) -> Any:
            return getattr(_load_deferred(name, stand_in), attr)(*args, **kwargs)

        function.__name__ = function.__qualname__ = attr
        function.__module__ = name
        function.__doc__ = f"{name}.{attr}, imported at its first call."
        cache[attr] = function
    return cache[attr]


class _DeferredLoader:
    """Makes the stand-in of a ``DEFERRED_MODULES`` module: its ``__file__``, ``__path__``
    and ``__spec__`` are the real module's (so ``inspect`` and submodule imports find their
    files without loading it); any other name imports the real module and is read there."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # the default module

    def exec_module(self, module: ModuleType) -> None:
        name = module.__name__

        def __getattr__(attr: str) -> Any:
            if attr.startswith("__") and attr.endswith("__") and attr != "__all__":
                raise AttributeError(attr)  # probes (``hasattr(m, "__wrapped__")``)
            if attr in DEFERRED_FUNCTIONS.get(name, ()):
                return _deferred_function(name, attr, module)
            return getattr(_load_deferred(name, module), attr)

        def __dir__() -> list[str]:
            return dir(_load_deferred(name, module))

        module.__getattr__ = __getattr__  # type: ignore[attr-defined]
        module.__dir__ = __dir__  # type: ignore[attr-defined]
        module.__studio_deferred__ = True  # type: ignore[attr-defined]


class _LoadedModuleLoader:
    """Hands the import machinery a module the real import of its parent has just made (it
    would otherwise run it a second time)."""

    def __init__(self, module: ModuleType):
        self.module = module
        self.spec = getattr(module, "__spec__", None)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return self.module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self.spec  # the machinery set ours on it


def _deferred_spec(fullname: str, path: Any) -> importlib.machinery.ModuleSpec | None:
    """The spec of a ``DEFERRED_MODULES`` module (its stand-in), or of a submodule of one
    whose stand-in is in ``sys.modules`` (the real parent is imported first, in its own
    order); ``None``: not ours, the other finders go on."""
    if fullname in _deferred_loading:
        return None
    if fullname in DEFERRED_MODULES:
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        spec.loader = _DeferredLoader()
        return spec
    parent = fullname.rpartition(".")[0]
    if parent in DEFERRED_MODULES and _is_stand_in(sys.modules.get(parent)):
        _load_deferred(parent, sys.modules[parent])
        module = sys.modules.get(fullname)
        if module is not None:  # the parent's own import made it
            return importlib.machinery.ModuleSpec(fullname, _LoadedModuleLoader(module))
    return None


class _LazyPackageFinder:
    """A ``sys.meta_path`` finder for ``LAZY_PACKAGES``, ``DEFERRED_MODULES`` and
    ``TRANSFORMERS_IMPORT_UTILS`` (the others: ``None``)."""

    def find_spec(self, fullname: str, path: Any, target: Any = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname == TRANSFORMERS_IMPORT_UTILS:
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
                return None
            spec.loader = _AfterExecLoader(spec.loader, _cache_models_structure)
            return spec
        if fullname.startswith(tuple(DEFERRED_MODULES)):
            return _deferred_spec(fullname, path)
        if fullname not in LAZY_PACKAGES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not spec.origin or not spec.origin.endswith("__init__.py"):
            return None
        try:
            with open(spec.origin, encoding="utf-8") as f:
                plan = _plan(f.read())
        except OSError:
            return None
        if plan is None:
            return None  # not only import lines: imported as it is
        spec.loader = _LazyPackageLoader(*plan, spec.origin)
        return spec


def install() -> None:
    """Make the packages in ``LAZY_PACKAGES`` lazy for this process (once; a package
    already imported stays as it is)."""
    global _installed
    with _lock:
        if not _installed:
            sys.meta_path.insert(0, _LazyPackageFinder())
            _installed = True
