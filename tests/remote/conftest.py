"""Real ComfyUI servers on loopback ports, started once per test run from the cached venv.

The venv and a writable copy of the vendored ComfyUI 0.8.0 come from
``scripts/comfyui-venv.sh`` (built once, cached by recipe); the tiny SD 1.x checkpoint from
``tests/remote/tiny_checkpoint.py`` (built once, cached). Outside CI the server tests are
skipped when the venv is missing; in CI (``CI`` set) that is a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 480  # a start-up on a loaded 2-core machine took over 240 s


def comfyui_root() -> Path:
    out = subprocess.run(["bash", str(REPO / "scripts" / "comfyui-venv.sh"), "--print"],
                         capture_output=True, text=True, check=True, timeout=30)
    return Path(out.stdout.strip())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ComfyServer:
    url: str
    process: subprocess.Popen
    base: Path
    log: Path
    command: list[str] | None = None
    env: dict[str, str] | None = None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def restart(self, wait: bool = True) -> None:
        """Start it again on the same port with the same folders (after ``stop``)."""
        assert self.command is not None and not self.alive()
        python = next(c for c in self.command if c.endswith("/venv/bin/python"))
        root = Path(python).parents[2]
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.command, cwd=root / "comfyui", stdout=out,
                                            stderr=subprocess.STDOUT, env=self.env,
                                            start_new_session=True)
        if wait:
            wait_ready(self)

    def alive(self) -> bool:
        return self.process.poll() is None

    def clear(self, timeout: float = 300.0) -> None:
        """Drop whatever the server still has queued or running (a test's leftover, such as
        the prompt of a server that was paused) and wait until its queue is empty."""
        import json

        def post(path: str, body: dict) -> None:
            req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=30).close()

        post("/queue", {"clear": True})
        post("/interrupt", {})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(self.url + "/queue", timeout=30) as resp:
                state = json.loads(resp.read())
            if not state["queue_running"] and not state["queue_pending"]:
                return
            post("/interrupt", {})
            time.sleep(0.5)
        raise AssertionError(f"{self.url} still has work after {timeout:.0f} s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


BUILD_WAIT_S = 1200  # the venv built beside the tests (.ci/run): about 2 minutes here


def _building(root: Path) -> bool:
    """Whether ``scripts/comfyui-venv.sh`` is building the venv now (its process lives)."""
    try:
        os.kill(int((root / "building").read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def _venv_or_skip() -> Path:
    root = comfyui_root()
    deadline = time.monotonic() + BUILD_WAIT_S
    while not (root / "ready").is_file() and _building(root) and time.monotonic() < deadline:
        time.sleep(2)
    if not (root / "ready").is_file():
        reason = (f"the ComfyUI venv is not built at {root}: run `bash scripts/comfyui-venv.sh` "
                  "(several minutes, about 7.5 GB; `bash scripts/test.sh --full` builds it, "
                  "its log in $TMPDIR or /tmp: latent-studio-comfyui-venv.log)")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return root


def start_server(root: Path, base: Path, checkpoint: Path, threads: int | None = None,
                 wait: bool = True, extra: Sequence[str] = (), scheme: str = "http",
                 cpus: str = "") -> ComfyServer:
    """A ComfyUI server on a free loopback port, its folders under ``base`` (``extra``:
    more arguments; ``cpus``: run it on these cores only, ``taskset -c``)."""
    for sub in ("models/checkpoints", "input", "output", "temp", "user", "custom_nodes"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    link = base / "models" / "checkpoints" / "tiny-sd1.safetensors"
    if not link.exists():
        try:
            os.link(checkpoint, link)
        except OSError:
            shutil.copyfile(checkpoint, link)
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    log = base / "server.log"
    command = [str(root / "venv" / "bin" / "python"), "main.py", "--cpu", "--listen",
               "127.0.0.1", "--port", str(port), "--base-directory", str(base),
               "--disable-all-custom-nodes", "--disable-auto-launch",
               "--database-url", f"sqlite:///{base / 'user' / 'db.sqlite'}", *extra]
    if cpus and shutil.which("taskset"):
        command = ["taskset", "-c", cpus, *command]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=root / "comfyui", stdout=out,
                                   stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = ComfyServer(f"{scheme}://127.0.0.1:{port}", process, base, log, command, env)
    if wait:
        wait_ready(server)
    return server


def wait_ready(server: ComfyServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not server.alive():
            pytest.fail(f"ComfyUI exited at start:\n{server.log_tail()}")
        try:
            import ssl

            context = ssl._create_unverified_context()
            with urllib.request.urlopen(server.url + "/system_stats", timeout=2,
                                        context=context) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    server.stop()
    pytest.fail(f"ComfyUI did not answer within {START_TIMEOUT_S} s:\n{server.log_tail()}")


@pytest.fixture(scope="session")
def comfy_root() -> Path:
    return _venv_or_skip()


@pytest.fixture(scope="session")
def tiny_checkpoint(comfy_root: Path) -> Path:
    from tiny_checkpoint import ensure_checkpoint

    return ensure_checkpoint()


@pytest.fixture(scope="session")
def comfy_server(comfy_root: Path, tiny_checkpoint: Path, tmp_path_factory) -> ComfyServer:
    """One real ComfyUI server for the whole run (start-up paid once). A developer iterating
    may name one already running with ``STUDIO_TEST_COMFYUI`` (it must hold tiny-sd1,
    studio-tiny-upscaler and the tiny ControlNet, as this one does)."""
    running = os.environ.get("STUDIO_TEST_COMFYUI", "")
    if running:
        stand_in = subprocess.Popen(["sleep", "86400"])  # "alive" while the run lasts
        yield ComfyServer(running.rstrip("/"), stand_in, tmp_path_factory.mktemp("comfyui"),
                          Path(os.devnull))
        stand_in.kill()
        stand_in.wait()
        return
    base = tmp_path_factory.mktemp("comfyui")
    (base / "models" / "upscale_models").mkdir(parents=True)
    shutil.copyfile(REPO / "resources" / "models" / "studio-tiny-upscaler" / "model.safetensors",
                    base / "models" / "upscale_models" / "studio-tiny-upscaler.safetensors")
    _add_controlnet(base)
    server = start_server(comfy_root, base, tiny_checkpoint)
    yield server
    server.stop()


def _add_controlnet(base: Path) -> None:
    """The tiny SD 1.x ControlNet (``tiny_controlnet``, built once, cached) in the server's
    models/controlnet, for the control layer tests."""
    from tiny_controlnet import NAME, ensure_controlnet

    folder = base / "models" / "controlnet"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.link(ensure_controlnet(), folder / NAME)
    except OSError:
        shutil.copyfile(ensure_controlnet(), folder / NAME)


@pytest.fixture(scope="session")
def spare_server(comfy_root: Path, tiny_checkpoint: Path, tmp_path_factory) -> ComfyServer:
    """A second server for the tests of several servers, and the ones that kill, stop or
    restart a server (they leave it running again). It also holds a broken checkpoint, and
    Flux and SD3 files that are names only (a real Flux needs T5-XXL, 9 GB): its /prompt
    validates their workflows, then the loaders fail."""
    base = tmp_path_factory.mktemp("comfyui-spare")
    broken = b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}  " + b"\0" * 64
    for name in ("checkpoints/broken", "diffusion_models/flux1-tiny", "diffusion_models/sd3-tiny",
                 "text_encoders/t5xxl_tiny", "text_encoders/clip_l", "text_encoders/clip_g",
                 "vae/ae", "vae/sd3_vae", "controlnet/control_sd15_canny_tiny"):
        path = base / "models" / f"{name}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(broken)
    server = start_server(comfy_root, base, tiny_checkpoint)
    yield server
    server.stop()


@pytest.fixture
def spare(spare_server: ComfyServer) -> ComfyServer:
    """``spare_server``, running again after the test whatever the test did to it."""
    yield spare_server
    if spare_server.alive():
        os.killpg(spare_server.process.pid, signal.SIGCONT)
    else:
        spare_server.restart()
    spare_server.clear()  # nothing a test left there holds up the next one


@pytest.fixture(scope="session")
def remote_engine(comfy_server: ComfyServer):
    from studio.remote.engine import RemoteEngine

    engine = RemoteEngine([comfy_server.url])
    yield engine
    engine.close()
