"""Several ComfyUI servers sharing one queue: one job at a time per server.

A job waits for a free server that has its model (preferring the one that ran this model
last, which has it loaded). A server that drops mid-job is marked failed, and the job is
sent to another server; only when none is left does it fail back to the queue. Results are
taken from the server that finished the job only, so nothing is done twice into the gallery.
Lives on the backend's event loop: its state is touched by that one thread only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from studio.core.errors import CancelledError
from studio.remote.client import ComfyClient, ServerConfig
from studio.remote.errors import ServerLostError, ServerModelMissingError, ServerUnreachableError

T = TypeVar("T")
RETRY_AFTER_S = 30.0  # a failed server is tried again after this long


@dataclass
class Server:
    """One server of the pool and what the pool knows of it."""

    client: ComfyClient
    busy: bool = False
    failed: str = ""  # why it cannot take a job ("" when it can)
    failed_at: float = 0.0
    loaded: str = ""  # the checkpoint it ran last (most likely still in its memory)
    checkpoints: tuple[str, ...] | None = None
    jobs_done: int = 0

    @property
    def url(self) -> str:
        return self.client.url

    @property
    def state(self) -> str:
        """"busy", "idle" or "failed: <why>" (shown in the status bar)."""
        if self.failed:
            return f"failed: {self.failed}"
        return "busy" if self.busy else "idle"


@dataclass
class ServerPool:
    """The servers, and the one queue their jobs wait in."""

    servers: list[Server]
    _changed: asyncio.Condition | None = field(default=None, repr=False)

    @classmethod
    def of(cls, configs: Sequence[ServerConfig]) -> ServerPool:
        return cls([Server(ComfyClient(c)) for c in configs])

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def checkpoints(self, server: Server, refresh: bool = False) -> tuple[str, ...]:
        if server.checkpoints is None or refresh:
            server.checkpoints = tuple(await server.client.models("checkpoints"))
        return server.checkpoints

    def usable(self) -> list[Server]:
        now = time.monotonic()
        return [s for s in self.servers
                if not s.failed or now - s.failed_at > RETRY_AFTER_S]

    async def acquire(self, checkpoint: str, cancelled: Callable[[], bool],
                      exclude: set[str]) -> Server:
        """The next free server with ``checkpoint`` (waits while all such servers are busy).

        Raises ``ServerModelMissingError`` when no server that is up has it, and
        ``ServerLostError`` when every server that had it has failed for this job.
        """
        cond = self._condition()
        async with cond:
            while True:
                if cancelled():
                    raise CancelledError()
                candidates = []
                for server in self.usable():
                    if server.url in exclude:
                        continue
                    try:
                        names = await self.checkpoints(server)
                    except (ServerUnreachableError, ServerLostError) as err:
                        self.mark_failed(server, err.message)
                        continue
                    if checkpoint in names:
                        candidates.append(server)
                if not candidates:
                    if exclude:
                        raise ServerLostError(
                            "Every server that has the model dropped the job: "
                            + "; ".join(f"{s.url} {s.state}" for s in self.servers) + ".")
                    down = [f"{s.url} ({s.failed})" for s in self.servers if s.failed]
                    if down and len(down) == len(self.servers):
                        raise ServerUnreachableError("No server answers: " + "; ".join(down))
                    raise ServerModelMissingError(
                        f"No server has the checkpoint {checkpoint!r}.",
                        hint="See `studio models` for the models each server has.")
                free = [s for s in candidates if not s.busy]
                if free:
                    free.sort(key=lambda s: (s.loaded != checkpoint, s.jobs_done))
                    chosen = free[0]
                    chosen.busy = True
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
                server.failed = ""
                server.jobs_done += 1
                server.loaded = checkpoint or server.loaded
            cond.notify_all()

    @staticmethod
    def mark_failed(server: Server, why: str) -> None:
        server.failed = why
        server.failed_at = time.monotonic()
        server.checkpoints = None

    async def run(self, checkpoint: str, cancelled: Callable[[], bool],
                  job: Callable[[Server], Awaitable[T]]) -> T:
        """Run ``job`` on a free server with ``checkpoint``; on another if that one drops."""
        tried: set[str] = set()
        while True:
            server = await self.acquire(checkpoint, cancelled, tried)
            try:
                result = await job(server)
            except (ServerLostError, ServerUnreachableError) as err:
                tried.add(server.url)
                await self.release(server, failed=err.message)
                continue
            except BaseException:
                await self.release(server, checkpoint=checkpoint)
                raise
            await self.release(server, checkpoint=checkpoint)
            return result
