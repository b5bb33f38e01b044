"""``ServersState``: each remote server as the status bar shows it, polled off the GUI thread.

The backend (``studio.remote.engine.RemoteEngine.server_status``) answers with one snapshot
per server: its state (connecting, idle, loading, busy, failed with the reason), GPU, free
memory and queue length. ``ServersState`` asks it on a daemon thread every ``interval``
seconds (the backend itself waits out a backoff before it asks a server that did not
answer again), keeps the last answer in ``servers`` and emits ``changed`` with it. A poll
that fails as a whole is kept as ``error`` and retried with a doubling delay, so a lost
connection is shown and retried and never blocks the window. Pure Python: no Qt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from psygnal import Signal

POLL_S = 3.0  # between two polls while all is well
BACKOFF_MAX_S = 30.0  # between two polls at most while the backend does not answer


class ServersState:
    """The remote servers' states. ``poll`` returns the snapshots (``ServerStatus``-like
    objects with ``url``, ``state``, ``reason`` and ``text``); it is only called from the
    polling thread (``start``) or from ``refresh``."""

    changed = Signal(object)  # tuple of snapshots (emitted on the polling thread)

    def __init__(self, poll: Callable[[], Sequence[Any]], interval: float = POLL_S) -> None:
        self._poll = poll
        self.interval = interval
        self.servers: tuple[Any, ...] = ()
        self.error = ""  # why the last poll failed as a whole ("" when it answered)
        self.delay = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def summary(self) -> str:
        """``2 servers: 1 idle, 1 failed`` (or the error)."""
        if self.error:
            return f"servers: {self.error}"
        if not self.servers:
            return "servers: connecting…"
        counts: dict[str, int] = {}
        for status in self.servers:
            counts[status.state] = counts.get(status.state, 0) + 1
        parts = ", ".join(f"{n} {state}" for state, n in counts.items())
        noun = "server" if len(self.servers) == 1 else "servers"
        return f"{len(self.servers)} {noun}: {parts}"

    def refresh(self) -> None:
        """Poll once now (on the calling thread) and emit ``changed``."""
        try:
            servers = tuple(self._poll())
        except Exception as err:  # the backend is gone or stuck: shown, retried later
            self.error = (str(err).strip().splitlines() or [type(err).__name__])[0]
            self.delay = min(BACKOFF_MAX_S, max(self.interval, self.delay * 2))
        else:
            self.servers, self.error = servers, ""
            self.delay = self.interval  # failed servers: the backend waits out their backoff
        self.changed.emit(self.servers)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="studio-servers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.delay)
