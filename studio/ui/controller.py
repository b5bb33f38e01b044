"""``GenerationController``: turns the prompt panel and the canvas into jobs, and results
into layers. It lives in the GUI thread and only reacts to the bridge's signals."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol

from PySide6.QtCore import QObject, QTimer, Signal

from studio.core.document.edits import AddLayer, ApplyGeneration, ResizeCanvas
from studio.core.document.layers import Document, Layer, Rect
from studio.core.document.undo import UndoStack
from studio.core.errors import StudioError
from studio.core.jobs.events import JobCancelled, JobFailed, JobFinished, JobProgress, JobStarted
from studio.core.jobs.request import GenerationRequest
from studio.core.project.generation_log import GenerationRecord
from studio.session.connection import FAILED, Connection
from studio.ui.bridge import JobBridge
from studio.ui.canvas import CanvasView
from studio.ui.control_layers import control_layers_hidden, marks_for, request_controls
from studio.ui.generation import (
    MODE_TEXT,
    GenerationPlan,
    detect_mode,
    plan_generation,
    refines,
)
from studio.ui.prompt_panel import PromptPanel
from studio.ui.widgets import MessageBanner


class Runner(Protocol):
    def submit(self, request: GenerationRequest, channel: str = "render") -> int: ...

    def cancel(self, job_id: int) -> bool: ...

    def cancel_current(self) -> bool: ...

    def cancel_all(self) -> None: ...


EMPTY_PROMPT_TEXT = ("The prompt is empty: the model would draw whatever it likes. Type what "
                     "you want to see, or generate anyway.")
INIT_STRENGTH = 0.75  # Strength set by "Use as init image" when it was 1 (replace)

@dataclass(frozen=True)
class PendingJob:
    plan: GenerationPlan
    parent_id: str | None = None
    relation: str = ""


class GenerationController(QObject):
    """Submits requests, draws previews, applies results, reports errors."""

    generation_applied = Signal(str)  # record id
    busy_changed = Signal(bool)

    def __init__(self, doc: Document, undo: UndoStack, canvas: CanvasView, prompt: PromptPanel,
                 bridge: JobBridge, banner: MessageBanner, connection: Connection,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.doc, self.undo, self.canvas, self.prompt = doc, undo, canvas, prompt
        self.banner = banner
        self.connection = connection
        self._pending: dict[int, PendingJob] = {}
        self._running: int | None = None
        self.rects: dict[str, Rect] = {}  # record id -> where its image landed
        self._deferred: list[JobFinished] = []  # results that arrived during a stroke
        self.empty_prompt_ok = False  # an empty prompt asks once; after "Generate anyway", no
        self._generate_when_ready = False  # Generate was asked for while the engine loaded
        # ``studio.ui.staging.StagingArea`` (set by the window): a batch's results wait there
        # as candidates instead of landing as layers.
        self.staging: Any = None
        canvas.stroke_ended.connect(self._on_canvas_stroke_ended)
        bridge.job_started.connect(self._on_job_started)
        bridge.job_progressed.connect(self._on_job_progressed)
        bridge.job_finished.connect(self._on_job_finished)
        bridge.job_failed.connect(self._on_job_failed)
        bridge.job_cancelled.connect(self._on_job_cancelled)
        self._mode_timer = QTimer(self, singleShot=True, interval=150)
        self._mode_timer.timeout.connect(self._update_mode)
        doc.add_listener(self._on_document_event)
        prompt.strength_slider.valueChanged.connect(lambda _v: self._mode_timer.start())
        self._update_mode()

    # -- mode label ----------------------------------------------------------------------
    def _on_document_event(self, name: str, payload: dict[str, Any]) -> None:
        if name in ("layer_changed", "layer_added", "layer_removed", "selection_changed",
                    "canvas_resized"):
            self._mode_timer.start()

    def _update_mode(self) -> None:
        strength = float(self.prompt.strength_slider.value())
        covered = bool(self.doc.layers or self.doc.selection)
        with control_layers_hidden(self.doc):  # a control layer is no content to refine
            mode = detect_mode(self.doc, strength) if covered else "txt2img"
        where = "selection" if self.doc.selection else "canvas"
        text = f"{MODE_TEXT[mode]} ({where})"
        if mode == "txt2img" and covered and self.doc.layers:
            text = f"{MODE_TEXT[mode]}: a new layer over the {where} (Strength below 1 refines)"
        self.prompt.set_mode_text(text)

    # -- submitting ----------------------------------------------------------------------
    @property
    def runner(self) -> Runner | None:
        """Where jobs go: the connection's queue, once a backend is ready."""
        jobs = self.connection.jobs
        return jobs if jobs.ready else None

    def _on_connection_state(self, state: str) -> None:
        self.connection.state_changed.disconnect(self._on_connection_state)
        wanted, self._generate_when_ready = self._generate_when_ready, False
        if wanted and state != FAILED:
            # After the window's own handlers (they fill the model picker from the engine).
            QTimer.singleShot(0, self, self.generate)

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    def generate(self) -> list[int]:
        """Queue the prompt panel's settings (batch count jobs, consecutive seeds)."""
        if self.runner is None:
            if self.connection.state == FAILED:
                self.banner.show_message(
                    f"Generation is unavailable: {self.connection.message}")
            else:
                # Generate right after start (the README's first step): kept, and run with
                # what the panel holds then, once the engine is ready.
                if not self._generate_when_ready:
                    self._generate_when_ready = True
                    self.connection.state_changed.connect(self._on_connection_state)
                self.banner.show_message("The engine is still loading: this generation "
                                         "starts as soon as it is ready.", "info", 4000)
            return []
        values = self.prompt.values()
        if not values["model"]:
            self.banner.show_message("No diffusion model is available. See Models ▸ Adding "
                                     "models.")
            return []
        if not values["prompt"] and not self.empty_prompt_ok:
            self.banner.show_message(EMPTY_PROMPT_TEXT, "info",
                                     action=("Generate anyway", self._on_generate_anyway))
            return []
        with control_layers_hidden(self.doc):  # a control layer is no content to refine
            plan = _plan_off_thread_if_large(self.doc, values["width"], values["height"],
                                             float(values["strength"]))
        seed = self.prompt.take_seed()
        values.update(width=plan.width, height=plan.height, task=plan.task,
                      init_image=plan.init_image, mask=plan.mask)
        if self.connection.features.regions:  # the region layers, cut to the plan's rect
            regions = self.doc.regions(plan.rect, (plan.width, plan.height))
            model = self.prompt.model  # a family that refuses them: left out, with the reason
            why = self.connection.features.regions_reason(model.family if model else "")
            if not why:
                values["regions"] = regions
            elif regions:
                self.banner.show_message("Regional prompts are left out: " + why, "info", 5000)
        if self.connection.features.control:  # the control layers, cut to the plan's rect
            values["controls"] = request_controls(self.doc, plan.rect, (plan.width, plan.height))
        elif any(marks_for(self.doc)):
            self.banner.show_message("Control layers are left out: "
                                     + self.connection.features.reason("control"), "info", 5000)
        ids = []
        try:
            for i in range(self.prompt.batch_count):
                values["seed"] = (seed + i) % 2**32
                ids.append(self.submit(GenerationRequest(**values), plan))
        except StudioError as err:
            self.banner.show_message(str(err))
        if self.staging is not None and len(ids) > 1:
            self.staging.expect(ids)
        return ids

    def _on_generate_anyway(self) -> None:
        """The user asked for an image from an empty prompt: do it, and do not ask again."""
        self.empty_prompt_ok = True
        self.generate()

    def submit(self, request: GenerationRequest, plan: GenerationPlan,
               parent_id: str | None = None, relation: str = "") -> int:
        assert self.runner is not None
        job_id = self.runner.submit(request, "render")
        self._pending[job_id] = PendingJob(plan, parent_id, relation)
        self.busy_changed.emit(True)
        return job_id

    def vary(self, record: GenerationRecord) -> int | None:
        """Run a record's request again with a new variation seed."""
        if self.runner is None:
            return None
        rect = self.rects.get(record.id) or self.doc.generation_rect
        req = record.request
        request = req.replace(variation_seed=random.randint(0, 2**32 - 1),
                              variation_strength=0.25, device="", dtype="", model_hash="")
        plan = GenerationPlan(record.task if req.task == "inpaint" else req.task, rect,
                              req.width, req.height, req.init_image, req.mask)
        try:
            return self.submit(request, plan, record.id, "vary")
        except StudioError as err:
            self.banner.show_message(str(err))
            return None

    def cancel_current(self) -> None:
        if self.runner is not None:
            self.runner.cancel_current()

    def cancel_all(self) -> None:
        if self.runner is not None:
            self.runner.cancel_all()

    # -- placing images ------------------------------------------------------------------
    def place(self, record: GenerationRecord, rect: Rect | None = None,
              text: str = "Place generation") -> None:
        image = self.doc.log.image(record.image_hashes[0])
        rect = rect or (0, 0, image.shape[1], image.shape[0])
        self.undo.push(ApplyGeneration(image, rect, record.id, name=_layer_name(record.request),
                                       text=text))

    def use_as_init(self, record: GenerationRecord) -> None:
        """Put the image over the generation region, so the next run is image to image."""
        image = self.doc.log.image(record.image_hashes[0])
        rect = self.doc.generation_rect
        with self.undo.macro("Use as init image"):
            if not self.doc.layers and self.doc.selection is None:
                self.undo.push(ResizeCanvas(image.shape[1], image.shape[0]))
                rect = (0, 0, image.shape[1], image.shape[0])
            self.place(record, rect)
        self.prompt.apply_request(record.request)
        if not refines(float(self.prompt.strength_slider.value())):
            self.prompt.set_values({"strength": INIT_STRENGTH})  # Strength 1 would replace it

    def add_image_layer(self, pixels: Any, name: str) -> None:
        """Add an opened image as a layer; an empty document takes the image's size."""
        def build() -> AddLayer:  # the layer and its undo copy: 0.2 s for 8000 x 8000
            return AddLayer(Layer(name=name, pixels=pixels, kind="image"), text=f"Add {name}")

        height, width = pixels.shape[:2]
        if width * height > LARGE_REGION:
            from studio.ui.busy import run_while_painting

            add = run_while_painting(build)  # off the GUI thread, which keeps painting
        else:
            add = build()
        with self.undo.macro(f"Open {name}"):
            if not self.doc.layers:
                self.undo.push(ResizeCanvas(add.initial.width, add.initial.height))
            self.undo.push(add)

    # -- runner events -------------------------------------------------------------------
    def _on_job_started(self, event: JobStarted) -> None:
        if event.job_id in self._pending:
            self._running = event.job_id

    def _on_job_progressed(self, event: JobProgress) -> None:
        job = self._pending.get(event.job_id)
        if job is not None and event.preview is not None:
            self.canvas.set_preview(job.plan.rect, event.preview)

    def _on_job_finished(self, event: JobFinished) -> None:
        if self.canvas.is_stroking and event.job_id in self._pending:
            self._deferred.append(event)  # applied when the stroke ends, as its own entry
            return
        job = self._end(event.job_id)
        if job is None:
            return
        result = event.result
        plan = job.plan
        record = self.doc.log.add_result(result, job.parent_id, job.relation, mode=plan.mode)
        self.rects[record.id] = plan.rect
        if self.staging is not None and self.staging.stage(event.job_id, record, plan):
            return  # a batch's result: a candidate over the canvas, kept or discarded there
        prepared = _prepare_large(result.images, plan)  # a large region: off this thread
        with self.undo.macro(f"Generate: {result.request.prompt[:40]}"):
            rect = plan.rect
            if plan.canvas_size is not None:
                self.undo.push(ResizeCanvas(*plan.canvas_size))
            x, y, w, h = rect
            if x < 0 or y < 0 or x + w > self.doc.width or y + h > self.doc.height:
                # Outpainting past the edge: the canvas grows to hold the region.
                dx, dy = max(0, -x), max(0, -y)
                self.undo.push(ResizeCanvas(max(self.doc.width + dx, x + w + dx),
                                            max(self.doc.height + dy, y + h + dy), dx, dy))
                rect = (x + dx, y + dy, w, h)
            for i, image in enumerate(result.images):
                self.undo.push(ApplyGeneration(image, rect, record.id,
                                               name=_layer_name(result.request, i,
                                                                _plan_task(plan)),
                                               mask=plan.layer_mask,
                                               prepared=prepared[i] if prepared else None))
        if plan.canvas_size is not None:
            self.canvas.fit()  # the first image of an empty document: show all of it
        self.generation_applied.emit(record.id)

    def _on_canvas_stroke_ended(self) -> None:
        deferred, self._deferred = self._deferred, []
        for event in deferred:
            self._on_job_finished(event)

    def _on_job_failed(self, event: JobFailed) -> None:
        if self._end(event.job_id) is not None or event.channel == "render":
            self.banner.show_message(event.message)

    def _on_job_cancelled(self, event: JobCancelled) -> None:
        self._end(event.job_id)

    def _end(self, job_id: int) -> PendingJob | None:
        job = self._pending.pop(job_id, None)
        if job_id == self._running:
            self._running = None
            self.canvas.clear_preview()
        if not self._pending:
            self.busy_changed.emit(False)
        return job


