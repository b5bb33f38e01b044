"""Several ComfyUI servers sharing one queue: one job at a time per server.

A job waits for a free server that has its model (preferring the one that ran this model
last, which has it loaded). A server that drops or stalls mid-job is marked failed, and the
job goes back to the queue (``requeued``) for another server, or the same one once it
answers again (a restart); it fails only after ``MAX_ATTEMPTS`` servers lost it. Results are
taken from the server that finished the job only, so nothing is done twice into the gallery.
Each server's state (idle, loading, busy, failed with the reason) is polled by ``poll``
with a backoff for those that do not answer. ``reserve`` holds a free server for a job the
job runner is about to start (so that separate jobs run at once, one per server); the job's
``acquire`` takes it. Lives on the backend's event loop: its state is
touched by that one thread only (``status`` hands out frozen copies).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, TypeVar

from studio.core.errors import CancelledError, StudioError
from studio.remote.client import STATUS_TIMEOUT_S, ComfyClient, ServerConfig
from studio.remote.errors import ServerLostError, ServerModelMissingError, ServerUnreachableError

T = TypeVar("T")
BACKOFF_MIN_S = 1.0  # a server that does not answer is asked again after this long,
BACKOFF_MAX_S = 30.0  # doubling up to this
MAX_ATTEMPTS = 4  # servers (or restarts of one) a job may be lost by before it fails
REQUEUE_WAIT_S = 600.0  # a job a server lost waits this long for a server to take it
# (as long as a stall: a ComfyUI restart took over 2 min on a loaded 2-core machine; the
# job shows as back in the queue meanwhile, and can be cancelled)


@dataclass(frozen=True)
class ServerStatus:
    """One server as the status bar shows it (a snapshot)."""

    url: str
    state: str  # "connecting", "idle", "loading", "busy" or "failed"
    reason: str = ""  # why it is failed ("" otherwise)
    gpu: str = ""  # the device name /system_stats gives
    vram_free: int = 0  # bytes
    vram_total: int = 0
    queue: int = 0  # prompts running or waiting on the server (anyone's)
    jobs_done: int = 0
    requeued: int = 0  # our jobs it dropped that went back to the queue
    retry_in: float = 0.0  # seconds until it is asked again (failed servers)

    @property
    def text(self) -> str:
        """One line: ``host:port idle · NVIDIA H100 · 71.2 GB free · queue 0``."""
        host = self.url.split("://", 1)[-1]
        if self.state == "failed":
            again = f"; retry in {self.retry_in:.0f} s" if self.retry_in > 0 else ""
            return f"{host} failed: {self.reason.rstrip('.') if again else self.reason}{again}"
        parts = [f"{host} {self.state}"]
        if self.gpu:
            parts.append(self.gpu)
        if self.vram_total:
            parts.append(f"{self.vram_free / 2**30:.1f} GB free")
        parts.append(f"queue {self.queue}")
        return " · ".join(parts)


@dataclass
class Server:
    """One server of the pool and what the pool knows of it."""

    client: ComfyClient
    busy: bool = False
    failed: str = ""  # why it cannot take a job ("" when it can)
    failed_at: float = 0.0
    backoff: float = 0.0  # seconds between tries while it fails
    polled: bool = False  # answered at least once
    loaded: str = ""  # the checkpoint it ran last (most likely still in its memory)
    checkpoints: tuple[str, ...] | None = None
    reserved: int = 0  # the job (its key) this server is held for by ``reserve`` (0: none)
    jobs_done: int = 0
    requeued: int = 0
    queue: int = 0

    @property
    def url(self) -> str:
        return self.client.url

    @property
    def retry_at(self) -> float:
        return self.failed_at + self.backoff

    @property
    def state(self) -> str:
        """"idle", "loading", "busy", "connecting" or "failed: <why>"."""
        if self.failed:
            return f"failed: {self.failed}"
        if self.busy:
            return "loading" if self.client.activity == "loading" else "busy"
        return "idle" if self.polled else "connecting"

    def status(self) -> ServerStatus:
        devices = self.client.stats.get("devices") or [{}]
        dev = devices[0] if isinstance(devices[0], dict) else {}
        state = self.state.split(":", 1)[0]
        return ServerStatus(
            url=self.url, state=state, reason=self.failed,
            gpu=str(dev.get("name", "") or "").split(" : ")[0],
            vram_free=int(dev.get("vram_free", 0) or 0),
            vram_total=int(dev.get("vram_total", 0) or 0),
            queue=max(self.queue, self.client.queue_remaining), jobs_done=self.jobs_done,
            requeued=self.requeued,
            retry_in=max(0.0, self.retry_at - time.monotonic()) if self.failed else 0.0)


@dataclass
class ServerPool:
    """The servers, and the one queue their jobs wait in."""

    servers: list[Server]
    _changed: asyncio.Condition | None = field(default=None, repr=False)

    @classmethod
    def of(cls, configs: Sequence[ServerConfig], **client_options: Any) -> ServerPool:
        return cls([Server(ComfyClient(c, **client_options)) for c in configs])

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def checkpoints(self, server: Server, refresh: bool = False) -> tuple[str, ...]:
        """The main models the server has: its checkpoints and lone diffusion models."""
        if server.checkpoints is None or refresh:
            names = list(await server.client.models("checkpoints"))
            names += await server.client.models("diffusion_models")
            server.checkpoints = tuple(names)
        return server.checkpoints

    def usable(self) -> list[Server]:
        now = time.monotonic()
        return [s for s in self.servers if not s.failed or now >= s.retry_at]

    # -- places for the job runner -------------------------------------------------------
    async def reserve(self, model: str, key: int,
                      only: frozenset[str] | None = None) -> bool:
        """Hold a free, answering server that has ``model`` (a name or file stem; a server
        whose list is not read yet may have it) for the job ``key``, preferring the one
        that ran it last (``only``: among these addresses: a job pinned to its server).
        False when none is free for it now. No network here."""
        cond = self._condition()
        async with cond:
            free = [s for s in self.servers
                    if not s.busy and not s.failed and (only is None or s.url in only)
                    and (s.checkpoints is None or has_model(s.checkpoints, model))]
            if not free:
                return False
            free.sort(key=lambda s: (s.checkpoints is None,
                                     not has_model((s.loaded,), model), s.jobs_done))
            free[0].busy, free[0].reserved = True, key
            return True

    async def unreserve(self, key: int) -> None:
        """Free the server still held for ``key`` (its job ended before taking it)."""
        cond = self._condition()
        async with cond:
            for server in self.servers:
                if server.reserved == key:
                    server.reserved, server.busy = 0, False
            cond.notify_all()

    # -- state -------------------------------------------------------------------------
    async def poll(self) -> list[ServerStatus]:
        """Ask each server that is due how it is (``/system_stats``, ``/queue``)."""
        await asyncio.gather(*(self._poll_one(s) for s in self.servers))
        return self.status()

    def status(self) -> list[ServerStatus]:
        return [s.status() for s in self.servers]

    async def _poll_one(self, server: Server) -> None:
        if server.failed and time.monotonic() < server.retry_at:
            return
        if server.busy:  # its job reports through the socket; the stats are cheap
            try:
                await asyncio.wait_for(server.client.system_stats(), STATUS_TIMEOUT_S)
            except (StudioError, asyncio.TimeoutError):
                pass
            return
        try:
            await asyncio.wait_for(server.client.system_stats(), STATUS_TIMEOUT_S)
            running, pending = await asyncio.wait_for(server.client.queue_state(),
                                                      STATUS_TIMEOUT_S)
        except (StudioError, asyncio.TimeoutError) as err:
            why = err.message if isinstance(err, StudioError) else \
                f"{server.url} did not answer within {STATUS_TIMEOUT_S:.0f} s"
            self.mark_failed(server, why)
            return
        server.queue = len(running) + len(pending)
        server.polled = True
        if server.failed:
            await self._recovered(server)

    async def _recovered(self, server: Server) -> None:
        cond = self._condition()
        async with cond:
            server.failed, server.backoff = "", 0.0
            cond.notify_all()

    # -- jobs ----------------------------------------------------------------------------
    async def acquire(self, checkpoint: str, cancelled: Callable[[], bool],
                      lost_by: dict[str, int], key: int = 0,
                      only: frozenset[str] | None = None) -> Server:
        """The next free server with ``checkpoint`` (waits while all such servers are busy);
        the one ``reserve`` held for the job ``key`` first.

        ``lost_by`` counts the servers that already lost this job: one that has not is
        preferred; one that has is taken again only once it answers again (a restart).
        Raises ``ServerModelMissingError`` when no server that is up has it, and
        ``ServerLostError`` once the job was lost ``MAX_ATTEMPTS`` times. ``only``: the
        servers the job is pinned to ("Use settings" on a server's image: that server).
        """
        cond = self._condition()
        waiting = time.monotonic()
        async with cond:
            while True:
                if cancelled():
                    raise CancelledError()
                if sum(lost_by.values()) >= MAX_ATTEMPTS:
                    raise ServerLostError(
                        f"The job was lost {sum(lost_by.values())} times: "
                        + "; ".join(f"{s.url} {s.state}".rstrip(".") for s in self.servers) + ".")
                candidates, missing = [], 0
                scope = [s for s in self.servers if only is None or s.url in only]
                for server in self.usable():
                    if only is not None and server.url not in only:
                        continue
                    if server.busy and not (key and server.reserved == key):
                        if server.checkpoints is None or checkpoint in server.checkpoints:
                            candidates.append(server)
                        continue
                    try:
                        names = await asyncio.wait_for(self.checkpoints(server),
                                                       STATUS_TIMEOUT_S)
                    except (StudioError, asyncio.TimeoutError) as err:
                        self.mark_failed(server, err.message if isinstance(err, StudioError)
                                         else f"{server.url} did not answer")
                        continue
                    server.polled = True
                    if server.failed:
                        server.failed, server.backoff = "", 0.0
                    if checkpoint in names:
                        candidates.append(server)
                    else:
                        missing += 1
                        if key and server.reserved == key:  # held for us, but lacks it
                            server.reserved, server.busy = 0, False
                if not candidates and not lost_by:
                    down = [f"{s.url} ({s.failed})" for s in scope if s.failed]
                    if down and len(down) == len(scope):
                        raise ServerUnreachableError("No server answers: " + "; ".join(down))
                    if missing:
                        raise ServerModelMissingError(
                            f"No server has the checkpoint {checkpoint!r}.",
                            hint="See `studio models` for the models each server has.")
                if not candidates and lost_by and time.monotonic() - waiting > REQUEUE_WAIT_S:
                    raise ServerLostError(
                        "The job went back to the queue and no server could take it within "
                        f"{REQUEUE_WAIT_S:.0f} s: "
                        + "; ".join(f"{s.url} {s.state}".rstrip(".") for s in self.servers) + ".")
                free = [s for s in candidates if not s.busy or (key and s.reserved == key)]
                if free:
                    free.sort(key=lambda s: (lost_by.get(s.url, 0),
                                             not (key and s.reserved == key),
                                             s.loaded != checkpoint, s.jobs_done))
                    chosen = free[0]
                    chosen.busy, chosen.reserved = True, 0
                    return chosen
                try:
                    await asyncio.wait_for(cond.wait(), 0.2)
                except asyncio.TimeoutError:
                    pass

    async def release(self, server: Server, *, checkpoint: str = "", failed: str = "") -> None:
        cond = self._condition()
        async with cond:
            server.busy = False
            if failed:
                self.mark_failed(server, failed)
            else:
                server.failed, server.backoff = "", 0.0
                server.jobs_done += 1
                server.loaded = checkpoint or server.loaded
            cond.notify_all()

    @staticmethod
    def mark_failed(server: Server, why: str) -> None:
        now = time.monotonic()
        if server.failed:
            server.backoff = min(BACKOFF_MAX_S, max(BACKOFF_MIN_S, server.backoff * 2))
        else:
            server.backoff = BACKOFF_MIN_S
        server.failed = why
        server.failed_at = now
        server.checkpoints = None
        server.loaded = ""

    async def run(self, checkpoint: str, cancelled: Callable[[], bool],
                  job: Callable[[Server], Awaitable[T]],
                  on_requeue: Callable[[Server, str], None] | None = None,
                  key: int = 0, only: frozenset[str] | None = None) -> T:
        """Run ``job`` on a free server with ``checkpoint`` (the one held for ``key`` first);
        again on another (or the same, back up) if that one drops or stalls, after
        ``on_requeue(server, why)``."""
        lost_by: dict[str, int] = {}
        while True:
            server = await self.acquire(checkpoint, cancelled, lost_by, key, only)
            try:
                result = await job(server)
            except (ServerLostError, ServerUnreachableError) as err:
                lost_by[server.url] = lost_by.get(server.url, 0) + 1
                server.requeued += 1
                await self.release(server, failed=err.message)
                if on_requeue is not None:
                    on_requeue(server, err.message)
                continue
            except BaseException:
                await self.release(server, checkpoint=checkpoint)
                raise
            await self.release(server, checkpoint=checkpoint)
            return result


def has_model(names: Sequence[str], model: str) -> bool:
    """Whether ``names`` (a server's file names) hold ``model``: a name, or a file stem (as
    ``studio.remote.engine.resolve`` matches them)."""
    wanted = model.strip().replace("\\", "/")
    if not wanted:
        return False
    stem = PurePosixPath(wanted).stem.lower()
    return any(name.lower() == wanted.lower() or PurePosixPath(name).stem.lower() == stem
               for name in names if name)
