"""``SliderSession``: the latent sliders over the image on the canvas, without the widgets.

Sliders act on the *target*: the active layer (or the selection inside it), or the
flattened canvas when no visible layer is active (``SliderTarget`` says which in words).
A generated layer is edited through its own request (prompt, LoRA and seed sliders change
that request); any other image is edited as a photo (DDIM inversion), and in VAE/GAN mode
the embedded ``studio-tiny-vae`` / ``studio-tiny-gan`` encodes or inverts the target image.

While a slider is dragged, previews go to the job queue's preview channel (the newest
replaces a stale one) and ``overlay_shown`` hands the canvas what the layer would become.
Release renders the final image and commits it as ONE undo entry: the slider values, the
layer's new pixels (or a new layer) and the generation record that made them.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from psygnal import Signal

from studio.core.document.edits import ApplyGeneration, PaintPixels, SetLayerProps, SetSliderValue
from studio.core.document.layers import Document, Rect, intersect
from studio.core.document.pixels import Pixels
from studio.core.document.undo import UndoStack
from studio.core.jobs.events import JobCancelled, JobFailed, JobFinished
from studio.core.jobs.request import GenerationRequest
from studio.core.sliders.specs import (
    GAN,
    INVERT,
    LATENT_MODELS,
    LATENT_SPACES,
    PROMPT,
    VAE,
    SliderSet,
    SliderSpec,
    example_slider,
    interpolation_requests,
    inversion_request,
    latent_slider,
    neighbourhood_requests,
    preview_request,
    spec_from_id,
    starter_sliders,
)
from studio.session.connection import Connection

DIFFUSION = "diffusion"  # the mode that edits the target through a diffusion model
# The sliders a new document shows: what each space of the embedded models can change.
STARTER_IDS = ("smile", "hair-red", "hair-blonde", "glasses", "age")
LATENT_STARTERS = ("smile", "glasses", "hair=red", "hair=blonde", "background=blue")
PHOTO_STEPS = 20

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SliderTarget:
    """What the sliders edit: ``kind`` is ``layer``, ``selection``, ``canvas`` or ``none``;
    ``rect`` the canvas area the result covers; ``words`` says it to the artist."""

    kind: str
    rect: Rect
    words: str
    layer_id: str | None = None
    record_id: str | None = None  # the (live) generation that made the layer's image


@dataclass(frozen=True)
class _Job:
    target: SliderTarget
    source: Rect  # the canvas area the request's image covers (cropped to target.rect)
    values: dict[str, float]
    request: GenerationRequest
    commit: bool


LATENT_COMMIT_MAX = 4096  # px per side: the kept edit of a larger layer is scaled up


def _latent_commit_size(source: Rect) -> dict[str, int]:
    """The size a kept VAE/GAN edit is drawn at: the layer's own (to 8 px, at most
    ``LATENT_COMMIT_MAX``). The latent models draw 64 px; the engine carries only their
    change onto the layer's own pixels at this size, so a large layer keeps its detail
    outside the change (a 512 px layer: 92 % of its pixels unchanged by a Smile edit, its
    fine detail kept; drawn at 64 px and scaled up, none of it). Previews stay at 64 px."""
    w, h = (min(LATENT_COMMIT_MAX, max(64, round(v / 8) * 8)) for v in source[2:])
    return {"width": w, "height": h}


class SliderSession:
    """The sliders' state and actions.

    Parameters
    ----------
    doc, undo
        The document (``doc.sliders`` holds the slider set and values) and its undo stack.
    connection
        The backend: its job queue runs previews, renders and direction building.
    photo_model
        The diffusion model that edits an image no generation made (default: the
        backend's first diffusion model).
    """

    slider_added = Signal(object)  # SliderSpec: show a row
    slider_removed = Signal(str)  # slider id
    value_changed = Signal(str, float)  # the document's value (an edit, undo or redo)
    sliders_reloaded = Signal()  # the whole set was rebuilt (a project opened)
    base_changed = Signal(object)  # GenerationRequest | None
    target_changed = Signal(object)  # SliderTarget
    mode_changed = Signal(str)
    preview_requested = Signal(object)  # GenerationRequest
    render_requested = Signal(object)  # GenerationRequest
    preview_shown = Signal(object)  # np.ndarray: the engine's image
    overlay_shown = Signal(object, object)  # Rect, RGBA np.ndarray: draw over the canvas
    overlay_cleared = Signal()
    committed = Signal(str)  # record id of the edit just kept
    busy_changed = Signal(bool)
    frames_cleared = Signal(str)  # "strip" or "grid"
    frame_shown = Signal(int, object)  # index, np.ndarray
    message = Signal(str)  # a hint for the artist

    def __init__(self, doc: Document, undo: UndoStack, connection: Connection | None = None,
                 render: Callable[[GenerationRequest], Any] | None = None,
                 photo_model: Callable[[], str] | None = None) -> None:
        self.doc, self.undo = doc, undo
        self.connection = connection if connection is not None else Connection()
        self.jobs = self.connection.jobs
        self.render_handler = render  # unused: renders commit here (kept for callers)
        self.photo_model = photo_model
        self.starters = starter_sliders()
        self.sliders = SliderSet.from_values(doc.sliders, self.starters)
        self.mode = DIFFUSION
        self.edit_init = False  # "Edit the init image" of a generated layer (inversion)
        self.new_layer = False  # commit as a new layer instead of editing the target
        self.base_request: GenerationRequest | None = None  # for a document with no layers
        self.canvas_image: Pixels | None = None
        self.last_preview: np.ndarray | None = None
        self.frames: dict[int, np.ndarray] = {}
        self.frame_requests: dict[int, GenerationRequest] = {}
        self.frames_kind = "strip"
        self.examples: dict[bool, list[np.ndarray]] = {True: [], False: []}
        self._drag_ids = itertools.count(1)
        self._drag: dict[str, float] = {}  # slider id -> the document's value at the press
        self._jobs: dict[int, _Job] = {}
        self._frame_jobs: dict[int, int] = {}  # job id -> frame index
        self._example_job: tuple[int, str, str] | None = None  # job id, space, name
        self._lock = threading.Lock()
        self._target = self.target()
        self.add_starters()
        doc.add_listener(self._on_document_event)
        self.jobs.finished.connect(self._on_job_finished)
        self.jobs.failed.connect(self._on_job_failed)
        self.jobs.cancelled.connect(self._on_job_cancelled)

    # -- the slider set ------------------------------------------------------------------
    def add_starters(self) -> None:
        """Show the starter sliders of every space (a document with no slider set yet)."""
        if self.doc.sliders:
            return
        specs = [self.starters[s] for s in STARTER_IDS if s in self.starters]
        specs += [latent_slider(space, a) for space in (VAE, GAN) for a in LATENT_STARTERS]
        for spec in specs:
            self.doc.sliders[spec.slider_id] = 0.0  # a default, not an edit: no undo entry
            self.sliders.add(spec, 0.0)

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
        for sid, value in list(self.sliders.values.items()):
            if value != 0:
                self.sliders.values[sid] = 0.0
        self.render()

    def reload_from_document(self) -> None:
        """Rebuild the set from ``doc.sliders`` (after a project is opened)."""
        for sid, data in self.doc.slider_specs.items():
            try:
                self.starters[sid] = SliderSpec.from_dict(data)
            except (KeyError, TypeError, ValueError):
                _log.warning("slider %r in the project is unreadable, left out", sid)
        self.sliders = SliderSet.from_values(self.doc.sliders, self.starters)
        self.add_starters()
        self._drag.clear()
        self._jobs.clear()
        self._update_target()
        self.sliders_reloaded.emit()

    def set_mode(self, mode: str) -> None:
        """Switch spaces; sliders of the same attribute carry their values over."""
        if mode == self.mode:
            return
        old, self.mode = self.mode, mode
        for spec in [s for s in self.sliders if self._in_mode(s, old) and s.attribute]:
            twin = self._twin(spec, mode)
            if twin is None:
                continue
            if twin.slider_id not in self.sliders.specs:
                self.sliders.add(twin, 0.0)
                self.doc.sliders[twin.slider_id] = 0.0
                self.slider_added.emit(twin)
            value = self.sliders.values.get(spec.slider_id, 0.0)
            if value and not self.sliders.values.get(twin.slider_id):
                self.sliders.values[twin.slider_id] = value
                self.value_changed.emit(twin.slider_id, value)
        self.clear_overlay()
        self.mode_changed.emit(mode)

    def _twin(self, spec: SliderSpec, mode: str) -> SliderSpec | None:
        """The slider of ``mode`` that changes the same attribute as ``spec``."""
        attribute = spec.attribute
        if attribute.startswith("example:"):
            return None
        if mode in LATENT_SPACES:
            return latent_slider(mode, attribute)
        for starter in self.starters.values():
            if starter.space == PROMPT and starter.attribute == attribute:
                return starter
        return None

    @staticmethod
    def _in_mode(spec: SliderSpec, mode: str) -> bool:
        return spec.space == mode if mode in LATENT_SPACES else spec.space not in LATENT_SPACES

    def specs_of_mode(self) -> list[SliderSpec]:
        return [s for s in self.sliders if self._in_mode(s, self.mode)]

    def _on_document_event(self, name: str, payload: dict[str, Any]) -> None:
        if name in ("active_layer_changed", "selection_changed", "layer_added",
                    "layer_removed", "canvas_resized") or (
                name == "layer_changed" and payload.get("what") == "props"):
            self._update_target()
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

    # -- the target ----------------------------------------------------------------------
    def target(self) -> SliderTarget:
        """What the sliders edit now (see the module docstring)."""
        doc = self.doc
        layer = doc.active_layer
        hidden = ""
        if layer is not None and layer.visible and layer.has_pixels():
            record_id = layer.record_id
            if record_id is not None and (record_id not in doc.log
                                          or doc.log.get(record_id).deleted):
                record_id = None
            name = f"“{layer.name}”"
            if doc.selection is not None:
                part = intersect(doc.selection, layer.rect)
                if part is not None and part != layer.rect:
                    return SliderTarget("selection", part, f"The selection in layer {name}",
                                        layer.id, record_id)
            return SliderTarget("layer", layer.rect, f"Layer {name}", layer.id, record_id)
        if layer is not None and not layer.visible:
            hidden = f" (layer “{layer.name}” is hidden)"
        if any(lay.visible for lay in doc.layers):
            rect = doc.selection or doc.rect
            where = "the selection of the flattened canvas" if doc.selection else \
                "the flattened canvas"
            return SliderTarget("canvas", rect, where[0].upper() + where[1:] + hidden)
        if self.base_request is not None:
            return SliderTarget("none", doc.rect, "The image last generated")
        return SliderTarget("none", doc.rect,
                            "Nothing to edit yet: generate or open an image" + hidden)

    def _update_target(self) -> None:
        target = self.target()
        if target != self._target:
            self._target = target
            self.clear_overlay()
            self.target_changed.emit(target)

    def target_image(self, target: SliderTarget | None = None) -> np.ndarray | None:
        """The target's pixels (RGB, over white), or None when there is none."""
        target = target or self.target()
        if target.kind == "none":
            return None
        x, y, w, h = target.rect
        if target.layer_id is not None:
            layer = self.doc.layer(target.layer_id)
            rgba = layer.pixels[y - layer.y:y - layer.y + h, x - layer.x:x - layer.x + w]
        else:
            rgba = self.doc.composite(target.rect)
        alpha = rgba[..., 3:4].astype(np.float32) / 255.0
        rgb = rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return np.round(rgb).astype(np.uint8)

    def _record_request(self, target: SliderTarget) -> GenerationRequest | None:
        if target.record_id is None:
            return None
        return self.doc.log.get(target.record_id).request

    def _default_model(self) -> str:
        if self.photo_model is not None:
            return self.photo_model()
        services = self.connection.services
        if services is not None:
            try:
                models = services.engine.list_models("diffusion")
            except Exception:  # noqa: BLE001 - a backend that cannot list: no photo edits
                models = []
            if models:
                return str(models[0].id)
        return ""

    def prompt_model(self) -> str:
        """The diffusion model the prompt sliders act on now ('' when none is known): the
        target's own generation's, else the last generation's, else the photo model."""
        target = self.target()
        recorded = self._record_request(target)
        if recorded is not None and recorded.model not in LATENT_MODELS.values():
            return recorded.model
        if target.kind == "none":
            return self.base_request.model if self.base_request is not None else ""
        return self._default_model()

    def unavailable_reason(self, spec: SliderSpec) -> str:
        """Why ``spec`` cannot do what its name says on the model it would act on now ('':
        nothing known against it; see ``SliderSpec.not_on``)."""
        if spec.space != PROMPT or not spec.not_on:
            return ""
        model = self.prompt_model()
        return spec.reason_not_on(model) if model else ""

    # -- dragging ------------------------------------------------------------------------
    def press(self, slider_id: str) -> None:
        """A drag starts: previews until the release commits."""
        self._drag[slider_id] = self.doc.sliders.get(slider_id, 0.0)

    def dragging(self, slider_id: str) -> bool:
        return slider_id in self._drag

    def move(self, slider_id: str, value: float, render: bool = True) -> bool:
        """Set a value; True while dragging (preview it), else it is a whole edit that is
        rendered and committed now (keyboard, wheel, the value typed, a groove click), or
        by the caller's ``render()`` when ``render`` is False (a burst of keys as one)."""
        self.sliders.values[slider_id] = float(value)
        if slider_id in self._drag:
            return True
        if render:
            self.render()
        return False

    def release(self, slider_id: str) -> float:
        """The drag ends: render and commit; returns the value released at."""
        self._drag.pop(slider_id, None)
        value = self.sliders.values.get(slider_id, 0.0)
        self.render()
        return value

    # -- requests ------------------------------------------------------------------------
    def set_base_request(self, request: GenerationRequest | None) -> None:
        """The image to edit while the document has no visible layer (a test, a script)."""
        self.base_request = request
        self._update_target()
        self.base_changed.emit(request)

    def set_canvas_image(self, pixels: Pixels | None) -> None:
        """An image for VAE/GAN mode to start from, whatever the canvas holds."""
        self.canvas_image = pixels

    def latent_start_image(self) -> Pixels | None:
        """What VAE/GAN mode encodes: the image set, else the target's pixels."""
        if self.canvas_image is not None:
            return self.canvas_image
        image = self.target_image()
        return Pixels.from_array(image) if image is not None else None

    def _plan(self) -> tuple[GenerationRequest, Rect] | None:
        """The request of the current values and the canvas area its image covers."""
        target = self.target()
        mode = self.mode
        if mode in LATENT_SPACES:
            recorded = self._record_request(target)
            if recorded is not None and recorded.model == LATENT_MODELS[mode] \
                    and target.kind == "layer":
                base = recorded.replace(sliders=())  # its init image: the layer before
            else:
                seed = self.base_request.seed if self.base_request is not None else 0
                base = GenerationRequest("", model=LATENT_MODELS[mode], seed=seed, steps=1,
                                         width=64, height=64)
                start = self.latent_start_image()
                if start is not None:  # the VAE encodes it, the GAN inverts it (once)
                    base = base.replace(task="img2img", init_image=start)
            specs = [s for s in self.sliders if s.space == mode]
            return SliderSet(specs, self.sliders.values).apply(base), target.rect
        specs = [s for s in self.sliders if s.space not in LATENT_SPACES]
        recorded = self._record_request(target)
        if recorded is not None and recorded.model not in LATENT_MODELS.values():
            source = self.doc.layer(target.layer_id).rect if target.layer_id else target.rect
            photo = any(s.space == INVERT for s in recorded.sliders)
            base = _strip(recorded)
            if (photo or self.edit_init) and base.init_image is not None:
                base = inversion_request(base)
        elif target.kind == "none":
            if self.base_request is None:
                return None
            source, base = target.rect, _strip(self.base_request)
            if self.edit_init and base.init_image is not None:
                base = inversion_request(base)
        else:  # an image no diffusion generation made: edit it as a photo
            model = self._default_model()
            image = self.target_image(target)
            if not model or image is None:
                return None
            source = target.rect
            w, h = (max(64, round(v / 8) * 8) for v in target.rect[2:])
            base = inversion_request(GenerationRequest(
                self.doc.prompt or "a portrait of a person", model=model, seed=0,
                steps=PHOTO_STEPS, width=w, height=h, task="img2img", strength=1.0,
                init_image=Pixels.from_array(image)))
        return SliderSet(specs, self.sliders.values).apply(base), source

    def current_request(self) -> GenerationRequest | None:
        """The request of the target with the sliders of the current mode applied."""
        plan = self._plan()
        return plan[0] if plan is not None else None

    def _submit(self, commit: bool) -> int | None:
        plan = self._plan()
        if plan is None:
            if commit:
                self._keep_values()
                self.message.emit(self.target().words + ".")
            return None
        request, source = plan
        if not commit and self.mode not in LATENT_SPACES:
            request = preview_request(request)
        if commit and self.mode in LATENT_SPACES and request.init_image is not None:
            request = request.replace(**_latent_commit_size(source))
        (self.render_requested if commit else self.preview_requested).emit(request)
        if not self.jobs.ready:
            if commit:
                self._keep_values()
            return None
        with self._lock:  # without a GUI thread, its events may come before submit returns
            job = self.jobs.submit(request, "render" if commit else "preview")
            self._jobs[job] = _Job(self.target(), source, dict(self.sliders.values), request,
                                   commit)
        self.busy_changed.emit(True)
        return job

    def submit_preview(self) -> None:
        """A quick preview of the current values (the newest replaces a stale one)."""
        self._submit(commit=False)

    def render(self) -> None:
        """Render the current values and commit the image to the target (one undo)."""
        self._submit(commit=True)

    def _keep_values(self, text: str = "Sliders") -> None:
        """Record the values as a document edit (no image to commit)."""
        changed = {k: v for k, v in self.sliders.values.items()
                   if self.doc.sliders.get(k) != v}
        if not changed:
            return
        with self.undo.macro(_edit_text(self.sliders, changed) or text):
            for sid, value in changed.items():
                self.undo.push(SetSliderValue(sid, value, merge_id=None))

    # -- results -------------------------------------------------------------------------
    def _result_pixels(self, job: _Job, image: np.ndarray) -> np.ndarray:
        """The RGBA pixels of ``job.target.rect`` that the engine's image gives."""
        from PIL import Image

        sx, sy, sw, sh = job.source
        rgb = np.ascontiguousarray(image[..., :3])
        if rgb.shape[:2] != (sh, sw):
            rgb = np.asarray(Image.fromarray(rgb).resize((sw, sh), Image.Resampling.LANCZOS))
        x, y, w, h = job.target.rect
        part = rgb[y - sy:y - sy + h, x - sx:x - sx + w]
        alpha = np.full(part.shape[:2] + (1,), 255, np.uint8)
        if job.target.layer_id is not None and self.doc.has_layer(job.target.layer_id):
            layer = self.doc.layer(job.target.layer_id)
            alpha = layer.pixels[y - layer.y:y - layer.y + h, x - layer.x:x - layer.x + w, 3:]
        return np.concatenate([part, alpha], axis=2)

    def clear_overlay(self) -> None:
        self.overlay_cleared.emit()

    def _commit(self, job: _Job, result: Any) -> None:
        target = job.target
        if target != self.target() and target.kind != "none":
            self.message.emit("The layer changed while the image was rendered: not applied.")
            return
        pixels = self._result_pixels(job, result.images[0])
        record = self.doc.log.add_result(result, target.record_id, "slider")
        changed = {k: v for k, v in job.values.items() if self.doc.sliders.get(k) != v}
        text = _edit_text(self.sliders, changed) or "Sliders"
        with self.undo.macro(text):
            for sid, value in changed.items():
                self.undo.push(SetSliderValue(sid, value, merge_id=None))
            layer_id = target.layer_id
            if layer_id is not None and not self.new_layer and self.doc.has_layer(layer_id):
                layer = self.doc.layer(layer_id)
                x, y = target.rect[0] - layer.x, target.rect[1] - layer.y
                self.undo.push(PaintPixels.from_patch(self.doc, layer_id, x, y, pixels,
                                                      text=text))
                if target.kind == "layer":
                    self.undo.push(SetLayerProps(layer_id, text=text, kind="generated",
                                                 record_id=record.id))
            else:
                name = f"{text} #{result.request.seed}"
                index = (self.doc.index_of(layer_id) + 1
                         if layer_id is not None and self.doc.has_layer(layer_id) else None)
                self.undo.push(ApplyGeneration(pixels, target.rect, record.id, name=name,
                                               index=index, text=text))
        self.clear_overlay()
        self.committed.emit(record.id)

    def use_frame(self, index: int) -> None:
        """Make a seed frame the current image: a new layer over the target area."""
        image = self.frames.get(index)
        request = self.frame_requests.get(index)
        if image is None or request is None:
            return
        target = self.target()
        from studio.core.jobs.events import GenerationResult

        record = self.doc.log.add_result(GenerationResult(request, [image]),
                                         target.record_id, "vary")
        rect = target.rect if target.kind != "none" else (0, 0, image.shape[1],
                                                          image.shape[0])
        job = _Job(target, rect, {}, request, True)
        pixels = self._result_pixels(job, image) if target.kind != "none" else image
        self.undo.push(ApplyGeneration(pixels, rect, record.id,
                                       name=f"Seed frame {index + 1}", text="Use seed frame"))

    # -- attribute vectors from examples ------------------------------------------------
    def mark_example(self, has_attribute: bool, image: np.ndarray | None = None) -> None:
        """Mark an image (default: the target) as having or lacking the attribute."""
        if image is None:
            image = self.last_preview if self.last_preview is not None else self.target_image()
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
        size = min(min(im.shape[:2]) for im in self.examples[True] + self.examples[False])
        with_, without = (np.stack([_square(im, size) for im in self.examples[flag]])
                          for flag in (True, False))

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
        self.frame_requests = dict(enumerate(requests))
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
    def _end_job(self, job_id: int) -> _Job | None:
        job = self._jobs.pop(job_id, None)
        if job is not None and not self._jobs:
            self.busy_changed.emit(False)
        return job

    def _on_job_finished(self, event: JobFinished) -> None:
        with self._lock:
            pass  # the job that finished is registered by now
        if self._example_job is not None and event.job_id == self._example_job[0]:
            self._on_example_built(event.result)
            return
        job = self._end_job(event.job_id)
        if job is not None:
            self.last_preview = event.result.images[0]
            self.preview_shown.emit(self.last_preview)
            if job.commit:
                self._commit(job, event.result)
            elif not self._drag and not any(j.commit for j in self._jobs.values()):
                pass  # a late preview after the release: the commit draws the result
            else:
                self.overlay_shown.emit(job.target.rect,
                                        self._result_pixels(job, event.result.images[0]))
        elif event.job_id in self._frame_jobs:
            index = self._frame_jobs.pop(event.job_id)
            self.frames[index] = event.result.images[0]
            self.frame_shown.emit(index, self.frames[index])

    def _on_job_failed(self, event: JobFailed) -> None:
        with self._lock:
            pass
        if self._example_job is not None and event.job_id == self._example_job[0]:
            self._example_job = None
            self.message.emit(event.message)
        job = self._end_job(event.job_id)
        if job is not None or event.job_id in self._frame_jobs:
            self._frame_jobs.pop(event.job_id, None)
            if job is not None and job.commit:
                self._revert_values()
            self.message.emit(event.message)

    def _on_job_cancelled(self, event: JobCancelled) -> None:
        job = self._end_job(event.job_id)
        if job is not None and job.commit:
            self._revert_values()

    def _revert_values(self) -> None:
        for sid, value in list(self.sliders.values.items()):
            kept = float(self.doc.sliders.get(sid, 0.0))
            if value != kept:
                self.sliders.values[sid] = kept
                self.value_changed.emit(sid, kept)
        self.clear_overlay()


def _strip(request: GenerationRequest) -> GenerationRequest:
    """``request`` as it was before any slider (its own slider entries go)."""
    return request.replace(batch_size=1, model_hash="", device="", dtype="", sliders=(),
                           loras=(), variation_seed=None, variation_strength=0.0)


def _edit_text(sliders: SliderSet, changed: dict[str, float]) -> str:
    parts = [f"{sliders.specs[sid].label} {value:+.2f}" for sid, value in changed.items()
             if sid in sliders.specs]
    return ("Slider " + ", ".join(parts))[:80] if parts else ""


def _square(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    rgb = np.ascontiguousarray(image[..., :3])
    if rgb.shape[:2] == (size, size):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.LANCZOS))


__all__ = ["DIFFUSION", "GAN", "SliderSession", "SliderTarget", "VAE"]
