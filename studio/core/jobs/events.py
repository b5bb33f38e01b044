"""Events a job reports while it runs. Frozen values: they cross from the engine thread."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from studio.core.jobs.request import GenerationRequest

# What a generation is doing, in the order it happens ("sampling": the denoising steps).
PHASES = ("loading", "encoding", "sampling", "decoding")


@dataclass(frozen=True)
class StepProgress:
    """What the engine reports after each denoising step, and as each phase starts.

    ``phase`` is one of ``PHASES``: "loading" (the model), "encoding" (the prompt) and
    "decoding" (latents to pixels) are reported once as they start, with ``step`` 0 (or
    ``total`` for "decoding"); "sampling" after every step.
    """

    step: int
    total: int
    preview: np.ndarray | None = field(default=None, repr=False)  # HxWx3 uint8, small
    phase: str = "sampling"
    where: str = ""  # where it runs, in words, when a backend has several places ("" = here)


@dataclass(frozen=True)
class GenerationResult:
    """The images of one request, and the request as it was actually run."""

    request: GenerationRequest
    images: tuple[np.ndarray, ...] = field(repr=False)  # each HxWx3 uint8
    seconds: float = 0.0

    @property
    def seeds(self) -> list[int]:
        return self.request.seeds


@dataclass(frozen=True)
class JobEvent:
    job_id: int
    channel: str


@dataclass(frozen=True)
class JobQueued(JobEvent):
    request: GenerationRequest = field(repr=False, default=None)  # type: ignore[assignment]


@dataclass(frozen=True)
class JobStarted(JobEvent):
    request: GenerationRequest = field(repr=False, default=None)  # type: ignore[assignment]


@dataclass(frozen=True)
class JobProgress(JobEvent):
    step: int = 0
    total: int = 0
    preview: np.ndarray | None = field(default=None, repr=False)
    phase: str = "sampling"  # see StepProgress
    where: str = ""  # see StepProgress


@dataclass(frozen=True)
class JobFinished(JobEvent):
    result: GenerationResult = field(repr=False, default=None)  # type: ignore[assignment]


@dataclass(frozen=True)
class JobFailed(JobEvent):
    message: str = ""
    kind: str = "error"


@dataclass(frozen=True)
class JobCancelled(JobEvent):
    pass
