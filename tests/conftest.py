"""Shared fixtures: offline, a private cache, and tiny real diffusers pipelines on disk."""

from __future__ import annotations

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("studio-cache")
    os.environ["STUDIO_CACHE_DIR"] = str(cache)
    os.environ["HF_HOME"] = str(tmp_path_factory.mktemp("hf-home"))
    os.environ["STUDIO_CONFIG_DIR"] = str(tmp_path_factory.mktemp("studio-config"))
    yield cache


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
                  embedded_dir=tmp_path_factory.mktemp("no-embedded"), hf_cache=False,
                  max_loaded=2)


def pytest_report_header(config):
    return f"python {sys.version.split()[0]}; offline (HF_HUB_OFFLINE=1)"
