"""``Connection``: the backend this window talks to, what it can do, and whether it is ready."""

from __future__ import annotations

from psygnal import Signal

from studio.core.engines import EngineFeatures, EngineServices
from studio.session.jobs import JobQueue, Runner

LOADING = "loading"
READY = "ready"
FAILED = "failed"

LOADING_TEXT = "The engine is still loading; try again in a moment."
#: What the window may do before a backend is connected: nothing that needs one.
NO_BACKEND = EngineFeatures(
    backend="none", inpainting=False, img2img=False,
    why_not=tuple((name, LOADING_TEXT) for name in (
        "inpainting", "img2img", "control", "lora", "prompt_sliders", "latent_sliders",
        "example_directions", "upscaling", "model_management", "live_mode")))

class Connection:
    """The connection to one backend: ``EngineServices`` and its job queue.

    States: ``loading`` until ``connect`` (or ``fail``), then ``ready`` or ``failed``.
    """

    state_changed = Signal(str)
    connected = Signal(object)  # EngineServices
    disconnected = Signal()

    def __init__(self, jobs: JobQueue | None = None) -> None:
        self.jobs = jobs if jobs is not None else JobQueue()
        self.services: EngineServices | None = None
        self.state = LOADING
        self.message = ""  # why the backend failed to start
        self.model = ""  # the model chosen (a backend of several: its own backend's features)

    @property
    def ready(self) -> bool:
        return self.state == READY and self.services is not None

    @property
    def features(self) -> EngineFeatures:
        services = self.services
        if services is None:
            return NO_BACKEND
        if services.routing is not None and self.model:  # local + servers: the model's own
            return services.routing.features_for(self.model)
        return services.engine.features

    def select_model(self, model_id: str) -> None:
        """The window's model changed: on a backend of several (this computer and servers)
        what is on follows that model's backend (``state_changed`` re-greys the window)."""
        if model_id == self.model:
            return
        self.model = model_id
        if self.services is not None and self.services.routing is not None:
            self.state_changed.emit(self.state)

    def can(self, feature: str) -> bool:
        """Whether ``feature`` (an ``EngineFeatures`` field) is usable now."""
        services = self.services
        if services is None or self.features.reason(feature):
            return False
        # The service a feature needs besides its flag (a backend may say yes, hand none).
        needed = {"upscaling": services.upscaling, "model_management": services.folders,
                  "example_directions": services.directions}
        return needed.get(feature, True) is not None

    def reason(self, feature: str) -> str:
        """Why ``feature`` is off ("" when it is on): the tooltip of what it greys out."""
        if self.can(feature):
            return ""
        if self.state == FAILED:
            return f"The engine is unavailable: {self.message}"
        if self.services is None:
            return LOADING_TEXT
        return self.features.reason(feature) or f"The {self.features.backend} backend " \
            "does not offer this."

    # -- actions -------------------------------------------------------------------------
    def connect(self, services: EngineServices, runner: Runner | None) -> None:
        """The backend is ready: its services, and the runner that owns its thread."""
        self.services = services
        self.jobs.attach(runner)
        self.state, self.message = READY, ""
        self.state_changed.emit(self.state)
        self.connected.emit(services)

    def fail(self, message: str) -> None:
        """The backend could not start: say why; everything that needs it stays off."""
        self.state, self.message = FAILED, message
        self.state_changed.emit(self.state)

    def disconnect(self) -> None:
        """Stop using the backend (before its runner shuts down): cancel what is queued."""
        self.jobs.detach()
        self.jobs.cancel_all()
        self.disconnected.emit()
