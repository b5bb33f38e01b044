"""The status bar's precision label says what the model shown actually runs in: on a CPU
whose policy autocasts large models to bfloat16, the small embedded model runs in float32,
and the label says float32, as the metadata of its images does."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from studio.core.jobs.runner import JobRunner  # noqa: E402
from studio.ui.main_window import MainWindow  # noqa: E402


@pytest.fixture
def bf16_engine():
    """The local engine over the shipped models, on a CPU with native bf16 (the policy of
    `studio device` on such a CPU: large models autocast to bf16, small ones stay fp32)."""
    from studio.engine.device import DeviceChoice
    from studio.engine.engine import Engine

    engine = Engine(device="cpu", dtype="float32", hf_cache=False)
    engine.choice = DeviceChoice("cpu", "float32", "bfloat16", "CPU (bf16 autocast: AMX)",
                                 bf16_weights=True, small_models_fp32=True)
    return engine


def test_the_precision_label_follows_the_model_and_its_images(qtbot, settings, bf16_engine):
    from studio.engine.services import engine_services

    runner = JobRunner(bf16_engine)
    window = MainWindow(engine_services(bf16_engine), runner, settings)
    qtbot.addWidget(window)
    window.show()
    status = window.status
    try:
        assert bf16_engine.device_info().autocast  # the device's policy: bf16 autocast
        assert window.prompt_panel.model_id == "studio-tiny-diffusion"
        assert status.dtype_label.text() == "float32"  # what the small model runs in
        assert "studio-tiny-diffusion" in status.dtype_label.toolTip()

        window.prompt_panel.set_values({"steps": 2, "seed": 3, "seed_locked": True})
        window.prompt_panel.prompt_edit.setPlainText("a portrait")
        with qtbot.waitSignal(window.controller.generation_applied, timeout=60000):
            window.actions["generate"].trigger()
        made = window.doc.log.gallery()[0].request
        assert made.dtype == "float32" == status.dtype_label.text()  # label = metadata

        # A model the engine does not know (yet): the device's own precision.
        window.status.set_model("no-such-model")
        assert status.dtype_label.text() == "bfloat16 autocast"
    finally:
        window.detach_engine()
        assert runner.shutdown(10)
