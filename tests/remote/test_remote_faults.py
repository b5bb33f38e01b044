"""Faults and promises against the real ComfyUI 0.8.0 server (tests/remote/conftest.py): what
leaves this machine, a slow server, a job cancelled while it waits in the server's queue,
memory running out on the server, images the server should never send, the preference for
the server that has the model loaded, and "Use settings" made again on the same server.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from studio.core.document.pixels import Pixels
from studio.core.errors import CancelledError, OutOfMemoryError
from studio.core.jobs.cancel import CancelToken
from studio.core.jobs.request import GenerationRequest
from studio.remote.client import ComfyClient, ServerConfig
from studio.remote.engine import RemoteEngine
from studio.remote.errors import RemoteImageError

pytestmark = [pytest.mark.slow, pytest.mark.server]
REPO = Path(__file__).resolve().parents[2]


def request(**kw) -> GenerationRequest:
    base = dict(prompt="a lighthouse at dusk", model="tiny-sd1", steps=2, width=64, height=64,
                seed=3, guidance=5.0)
    return GenerationRequest(**{**base, **kw})


def when(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def in_background(fn):
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the test
            out["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def running_on(engine: RemoteEngine, url: str) -> bool:
    server = next(s for s in engine.servers if s.url == url)
    return server.busy and server.client.activity == "running"


def test_what_leaves_this_machine(comfy_server, tmp_path) -> None:
    """Through a recording relay to the real server: every request carries the access token
    (HTTP and the websocket), an image is uploaded once under a name made from its content,
    and no local path (the image's folder, the home, the checkout) is ever sent."""
    from PIL import Image
    from relay import Relay

    folder = tmp_path / "private-photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, seed in (("mine.png", 1), ("other.png", 2)):
        Image.fromarray(np.random.default_rng(seed).integers(0, 255, (64, 64, 3), np.uint8)
                        ).save(folder / name)
    mine = Pixels.from_array(np.asarray(Image.open(folder / "mine.png").convert("RGB")))
    other = Pixels.from_array(np.asarray(Image.open(folder / "other.png").convert("RGB")))
    mask = Pixels.from_array(np.where(rng.random((64, 64)) > 0.5, 255, 0).astype(np.uint8))
    relay = Relay(comfy_server.port, record=True)
    engine = RemoteEngine([ServerConfig(relay.url, token="s3cret-token")])
    try:
        for init in (mine, mine, other):
            engine.generate(request(task="img2img", init_image=init, strength=0.5, steps=1))
        engine.generate(request(task="inpaint", init_image=mine, mask=mask, steps=1))
    finally:
        engine.close()
        relay.close()
    sent = bytes(relay.sent)
    requests = re.findall(rb"(?:GET|POST) /[^ \r\n]* HTTP/1\.1\r\n", sent)
    assert len(requests) >= 8 and any(b"GET /ws?" in r for r in requests)
    assert sent.count(b"Authorization: Bearer s3cret-token\r\n") == len(requests)
    uploads = re.findall(rb'filename="(studio-[0-9a-f]{32}\.png)"', sent)
    assert len(uploads) == 3  # mine, other, the mask: the second "mine" was not sent again
    assert len(set(uploads)) == 3
    for local in (str(folder), str(tmp_path), str(Path.home()), str(REPO), "mine.png",
                  "private-photos"):
        assert local.encode() not in sent, local


def test_a_slow_server_is_waited_for_not_dropped(spare, remote_engine, monkeypatch,
                                                 caplog) -> None:
    """The server stops answering mid-job (its process paused) for longer than any status
    timeout, than the silence after which the client asks /history, and than the websocket's
    heartbeat, which drops the socket: the job is followed again on the same server when it
    answers, not given up or run twice. The heartbeat (20 s) and the silence check (30 s)
    are 4 s here, so a 12 s pause goes through the same events as 35 s at the real ones."""
    import logging

    from studio.remote import client

    # the image to compare with, on the shared engine before the shorter timings apply
    expected = remote_engine.generate(request(seed=61, steps=6)).images[0]
    monkeypatch.setattr(client, "WS_HEARTBEAT_S", 4.0)
    monkeypatch.setattr(client, "SILENCE_CHECK_S", 4.0)
    caplog.set_level(logging.INFO, logger=client.__name__)
    engine = RemoteEngine([spare.url])
    try:
        thread, out = in_background(lambda: engine.generate(request(seed=61, steps=6)))
        when(lambda: running_on(engine, spare.url) or "error" in out)
        os.killpg(spare.process.pid, signal.SIGSTOP)
        try:
            time.sleep(12)  # > the status timeout (5 s), the silence check, the heartbeat's 6 s
        finally:
            os.killpg(spare.process.pid, signal.SIGCONT)
        thread.join(300)
        assert not thread.is_alive() and "error" not in out, out.get("error")
    finally:
        engine.close()
    assert engine.requeued == []  # followed again, not sent again
    # the pause did drop the socket (the heartbeat), and the client reached the server again
    assert any("after the socket dropped" in r.getMessage() for r in caplog.records)
    assert np.array_equal(out["value"].images[0], expected)


def test_cancel_removes_a_job_waiting_in_the_servers_queue(comfy_server) -> None:
    """Another client's long prompt holds the server; ours waits in its queue; cancel takes
    ours out of the queue (``/queue`` delete) at once, and the other prompt is left alone."""
    from studio.remote import workflow as wf

    engine = RemoteEngine([comfy_server.url])
    client = engine.servers[0].client
    other = ComfyClient(ServerConfig(comfy_server.url))
    long_job = wf.txt2img(request(steps=400, seed=7), "tiny-sd1.safetensors")
    held = engine.loop.submit(other.run(long_job, lambda _p: None, lambda: False,
                                        prompt_id="someone-elses-prompt"))
    try:
        when(lambda: engine.loop.run(client.queue_state(), 30)[0] == ["someone-elses-prompt"])
        cancel = CancelToken()
        thread, out = in_background(lambda: engine.generate(request(seed=8), cancel=cancel))
        when(lambda: len(engine.loop.run(client.queue_state(), 30)[1]) == 1)
        cancel.cancel()
        thread.join(60)
        assert not thread.is_alive() and isinstance(out.get("error"), CancelledError)
        running, pending = engine.loop.run(client.queue_state(), 30)
        assert running == ["someone-elses-prompt"] and pending == []
    finally:
        engine.loop.run(other.cancel("someone-elses-prompt"), 30)
        with pytest.raises(CancelledError):
            held.result(120)
        engine.loop.run(other.close(), 10)
        engine.close()


def test_memory_running_out_on_the_server_is_one_line(comfy_server) -> None:
    """The server is asked for a 256 GiB latent: its allocator fails, and the user reads one
    line naming the server, the node and the size, with what to do."""
    from studio.remote import workflow as wf

    if Path("/proc/sys/vm/overcommit_memory").read_text().strip() == "1":
        pytest.skip("vm.overcommit_memory=1 would grant the 256 GiB and fill the memory "
                    "instead of refusing it")
    graph = wf.txt2img(request(), "tiny-sd1.safetensors")
    for node in graph.values():
        if node["class_type"] == "EmptyLatentImage":
            node["inputs"].update(width=16384, height=16384, batch_size=4096)
    engine = RemoteEngine([comfy_server.url])
    try:
        with pytest.raises(OutOfMemoryError) as err:
            engine.loop.run(engine.servers[0].client.run(graph, lambda _p: None,
                                                         lambda: False), 300)
        after = engine.generate(request(steps=1))  # the server is fine afterwards
    finally:
        engine.close()
    text = str(err.value)
    assert "\n" not in text and "enforce fail" not in text
    assert comfy_server.url in text and "EmptyLatentImage" in text and "256.0 GiB" in text
    assert "smaller" in err.value.hint
    assert after.images[0].shape == (64, 64, 3)


def png_header_only(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(
        b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_images_the_server_should_never_send_are_refused(spare, monkeypatch) -> None:
    """The real server's ``/view`` serves files from its output folder: one that claims
    100 000 x 100 000 pixels (a decompression bomb), one that is not an image, and one larger
    than the byte limit are each refused in one line, and nothing is decoded."""
    from PIL import Image

    from studio.remote import client as client_module

    out = spare.base / "output"
    out.mkdir(exist_ok=True)
    (out / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    (out / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1024, 1024, 3), np.uint8)
                    ).save(out / "heavy.png", compress_level=0)
    engine = RemoteEngine([spare.url])
    client = engine.servers[0].client
    try:
        def fetch(name: str) -> str:
            with pytest.raises(RemoteImageError) as err:
                engine.loop.run(client.fetch_image({"filename": name, "type": "output"}), 60)
            text = str(err.value)
            assert "\n" not in text and "Traceback" not in text
            return text

        assert "too large to decode safely" in fetch("bomb.png")
        assert "not a readable image (not PNG, JPEG or WebP data)" in fetch("garbage.png")
        monkeypatch.setattr(client_module, "MAX_IMAGE_BYTES", 1 << 20)
        assert "more than 1048576 is refused" in fetch("heavy.png")
        monkeypatch.undo()
        assert engine.loop.run(client.fetch_image({"filename": "heavy.png", "type": "output"}),
                               60).shape == (1024, 1024, 3)  # within the limits: read
    finally:
        engine.close()
        for name in ("bomb.png", "garbage.png", "heavy.png"):
            (out / name).unlink(missing_ok=True)


def test_jobs_go_to_the_server_that_has_the_model_loaded(comfy_server, spare) -> None:
    engine = RemoteEngine([comfy_server.url, spare.url])
    try:
        used = [engine.generate(request(seed=90 + i, steps=1)).server for i in range(3)]
        done = {s.url: s.jobs_done for s in engine.server_status(poll=False)}
    finally:
        engine.close()
    assert len(set(used)) == 1  # not handed round: the first one has tiny-sd1 in memory
    assert done[used[0]] == 3 and sum(done.values()) == 3


def test_use_settings_makes_the_same_image_on_the_same_server(comfy_server, tmp_path,
                                                              monkeypatch, capsys) -> None:
    """`studio generate --server` writes the request (with the server's address) into the
    image; the request read back from the file and run again gives the same pixels."""
    from PIL import Image

    from studio.cli.main import main
    from studio.core.formats.metadata import read_settings

    monkeypatch.setenv("STUDIO_CONFIG_DIR", str(tmp_path / "config"))
    out = tmp_path / "made.png"
    code = main(["generate", "a lighthouse", "--server", comfy_server.url, "--model",
                 "tiny-sd1", "--size", "64", "--steps", "2", "--seed", "3456789012",
                 "-o", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    settings = read_settings(out)
    assert settings is not None and settings.request is not None
    again = settings.request
    assert comfy_server.url in again.device and again.seed == 3456789012
    with Image.open(out) as img:
        saved = np.asarray(img.convert("RGB"))
    engine = RemoteEngine([again.device.split(":", 1)[1]])
    try:
        remade = engine.generate(again).images[0]
    finally:
        engine.close()
    assert np.array_equal(remade, saved)


def write_text_encoder_lora(path: Path) -> None:
    """A kohya-style LoRA on the CLIP-L text encoder (what ComfyUI's LoraLoader reads for an
    SD 1.x checkpoint): rank 4 on every layer's attention output and second MLP layer."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    tensors = {}
    for layer in range(12):
        for part, inner in (("self_attn_out_proj", 768), ("mlp_fc2", 3072)):
            key = f"lora_te_text_model_encoder_layers_{layer}_{part}"
            tensors[f"{key}.lora_up.weight"] = rng.normal(0, 0.5, (768, 4)).astype(np.float16)
            tensors[f"{key}.lora_down.weight"] = rng.normal(0, 0.5, (4, inner)).astype(np.float16)
            tensors[f"{key}.alpha"] = np.array(4.0, dtype=np.float16)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))


def test_loras_with_weights_on_the_server(spare) -> None:
    """A LoRA in the server's models/loras changes the picture by its weight, the same way
    whether named in the request or as ``<lora:name:w>`` in the prompt; weight 0 is none."""
    from studio.core.jobs.request import LoraWeight

    lora = spare.base / "models" / "loras" / "studio-test-lora.safetensors"
    write_text_encoder_lora(lora)
    engine = RemoteEngine([spare.url])
    try:
        listed = [m for m in engine.list_models("lora") if m.name == "studio-test-lora"]
        assert listed and "loras/studio-test-lora.safetensors" in listed[0].path

        def make(prompt: str = "a lighthouse at dusk", weight: float | None = None):
            loras = () if weight is None else (LoraWeight("", weight, "studio-test-lora"),)
            result = engine.generate(request(prompt=prompt, loras=loras, seed=5, steps=1))
            return result.images[0], result.workflows[0]

        plain, _ = make()
        full, graph = make(weight=1.0)
        half, _ = make(weight=0.5)
        tagged, _ = make("a lighthouse at dusk <lora:studio-test-lora:1>")
        zero, _ = make(weight=0.0)
    finally:
        engine.close()
        lora.unlink(missing_ok=True)

    def apart(a, b) -> float:
        return float(np.abs(a.astype(int) - b).mean())

    assert [n["inputs"]["strength_model"] for n in graph.values()
            if n["class_type"] == "LoraLoader"] == [1.0]
    assert apart(full, plain) > 1 and apart(half, plain) > 0 and apart(half, full) > 0
    assert np.array_equal(tagged, full)  # the tag is the LoRA; its text is not prompted
    assert np.array_equal(zero, plain)
