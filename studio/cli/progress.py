"""Progress on stderr as a generation runs: "Loading model", "Encoding prompt", the steps,
"Decoding", each shown as it starts (the engine reports the phases through ``StepProgress``).
"""

from __future__ import annotations

import sys
import time
from typing import Any

PHASE_TEXT = {"loading": "Loading model", "encoding": "Encoding prompt",
              "decoding": "Decoding"}


class PhaseProgress:
    """Prints each phase once, as it starts, with the time the one before took; a step bar
    while sampling. Silent with ``quiet``."""

    def __init__(self, quiet: bool = False, stream: Any = None) -> None:
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self._phase = ""
        self._since = time.perf_counter()
        self._bar: Any = None

    def start(self, text: str, phase: str = "loading") -> None:
        """Say that ``phase`` starts (``text`` in the user's words)."""
        if self._phase == phase:
            return
        self._close_bar()
        self._phase = phase
        self._since = time.perf_counter()
        if not self.quiet:
            print(f"{text}…", file=self.stream, flush=True)

    def note(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    def on_step(self, p: Any) -> None:
        """The engine's ``on_step``: a phase line, or the step bar."""
        phase = getattr(p, "phase", "sampling")
        if phase != "sampling":
            self.start(PHASE_TEXT.get(phase, phase.capitalize()), phase)
            return
        self._phase = "sampling"
        if self.quiet:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=p.total, unit="step", file=self.stream, leave=False,
                             dynamic_ncols=True, desc="Sampling")
        self._bar.total = p.total
        self._bar.update(p.step - self._bar.n)

    def run(self, engine: Any, request: Any) -> Any:
        """``engine.generate(request)`` reporting here; the bar is closed whatever happens."""
        from studio.core.jobs.cancel import CancelToken

        try:
            return engine.generate(request, self.on_step, CancelToken())
        finally:
            self._close_bar()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
