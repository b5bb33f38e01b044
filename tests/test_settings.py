"""One settings object for the window and the CLI: the file < STUDIO_* environment < flags."""

from __future__ import annotations

import json
import os

import pytest

from studio.cli import main
from studio.core.errors import InvalidRequestError
from studio.settings import (
    Settings,
    load_settings,
    save_settings,
    saved_settings,
    settings_path,
)


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    folder = tmp_path / "config"
    monkeypatch.setenv("STUDIO_CONFIG_DIR", str(folder))
    for name in ("DEVICE", "DTYPE", "MODEL_DIRS", "HF_CACHE", "DEFAULT_MODEL",
                 "AUTOSAVE_MINUTES", "THEME"):
        monkeypatch.delenv(f"STUDIO_{name}", raising=False)
    return folder


def test_settings_round_trip_and_bad_file_falls_back_to_defaults(tmp_path):
    path = tmp_path / "studio.json"
    cfg = Settings(device="cpu", dtype="float32", theme="light",
                   autosave_minutes=5).with_model_dir(tmp_path / "models")
    save_settings(cfg, path)
    assert saved_settings(path) == cfg
    assert cfg.with_model_dir(tmp_path / "models") is cfg  # no duplicates
    path.write_text("{broken")
    assert saved_settings(path) == Settings()


def test_a_file_written_before_the_settings_object_still_loads(config_dir):
    """The old config (device, dtype, model_dirs, default_model) in the same place."""
    config_dir.mkdir()
    (config_dir / "studio.json").write_text(json.dumps(
        {"device": "cpu", "dtype": "bfloat16", "model_dirs": ["/models/a"],
         "default_model": "tiny-sd1", "unknown": 1, "theme": "purple"}))
    settings = load_settings()
    assert settings_path() == config_dir / "studio.json"
    assert (settings.device, settings.dtype, settings.model_dirs, settings.default_model) == (
        "cpu", "bfloat16", ("/models/a",), "tiny-sd1")
    assert settings.theme == "dark"  # a bad value in the file is ignored, not fatal


def test_environment_overrides_the_file_and_flags_override_both(config_dir, monkeypatch):
    save_settings(Settings(device="cpu", dtype="float32", model_dirs=("/file",), theme="light"))
    monkeypatch.setenv("STUDIO_DTYPE", "bf16")
    monkeypatch.setenv("STUDIO_THEME", "dark")
    monkeypatch.setenv("STUDIO_HF_CACHE", "0")
    monkeypatch.setenv("STUDIO_MODEL_DIRS", os.pathsep.join(["/env1", "/env2"]))
    settings = load_settings()
    assert (settings.device, settings.dtype, settings.theme) == ("cpu", "bfloat16", "dark")
    assert settings.hf_cache is False
    assert settings.model_dirs == ("/file", "/env1", "/env2")  # folders add up
    flagged = load_settings(device="cuda:1", dtype=None, model_dirs=["/flag"], hf_cache=None)
    assert (flagged.device, flagged.dtype) == ("cuda:1", "bfloat16")  # None: not given
    assert flagged.model_dirs == ("/file", "/env1", "/env2", "/flag")
    # The file alone is what editors change: nothing from the environment leaks into it.
    assert saved_settings() == Settings(device="cpu", dtype="float32", model_dirs=("/file",),
                                        theme="light")


def test_a_bad_flag_or_variable_is_one_clear_line(config_dir, monkeypatch):
    with pytest.raises(InvalidRequestError, match="--device: Unknown device 'tpu'"):
        load_settings(device="tpu")
    monkeypatch.setenv("STUDIO_AUTOSAVE_MINUTES", "-1")
    with pytest.raises(InvalidRequestError, match="STUDIO_AUTOSAVE_MINUTES"):
        load_settings()


def test_cli_uses_saved_model_folders_and_device(tiny_sd1_dir, capsys, config_dir):
    save_settings(Settings(dtype="float32", model_dirs=(str(tiny_sd1_dir),)))
    assert main(["models", "--no-hf-cache"]) == 0
    assert "tiny-sd1" in capsys.readouterr().out
    assert main(["device"]) == 0
    assert "float32" in capsys.readouterr().out
    assert main(["device", "--dtype", "bfloat16"]) == 0  # a flag wins over the file
    assert "bfloat16" in capsys.readouterr().out


def test_cli_reads_the_environment_over_the_file(capsys, config_dir, monkeypatch):
    save_settings(Settings(device="cpu", dtype="float32"))
    monkeypatch.setenv("STUDIO_DTYPE", "bfloat16")
    assert main(["device"]) == 0
    assert "bfloat16" in capsys.readouterr().out
    monkeypatch.setenv("STUDIO_DEVICE", "tpu")
    assert main(["device"]) == 1
    err = capsys.readouterr().err
    assert "STUDIO_DEVICE: Unknown device 'tpu'" in err and "Traceback" not in err
