"""End to end against a real ComfyUI 0.8.0 server on the loopback (tests/remote/conftest.py).

Each generation is 64x64 with 1-2 steps of the tiny SD 1.x checkpoint on the CPU.
"""

from __future__ import annotations

import http.server
import json
import threading
import time

import numpy as np
import pytest

from studio.core.document.pixels import Pixels
from studio.core.errors import CancelledError
from studio.core.formats.metadata import read_settings
from studio.core.jobs.cancel import CancelToken
from studio.core.jobs.request import GenerationRequest
from studio.remote.engine import RemoteEngine, RemoteGenerationResult
from studio.remote.errors import (
    NotComfyUIError,
    ServerModelMissingError,
    ServerUnreachableError,
)

pytestmark = [pytest.mark.slow, pytest.mark.server]


def request(**kw) -> GenerationRequest:
    base = dict(prompt="a lighthouse at dusk", model="tiny-sd1", steps=2, width=64, height=64,
                seed=3, guidance=5.0)
    return GenerationRequest(**{**base, **kw})


def one_line(err: BaseException) -> str:
    text = str(err)
    assert text and "\n" not in text and "Traceback" not in text
    return text


def picture(seed: int) -> Pixels:
    rng = np.random.default_rng(seed)
    return Pixels.from_array(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))


def test_txt2img_progress_previews_and_same_pixels_again(remote_engine: RemoteEngine,
                                                         comfy_server) -> None:
    steps = []
    first = remote_engine.generate(request(), steps.append, CancelToken())
    other = remote_engine.generate(request(seed=4), lambda _p: None, CancelToken())
    again = remote_engine.generate(request(), lambda _p: None, CancelToken())
    assert len(first.images) == 1 and first.images[0].shape == (64, 64, 3)
    assert first.images[0].dtype == np.uint8 and first.images[0].std() > 0
    assert np.array_equal(first.images[0], again.images[0])  # same request, same pixels
    assert not np.array_equal(first.images[0], other.images[0])
    sampling = [p.step for p in steps if p.phase == "sampling"]
    assert sampling and max(sampling) == 2 and steps[0].phase == "loading"
    assert any(p.preview is not None and p.preview.dtype == np.uint8 for p in steps)
    assert isinstance(first, RemoteGenerationResult)
    assert first.server == comfy_server.url and comfy_server.url in first.request.device
    assert first.workflows and any(n["class_type"] == "KSampler"
                                   for n in first.workflows[0].values())


def test_batch_images_match_their_seeds(remote_engine: RemoteEngine) -> None:
    batch = remote_engine.generate(request(batch_size=2, seed=20, steps=1))
    alone = remote_engine.generate(request(seed=21, steps=1))
    assert len(batch.images) == 2
    assert np.array_equal(batch.images[1], alone.images[0])


def test_img2img_and_inpaint(remote_engine: RemoteEngine) -> None:
    a = remote_engine.generate(request(task="img2img", init_image=picture(1), strength=0.5))
    b = remote_engine.generate(request(task="img2img", init_image=picture(2), strength=0.5))
    assert a.images[0].shape == (64, 64, 3) and not np.array_equal(a.images[0], b.images[0])
    left = np.zeros((64, 64), np.uint8)
    left[:, :32] = 255
    masks = [Pixels.from_array(left), Pixels.from_array(255 - left)]
    results = [remote_engine.generate(request(task="inpaint", init_image=picture(1), mask=m,
                                              strength=1.0)) for m in masks]
    assert all(r.images[0].shape == (64, 64, 3) for r in results)
    assert not np.array_equal(results[0].images[0], results[1].images[0])


def test_cancel_mid_run_frees_the_server(remote_engine: RemoteEngine, comfy_server) -> None:
    cancel = CancelToken()
    seen = []
    cancelled_at = []

    def on_step(p) -> None:
        seen.append(p)
        if p.phase == "sampling" and p.step >= 2 and not cancelled_at:
            cancelled_at.append((time.monotonic(), len(seen)))
            cancel.cancel()

    with pytest.raises(CancelledError):
        remote_engine.generate(request(steps=400, seed=99), on_step, cancel)
    (at, count), now = cancelled_at[0], time.monotonic()
    after = [p.step for p in seen[count:] if p.phase == "sampling" and p.preview is None]
    assert len(after) <= 3, after  # the server stopped within a step or two
    assert now - at < 60  # a step here takes about a second, even loaded
    assert max(p.step for p in seen) < 400
    running, pending = remote_engine.loop.run(
        remote_engine.servers[0].client.queue_state(), timeout=30)
    assert running == [] and pending == []
    after = remote_engine.generate(request(steps=1, seed=5))  # the server takes work again
    assert after.images[0].shape == (64, 64, 3)


def test_missing_model_is_one_line(remote_engine: RemoteEngine) -> None:
    with pytest.raises(ServerModelMissingError) as err:
        remote_engine.generate(request(model="no-such-model"))
    assert "no-such-model" in one_line(err.value)


