"""``LiveSession``: live painting (the model repaints the canvas as the artist paints), without
the widgets.

Each update sends the canvas region (the selection, or the whole canvas), flattened over
white, through a fast image-to-image on the job queue's *preview* channel: the newest update
replaces a waiting one and cancels a running one (latest wins), and nothing ever waits for the
engine. An update runs ``steps`` denoising steps at ``strength`` (the request asks for
``ceil(steps / strength)`` steps, of which image-to-image runs the last ``steps``), with the
prompt panel's prompt, model, sampler and guidance, and the same seed every time while
``seed_locked`` (so the picture stays put while painting). Regional prompts of the canvas
apply, and ``contributors`` add other request fields (control layers, once they land).

``keep`` makes the latest picture a new layer over the region it came from, with its full
request as a History record: one undo entry.

Live mode is off where the backend says it cannot do it (``EngineFeatures.live_mode`` and its
reason), and for a model whose measured update time is too long to follow the brush (over
``MAX_UPDATE_S``): the reason names the step time measured. It pauses while the window is
hidden or minimised (``pause``/``resume``).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from psygnal import Signal

from studio.core.document.edits import ApplyGeneration
from studio.core.document.layers import Document, Rect
from studio.core.document.pixels import Pixels
from studio.core.document.undo import UndoStack
from studio.core.errors import StudioError
from studio.core.jobs.events import GenerationResult, JobCancelled, JobFailed, JobFinished
from studio.core.jobs.request import GenerationRequest
from studio.session.connection import Connection

OFF, ON, PAUSED = "off", "on", "paused"
MAX_UPDATE_S = 1.0  # an update slower than this cannot follow the brush
DEFAULT_STRENGTH = 0.55
DEFAULT_STEPS = 2  # denoising steps per update
MAX_SEED = 2**32 - 1
#: The request fields taken from the prompt panel (the rest are live's own).
PROMPT_FIELDS = ("prompt", "negative_prompt", "model", "scheduler", "seed", "guidance")

# A contributor adds request fields for the region (rect on the canvas, request size):
# control layers, once they land, register one with ``add_contributor``.
Contributor = Callable[[Rect, tuple[int, int]], dict[str, Any]]


@dataclass(frozen=True)
class LiveSource:
    """What one update paints from: the flattened canvas region at the request size."""

    image: np.ndarray = field(repr=False)  # HxWx3 uint8, the request's size
    rect: Rect  # the region on the canvas
    stamp: float = 0.0  # time.perf_counter() of the event that asked for it (a stroke end)


@dataclass(frozen=True)
class LiveResult:
    """A live picture: the request as the engine ran it, its image, where it belongs."""

    result: GenerationResult = field(repr=False)
    rect: Rect
    seq: int  # the update's number (later updates have larger numbers)
    stamp: float  # when its source was asked for
    arrived: float  # time.perf_counter() when the result reached this session

    @property
    def image(self) -> np.ndarray:
        return self.result.images[0]

    @property
    def request(self) -> GenerationRequest:
        return self.result.request

    @property
    def latency_s(self) -> float:
        """From the event that asked for it to its arrival here."""
        return self.arrived - self.stamp


def request_steps(steps: int, strength: float) -> int:
    """The steps to ask for so that image to image at ``strength`` runs ``steps`` of them
    (diffusers and A1111 run ``int(steps * strength)``)."""
    strength = max(0.01, min(1.0, float(strength)))
    n = max(1, math.ceil(steps / strength - 1e-9))
    while int(n * strength) < steps:
        n += 1
    return min(n, 1000)


def flatten_over_white(premultiplied: np.ndarray) -> np.ndarray:
    """RGB of a premultiplied RGBA image laid on white paper."""
    rgb = premultiplied[..., :3].astype(np.int16)
    out = rgb + (255 - premultiplied[..., 3:4].astype(np.int16))
    return np.clip(out, 0, 255).astype(np.uint8)


class LiveSession:
    """Live mode's state and actions.

    Parameters
    ----------
    doc, undo
        The document (its log keeps what ``keep`` adds) and its undo stack.
    connection
        The backend: its features say whether live mode is possible, its job queue runs
        the updates on the preview channel.
    """

    state_changed = Signal(str)  # OFF, ON or PAUSED
    updated = Signal(object)  # LiveResult: show it
    busy_changed = Signal(bool)  # an update is on its way
    message = Signal(str)  # a failure or why live mode turned itself off
    kept = Signal(str)  # record id of the picture kept as a layer

    def __init__(self, doc: Document, undo: UndoStack, connection: Connection) -> None:
        self.doc, self.undo, self.connection = doc, undo, connection
        self.jobs = connection.jobs
        self.strength = DEFAULT_STRENGTH
        self.steps = DEFAULT_STEPS
        self.seed_locked = True  # the same seed while painting: the picture stays put
        self.max_update_s = MAX_UPDATE_S  # slower updates turn live mode off
        self.state = OFF
        self.pause_reason = ""
        self.latest: LiveResult | None = None
        self.seconds: list[float] = []  # engine time of each update, this model and size
        self._contributors: list[Contributor] = []
        self._too_slow: dict[tuple[str, int, int], str] = {}  # (model, w, h) -> reason
        self._job: tuple[int, int, Rect, float] | None = None  # job id, seq, rect, stamp
        self._key: tuple[str, int, int] = ("", 0, 0)  # the model and size of the updates
        self._seq = 0
        self._shown_seq = 0
        self._sent: tuple[int, GenerationRequest] | None = None  # the last update sent
        self._lock = threading.RLock()  # its events may come on the submitting thread
        self.jobs.finished.connect(self._on_job_finished)
        self.jobs.failed.connect(self._on_job_failed)
        self.jobs.cancelled.connect(self._on_job_cancelled)

    # -- whether it can run --------------------------------------------------------------
    def reason(self, values: dict[str, Any] | None = None) -> str:
        """Why live mode cannot be on now ("" when it can): the backend's reason, or the
        measured update time of this model at this size."""
        if not self.connection.can("live_mode"):
            return self.connection.reason("live_mode")
        if values is not None:
            return self._too_slow.get(_key(values), "")
        return ""

    @property
    def on(self) -> bool:
        return self.state != OFF

    def set_on(self, on: bool, values: dict[str, Any] | None = None) -> bool:
        """Turn live mode on or off; returns whether it is on. Turning it on where it
        cannot run says why (``message``) and leaves it off."""
        if on:
            why = self.reason(values)
            if why:
                self.message.emit(f"Live mode is off: {why}")
                on = False
        if not on:
            self._cancel_running()
            self.latest = None  # the next time starts from the canvas as it is then
        state = (PAUSED if self.pause_reason else ON) if on else OFF
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)
        return on

    def pause(self, reason: str) -> None:
        """Stop updating (the window is hidden or minimised) until ``resume``."""
        self.pause_reason = reason
        self._cancel_running()
        if self.state == ON:
            self.state = PAUSED
            self.state_changed.emit(PAUSED)

    def resume(self) -> None:
        self.pause_reason = ""
        if self.state == PAUSED:
            self.state = ON
            self.state_changed.emit(ON)

    def add_contributor(self, contributor: Contributor) -> None:
        """Add request fields to every update (control layers: ``{"controls": (...)}``)."""
        self._contributors.append(contributor)

    # -- updates -------------------------------------------------------------------------
    def build_request(self, values: dict[str, Any], source: LiveSource) -> GenerationRequest:
        """The request of one update: the prompt panel's ``values`` (prompt, model, sampler,
        guidance, seed) and live's strength, steps and seed lock, over ``source``."""
        height, width = source.image.shape[:2]
        fields = {k: values[k] for k in PROMPT_FIELDS if k in values}
        if not self.seed_locked:
            fields["seed"] = random.randint(0, MAX_SEED)
        fields.update(width=width, height=height, task="img2img", strength=self.strength,
                      steps=request_steps(self.steps, self.strength),
                      init_image=Pixels.from_array(source.image))
        if self.connection.features.regions:
            fields["regions"] = self.doc.regions(source.rect, (width, height))
        for contribute in self._contributors:
            fields.update(contribute(source.rect, (width, height)))
        return GenerationRequest(**fields)

    def update(self, values: dict[str, Any], source: LiveSource) -> int | None:
        """Send one update (replacing a stale one); ``None`` when live mode is not running
        or the request cannot be made (``message`` says why)."""
        if self.state != ON or not self.jobs.ready:
            return None
        try:
            request = self.build_request(values, source)
        except (StudioError, ValueError) as err:
            self.message.emit(str(err))
            return None
        with self._lock:
            # The same request as the update on its way (the brush rested, then the stroke
            # ended where it rested; a setting set back): let that one run, instead of
            # cancelling it and starting over, which doubled the wait for the picture.
            job = self._job
            if job is not None and self._sent == (job[1], request):
                return job[0]
        with self._lock:  # without a GUI thread its events may come before submit returns
            self._seq += 1
            seq = self._seq
            try:
                job_id = self.jobs.submit(request, "preview", label="Live")
            except StudioError as err:
                self.message.emit(str(err))
                return None
            self._job = (job_id, seq, source.rect, source.stamp)
            self._sent = (seq, request)
        key = _key(values)
        if key != self._key:  # another model or size: measure it afresh
            self._key = key
            self.seconds.clear()
        self.busy_changed.emit(True)
        return job_id

    @property
    def busy(self) -> bool:
        return self._job is not None

    @property
    def last_seq(self) -> int:
        """The number of the latest update sent (its picture has ``seq`` equal to it)."""
        return self._seq

    @property
    def job_id(self) -> int | None:
        """The job of the update on its way (``None`` when none is)."""
        job = self._job
        return job[0] if job is not None else None

    def _cancel_running(self) -> None:
        job, self._job = self._job, None
        if job is not None:
            self.jobs.cancel(job[0])
            self.busy_changed.emit(False)

    def _take(self, job_id: int) -> tuple[int, int, Rect, float] | None:
        with self._lock:
            job = self._job
            if job is None or job[0] != job_id:
                return None
            self._job = None
        return job

    def _on_job_finished(self, event: JobFinished) -> None:
        job = self._take(event.job_id)
        if job is None:
            return
        _job_id, seq, rect, stamp = job
        self.busy_changed.emit(False)
        if self.state == OFF or seq < self._shown_seq:
            return
        result = event.result
        live = LiveResult(result, rect, seq, stamp, time.perf_counter())
        self._shown_seq = seq
        self._measure(result)
        if self.state != OFF:  # not turned off for being too slow
            self.latest = live
            self.updated.emit(live)

    def _on_job_failed(self, event: JobFailed) -> None:
        if self._take(event.job_id) is not None:
            self.busy_changed.emit(False)
            self.message.emit(event.message)

    def _on_job_cancelled(self, event: JobCancelled) -> None:
        if self._take(event.job_id) is not None:  # cancelled elsewhere (Esc, a project)
            self.busy_changed.emit(False)

    def _measure(self, result: GenerationResult) -> None:
        """Turn live mode off for a model that cannot keep up (its update time measured)."""
        req = result.request
        if len(self.seconds) < 100:
            self.seconds.append(result.seconds)
        # The first update of a model and size may load the model: it is not counted. The
        # quickest of the next ones counts (a busy moment of the machine is no verdict).
        if len(self.seconds) < 3:
            return
        typical = min(self.seconds[1:][-3:])
        if typical <= self.max_update_s:
            return
        ran = max(1, int(req.steps * req.strength))
        why = (f"{_model_name(req.model)} takes {typical:.1f} s an update here "
               f"({typical / ran:.2f} s a step at {req.width}×{req.height}); live painting "
               f"needs under {self.max_update_s:g} s. Try a smaller size or a turbo/LCM model.")
        self._too_slow[self._key] = why
        self.seconds.clear()
        self.set_on(False)
        self.message.emit(f"Live mode is off: {why}")

    # -- keeping -------------------------------------------------------------------------
    def keep(self) -> str | None:
        """The latest picture as a new layer over its region, with its request in History
        (one undo entry); returns the record id (``None`` when there is no picture)."""
        live = self.latest
        if live is None:
            return None
        record = self.doc.log.add_result(live.result)
        words = " ".join((live.request.prompt.strip() or "live").split()[:4])
        self.undo.push(ApplyGeneration(live.image, live.rect, record.id,
                                       name=f"Live: {words} #{live.request.seed}",
                                       text="Keep live picture"))
        self.kept.emit(record.id)
        return record.id


def _key(values: dict[str, Any]) -> tuple[str, int, int]:
    return (str(values.get("model", "")), int(values.get("width", 0)),
            int(values.get("height", 0)))


def _model_name(model: str) -> str:
    return model.rstrip("/").rsplit("/", 1)[-1] or "This model"
