"""diffusers' model packages imported on demand instead of all at once.

``diffusers.models.transformers`` (and ``unets``, ``autoencoders``, ``controlnets``) import
every model of their kind when the package is first touched: about 80 transformer modules,
and through them ``diffusers.loaders.single_file_utils`` (scipy.stats) and the rest, so that
loading the UNet of an SD 1.5 model imported AuraFlow, Flux, HunyuanVideo... (3.3 s of
the 10 s of imports before a first image, `python -X importtime`, docs/benchmarks.md).

Their ``__init__.py`` is only ``from .module import Name`` lines. ``install()`` puts a finder
on ``sys.meta_path`` that gives these packages a module ``__getattr__`` instead: ``Name`` (or
``module``) imports ``.module`` the first time it is asked for, exactly the import the
``__init__`` would have run. Whatever asks for a name gets the same object as before; what is
never asked for is never imported. A package whose ``__init__`` holds anything else than such
lines (a later diffusers) is imported as it is.

``collector_paused()`` holds Python's cyclic garbage collector while the engine's libraries
are imported: an import makes hundreds of thousands of objects that all live as long as the
process, and the collector walked them again and again for nothing (about a thousand
collections, six of them full, 0.8 s of the 6 s of CPU those imports take; measured with
``gc.callbacks``). Reference counting frees what it always frees; the collector runs again
once the last import ends.
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
                gc.enable()


def _plan(source: str) -> tuple[dict[str, str], list[Any]] | None:
    """``{name: submodule}`` for the ``from .submodule import name`` lines, and the other
    (eager) imports to run; ``None`` when the source holds anything else."""
    import ast

    names: dict[str, str] = {}
    eager: list[ast.stmt] = []

    def visit(body: list[Any]) -> bool:
        for node in body:
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                if "." in node.module or any(a.name == "*" for a in node.names):
                    return False
                for alias in node.names:
                    names[alias.asname or alias.name] = node.module
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

    def __init__(self, names: dict[str, str], eager: list[Any], filename: str):
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
        submodules = set(names.values())
        package = module.__name__

        def __getattr__(name: str) -> Any:
            if name in names:
                value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
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
