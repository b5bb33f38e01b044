"""Several real ComfyUI servers sharing one queue, and servers that die, stall or restart
mid-job (tests/remote/conftest.py starts them once per run; ``spare`` is left running).

Nothing the user asked for is lost or done twice: every image of a batch comes back once,
from the server that finished it, and equals the same seed made alone.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from studio.core.jobs.cancel import CancelToken
from studio.core.jobs.request import GenerationRequest
from studio.remote.engine import RemoteEngine
from studio.remote.errors import RemoteExecutionError

pytestmark = [pytest.mark.slow, pytest.mark.server]


def request(**kw) -> GenerationRequest:
    base = dict(prompt="a lighthouse at dusk", model="tiny-sd1", steps=2, width=64, height=64,
                seed=3, guidance=5.0)
    return GenerationRequest(**{**base, **kw})


def when(condition, timeout: float = 300.0) -> None:
    """Wait for ``condition``: an event, not a guess of its time (a restarted server loads
    its model first; on a loaded 2-core machine that took minutes)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


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


def solo(engine: RemoteEngine, seed: int, **kw) -> np.ndarray:
    return engine.generate(request(seed=seed, **kw)).images[0]


def running_on(engine: RemoteEngine, url: str) -> bool:
    server = next(s for s in engine.servers if s.url == url)
    return server.busy and server.client.activity == "running"


def test_state_of_each_server_is_polled(comfy_server, spare) -> None:
    engine = RemoteEngine([comfy_server.url, spare.url])
    try:
        status = engine.server_status()
        assert [s.state for s in status] == ["idle", "idle"]
        assert all(s.gpu and s.vram_total > 0 and s.queue == 0 for s in status)
        assert "idle" in status[0].text and "GB free" in status[0].text
        spare.stop(signal.SIGKILL)
        status = engine.server_status()
        assert status[0].state == "idle" and status[1].state == "failed"
        assert "Cannot reach" in status[1].reason and "\n" not in status[1].text
        assert 0 < status[1].retry_in <= 1.0
        again = engine.server_status()  # not asked again before its backoff ends
        assert again[1].state == "failed" and again[1].retry_in <= status[1].retry_in
        spare.restart()
        when(lambda: engine.server_status()[1].state == "idle")
    finally:
        engine.close()


def test_two_servers_share_a_batch_every_image_once(comfy_server, spare,
                                                    remote_engine: RemoteEngine) -> None:
    engine = RemoteEngine([comfy_server.url, spare.url])
    try:
        result = engine.generate(request(batch_size=4, seed=40, steps=1))
    finally:
        engine.close()
    assert len(result.images) == 4
    assert set(result.server.split(",")) == {comfy_server.url, spare.url}
    assert len({img.tobytes() for img in result.images}) == 4
    assert np.array_equal(result.images[3], solo(remote_engine, 43, steps=1))


def test_kill_9_mid_job_sends_the_job_to_the_other_server(comfy_server, spare,
                                                          remote_engine: RemoteEngine) -> None:
    engine = RemoteEngine([comfy_server.url, spare.url], reconnect_s=1.0)
    steps = []
    try:
        big = dict(batch_size=4, seed=50, steps=6)
        thread, out = in_background(lambda: engine.generate(request(**big), steps.append))
        when(lambda: running_on(engine, spare.url) or "error" in out)
        spare.stop(signal.SIGKILL)
        thread.join(180)
        assert "error" not in out, out.get("error")
        result = out["value"]
        status = engine.server_status(poll=False)
    finally:
        engine.close()
    assert len(result.images) == 4  # none lost
    assert len({img.tobytes() for img in result.images}) == 4  # none twice
    assert result.server == comfy_server.url  # the pixels of the one that finished only
    assert engine.requeued and spare.url in engine.requeued[0]
    assert status[1].state == "failed" and status[1].requeued == 1
    assert [p.phase for p in steps].count("loading") >= 2  # shown back in the queue
    alone = solo(remote_engine, 53, steps=6)
    assert np.array_equal(result.images[3], alone)  # the moved image is the same image


def test_server_restarted_mid_job_gets_the_job_again(spare, remote_engine) -> None:
    engine = RemoteEngine([spare.url], reconnect_s=0.5)
    try:
        thread, out = in_background(lambda: engine.generate(
            request(seed=60, steps=6)))
        when(lambda: running_on(engine, spare.url) or "error" in out)
        spare.stop(signal.SIGKILL)
        spare.restart()
        thread.join(180)
        assert "error" not in out, out.get("error")
    finally:
        engine.close()
    assert engine.requeued and "dropped" in engine.requeued[0]
    assert np.array_equal(out["value"].images[0],
                          solo(remote_engine, 60, steps=6))


