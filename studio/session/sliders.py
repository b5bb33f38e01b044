"""``SliderSession``: the latent sliders over the current image, without the widgets.

It holds the slider set (its values live in ``Document.sliders``, saved with the project),
turns drags into undoable ``SetSliderValue`` edits (one undo entry per drag), builds the
requests (the base image's request with the sliders of the current mode applied), sends
previews, renders and seed frames to the job queue, and keeps track of their results.

Targets: the image last generated (prompt directions, LoRA weights, seed exploration) or,
in VAE/GAN mode, the embedded ``studio-tiny-vae`` / ``studio-tiny-gan`` latent.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from psygnal import Signal

from studio.core.document.edits import SetSliderValue
from studio.core.document.layers import Document
from studio.core.document.pixels import Pixels
from studio.core.document.undo import UndoStack
from studio.core.jobs.events import JobFailed, JobFinished
from studio.core.jobs.request import GenerationRequest
from studio.core.sliders.specs import (
    LATENT_MODELS,
    LATENT_SPACES,
    VAE,
    SliderSet,
    SliderSpec,
    example_slider,
    interpolation_requests,
    inversion_request,
    neighbourhood_requests,
    preview_request,
    spec_from_id,
    starter_sliders,
)
from studio.session.connection import Connection

DIFFUSION = "diffusion"  # the mode that edits the current image (not a VAE/GAN latent)

_log = logging.getLogger(__name__)


class SliderSession:
    """The sliders' state and actions.

    Parameters
    ----------
    doc, undo
        The document (``doc.sliders`` holds the slider set and values) and its undo stack.
    connection
        The backend: its job queue runs previews, renders and direction building.
    render
        Renders a released slider's image over the one it edits (the window's generation
        controller); without it, or in VAE/GAN mode, the render goes to the preview slot.
    """

    slider_added = Signal(object)  # SliderSpec: show a row
    slider_removed = Signal(str)  # slider id
    value_changed = Signal(str, float)  # the document's value (an edit, undo or redo)
    sliders_reloaded = Signal()  # the whole set was rebuilt (a project opened)
    base_changed = Signal(object)  # GenerationRequest | None: the image the sliders edit
    mode_changed = Signal(str)
    preview_requested = Signal(object)  # GenerationRequest
    render_requested = Signal(object)  # GenerationRequest
    preview_shown = Signal(object)  # np.ndarray
    frames_cleared = Signal(str)  # "strip" or "grid"
    frame_shown = Signal(int, object)  # index, np.ndarray
    message = Signal(str)  # a hint for the artist

    def __init__(self, doc: Document, undo: UndoStack, connection: Connection | None = None,
                 render: Callable[[GenerationRequest], Any] | None = None) -> None:
        self.doc, self.undo = doc, undo
        self.connection = connection if connection is not None else Connection()
        self.jobs = self.connection.jobs
        self.render_handler = render
        self.starters = starter_sliders()
        self.sliders = SliderSet.from_values(doc.sliders, self.starters)
        self.mode = DIFFUSION
        self.edit_init = False  # "Edit the init image": inversion, or the canvas in VAE/GAN
        self.base_request: GenerationRequest | None = None
        self.canvas_image: Pixels | None = None
        self.last_preview: np.ndarray | None = None
        self.frames: dict[int, np.ndarray] = {}
        self.frames_kind = "strip"
        self.examples: dict[bool, list[np.ndarray]] = {True: [], False: []}
        self._drag_ids = itertools.count(1)
        self._drag: dict[str, str] = {}  # slider id -> merge id of the drag in progress
        self._preview_job: int | None = None
        self._frame_jobs: dict[int, int] = {}  # job id -> frame index
        self._example_job: tuple[int, str, str] | None = None  # job id, space, name
        doc.add_listener(self._on_document_event)
        self.jobs.finished.connect(self._on_job_finished)
        self.jobs.failed.connect(self._on_job_failed)

    # -- the slider set ------------------------------------------------------------------
    def add_slider(self, spec: SliderSpec) -> None:
        """Show a slider (at 0) and record it in the document (one undo entry)."""
        if spec.slider_id in self.sliders.specs:
            return
        self.undo.push(SetSliderValue(spec.slider_id, 0.0, merge_id=None,
                                      text=f"Add slider {spec.label}"))

    def remember(self, spec: SliderSpec) -> None:
        """Keep a spec that is not a starter (its id resolves now and after a reopen)."""
        self.starters[spec.slider_id] = spec
        self.doc.slider_specs[spec.slider_id] = spec.to_dict()

    def remove_slider(self, slider_id: str) -> None:
        # Undo brings the slider back with its value (the command restores the old value).
        self.undo.push(SetSliderValue(slider_id, 0.0, merge_id=None, text="Remove slider"))
        self.doc.sliders.pop(slider_id, None)
        self.doc.emit("slider_changed", slider_id=slider_id, value=None)

    def reset_all(self) -> None:
        with self.undo.macro("Reset sliders"):
            for sid, value in list(self.sliders.values.items()):
                if value != 0:
                    self.undo.push(SetSliderValue(sid, 0.0, merge_id=None))
        self.render()

    def reload_from_document(self) -> None:
        """Rebuild the set from ``doc.sliders`` (after a project is opened)."""
        for sid, data in self.doc.slider_specs.items():
            try:
                self.starters[sid] = SliderSpec.from_dict(data)
            except (KeyError, TypeError, ValueError):
                _log.warning("slider %r in the project is unreadable, left out", sid)
        self.sliders = SliderSet.from_values(self.doc.sliders, self.starters)
        self.sliders_reloaded.emit()

    def set_mode(self, mode: str) -> None:
        if mode != self.mode:
            self.mode = mode
            self.mode_changed.emit(mode)

    def _on_document_event(self, name: str, payload: dict[str, Any]) -> None:
        if name != "slider_changed":
            return
        sid, value = payload["slider_id"], payload["value"]
        if value is None:
            if sid in self.sliders.specs:
                self.sliders.remove(sid)
                self.slider_removed.emit(sid)
            return
        if sid not in self.sliders.specs:
            try:
                spec = spec_from_id(sid, self.starters)
            except (KeyError, ValueError):
                return
            self.sliders.add(spec, value)
            self.slider_added.emit(spec)
        self.sliders.values[sid] = float(value)
        self.value_changed.emit(sid, float(value))

    # -- dragging ------------------------------------------------------------------------
    def press(self, slider_id: str) -> None:
        """A drag starts: its moves merge into one undo entry."""
        self._drag[slider_id] = f"drag:{slider_id}:{next(self._drag_ids)}"

    def dragging(self, slider_id: str) -> bool:
        return slider_id in self._drag

    def move(self, slider_id: str, value: float) -> bool:
        """Set a value; True while dragging (preview it), else it is a whole edit that
        has been rendered (keyboard, wheel or a click on the groove)."""
        merge = self._drag.get(slider_id)
        self.undo.push(SetSliderValue(slider_id, float(value),
                                      merge_id=merge if merge else None))
        if not merge:
            self.render()
        return bool(merge)

    def release(self, slider_id: str) -> float:
        """The drag ends: render the final image; returns the value released at."""
        self._drag.pop(slider_id, None)
        value = self.sliders.values.get(slider_id, 0.0)
        self.render()
        return value

    # -- requests ------------------------------------------------------------------------
    def set_base_request(self, request: GenerationRequest | None) -> None:
        """The image the sliders edit (the last generation's request)."""
        self.base_request = request
        self.base_changed.emit(request)

    def set_canvas_image(self, pixels: Pixels | None) -> None:
        """An image for VAE/GAN mode to start from, whatever the canvas holds (None: the
        canvas when ``edit_init`` is set, else the seed)."""
        self.canvas_image = pixels

    def latent_start_image(self) -> Pixels | None:
        """What VAE/GAN mode encodes: the image set, or with ``edit_init`` the canvas
        flattened over white (None when nothing is drawn: the seed then)."""
        if self.canvas_image is not None:
            return self.canvas_image
        if not self.edit_init or not self.doc.layers:
            return None
        rgba = self.doc.composite()
        if not rgba[..., 3].any():
            return None
        alpha = rgba[..., 3:4].astype(np.float32) / 255.0
        rgb = rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return Pixels.from_array(np.round(rgb).astype(np.uint8))

    def current_request(self) -> GenerationRequest | None:
        """The base request with the sliders of the current mode applied."""
        mode = self.mode
        if mode in LATENT_SPACES:
            seed = self.base_request.seed if self.base_request is not None else 0
            base = GenerationRequest("", model=LATENT_MODELS[mode], seed=seed, steps=1,
                                     width=64, height=64)
            start = self.latent_start_image()
            if start is not None:  # the VAE encodes it, the GAN inverts it (once per image)
                base = base.replace(task="img2img", init_image=start)
            specs = [s for s in self.sliders if s.space == mode]
        else:
            if self.base_request is None:
                return None
            # The base as it was before any slider: its own slider entries are replaced.
            base = self.base_request.replace(batch_size=1, model_hash="", device="", dtype="",
                                             sliders=(), loras=(), variation_seed=None,
                                             variation_strength=0.0)
            if self.edit_init and base.init_image is not None:
                base = inversion_request(base)
            specs = [s for s in self.sliders if s.space not in LATENT_SPACES]
        return SliderSet(specs, self.sliders.values).apply(base)

    def submit_preview(self) -> None:
        """A quick preview of the current values (the newest replaces a stale one)."""
        request = self.current_request()
        if request is None:
            return
        if self.mode not in LATENT_SPACES:
            request = preview_request(request)
        self.preview_requested.emit(request)
        if self.jobs.ready:
            self._preview_job = self.jobs.submit(request, "preview")

    def render(self) -> None:
        """Render the final image of the current values."""
        request = self.current_request()
        if request is None:
            return
        self.render_requested.emit(request)
        if self.render_handler is not None and self.mode not in LATENT_SPACES:
            self.render_handler(request)
        elif self.jobs.ready:
            # The preview slot: a render after release replaces any stale preview.
            self._preview_job = self.jobs.submit(request, "preview")

    # -- attribute vectors from examples ------------------------------------------------
    def mark_example(self, has_attribute: bool, image: np.ndarray | None = None) -> None:
        """Mark an image (default: the one shown) as having or lacking the attribute."""
        image = self.last_preview if image is None else image
        if image is None:
            self.message.emit("Move a slider or generate first: there is no image to mark.")
            return
        self.examples[has_attribute].append(np.ascontiguousarray(image[..., :3]))
        n_has, n_lacks = len(self.examples[True]), len(self.examples[False])
        self.message.emit(f"Examples: {n_has} with, {n_lacks} without the attribute.")

    def build_example_slider(self, name: str) -> int | None:
        """Build a VAE/GAN slider from the marked examples on the engine thread; returns
        the job id (None when it cannot start: the message says why)."""
        name = name.strip() or "example"
        space = self.mode if self.mode in LATENT_SPACES else VAE
        if not self.examples[True] or not self.examples[False]:
            self.message.emit("Mark at least one image with and one without the attribute.")
            return None
        services = self.connection.services
        builder = services.directions if services is not None else None
        if not self.jobs.ready or builder is None:
            self.message.emit("The engine is not ready to build a direction.")
            return None
        with_, without = np.stack(self.examples[True]), np.stack(self.examples[False])

        def work(_on_step: Any, _cancel: Any) -> Any:
            return builder.direction_from_images(space, with_, without)

        job = self.jobs.submit_work(work, f"Direction: {name}")
        self._example_job = (job, space, name)
        return job

    def _on_example_built(self, vector: Any) -> None:
        assert self._example_job is not None
        _job, space, name = self._example_job
        self._example_job = None
        self.examples = {True: [], False: []}
        self.set_mode(space)
        spec = example_slider(space, name, vector)
        self.remember(spec)
        self.add_slider(spec)

    # -- seed exploration ----------------------------------------------------------------
    def _submit_frames(self, requests: list[GenerationRequest], kind: str) -> None:
        self.frames.clear()
        self.frames_kind = kind
        self.frames_cleared.emit(kind)
        if not self.jobs.ready:
            return
        for i, req in enumerate(requests):
            self._frame_jobs[self.jobs.submit(req, "render")] = i

    def make_strip(self, other_seed: int, frames: int = 8) -> None:
        """Interpolate from the current image to ``other_seed``, as frames."""
        request = self.current_request()
        if request is not None and self.mode not in LATENT_SPACES:
            self._submit_frames(interpolation_requests(request, other_seed, int(frames) or 8),
                                "strip")

    def make_grid(self, strength: float = 0.2) -> None:
        """A 3x3 grid of variations around the current image (the centre is the image)."""
        request = self.current_request()
        if request is not None and self.mode not in LATENT_SPACES:
            self._submit_frames(neighbourhood_requests(request, float(strength or 0.2)), "grid")

    # -- job results ---------------------------------------------------------------------
    def _on_job_finished(self, event: JobFinished) -> None:
        if self._example_job is not None and event.job_id == self._example_job[0]:
            self._on_example_built(event.result)
            return
        if event.job_id == self._preview_job:
            self._preview_job = None
            self.last_preview = event.result.images[0]
            self.preview_shown.emit(self.last_preview)
        elif event.job_id in self._frame_jobs:
            index = self._frame_jobs.pop(event.job_id)
            self.frames[index] = event.result.images[0]
            self.frame_shown.emit(index, self.frames[index])

    def _on_job_failed(self, event: JobFailed) -> None:
        if self._example_job is not None and event.job_id == self._example_job[0]:
            self._example_job = None
            self.message.emit(event.message)
        if event.job_id == self._preview_job or event.job_id in self._frame_jobs:
            self._frame_jobs.pop(event.job_id, None)
            self.message.emit(event.message)
