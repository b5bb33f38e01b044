"""``Staging``: the results of a batch or a grid, held as candidates before they become layers.

As in InvokeAI's staging area: a batch does not land as a pile of layers; its images wait
over the canvas, one shown at a time, and each is kept (a layer, one undoable edit linked to
its History entry) or discarded. This is the state alone (no Qt): the candidates, which one
is shown, and what keeping or discarding hands back. ``studio.ui.staging`` draws it and
binds the keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from psygnal import Signal

from studio.core.document.layers import Rect
from studio.core.jobs.request import GenerationRequest


@dataclass(frozen=True)
class Candidate:
    """One staged image: where it would land and what made it.

    ``index`` is the image's place in its record's batch (image ``i`` used seed
    ``seed + i``); ``mask`` (region-sized) is where an inpaint result shows; ``canvas_size``
    grows an empty document to the image's size when it is kept; ``task`` names what the
    canvas did (``"outpaint"`` for an inpaint past the edge).
    """

    record_id: str
    index: int
    image: np.ndarray
    rect: Rect
    request: GenerationRequest
    task: str = ""
    mask: np.ndarray | None = None
    canvas_size: tuple[int, int] | None = None
    grid: bool = False  # a cell of an X/Y/Z grid (hidden from History unless kept)

    @property
    def seed(self) -> int:
        return (self.request.seed + self.index) % 2**32

    @property
    def caption(self) -> str:
        """Task, seed and variation seed: ``"txt2img · seed 8"``, ``"… · var 12"``."""
        return candidate_caption(self.request, self.index, self.task)


def candidate_caption(request: GenerationRequest, index: int = 0, task: str = "") -> str:
    """What made an image, in a few words: task, seed, and the variation seed if varied."""
    parts = [task or request.task_label, f"seed {(request.seed + index) % 2**32}"]
    if request.variation_seed is not None and request.variation_strength > 0:
        parts.append(f"var {(request.variation_seed + index) % 2**32}")
    return " · ".join(parts)


class Staging:
    """Candidates in arrival order and the one shown (``current``).

    ``changed`` fires after every change; ``kept`` and ``discarded`` carry the candidates
    that left (the UI turns a kept one into a layer, a discarded one leaves History).
    """

    changed = Signal()
    kept = Signal(object)  # list[Candidate], in the order they were staged
    discarded = Signal(object)  # list[Candidate]

    def __init__(self) -> None:
        self.candidates: list[Candidate] = []
        self.current = 0
        self.expected = 0  # results still to come for the batches being staged

    # -- state ---------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """Whether there is anything to choose from (or still arriving)."""
        return bool(self.candidates) or self.expected > 0

    @property
    def shown(self) -> Candidate | None:
        return self.candidates[self.current] if self.candidates else None

    def __len__(self) -> int:
        return len(self.candidates)

    # -- arriving ------------------------------------------------------------------------
    def expect(self, count: int) -> None:
        """``count`` more results are on their way (shown as "3 of 4 (1 to come)")."""
        self.expected += max(0, int(count))
        self.changed.emit()

    def arrived(self, count: int = 1) -> None:
        """``count`` expected results came (or will not: cancelled, failed)."""
        self.expected = max(0, self.expected - count)
        self.changed.emit()

    def add(self, candidate: Candidate) -> None:
        """Stage a result; the first one of a batch is shown."""
        self.candidates.append(candidate)
        self.changed.emit()

    # -- browsing ------------------------------------------------------------------------
    def select(self, index: int) -> bool:
        if not 0 <= index < len(self.candidates) or index == self.current:
            return False
        self.current = index
        self.changed.emit()
        return True

    def step(self, delta: int) -> bool:
        """The next (``+1``) or previous (``-1``) candidate, wrapping around."""
        if len(self.candidates) < 2:
            return False
        return self.select((self.current + delta) % len(self.candidates))

    # -- leaving -------------------------------------------------------------------------
    def keep(self) -> Candidate | None:
        """Keep the shown candidate; the next one is shown."""
        return self._take(self.kept)

    def discard(self) -> Candidate | None:
        """Discard the shown candidate; the next one is shown."""
        return self._take(self.discarded)

    def keep_all(self) -> list[Candidate]:
        return self._take_all(self.kept)

    def discard_all(self) -> list[Candidate]:
        return self._take_all(self.discarded)

    def clear(self) -> None:
        """Forget everything, nothing kept (another document was opened)."""
        self.candidates, self.current, self.expected = [], 0, 0
        self.changed.emit()

    def _take(self, signal: Signal) -> Candidate | None:
        if not self.candidates:
            return None
        candidate = self.candidates.pop(self.current)
        self.current = min(self.current, max(0, len(self.candidates) - 1))
        signal.emit([candidate])  # type: ignore[attr-defined]
        self.changed.emit()
        return candidate

    def _take_all(self, signal: Signal) -> list[Candidate]:
        taken, self.candidates, self.current = self.candidates, [], 0
        if taken:
            signal.emit(taken)  # type: ignore[attr-defined]
        self.changed.emit()
        return taken