def test_a_stalled_job_is_detected_and_moved(comfy_server, spare) -> None:
    # stall_s: longer than a healthy server's silences on a loaded 2-core machine (a step,
    # a decode), once both have the model loaded (a load is a longer silence: the batch
    # below loads it on each); with 5 s, the healthy server was taken for stalled too.
    engine = RemoteEngine([spare.url, comfy_server.url], stall_s=20.0, reconnect_s=0.5)
    try:
        warm = engine.generate(request(seed=69, steps=1, batch_size=2))
        assert len(warm.server.split(",")) == 2
        thread, out = in_background(lambda: engine.generate(
            request(seed=70, steps=30)))
        when(lambda: running_on(engine, spare.url) or running_on(engine, comfy_server.url)
             or "error" in out)
        stalled = spare if running_on(engine, spare.url) else comfy_server
        os.killpg(stalled.process.pid, signal.SIGSTOP)
        try:
            # Stall seen after 20 s; then the other server runs the 30 steps, which takes
            # minutes on a loaded 2-core machine: wait for the outcome, not a fixed guess.
            thread.join(600)
        finally:
            os.killpg(stalled.process.pid, signal.SIGCONT)
            stalled.clear()  # it still has the job it was paused in: not for the next test
        assert not thread.is_alive(), "the stalled job was never moved or finished"
        assert "error" not in out, out.get("error")
        status = {s.url: s for s in engine.server_status(poll=False)}
    finally:
        engine.close()
    assert len(out["value"].images) == 1 and out["value"].server != stalled.url
    assert "stalled" in engine.requeued[0] or "did not answer" in engine.requeued[0]
    assert status[stalled.url].state == "failed"


def test_connection_cut_mid_image_is_followed_again(comfy_server, remote_engine) -> None:
    """A loopback TCP relay in front of the real server drops every connection mid-job; the
    client reaches the server again and takes the job's result (not a second run)."""
    from relay import Relay

    relay = Relay(comfy_server.port)
    engine = RemoteEngine([relay.url], reconnect_s=5.0)
    try:
        steps = []
        thread, out = in_background(lambda: engine.generate(
            request(seed=80, steps=6), steps.append))
        when(lambda: running_on(engine, relay.url) or "error" in out)
        relay.cut()
        thread.join(120)
        assert "error" not in out, out.get("error")
        assert relay.connections >= 2  # it connected again
    finally:
        engine.close()
        relay.close()
    assert not engine.requeued  # the same job, followed again: not run twice
    assert np.array_equal(out["value"].images[0],
                          solo(remote_engine, 80, steps=6))


def test_execution_error_is_one_line(spare) -> None:
    engine = RemoteEngine([spare.url])
    try:
        with pytest.raises(RemoteExecutionError) as err:
            engine.generate(request(model="broken"), cancel=CancelToken())
    finally:
        engine.close()
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text
    assert spare.url in text and "CheckpointLoaderSimple" in text


def test_tls_with_a_bad_certificate_is_refused_unless_trusted(comfy_root, tiny_checkpoint,
                                                              tmp_path) -> None:
    """ComfyUI itself over TLS (--tls-keyfile/--tls-certfile) with a self-signed certificate."""
    import shutil
    import subprocess

    from conftest import start_server

    from studio.remote.client import ServerConfig
    from studio.remote.errors import ServerUnreachableError

    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    server = start_server(comfy_root, tmp_path / "tls", tiny_checkpoint, scheme="https",
                          extra=["--tls-keyfile", str(key), "--tls-certfile", str(cert)])
    try:
        assert server.url.startswith("https://")
        engine = RemoteEngine([server.url])
        try:
            with pytest.raises(ServerUnreachableError) as err:
                engine.generate(request())
            text = str(err.value)
            assert "certificate" in text and "\n" not in text
            assert "Trust" in (err.value.hint or "")
        finally:
            engine.close()
        trusted = RemoteEngine([ServerConfig(server.url, trust=True)])
        try:
            result = trusted.generate(request(steps=1))
            assert result.images[0].shape == (64, 64, 3) and result.server == server.url
        finally:
            trusted.close()
    finally:
        server.stop()