def test_refused_address_is_one_line() -> None:
    from conftest import free_port

    engine = RemoteEngine([f"http://127.0.0.1:{free_port()}"])
    try:
        with pytest.raises(ServerUnreachableError) as err:
            engine.generate(request())
        assert "Cannot reach" in one_line(err.value)
        assert "comfyui" in engine.features.backend and not engine.features.img2img
    finally:
        engine.close()


def test_a_server_that_is_not_comfyui_is_one_line() -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b"<html>hello</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    engine = RemoteEngine([f"http://127.0.0.1:{httpd.server_address[1]}"])
    try:
        with pytest.raises(NotComfyUIError) as err:
            engine.generate(request())
        assert "not" in one_line(err.value) and "ComfyUI" in str(err.value)
    finally:
        engine.close()
        httpd.shutdown()


def test_models_list_where_each_lives(remote_engine: RemoteEngine, comfy_server) -> None:
    models = remote_engine.list_models("diffusion")
    assert [m.id for m in models] == ["tiny-sd1.safetensors"]
    assert comfy_server.url in models[0].path and "checkpoints/" in models[0].path
    assert remote_engine.resolve_model("tiny-sd1").id == "tiny-sd1.safetensors"
    assert "ComfyUI" in remote_engine.device_info().description


def test_studio_generate_with_server(comfy_server, tmp_path, monkeypatch, capsys) -> None:
    from PIL import Image

    from studio.cli.main import main

    monkeypatch.setenv("STUDIO_CONFIG_DIR", str(tmp_path / "config"))
    out = tmp_path / "lighthouse.png"
    code = main(["generate", "a lighthouse", "--server", comfy_server.url, "--model", "tiny-sd1",
                 "--size", "64", "--steps", "2", "--seed", "3", "-o", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    with Image.open(out) as img:
        assert img.size == (64, 64)
        assert "tiny-sd1" in img.info.get("parameters", "")
        # The workflow that ran, as ComfyUI writes it: dropping the file on ComfyUI loads it.
        ran = json.loads(img.info["prompt"])
        assert any(n["class_type"] == "KSampler" and n["inputs"]["seed"] == 3
                   for n in ran.values())
    assert read_settings(out).request.seed == 3  # our own reader still takes our request
    assert main(["servers", "--check", comfy_server.url]) == 0
    text = capsys.readouterr().out
    assert "ComfyUI 0.8.0" in text and "tiny-sd1.safetensors" in text and "missing" in text
    code = main(["generate", "x", "--server", comfy_server.url, "--model", "nope", "--size",
                 "64", "-o", str(tmp_path / "x.png"), "--quiet"])
    assert code == 1 and "nope" in capsys.readouterr().err


def test_variation_seed_moves_the_image_a_little(remote_engine: RemoteEngine) -> None:
    base = remote_engine.generate(request(seed=3)).images[0]
    varied = remote_engine.generate(request(seed=3, batch_size=2, variation_seed=9,
                                            variation_strength=0.1))
    other = remote_engine.generate(request(seed=9)).images[0]
    alone = remote_engine.generate(request(seed=4, variation_seed=10,
                                           variation_strength=0.1)).images[0]

    def apart(a, b) -> float:
        return float(np.abs(a.astype(int) - b).mean())

    assert 0 < apart(varied.images[0], base) < apart(other, base) / 3  # near, not the same
    assert np.array_equal(varied.images[1], alone)  # image i: seed + i, variation seed + i
    workflow = varied.workflows[0]
    assert any(n["class_type"] == "SamplerCustomAdvanced" for n in workflow.values())
    assert varied.request.variation_seed == 9 and varied.request.variation_strength == 0.1


def test_hires_fix_runs_as_one_workflow_on_the_server(remote_engine: RemoteEngine) -> None:
    from studio.remote.services import RemoteUpscaling

    small = remote_engine.generate(request(seed=5)).images[0]
    upscaling = RemoteUpscaling(remote_engine)
    assert upscaling.upscaler_names() == ["studio-tiny-upscaler"]
    values = {"scale": 2.0, "model": "", "refine": True, "strength": 0.5, "prompt": "a lighthouse"}
    steps = []
    hires = upscaling.upscale(small, values, steps.append, CancelToken())
    plain = upscaling.upscale(small, {**values, "refine": False}, lambda _p: None,
                              CancelToken())
    again = upscaling.upscale(small, values, lambda _p: None, CancelToken())
    assert hires.shape == plain.shape == (128, 128, 3)
    assert not np.array_equal(hires, plain)  # sampled again at the new size
    assert np.array_equal(hires, again)  # the same settings, the same pixels
    assert any(p.phase == "sampling" for p in steps)
    odd = upscaling.upscale(small, {**values, "scale": 1.3, "model": "lanczos"},
                            lambda _p: None, CancelToken())
    assert odd.shape == (83, 83, 3)  # sampled at 88 px, then to the exact size
