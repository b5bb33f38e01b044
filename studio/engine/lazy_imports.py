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
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.machinery
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


class _LazyPackageFinder:
    """A ``sys.meta_path`` finder for ``LAZY_PACKAGES`` (the others: ``None``)."""

    def find_spec(self, fullname: str, path: Any, target: Any = None
                  ) -> importlib.machinery.ModuleSpec | None:
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
