"""The engine's start-up imports: diffusers' model packages one model at a time, and the
garbage collector held while libraries are imported (``studio.engine.lazy_imports``)."""

from __future__ import annotations

import gc
import importlib
import importlib.util
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from studio.engine import lazy_imports


@pytest.fixture
def fake_diffusers(tmp_path, monkeypatch):
    """A package laid out as diffusers' ``models/transformers`` is: its ``__init__`` imports
    every model module; each module notes that it was imported."""
    root = tmp_path / "fakediff"
    pkg = root / "models" / "transformers"
    pkg.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "utils.py").write_text("def is_torch_available():\n    return True\n")
    (root / "models" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text(textwrap.dedent("""\
        from ...utils import is_torch_available


        if is_torch_available():
            from .alpha import Alpha
            from .beta import Beta, BetaOutput as Output
        """))
    for name, classes in (("alpha", ["Alpha"]), ("beta", ["Beta", "BetaOutput"])):
        body = "import builtins\nbuiltins.__dict__.setdefault('_fake_imported', []).append(" \
               f"{name!r})\n" + "".join(f"class {c}:\n    pass\n" for c in classes)
        (pkg / f"{name}.py").write_text(body)
    (tmp_path / "fakeeager").mkdir()
    (tmp_path / "fakeeager" / "__init__.py").write_text(
        "from .alpha import Alpha\nVERSION = 2\n")
    (tmp_path / "fakeeager" / "alpha.py").write_text("class Alpha:\n    pass\n")

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(lazy_imports, "LAZY_PACKAGES",
                        frozenset({"fakediff.models.transformers", "fakeeager"}))
    import builtins

    builtins._fake_imported = []
    finder = lazy_imports._LazyPackageFinder()
    sys.meta_path.insert(0, finder)
    yield builtins._fake_imported
    sys.meta_path.remove(finder)
    for name in [m for m in sys.modules if m.split(".")[0] in ("fakediff", "fakeeager")]:
        del sys.modules[name]
    del builtins._fake_imported


def test_a_model_package_imports_only_the_model_asked_for(fake_diffusers):
    package = importlib.import_module("fakediff.models.transformers")
    assert fake_diffusers == []  # the package alone imports no model

    from fakediff.models.transformers import Alpha

    assert fake_diffusers == ["alpha"]
    assert "fakediff.models.transformers.beta" not in sys.modules
    assert Alpha is sys.modules["fakediff.models.transformers.alpha"].Alpha
    # the rest is there when asked for, under the names the __init__ gave them
    assert package.Output is sys.modules["fakediff.models.transformers.beta"].BetaOutput
    assert package.beta.Beta is package.Beta
    assert fake_diffusers == ["alpha", "beta"]
    assert {"Alpha", "Beta", "Output", "alpha", "beta"} <= set(dir(package))
    with pytest.raises(AttributeError, match="Gamma"):
        package.Gamma  # noqa: B018


def test_a_package_with_more_than_imports_is_imported_as_it_is(fake_diffusers):
    module = importlib.import_module("fakeeager")
    assert module.VERSION == 2
    assert "fakeeager.alpha" in sys.modules


def test_the_installed_diffusers_model_packages_can_be_made_lazy():
    """A diffusers whose model packages hold more than import lines would be imported whole
    again, silently: this says so."""
    spec = importlib.util.find_spec("diffusers")  # a top-level find imports nothing
    assert spec is not None and spec.origin
    root = Path(spec.origin).parent
    expected = {"unets": "UNet2DConditionModel", "autoencoders": "AutoencoderKL",
                "transformers": "Transformer2DModel", "controlnets": "ControlNetModel"}
    for package in lazy_imports.LAZY_PACKAGES:
        sub = package.rsplit(".", 1)[1]
        plan = lazy_imports._plan((root / "models" / sub / "__init__.py").read_text("utf-8"))
        assert plan is not None, f"{package}'s __init__ is no longer only import lines"
        assert expected[sub] in plan[0]


def test_the_engine_installs_the_finder():
    import studio.engine  # noqa: F401

    assert any(isinstance(f, lazy_imports._LazyPackageFinder) for f in sys.meta_path)


def test_the_collector_is_held_while_libraries_import_and_back_after():
    assert gc.isenabled()
    inside: list[bool] = []
    entered = threading.Event()
    release = threading.Event()

    def other_thread() -> None:
        with lazy_imports.collector_paused():
            entered.set()
            release.wait(5)
            inside.append(gc.isenabled())

    thread = threading.Thread(target=other_thread)
    with lazy_imports.collector_paused():
        thread.start()
        assert entered.wait(5)
        with lazy_imports.collector_paused():
            assert not gc.isenabled()
    assert not gc.isenabled()  # the other thread's import still runs
    release.set()
    thread.join(5)
    assert inside == [False]
    assert gc.isenabled()


@pytest.mark.startup
def test_a_cold_library_import_leaves_its_objects_out_of_later_collections():
    """In a fresh process as the app starts: the engine's imports hold the collector and
    freeze what they made, so the model's load does not walk it all again; only the model
    asked for is imported (not diffusers' other 120 model modules). Undoing either fix
    fails this."""
    code = textwrap.dedent("""\
        import gc, sys, time
        from studio.engine import lazy_imports
        from studio.engine.models import loading
        lazy_imports.UNFREEZE_AFTER_S = 2.0
        loading.import_libraries()
        import diffusers
        diffusers.UNet2DConditionModel, diffusers.AutoencoderKL
        models = [m for m in sys.modules if m.startswith("diffusers.models.transformers.")]
        frozen = gc.get_freeze_count() > 100_000
        time.sleep(3)  # then the collector gets them back (garbage of that time is collected)
        print(gc.isenabled(), frozen, gc.get_freeze_count(), len(models),
              "diffusers.models.transformers.transformer_flux" in sys.modules)
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600, check=True).stdout.split()
    enabled, frozen, frozen_later, models, flux = out[-5:]
    assert (enabled, frozen, frozen_later, flux) == ("True", "True", "0", "False")
    assert int(models) < 10  # the SD UNet's own transformer blocks; diffusers had 80+


@pytest.fixture
def fake_transformers(tmp_path, monkeypatch):
    """A package laid out as transformers is: ``utils/import_utils.py`` with a
    ``define_import_structure`` that walks ``models/`` (and counts its walks)."""
    root = tmp_path / "faketf"
    (root / "utils").mkdir(parents=True)
    (root / "models" / "alpha").mkdir(parents=True)
    (root / "models" / "alpha" / "modeling_alpha.py").write_text("__all__ = ['AlphaModel']\n")
    (root / "models" / "beta").mkdir()
    (root / "models" / "beta" / "modeling_beta.py").write_text("__all__ = ['BetaModel']\n")
    (root / "__init__.py").write_text("")
    (root / "models" / "__init__.py").write_text("")
    (root / "utils" / "__init__.py").write_text("")
    (root / "utils" / "import_utils.py").write_text(textwrap.dedent("""\
        import os
        walks = []

        def define_import_structure(module_path, prefix=None):
            module_path = str(module_path)
            if os.path.isfile(module_path):
                module_path = os.path.dirname(module_path)
            walks.append(module_path)
            found = {}
            for sub in sorted(os.listdir(module_path)):
                if not os.path.isdir(os.path.join(module_path, sub)):
                    continue
                for name in sorted(os.listdir(os.path.join(module_path, sub))):
                    text = open(os.path.join(module_path, sub, name)).read()
                    exported = set(text.split("'")[1::2])
                    key = frozenset({"torch"}) if name.startswith("modeling_") else frozenset()
                    found.setdefault(key, {})[f"{sub}.{name[:-3]}"] = exported
            if prefix:
                found = {k: {f"{prefix}.{m}": v for m, v in d.items()} for k, d in found.items()}
            return found
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("STUDIO_CACHE_DIR", str(tmp_path / "cache"))
    yield root
    for name in [m for m in sys.modules if m.split(".")[0] == "faketf"]:
        del sys.modules[name]


def _fresh_import_utils():
    """``faketf.utils.import_utils`` as a new process would import it, with the studio's
    ``define_import_structure``."""
    sys.modules.pop("faketf.utils.import_utils", None)
    module = importlib.import_module("faketf.utils.import_utils")
    lazy_imports._cache_models_structure(module)
    return module


def test_the_models_map_is_kept_on_disk_and_built_anew_when_a_file_changes(fake_transformers):
    models = fake_transformers / "models"
    first = _fresh_import_utils()
    built = first.define_import_structure(models / "__init__.py")
    assert built == {frozenset({"torch"}): {"alpha.modeling_alpha": {"AlphaModel"},
                                            "beta.modeling_beta": {"BetaModel"}}}
    assert first.walks == [str(models)]
    assert (Path(lazy_imports.os.environ["STUDIO_CACHE_DIR"])
            / lazy_imports.MODELS_STRUCTURE_FILE).is_file()
    # the prefixed call (``import transformers``) in the same process: no second walk
    assert first.define_import_structure(models, prefix="models") == {
        frozenset({"torch"}): {"models.alpha.modeling_alpha": {"AlphaModel"},
                               "models.beta.modeling_beta": {"BetaModel"}}}
    assert first.walks == [str(models)]

    second = _fresh_import_utils()  # the next start: the same map, nothing walked
    assert second.define_import_structure(models, prefix="models") == \
        second.define_import_structure.__wrapped__(models, prefix="models")
    assert second.walks == [str(models)]  # the one walk is the original's, just above

    (models / "beta" / "modeling_beta.py").write_text("__all__ = ['BetaModel', 'Gamma']\n")
    third = _fresh_import_utils()  # an upgraded transformers: its own walk, its new names
    assert third.define_import_structure(models)[frozenset({"torch"})][
        "beta.modeling_beta"] == {"BetaModel", "Gamma"}
    assert third.walks == [str(models)]

    # another folder (a model's own package) is always transformers' own walk
    other = fake_transformers / "other"
    (other / "x").mkdir(parents=True)
    (other / "x" / "modeling_x.py").write_text("__all__ = ['X']\n")
    third.define_import_structure(other)
    assert third.walks[-1] == str(other)


def test_a_damaged_models_map_is_built_again(fake_transformers):
    cache = Path(lazy_imports.os.environ["STUDIO_CACHE_DIR"])
    cache.mkdir(parents=True)
    (cache / lazy_imports.MODELS_STRUCTURE_FILE).write_text("{not json")
    module = _fresh_import_utils()
    structure = module.define_import_structure(fake_transformers / "models")
    assert structure == module.define_import_structure.__wrapped__(
        fake_transformers / "models")
    assert len(module.walks) == 2  # ours (built again) and the check's


@pytest.mark.startup
def test_a_second_start_reads_transformers_models_map_from_disk(tmp_path):
    """In fresh processes as the app starts: the first builds transformers' map of its
    models (once, not twice) and keeps it; the next reads it instead of transformers' 1 700
    model sources, and the names transformers exports are the same as its own walk gives."""
    code = textwrap.dedent("""\
        import sys
        import studio.engine  # noqa: F401 (the finder)
        import transformers, transformers.models
        from transformers.utils import import_utils as iu
        walked = iu.create_import_structure_from_path.cache_info().misses
        models = transformers.models.__file__
        ours = iu.define_import_structure(models)
        theirs = iu.define_import_structure.__wrapped__(models)
        from transformers import CLIPTextModel
        print(walked, ours == theirs, CLIPTextModel.__module__)
        """)
    env = {**lazy_imports.os.environ, "STUDIO_CACHE_DIR": str(tmp_path / "cache")}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=600, check=True, env=env).stdout.split()[-3:]
            for _ in range(2)]
    (cold_walked, cold_same, clip), (warm_walked, warm_same, _clip) = runs
    assert (cold_same, warm_same) == ("True", "True")
    assert clip == "transformers.models.clip.modeling_clip"
    assert int(cold_walked) > 500  # transformers' own walk, once
    assert int(warm_walked) < 20  # the map from disk: no model folder walked


