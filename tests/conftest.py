"""Shared fixtures: offline, a private cache, and tiny real diffusers pipelines on disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Qt's offscreen screen is 800 x 800 unless a file says otherwise; the window fits itself to
# the screen, so the tests get a desktop's (as ../shared/tools/xwin.sh's Xvfb): 1600 x 1000.
_SCREEN = Path(__file__).resolve().parent / "offscreen-screen.json"
if os.environ["QT_QPA_PLATFORM"] == "offscreen" and not set(",:") & set(str(_SCREEN)):
    os.environ["QT_QPA_PLATFORM"] = f"offscreen:configfile={_SCREEN}"

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Foreign test files live beside the repository (CI checks them out there), never at an
# absolute path.
TESTDATA = REPO / ".." / "shared" / "testdata"
# Tests that take long run in the full run (--full, what CI runs) and, in the everyday run,
# only when something they check changed against origin/main (commits or working tree):
# marker -> (the paths whose change runs them, what they are).
TIERS: dict[str, tuple[tuple[str, ...], str]] = {
    "models": (("resources/models/", "studio/training/", "studio/engine/nets/",
                "studio/bench/", "studio/core/portraits/"),
               "model-card evaluation of the shipped weights"),
    "server": (("studio/remote/", "tests/remote/", "scripts/comfyui-venv.sh"),
               "end to end against a real ComfyUI server"),
    "packaging": (("pyproject.toml", "setup.py", "packaging/", "scripts/setup.sh",
                   "studio/paths.py", "tests/packaging/"),
                  "builds and installs the wheel"),
    "heavy": (("studio/engine/models/gguf.py", "tests/engine/test_gguf_original.py",
               "studio/engine/models/transformer_files.py", "tests/engine/test_transformer_files.py"),
              "a full-width Flux (530 M parameters) through an original-layout GGUF and "
              "as ComfyUI's files"),
    "startup": (("studio/engine/lazy_imports.py", "studio/engine/__init__.py",
                 "studio/engine/models/loading.py", "tests/engine/test_lazy_imports.py"),
                "a fresh process importing torch, diffusers and transformers"),
    "compile": (("tests/engine/test_cpu_compile.py",),
                "torch.compile of a tiny UNet with inductor (a minute, minutes on a cold cache)"),
}
MODEL_PATHS = TIERS["models"][0]
TIER_REASONS = pytest.StashKey[dict]()


def pytest_addoption(parser):
    parser.addoption("--full", action="store_true", default=False,
                     help="run every test, the long tiers too (markers: "
                          + ", ".join(TIERS) + ")")


def _changed_files() -> list[str] | None:
    """Files changed against origin/main (or HEAD without a remote), committed or not, and
    untracked ones; None when git cannot say (then everything runs)."""
    def git(*args: str) -> list[str]:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                             timeout=20, check=True).stdout
        return [line for line in out.splitlines() if line]

    try:
        try:
            base = git("merge-base", "origin/main", "HEAD")[0]
        except (subprocess.CalledProcessError, IndexError):
            base = "HEAD"
        return (git("diff", "--name-only", base, "--")
                + git("ls-files", "--others", "--exclude-standard"))
    except (OSError, subprocess.SubprocessError):
        return None


def tier_run_reason(config, marker: str, changed: list[str] | None) -> str | None:
    """Why the tests of ``marker`` run in this session, or None when they are skipped."""
    if config.getoption("--full"):
        return "--full"
    if os.environ.get("STUDIO_TEST_MODELS") == "0":  # measure the everyday run on a branch
        return None
    if changed is None:
        return "git could not list the changed files"
    paths = TIERS[marker][0]
    hits = [f for f in changed if f.startswith(paths)]
    return f"{len(hits)} changed files under {', '.join(paths)}" if hits else None


def models_run_reason(config) -> str | None:
    """Why the "models" tests run in this session, or None when they are skipped."""
    return tier_run_reason(config, "models", _changed_files())


def pytest_collection_modifyitems(config, items):
    reasons: dict[str, str | None] = {}
    changed: list[str] | None | bool = False  # asked of git once, when a tier needs it
    for marker, (paths, what) in TIERS.items():
        marked = [item for item in items if item.get_closest_marker(marker)]
        if not marked:
            continue
        if changed is False:
            changed = _changed_files()
        reason = tier_run_reason(config, marker, changed)  # type: ignore[arg-type]
        reasons[marker] = reason
        if reason is not None:
            continue
        skip = pytest.mark.skip(reason=f"{what}: runs with --full (scripts/test.sh --full, "
                                f"as CI does), or when {', '.join(paths)} change")
        for item in marked:
            item.add_marker(skip)
    config.stash[TIER_REASONS] = reasons


@pytest.fixture(scope="session")
def foreign_metadata() -> Path:
    """The folder of images made by other tools (../shared/testdata/foreign-metadata).

    Missing, it fails the test when CI is set, and skips it with the reason elsewhere."""
    folder = (TESTDATA / "foreign-metadata").resolve()
    if not folder.is_dir():
        message = (f"the shared test data is missing: {folder} (check out the shared "
                   "testdata folder beside the repository)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return folder


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("studio-cache")
    os.environ["STUDIO_CACHE_DIR"] = str(cache)
    os.environ["HF_HOME"] = str(tmp_path_factory.mktemp("hf-home"))
    os.environ["STUDIO_CONFIG_DIR"] = str(tmp_path_factory.mktemp("studio-config"))
    yield cache


@pytest.fixture(autouse=True)
def _private_config(tmp_path_factory, monkeypatch):
    """Each test has its own settings folder (studio.json, styles.json): a test that saves
    a default model, a device or a theme does not change what the next test reads. It lies
    outside the test's own ``tmp_path``, which tests list."""
    folder = tmp_path_factory.mktemp("studio-config")
    monkeypatch.setenv("STUDIO_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture
def edit_masks(monkeypatch):
    """The DiffEdit masks of local prompt sliders made during the test, in order (each as
    ``studio.engine.sliders.edit_mask`` gave it to the engine)."""
    from studio.engine import slider_edits

    masks = []
    original = slider_edits.edit_mask

    def record(*args, **kwargs):
        masks.append(original(*args, **kwargs))
        return masks[-1]

    monkeypatch.setattr(slider_edits, "edit_mask", record)
    return masks


@pytest.fixture(scope="session")
def tiny_sd1_dir(tmp_path_factory):
    """A tiny SD1-style pipeline saved as a diffusers folder."""
    from studio.engine.models.tiny import build_tiny_pipeline

    root = tmp_path_factory.mktemp("tiny-sd1")
    out = root / "tiny-sd1"
    build_tiny_pipeline("sd1", out, work_dir=root)
    return out


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory):
    """A tiny SDXL-style pipeline saved as a diffusers folder."""
    from studio.engine.models.tiny import build_tiny_pipeline

    root = tmp_path_factory.mktemp("tiny-sdxl")
    out = root / "tiny-sdxl"
    build_tiny_pipeline("sdxl", out, work_dir=root)
    return out


@pytest.fixture(scope="session")
def engine(tiny_sd1_dir, tiny_sdxl_dir, tmp_path_factory):
    """One CPU engine (float32, so results are exact) that knows both tiny models."""
    from studio.engine.engine import Engine

    return Engine(device="cpu", dtype="float32", model_dirs=[tiny_sd1_dir, tiny_sdxl_dir],
                  embedded_dir=tmp_path_factory.mktemp("no-embedded"), hf_cache=False)


def pytest_report_header(config):
    return f"python {sys.version.split()[0]}; offline (HF_HUB_OFFLINE=1)"


def pytest_terminal_summary(terminalreporter, config):
    for marker, reason in config.stash.get(TIER_REASONS, {}).items():
        terminalreporter.write_line(
            f"{TIERS[marker][1]} (marker '{marker}'): "
            f"{'ran: ' + reason if reason else 'skipped (run scripts/test.sh --full)'}")
