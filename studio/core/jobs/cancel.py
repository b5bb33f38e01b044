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
