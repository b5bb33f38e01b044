"""A cancel flag shared between the thread that asks and the engine thread that checks."""

from __future__ import annotations

import threading

from studio.core.errors import CancelledError


class CancelToken:
    """Set once, checked often. ``raise_if_cancelled`` is what the engine calls each step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise CancelledError()


# The token of the job each thread runs: the runner sets it when a job starts, so that code
# that is not handed a token (a model load deep in the engine) can still stop when the job
# is cancelled.
_active = threading.local()


def set_active_token(token: CancelToken | None) -> None:
    """Make ``token`` the calling thread's job token (``None``: no job)."""
    _active.token = token


def active_token() -> CancelToken | None:
    """The token of the job the calling thread runs, or ``None`` outside a job."""
    return getattr(_active, "token", None)
