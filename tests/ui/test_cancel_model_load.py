"""The window on the real engine with the embedded model: Cancel in the status bar while the
model loads ends the load at once ("Cancelled"), keeps nothing half-loaded, and the next
Generate loads the model and puts its image on the canvas."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from PySide6.QtWidgets import QApplication  # noqa: E402

from studio.app import local_preload  # noqa: E402
from studio.ui.launch import StudioSession  # noqa: E402


@pytest.fixture
def embedded_engine(tmp_path_factory):
    from studio.engine.engine import Engine

    return Engine(device="cpu", dtype="auto", hf_cache=False)  # the shipped models


def test_cancel_during_the_model_load_then_generate(qtbot, settings, monkeypatch,
                                                    embedded_engine):
    from studio.engine.services import engine_services

    services = engine_services(embedded_engine)
    # The UNet is the slow part of a real load: here it waits (up to 20 s) until the user
    # has pressed Cancel, so that the press lands in the middle of the load.
    unet = diffusers.UNet2DConditionModel
    original = unet.from_pretrained.__func__
    loading_unet = threading.Event()
    pressed = threading.Event()
    vae_loads: list[int] = []
    vae_original = diffusers.AutoencoderKL.from_pretrained.__func__

    def slow_unet(cls, *args, **kwargs):
        loading_unet.set()
        pressed.wait(20)
        return original(cls, *args, **kwargs)

    def counted_vae(cls, *args, **kwargs):
        vae_loads.append(1)
        return vae_original(cls, *args, **kwargs)

    monkeypatch.setattr(unet, "from_pretrained", classmethod(slow_unet))
    monkeypatch.setattr(diffusers.AutoencoderKL, "from_pretrained", classmethod(counted_vae))

    session = StudioSession(lambda: services, [], settings, preload=local_preload)
    qtbot.addWidget(session.window)
    window, status = session.window, session.window.status
    try:
        with qtbot.waitSignal(session.loader.loaded, timeout=60000):
            session.start()
        assert window.prompt_panel.model_id == "studio-tiny-diffusion"
        qtbot.waitUntil(loading_unet.is_set, timeout=60000)
        assert status.message_label.text().startswith("Loading studio-tiny-diffusion")
        assert status.cancel_button.isVisible()
        with qtbot.waitSignal(window.bridge.job_cancelled, timeout=20000):
            status.cancel_button.click()
            pressed.set()
        QApplication.processEvents()
        assert status.message_label.text() == "Cancelled"
        assert not status.cancel_button.isVisible()
        assert vae_loads == []  # the load stopped after the UNet
        assert len(embedded_engine.pipelines) == 0  # nothing half-loaded kept

        monkeypatch.setattr(unet, "from_pretrained", classmethod(original))
        window.prompt_panel.prompt_edit.setPlainText("a portrait, red hair")
        with qtbot.waitSignal(window.controller.generation_applied, timeout=60000):
            window.actions["generate"].trigger()
        assert window.doc.log.gallery()[0].request.prompt == "a portrait, red hair"
        assert len(window.doc.layers) == 1  # the image is on the canvas
        assert len(embedded_engine.pipelines) == 1
    finally:
        pressed.set()
        window.close()
        session.shutdown()