def _layer_name(request: GenerationRequest, index: int = 0, task: str = "") -> str:
    from studio.core.document.operations import generated_layer_name

    return generated_layer_name(request, index, task)  # task, a short prompt, the seed


#: A result for a region larger than this (pixels) is resized into its layer on a worker
#: thread while the window keeps painting (an 8000x8000 canvas: seconds of work).
LARGE_REGION = 2048 * 2048


def _plan_off_thread_if_large(doc: Document, width: int, height: int,
                              strength: float) -> GenerationPlan:
    """``plan_generation``; for a large region (reading every pixel of an 8000x8000
    canvas) on a worker thread while the window keeps painting (input waits)."""
    rect = doc.generation_rect
    if not doc.layers or rect[2] * rect[3] <= LARGE_REGION:
        return plan_generation(doc, width, height, strength)
    from studio.ui.busy import run_while_painting

    return run_while_painting(plan_generation, doc, width, height, strength)


def _prepare_large(images: Any, plan: GenerationPlan) -> list[Any] | None:
    """The layers' pixels of a large region's results, made off the GUI thread."""
    from studio.ui.busy import run_while_painting

    if plan.rect[2] * plan.rect[3] <= LARGE_REGION:
        return None
    return run_while_painting(lambda: [ApplyGeneration.prepare(image, plan.rect,
                                                               plan.layer_mask)
                                       for image in images])


def _plan_task(plan: GenerationPlan) -> str:
    """``"outpaint"`` for an inpaint that fills past the canvas's edge (named as such)."""
    return "outpaint" if plan.mode == "outpaint" else ""
