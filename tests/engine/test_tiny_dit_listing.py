"""``studio-tiny-dit`` is listed as what it is, before anything loads (no torch): an SD 3.x
model whose recommended settings are its own (64x64, 20 steps, Flow Euler), not SD3's."""

from __future__ import annotations

from studio.engine.models.discovery import embedded_info
from studio.paths import embedded_models_dir


def test_the_embedded_dit_is_listed_as_an_sd3_model_with_its_own_settings() -> None:
    info = embedded_info(embedded_models_dir() / "studio-tiny-dit")
    assert info is not None and info.kind == "diffusion" and info.family == "sd3"
    rec = dict(info.recommended)
    assert (rec["width"], rec["height"], rec["steps"], rec["guidance"]) == (64, 64, 20, 3.5)
    assert rec["scheduler"] == "FlowMatchEulerDiscreteScheduler"
    assert "Flow Euler" in rec["schedulers"] and "DDIM" not in rec["schedulers"]
    assert info.size_bytes < 15e6
