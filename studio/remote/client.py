"""One ComfyUI server over HTTP and its websocket (aiohttp), on the backend's own event loop.

``ComfyClient`` is asynchronous and lives on one ``EventLoopThread``; the engine thread calls
it through ``EventLoopThread.run`` and never touches the loop itself (nor does the GUI thread).
Every failure becomes one ``studio.remote.errors`` line. What leaves this machine: the
workflow (prompts and settings), the images of the job, and nothing else (no local paths).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import io
import json
import logging
import queue
import socket
import ssl
import struct
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numpy as np

from studio.core.errors import CancelledError, StudioError
from studio.remote.errors import (
    NotComfyUIError,
    RemoteExecutionError,
    RemoteImageError,
    ServerLostError,
    ServerRefusedError,
    ServerUnreachableError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_IMAGE_BYTES = 256 * 1024 * 1024  # a result larger than this is refused unread
MAX_IMAGE_PIXELS = 8192 * 8192  # more than any request makes; Pillow's bomb guard beyond
PREVIEW_SIDE = 256  # previews are shrunk to this many pixels a side at most
PREVIEW_EVERY_S = 0.2  # at most one preview decoded this often (ComfyUI sends 512 px JPEGs
# each step; decoding them all would hold up the job's messages on a busy machine)
SILENCE_CHECK_S = 30.0  # without a word from the server this long, ask /history
STALL_S = 600.0  # a job with no news for this long (not a step, not a node) is stalled
RECONNECT_S = 3.0  # after the socket drops, how long to try to reach the server again
STATUS_TIMEOUT_S = 5.0  # a status question (/system_stats, /queue) answered within this
WS_HEARTBEAT_S = 20.0  # the websocket is pinged after this long without a message and
# dropped without a pong within half of it (aiohttp's heartbeat)


class EventLoopThread:
    """An asyncio loop on a daemon thread of its own: the remote backend's one loop."""

    def __init__(self, name: str = "studio-remote") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Awaitable[T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    def run(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for it from this (non-loop) thread."""
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


@dataclass(frozen=True)
class ServerConfig:
    """A server address with the user's choices for it."""

    url: str  # http(s)://host:port
    token: str = ""  # sent as "Authorization: Bearer <token>" when set
    trust: bool = False  # accept a certificate that does not verify (the user chose to)

    @property
    def base(self) -> str:
        return self.url.rstrip("/")

    @property
    def ws_url(self) -> str:
        parts = urlsplit(self.base)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path}/ws"


def check_url(url: str) -> str:
    """``url`` tidied (a bare ``host:port`` gets ``http://``); raises on anything else."""
    from studio.core.errors import InvalidRequestError

    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequestError(f"Server address {url!r} must look like http://host:8188 "
                                  "or https://host.")
    return text.rstrip("/")


@dataclass
class JobEvents:
    """What the websocket says about one of our prompts, queued for the waiting job."""

    prompt_id: str
    messages: asyncio.Queue = field(default_factory=asyncio.Queue)


@dataclass(frozen=True)
class Progress:
    """A step of one sampler node, or a phase, or a preview image (from the loop thread)."""

    node: str
    value: int
    total: int
    phase: str = "sampling"
    preview: np.ndarray | None = None


class StalledError(ServerLostError):
    """The server had our job and said nothing of it (not a step) for ``stall_s`` seconds."""

    kind = "server-stalled"


class ComfyClient:
    """One ComfyUI server. All methods are coroutines for the backend's event loop.

    ``stall_s``: a job with no news for this long (no step, no node) is given up as stalled
    (``StalledError``; the pool sends it to another server). ``reconnect_s``: how long a
    dropped socket is retried before the job is given up as lost.
    """

    def __init__(self, config: ServerConfig, *, stall_s: float = STALL_S,
                 reconnect_s: float = RECONNECT_S) -> None:
        self.config = config
        self.stall_s = stall_s
        self.reconnect_s = reconnect_s
        self.activity = ""  # "loading" / "running" while our job runs there, else ""
        self._graph: dict[str, Any] = {}
        self.client_id = uuid.uuid4().hex
        self._session: Any = None
        self._ws: Any = None
        self._reader: asyncio.Task | None = None
        self._jobs: dict[str, JobEvents] = {}
        self._running: str | None = None  # the prompt the server says it is executing
        self._uploaded: set[str] = set()
        self._object_info: dict[str, Any] | None = None
        self.queue_remaining = 0
        self.stats: dict[str, Any] = {}
        self._preview_at = 0.0  # when the last preview was decoded (loop time)
        self._preview_prompt: str | None = None  # and for which prompt
        # Wall clock when our last prompt was accepted (``POST /prompt`` answered) and when
        # the server's word that it succeeded arrived: the bench sets them beside the
        # server's own timestamps to tell our client's time from the server's waits.
        self.prompt_posted = self.finished_heard = 0.0

    @property
    def url(self) -> str:
        return self.config.base

    # -- connection ------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.token}"} if self.config.token else {}

    def _ssl(self) -> Any:
        if urlsplit(self.url).scheme != "https":
            return None
        return False if self.config.trust else ssl.create_default_context()

    async def _http(self) -> Any:
        import aiohttp

        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=None, connect=15, sock_connect=15,
                                            sock_read=180)
            self._session = aiohttp.ClientSession(headers=self._headers(), timeout=timeout)
        return self._session

    async def connect(self) -> dict[str, Any]:
        """Check that a ComfyUI server answers (``/system_stats``) and open the websocket."""
        stats = await self.system_stats()
        if self._ws is None or self._ws.closed:
            session = await self._http()
            try:
                self._ws = await session.ws_connect(
                    self.config.ws_url, params={"clientId": self.client_id},
                    ssl=self._ssl(), heartbeat=WS_HEARTBEAT_S, max_msg_size=64 * 1024 * 1024)
            except Exception as err:
                raise self._connection_error(err) from None
            self._reader = asyncio.ensure_future(self._read_socket(self._ws))
        return stats

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
        if self._session is not None:
            await self._session.close()
        self._ws = self._reader = self._session = None

    def _connection_error(self, err: BaseException) -> StudioError:
        import aiohttp

        if isinstance(err, StudioError):
            return err
        if isinstance(err, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)):
            return ServerUnreachableError(
                f"The TLS certificate of {self.url} does not verify ({_reason(err)}).",
                hint="Trust this server in the settings only if you know it.")
        if isinstance(err, asyncio.TimeoutError):
            return ServerUnreachableError(f"{self.url} did not answer in time.")
        if isinstance(err, aiohttp.WSServerHandshakeError):
            return NotComfyUIError(f"{self.url} answers, but has no ComfyUI websocket "
                                   f"(HTTP {err.status}).")
        why = _reason(err)
        os_error = getattr(err, "os_error", None)  # aiohttp's ClientConnectorError
        if isinstance(os_error, ConnectionRefusedError):
            why = "connection refused (is ComfyUI running there, on this port?)"
        elif isinstance(os_error, socket.gaierror):
            why = f"unknown host {urlsplit(self.url).hostname}"
        elif isinstance(os_error, OSError):
            why = _reason(os_error)
        return ServerUnreachableError(f"Cannot reach the server at {self.url}: {why}.")

    async def _request(self, method: str, path: str, *, read: str = "json",
                       limit: int = 64 * 1024 * 1024, **kwargs: Any) -> Any:
        session = await self._http()
        try:
            async with session.request(method, self.url + path, ssl=self._ssl(),
                                       **kwargs) as resp:
                if resp.status in (401, 403):
                    raise ServerRefusedError(
                        f"{self.url} refused access (HTTP {resp.status}).",
                        hint="Check the server's access token.")
                body = await _read_limited(resp, limit)
                if resp.status >= 400:
                    return await self._http_error(resp.status, path, body)
                if read == "bytes":
                    return body
                try:
                    return json.loads(body)
                except ValueError:
                    raise NotComfyUIError(
                        f"{self.url} answers, but not as a ComfyUI server does "
                        f"({path} is not JSON).") from None
        except StudioError:
            raise
        except Exception as err:
            raise self._connection_error(err) from None

    async def _http_error(self, status: int, path: str, body: bytes) -> Any:
        if path == "/prompt" and status == 400:
            try:
                data = json.loads(body)
            except ValueError:
                data = {}
            raise prompt_error(data)
        if status == 404 and path in ("/system_stats", "/object_info"):
            raise NotComfyUIError(f"{self.url} answers, but it is not a ComfyUI server "
                                  f"({path}: HTTP 404).")
        text = body[:200].decode("utf-8", "replace").strip().splitlines()
        raise ServerRefusedError(f"{self.url} refused {path} (HTTP {status})"
                                 + (f": {text[0]}" if text else "") + ".")

    # -- what the server has ---------------------------------------------------------------
    async def system_stats(self) -> dict[str, Any]:
        stats = await self._request("GET", "/system_stats")
        if not (isinstance(stats, dict) and isinstance(stats.get("system"), dict)
                and isinstance(stats.get("devices"), list)):
            raise NotComfyUIError(f"{self.url} answers, but it is not a ComfyUI server "
                                  "(its /system_stats is not ComfyUI's).")
        self.stats = stats
        return stats

    async def object_info(self, refresh: bool = False) -> dict[str, Any]:
        """Every node class of the server with its inputs (cached after the first call)."""
        if self._object_info is None or refresh:
            info = await self._request("GET", "/object_info", limit=256 * 1024 * 1024)
            if not isinstance(info, dict):
                raise NotComfyUIError(f"{self.url}: /object_info is not ComfyUI's.")
            self._object_info = info
        return self._object_info

    async def models(self, folder: str) -> list[str]:
        """The files in one of the server's model folders ("checkpoints", "loras", ...)."""
        try:
            names = await self._request("GET", f"/models/{folder}")
        except ServerRefusedError:
            return []
        return [str(n) for n in names] if isinstance(names, list) else []

    async def queue_state(self) -> tuple[list[str], list[str]]:
        """The prompt ids the server is running and those waiting."""
        data = await self._request("GET", "/queue")
        running = [item[1] for item in data.get("queue_running", [])]
        pending = [item[1] for item in data.get("queue_pending", [])]
        return running, pending

    # -- images ----------------------------------------------------------------------------
    async def upload(self, png: bytes) -> str:
        """Upload a PNG once per server, under a name derived from its content."""
        import aiohttp

        name = f"studio-{hashlib.sha256(png).hexdigest()[:32]}.png"
        if name in self._uploaded:
            return name
        form = aiohttp.FormData()
        form.add_field("image", png, filename=name, content_type="image/png")
        form.add_field("type", "input")
        form.add_field("overwrite", "true")
        answer = await self._request("POST", "/upload/image", data=form)
        stored = answer.get("name", name) if isinstance(answer, dict) else name
        if answer.get("subfolder"):
            stored = f"{answer['subfolder']}/{stored}"
        self._uploaded.add(name)
        return stored

    async def fetch_image(self, ref: dict[str, Any], max_side: int = 8192) -> np.ndarray:
        """An output image (``/view``) as HxWx3 uint8, refused if malformed or too large."""
        params = {"filename": str(ref.get("filename", "")),
                  "subfolder": str(ref.get("subfolder", "")),
                  "type": str(ref.get("type", "output"))}
        data = await self._request("GET", "/view", params=params, read="bytes",
                                   limit=MAX_IMAGE_BYTES)
        return decode_image(data, max_side=max_side, what=f"The image from {self.url}")

    # -- running a workflow ----------------------------------------------------------------
    async def run(self, workflow: dict[str, Any], progress: Callable[[Progress], None],
                  cancelled: Callable[[], bool], prompt_id: str | None = None
                  ) -> dict[str, Any]:
        """Queue ``workflow``, report its progress, and return its outputs (``/history``).

        Raises ``CancelledError`` once the server has dropped it after ``cancelled()`` turned
        true, ``RemoteExecutionError`` on its ``execution_error``, ``ServerLostError`` if the
        connection drops meanwhile.
        """
        if self._ws is None or self._ws.closed:  # an open socket needs no new check
            await self.connect()
        prompt_id = prompt_id or str(uuid.uuid4())
        job = JobEvents(prompt_id)
        self._jobs[prompt_id] = job
        self._graph = workflow
        try:
            body = {"prompt": workflow, "client_id": self.client_id, "prompt_id": prompt_id,
                    "extra_data": {"preview_method": "latent2rgb"}}
            await self._request("POST", "/prompt", json=body)
            self.prompt_posted = time.time()
            return await self._follow(job, progress, cancelled)
        finally:
            self._jobs.pop(prompt_id, None)
            self.activity = ""

    async def _follow(self, job: JobEvents, progress: Callable[[Progress], None],
                      cancelled: Callable[[], bool]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        heard = checked = loop.time()
        cancel_sent = False
        check_every = max(0.2, min(SILENCE_CHECK_S, self.stall_s / 2))
        succeeded = 0.0  # when execution_success came (the history is written just after)
        while True:
            if cancelled() and not cancel_sent:
                cancel_sent = True
                await self.cancel(job.prompt_id)
            try:
                kind, data = await asyncio.wait_for(job.messages.get(), 0.1)
            except asyncio.TimeoutError:
                now = loop.time()
                if succeeded and now - succeeded > 0.5:  # "executing None" never came
                    if cancel_sent:
                        raise CancelledError() from None
                    return await self.history(job.prompt_id)
                if now - checked > check_every:
                    checked = now
                    outputs = await self._check_silent(job.prompt_id, cancel_sent,
                                                       now - heard)
                    if outputs is not None:
                        return outputs
                continue
            heard = loop.time()
            if kind == "progress":
                self.activity = "running"
                progress(Progress(str(data.get("node")), int(data.get("value", 0)),
                                  int(data.get("max", 0))))
            elif kind == "preview":
                progress(Progress("", -1, 0, preview=data))
            elif kind == "executing" and data.get("node") is not None:
                node = str(data["node"])
                kind_of = str(self._graph.get(node, {}).get("class_type", ""))
                self.activity = "loading" if "Loader" in kind_of else "running"
                progress(Progress(node, 0, 0, phase="node"))
            elif kind == "execution_error":
                raise execution_error(data, self.url)
            elif kind == "execution_interrupted":
                if not data.get("removed"):  # it ran: wait for the server to be done with it
                    await self._until_done(job, STATUS_TIMEOUT_S)
                raise CancelledError()
            elif kind == "lost":
                outputs = await self._after_drop(job.prompt_id, cancel_sent, str(data))
                if outputs is not None:
                    return outputs
                heard = checked = loop.time()  # still queued or running: follow it again
            elif kind == "execution_success":
                self.finished_heard = time.time()
                succeeded = loop.time()  # wait for "executing None": the history is written
            elif kind == "executing" and data.get("node") is None:
                if cancel_sent:
                    raise CancelledError()
                return await self.history(job.prompt_id)

    @staticmethod
    async def _until_done(job: JobEvents, wait_s: float) -> None:
        """Wait (at most ``wait_s``) for the server's word that it has finished with the
        job (``executing`` None): an interrupted prompt is still "running" in its queue
        until then, and the server is free again only after it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while (left := deadline - loop.time()) > 0:
            try:
                kind, data = await asyncio.wait_for(job.messages.get(), left)
            except asyncio.TimeoutError:
                return
            if kind == "lost" or (kind == "executing" and data.get("node") is None):
                return

    async def _check_silent(self, prompt_id: str, cancel_sent: bool,
                            silent: float) -> dict[str, Any] | None:
        """After a silence: the outputs if the job finished unheard; None while it waits;
        ``StalledError`` after ``stall_s`` without news (or without an answer at all)."""
        try:
            outputs = await asyncio.wait_for(self._settled(prompt_id, cancel_sent),
                                             min(STATUS_TIMEOUT_S, max(1.0, self.stall_s)))
        except asyncio.TimeoutError:
            outputs = None
            if silent <= self.stall_s:
                return None
        if outputs is None and silent > self.stall_s:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.cancel(prompt_id), 2.0)
            raise StalledError(f"{self.url} made no progress on the job for "
                               f"{silent:.0f} s (stalled).")
        return outputs

    async def _after_drop(self, prompt_id: str, cancel_sent: bool,
                          reason: str) -> dict[str, Any] | None:
        """The socket dropped: reach the server again and find the job (a cut connection),
        or raise ``ServerLostError`` (the server is gone, or restarted without the job).

        A server that refuses the connection, or whose host no longer accepts one, is gone
        after ``reconnect_s``; one whose host accepts the connection but that answers too
        slowly (its loop held by a long step, or paused) is only slow, and is waited for as
        long as a stall (``stall_s``): its job is still running there, and sending it
        elsewhere would run it twice."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        delay = 0.1
        while True:
            try:
                await asyncio.wait_for(self.connect(), STATUS_TIMEOUT_S)
                break
            except asyncio.TimeoutError:  # slow, or gone without a word
                if not await self._accepts_connections():
                    if loop.time() + delay > started + self.reconnect_s:
                        raise ServerLostError(f"The connection to {self.url} dropped during "
                                              f"the job ({reason}).") from None
                elif loop.time() - started > max(self.reconnect_s, self.stall_s):
                    raise StalledError(f"{self.url} did not answer for "
                                       f"{loop.time() - started:.0f} s after the connection "
                                       f"dropped ({reason}).") from None
            except StudioError:
                if loop.time() + delay > started + self.reconnect_s:
                    raise ServerLostError(f"The connection to {self.url} dropped during the "
                                          f"job ({reason}).") from None
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)
        log.info("reconnected to %s after the socket dropped (%s)", self.url, reason)
        return await self._settled(prompt_id, cancel_sent)

    async def _accepts_connections(self) -> bool:
        """Whether the server's host still accepts a TCP connection (a paused or busy
        server's kernel does; a vanished host does not)."""
        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, port), STATUS_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError):
            return False
        writer.close()
        return True

    async def _settled(self, prompt_id: str, cancel_sent: bool) -> dict[str, Any] | None:
        """After a silence: the outputs if the job finished unheard; None while it waits."""
        hist = await self._request("GET", f"/history/{prompt_id}")
        if isinstance(hist, dict) and prompt_id in hist:
            entry = hist[prompt_id]
            status = entry.get("status", {})
            if status.get("status_str") == "error":
                for name, data in status.get("messages", []):
                    if name == "execution_error":
                        raise execution_error(data, self.url)
                    if name == "execution_interrupted":
                        raise CancelledError()
            if cancel_sent:
                raise CancelledError()
            return dict(entry.get("outputs", {}))
        running, pending = await self.queue_state()
        if prompt_id in running or prompt_id in pending:
            return None
        if cancel_sent:
            raise CancelledError()
        hist = await self._request("GET", f"/history/{prompt_id}")  # done in between?
        if isinstance(hist, dict) and prompt_id in hist:
            return await self._settled(prompt_id, cancel_sent)
        raise ServerLostError(f"{self.url} no longer has the job (restarted?).")

    async def history(self, prompt_id: str, wait_s: float = 10.0) -> dict[str, Any]:
        """The outputs of a finished prompt. The server says ``execution_success`` a moment
        before it writes the history, so an absent record is asked again for ``wait_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            hist = await self._request("GET", f"/history/{prompt_id}")
            entry = hist.get(prompt_id) if isinstance(hist, dict) else None
            if isinstance(entry, dict):
                return dict(entry.get("outputs", {}))
            if loop.time() > deadline:
                raise ServerLostError(f"{self.url} finished the job but has no record of it.")
            await asyncio.sleep(0.05)

    async def cancel(self, prompt_id: str) -> None:
        """Remove ``prompt_id`` from the server's queue, or interrupt it if it runs."""
        await self._request("POST", "/queue", json={"delete": [prompt_id]}, read="bytes")
        running, pending = await self.queue_state()
        if prompt_id in running:
            await self._request("POST", "/interrupt", json={"prompt_id": prompt_id},
                                read="bytes")
        elif prompt_id in self._jobs:
            # Deleted from the queue before it started: nothing more will be said of it.
            self._jobs[prompt_id].messages.put_nowait(("execution_interrupted",
                                                       {"removed": True}))

    # -- the websocket ---------------------------------------------------------------------
    async def _read_socket(self, ws: Any) -> None:
        import aiohttp

        reason = "closed by the server"
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self._on_text(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    self._on_binary(msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    reason = _reason(ws.exception() or Exception("socket error"))
                    break
        except Exception as err:  # a reset connection
            reason = _reason(err)
        finally:
            if self._ws is ws:
                self._ws = None
            for job in list(self._jobs.values()):
                job.messages.put_nowait(("lost", reason))

    def _on_text(self, text: str) -> None:
        try:
            message = json.loads(text)
            kind, data = message["type"], message.get("data") or {}
        except (ValueError, KeyError, TypeError):
            return
        if kind == "status":
            info = data.get("status", {}).get("exec_info", {})
            self.queue_remaining = int(info.get("queue_remaining", 0) or 0)
            return
        prompt_id = data.get("prompt_id") if isinstance(data, dict) else None
        if kind in ("execution_start", "executing") and prompt_id:
            self._running = prompt_id if data.get("node", "") is not None else None
        job = self._jobs.get(prompt_id or "")
        if job is not None:
            job.messages.put_nowait((kind, data))

    def _on_binary(self, data: bytes) -> None:
        if len(data) < 8:
            return
        event = struct.unpack(">I", data[:4])[0]
        prompt_id = self._running
        if event == 1:  # PREVIEW_IMAGE: image type (1 JPEG, 2 PNG), then the image
            image = data[8:]
        elif event == 4:  # PREVIEW_IMAGE_WITH_METADATA: json length, json, image
            size = struct.unpack(">I", data[4:8])[0]
            try:
                meta = json.loads(data[8:8 + size])
                prompt_id = meta.get("prompt_id", prompt_id)
            except ValueError:
                return
            image = data[8 + size:]
        else:
            return
        job = self._jobs.get(prompt_id or "")
        if job is None:
            return
        now = asyncio.get_running_loop().time()
        if prompt_id == self._preview_prompt and now - self._preview_at < PREVIEW_EVERY_S:
            return  # a newer one follows; the progress itself is never dropped
        self._preview_at, self._preview_prompt = now, prompt_id  # a job's first one always
        try:
            preview = decode_image(image, max_side=4096, what="A preview")
        except StudioError:
            return  # a bad preview is not worth failing the job for
        job.messages.put_nowait(("preview", small(preview)))


# -- helpers -------------------------------------------------------------------------------
def _reason(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:200]


async def _read_limited(resp: Any, limit: int) -> bytes:
    length = resp.content_length
    if length is not None and length > limit:
        raise RemoteImageError(f"The server sent {length} bytes; more than {limit} is refused.")
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(1 << 20):
        size += len(chunk)
        if size > limit:
            raise RemoteImageError(f"The server sent more than {limit} bytes; refused.")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_image(data: bytes, *, max_side: int = 8192, what: str = "The image") -> np.ndarray:
    """PNG/JPEG/WebP bytes -> HxWx3 uint8; malformed or too large images are refused."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size
                if w > max_side or h > max_side or w * h > MAX_IMAGE_PIXELS:
                    raise RemoteImageError(f"{what} is {w}x{h} pixels, larger than refused "
                                           f"beyond {max_side} a side.")
                img.load()
                rgb = img.convert("RGB")
    except RemoteImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise RemoteImageError(f"{what} is too large to decode safely (a decompression "
                               "bomb?).") from None
    except Image.UnidentifiedImageError:
        raise RemoteImageError(f"{what} is not a readable image (not PNG, JPEG or WebP "
                               "data).") from None
    except Exception as err:
        raise RemoteImageError(f"{what} is not a readable image ({_reason(err)}).") from None
    return np.asarray(rgb, dtype=np.uint8).copy()


def encode_png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def small(image: np.ndarray, side: int = PREVIEW_SIDE) -> np.ndarray:
    """``image`` shrunk to at most ``side`` pixels a side (a preview)."""
    from PIL import Image

    if max(image.shape[:2]) <= side:
        return image
    img = Image.fromarray(image)
    img.thumbnail((side, side))
    return np.asarray(img, dtype=np.uint8).copy()


def prompt_error(data: dict[str, Any]) -> StudioError:
    """``POST /prompt``'s 400 answer as one line (a missing model names the model)."""
    from studio.remote.errors import ServerModelMissingError

    node_errors = data.get("node_errors") or {}
    for node in node_errors.values():
        for error in node.get("errors", []):
            extra = error.get("extra_info") or {}
            if error.get("type") == "value_not_in_list" and str(
                    extra.get("input_name", "")).endswith(("_name", "ckpt_name")):
                value = extra.get("received_value", "")
                return ServerModelMissingError(
                    f"The server has no {extra.get('input_name')} {value!r} "
                    f"({node.get('class_type', '')}).",
                    hint="See `studio servers --check URL` for where it goes.")
            text = error.get("details") or error.get("message") or ""
            return ServerRefusedError(f"The server refused the workflow: "
                                      f"{node.get('class_type', '')} {text}".strip() + ".")
    err = data.get("error") or {}
    message = err.get("message") if isinstance(err, dict) else str(err)
    details = err.get("details") if isinstance(err, dict) else ""
    return ServerRefusedError(f"The server refused the workflow: {message or 'invalid'}"
                              + (f" ({details})" if details else "") + ".")


def execution_error(data: dict[str, Any], url: str) -> StudioError:
    from studio.core.errors import OutOfMemoryError

    text = str(data.get("exception_message", "") or "").strip()
    line = text.splitlines()[0] if text else "unknown error"
    kind = str(data.get("exception_type", ""))
    where = data.get("node_type") or data.get("node_id") or "a node"
    if "OutOfMemory" in kind or "out of memory" in text.lower() or \
            "can't allocate memory" in text.lower():  # CUDA's, or the CPU allocator's
        import re

        asked = re.search(r"tried to allocate (\d+) bytes", text)
        if asked:  # the CPU allocator's line starts with an "[enforce fail at ...]" tag
            line = f"it tried to allocate {int(asked[1]) / 2**30:.1f} GiB"
        return OutOfMemoryError(f"The server at {url} ran out of memory in {where}: "
                                f"{line.rstrip('.')}.", hint="Try a smaller size or batch.")
    return RemoteExecutionError(f"The server at {url} failed in {where}: {line}")


def drain(q: queue.Queue) -> list[Any]:
    items = []
    while True:
        try:
            items.append(q.get_nowait())
        except queue.Empty:
            return items
