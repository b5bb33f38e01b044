"""Saved settings shared by the CLI and the window: device, precision, model folders."""

from __future__ import annotations

from studio.cli import main
from studio.core.config import StudioConfig, load_config, save_config


def test_config_round_trip_and_bad_file_falls_back_to_defaults(tmp_path):
    path = tmp_path / "studio.json"
    cfg = StudioConfig(device="cpu", dtype="float32").with_model_dir(tmp_path / "models")
    save_config(cfg, path)
    assert load_config(path) == cfg
    assert cfg.with_model_dir(tmp_path / "models") is cfg  # no duplicates
    path.write_text("{broken")
    assert load_config(path) == StudioConfig()


def test_cli_uses_saved_model_folders_and_device(tiny_sd1_dir, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("STUDIO_CONFIG_DIR", str(tmp_path))
    save_config(StudioConfig(dtype="float32", model_dirs=(str(tiny_sd1_dir),)))
    assert main(["models", "--no-hf-cache"]) == 0
    assert "tiny-sd1" in capsys.readouterr().out
    assert main(["device"]) == 0
    assert "float32" in capsys.readouterr().out
    assert main(["device", "--dtype", "bfloat16"]) == 0  # a flag wins over the file
    assert "bfloat16" in capsys.readouterr().out