def test_scipy_stats_waits_for_its_first_use_and_then_is_the_real_module():
    """In a fresh process as the app starts: the engine's imports leave ``scipy.stats`` a
    stand-in (diffusers' schedulers import it for beta sigmas only), and the first use of
    one of its names gives exactly what the eager import gives: the same beta sigmas, the
    same module objects in ``sys.modules``, on the parent package and for submodules
    imported before anything else (not run a second time)."""
    code = textwrap.dedent("""\
        import inspect, sys
        from studio.engine import lazy_imports
        from studio.engine.models import loading
        loading.import_libraries()
        stats = sys.modules["scipy.stats"]
        waiting = lazy_imports._is_stand_in(stats)
        inspect.getmodule(inspect)  # reads every module's __file__: must not load it
        still = lazy_imports._is_stand_in(sys.modules["scipy.stats"])
        import scipy.stats._stats_py as first  # a submodule before any name
        real = sys.modules["scipy.stats"]
        import scipy
        from diffusers import EulerDiscreteScheduler
        s = EulerDiscreteScheduler(use_beta_sigmas=True)
        s.set_timesteps(8)
        print(waiting, still, lazy_imports._is_stand_in(real), scipy.stats is real,
              first is real._stats_py, stats.norm is real.norm,
              ",".join(f"{v:.6f}" for v in s.sigmas.tolist()))
        """)
    eager = textwrap.dedent("""\
        import scipy.stats
        from diffusers import EulerDiscreteScheduler
        s = EulerDiscreteScheduler(use_beta_sigmas=True)
        s.set_timesteps(8)
        print(",".join(f"{v:.6f}" for v in s.sigmas.tolist()))
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600, check=True).stdout.split()
    sigmas = subprocess.run([sys.executable, "-c", eager], capture_output=True, text=True,
                            timeout=600, check=True).stdout.split()[-1]
    assert out[-7:-1] == ["True", "True", "False", "True", "True", "True"], out
    assert out[-1] == sigmas


def test_a_deferred_module_that_fails_to_import_says_so_at_each_use(monkeypatch, tmp_path):
    """A stand-in whose real import fails raises that error where it is used, and again at
    the next use (the stand-in stays), as a failed eager import would have at start."""
    package = tmp_path / "brokenpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "stats.py").write_text("raise ImportError('no BLAS here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(lazy_imports, "DEFERRED_MODULES",
                        lazy_imports.DEFERRED_MODULES | {"brokenpkg.stats"})
    lazy_imports.install()
    try:
        import brokenpkg.stats as stats  # noqa: F401 (the stand-in: nothing ran yet)

        for _ in range(2):
            with pytest.raises(ImportError, match="no BLAS here"):
                stats.anything  # noqa: B018
            assert lazy_imports._is_stand_in(sys.modules["brokenpkg.stats"])
    finally:
        for name in ("brokenpkg.stats", "brokenpkg"):
            sys.modules.pop(name, None)


def test_scipy_integrate_and_optimize_wait_for_their_first_use() -> None:
    """diffusers' LMS scheduler imports ``scipy.integrate`` (for ``quad``, at each
    ``set_timesteps``) and transformers' detection losses take ``linear_sum_assignment`` from
    ``scipy.optimize``: after the engine's imports and a model's load both are stand-ins. The
    LMS scheduler's first steps then give exactly the eager import's coefficients, and the
    loss module's ``linear_sum_assignment`` solves an assignment as scipy's does."""
    code = textwrap.dedent("""\
        import sys
        from studio.engine import lazy_imports
        from studio.engine.models import loading
        loading.import_libraries()
        import transformers.loss.loss_for_object_detection as det
        waiting = [lazy_imports._is_stand_in(sys.modules[m])
                   for m in ("scipy.integrate", "scipy.optimize")]
        import torch
        from diffusers import LMSDiscreteScheduler
        s = LMSDiscreteScheduler()
        s.set_timesteps(6)
        x = torch.ones(1, 1, 2, 2)
        for t in s.timesteps[:4]:
            x = s.step(x * 0.5, t, x).prev_sample
        rows, cols = det.linear_sum_assignment([[4, 1, 3], [2, 0, 5], [3, 2, 2]])
        print(*waiting, lazy_imports._is_stand_in(sys.modules["scipy.integrate"]),
              rows.tolist(), cols.tolist(), f"{float(x.sum()):.6f}")
        """)
    eager = textwrap.dedent("""\
        import torch
        from diffusers import LMSDiscreteScheduler
        s = LMSDiscreteScheduler()
        s.set_timesteps(6)
        x = torch.ones(1, 1, 2, 2)
        for t in s.timesteps[:4]:
            x = s.step(x * 0.5, t, x).prev_sample
        print(f"{float(x.sum()):.6f}")
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600, check=True).stdout.strip().splitlines()[-1]
    total = subprocess.run([sys.executable, "-c", eager], capture_output=True, text=True,
                           timeout=600, check=True).stdout.split()[-1]
    assert out.startswith("True True False [0, 1, 2] [1, 0, 2] "), out
    assert out.split()[-1] == total
