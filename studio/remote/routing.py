"""``RoutingEngine``: this computer's models and the servers' models in one backend.

When the studio has both a local engine (torch + diffusers) and ComfyUI servers, the window
and ``studio models`` list the models of both, each with where it lives, and every job goes
where its model is: a local model's job runs on the local engine (one at a time, as it owns
the device), a server model's on the server pool (one per server). Both share the one queue
of the job runner (``studio.core.jobs.runner.Placing``: one place for this computer, one per
server).

The composite implements the same engine protocol (``studio.core.engines.Engine``) over any
two backends that do: it names no concrete backend (the composition roots hand them in) and
imports no torch. ``features_for(model)`` says what the backend of one model can do, so the
window greys out per model what that model's backend cannot do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

import numpy as np

from studio.core.engines import Engine, EngineFeatures, EngineServices
from studio.core.errors import StudioError
from studio.core.jobs.cancel import CancelToken
from studio.core.jobs.events import GenerationResult, StepProgress
from studio.core.jobs.request import GenerationRequest
from studio.core.models import DeviceInfo, ModelInfo

LOCAL_LOCATION = "this computer"
SERVER_DEVICE = "comfyui:"  # how a server's result names where it ran (request.device)
# What the window offers whatever the model is: the tools of the app, not of one model.
APP_LEVEL = ("upscaling", "model_management")


def local_engine_installed() -> bool:
    """Whether this install has the local engine (torch and diffusers), found without
    importing them (the thin install drives servers only, and lists only theirs)."""
    from importlib.util import find_spec

    return all(find_spec(name) is not None for name in ("torch", "diffusers"))


def is_server_model(model: ModelInfo) -> bool:
    """Whether ``model`` lives on a ComfyUI server (``studio.remote.engine`` lists them)."""
    return model.source.startswith("comfyui")


def location(model: ModelInfo) -> str:
    """Where ``model`` lives: ``this computer``, or its server(s) (``127.0.0.1:8188``)."""
    if not is_server_model(model):
        return LOCAL_LOCATION
    hosts = [part.split(" · ", 1)[0].split("://", 1)[-1] for part in model.path.split(", ")]
    return ", ".join(dict.fromkeys(h for h in hosts if h)) or "a server"


def merged_features(local: EngineFeatures, remote: EngineFeatures) -> EngineFeatures:
    """What the two backends can do together (a feature is on where either has it)."""
    changes: dict[str, Any] = {}
    for f in fields(EngineFeatures):
        a, b = getattr(local, f.name), getattr(remote, f.name)
        if isinstance(a, bool):
            changes[f.name] = a or b
        elif f.name in ("families", "schedulers", "regions_families"):
            changes[f.name] = tuple(dict.fromkeys((*a, *b)))
    why = tuple((k, v) for k, v in local.why_not if not changes.get(k, False))
    return replace(local, **changes, backend=f"{local.backend}+{remote.backend}", why_not=why)


class RoutingEngine:
    """Local models on the local engine, server models on the servers (implements
    ``studio.core.engines.Engine``, the job runner's ``Placing`` and ``ModelRouting``).

    Parameters
    ----------
    local
        The engine of this computer's models (one job at a time).
    remote
        The engine of the servers' models (``studio.remote.engine.RemoteEngine``: one job
        per server, ``place``/``unplace``, ``server_status``).
    """

    def __init__(self, local: Engine, remote: Any) -> None:
        self.local = local
        self.remote = remote
        self._lock = threading.Lock()
        self._local_busy = 0  # the job (its request's id) holding this computer's place
        self._where: dict[str, str] = {}  # model id -> "local" or "remote" (last listed)

    # -- what it can do --------------------------------------------------------------------
    @property
    def features(self) -> EngineFeatures:
        """What the two can do together (the window asks ``features_for`` per model)."""
        return merged_features(self.local.features, self.remote.features)

    def features_for(self, model_id: str) -> EngineFeatures:
        """What the backend of ``model_id`` can do; the tools of the app (upscaling, the
        model manager of this computer's folders) stay as the two together offer them."""
        own = self.remote.features if self.backend_for(model_id) == "remote" \
            else self.local.features
        both = self.features
        app = {name: getattr(both, name) for name in APP_LEVEL}
        why = tuple((k, v) for k, v in own.why_not if k not in app or not app[k])
        return replace(own, **app, why_not=why)

    # -- models ----------------------------------------------------------------------------
    def list_models(self, kind: str | None = None, refresh: bool = False) -> list[ModelInfo]:
        """This computer's models first, then the servers' (each knows where it lives:
        ``location``). A server that does not answer hides only its own models."""
        local = _listed(self.local, kind, refresh)
        try:
            remote = _listed(self.remote, kind, refresh)
        except StudioError:
            remote = []  # the status bar says why the servers are out
        local_ids = {m.id for m in local}
        with self._lock:
            for m in local:
                self._where[m.id] = "local"
            for m in remote:
                if m.id not in local_ids:  # a name both have: this computer's
                    self._where[m.id] = "remote"
        return local + remote

    def models(self, kind: str | None = None, refresh: bool = False) -> list[ModelInfo]:
        """As ``list_models`` (the name ``studio models`` asks a model registry by)."""
        return self.list_models(kind, refresh)

    def default_model(self) -> ModelInfo | None:
        return self.local.default_model() or self.remote.default_model()

    def backend_for(self, model_id: str, device: str = "") -> str:
        """``"remote"`` for a server's model (or a request pinned to a server by
        ``device``), else ``"local"``."""
        if device.startswith(SERVER_DEVICE):
            return "remote"
        with self._lock:
            known = self._where.get(model_id)
        if known is not None:
            return known
        try:  # a model not listed yet: a path or hub id this computer has, or else a
            self.local.resolve_model(model_id)  # server's (asked no network here: the
        except StudioError:  # window asks on its own thread; the servers' engine says in
            return "remote"  # one line if none has it)
        with self._lock:
            self._where[model_id] = "local"
        return "local"

    def _engine_for(self, request: GenerationRequest) -> Any:
        return self.remote if self.backend_for(request.model, request.device) == "remote" \
            else self.local

    def resolve_model(self, model_id: str) -> ModelInfo:
        return (self.remote if self.backend_for(model_id) == "remote" else
                self.local).resolve_model(model_id)

    # -- the device --------------------------------------------------------------------------
    def device_info(self) -> DeviceInfo:
        """This computer's device (the status bar shows the servers beside it)."""
        return self.local.device_info()

    def model_device_info(self, model_id: str) -> DeviceInfo:
        """Where ``model_id`` runs and in which precision."""
        if self.backend_for(model_id) == "remote":
            return self.remote.device_info()
        return self.local.model_device_info(model_id)

    def memory_in_use(self) -> int:
        return self.local.memory_in_use()

    def server_status(self, poll: bool = True) -> list:
        return self.remote.server_status(poll)

    # -- places: this computer's one, one per server ------------------------------------------
    @property
    def places(self) -> int:
        return 1 + int(getattr(self.remote, "places", 1))

    def place(self, request: GenerationRequest) -> bool:
        if self._engine_for(request) is self.remote:
            return bool(self.remote.place(request))
        with self._lock:
            if self._local_busy:
                return False
            self._local_busy = id(request)
            return True

    def unplace(self, request: GenerationRequest) -> None:
        if self._engine_for(request) is self.remote:
            self.remote.unplace(request)
            return
        with self._lock:
            if self._local_busy == id(request):
                self._local_busy = 0

    # -- generation ------------------------------------------------------------------------
    def generate(self, request: GenerationRequest, on_step: Callable[[StepProgress], None],
                 cancel: CancelToken) -> GenerationResult:
        """Run ``request`` where its model is (a server's model, or a request pinned to a
        server: the servers; else this computer)."""
        return self._engine_for(request).generate(request, on_step, cancel)

    @property
    def controls(self) -> RoutingControls:
        """The control models of both (``list``), and of the backend of one diffusion model
        (``fitting``): the window offers a server model the servers' ControlNets only."""
        return RoutingControls(self)

    def load(self, model_id: str) -> Any:
        """Load a local model ahead of its first job (the window's preload)."""
        return self.local.load(model_id)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.remote.close()


class RoutingControls:
    """``engine.controls`` of a ``RoutingEngine``: this computer's control models and the
    servers' ControlNets, each offered for the models of its own backend. Reference images
    and depth estimation are this computer's (servers take neither)."""

    def __init__(self, routing: RoutingEngine) -> None:
        self._routing = routing
        self._local = getattr(routing.local, "controls", None)
        self._remote = getattr(routing.remote, "controls", None)

    def list(self) -> list[Any]:
        return [*(self._local.list() if self._local is not None else []),
                *(self._remote.list() if self._remote is not None else [])]

    def fitting(self, model: ModelInfo) -> list[Any]:
        """The control models that fit ``model`` on the backend that runs it."""
        own = self._remote if self._routing.backend_for(model.id) == "remote" else self._local
        if own is None:
            return []
        fitting = getattr(own, "fitting", None)
        return list(fitting(model)) if fitting is not None else []

    @property
    def references(self) -> Any:
        return getattr(self._local, "references", None)

    @property
    def estimate_depth(self) -> Any:
        return getattr(self._local, "estimate_depth", None)


def _listed(engine: Any, kind: str | None, refresh: bool) -> list[ModelInfo]:
    """``engine``'s models of ``kind``; ``refresh``: read again (the protocol's
    ``list_models(kind)``; the local and remote engines also take ``refresh``)."""
    if not refresh:
        return engine.list_models(kind)
    try:
        return engine.list_models(kind, refresh=True)
    except TypeError:  # a backend without ``refresh``
        return engine.list_models(kind)


class RoutingUpscaling:
    """Super-resolution with this computer's upscalers and the servers' (by name)."""

    def __init__(self, local: Any, remote: Any) -> None:
        self.local, self.remote = local, remote

    def upscaler_names(self) -> list[str]:
        names = list(self.local.upscaler_names()) if self.local is not None else []
        try:
            names += [n for n in self.remote.upscaler_names() if n not in names]
        except StudioError:
            pass
        return names

    def upscale(self, image: np.ndarray, values: dict[str, Any],
                on_step: Callable[[StepProgress], None], cancel: CancelToken) -> np.ndarray:
        name = str(values.get("model", "") or "")
        local = list(self.local.upscaler_names()) if self.local is not None else []
        if self.local is not None and (not name or name in local or name.lower() == "lanczos"):
            return self.local.upscale(image, values, on_step, cancel)
        return self.remote.upscale(image, values, on_step, cancel)


def routing_services(local: EngineServices, remote: EngineServices) -> EngineServices:
    """One backend over this computer's engine and the servers': models of both, each job
    where its model is; the model manager, directions of this computer."""
    engine = RoutingEngine(local.engine, remote.engine)
    upscaling = RoutingUpscaling(local.upscaling, remote.upscaling) \
        if local.upscaling is not None or remote.upscaling is not None else None
    return EngineServices(engine=engine, folders=local.folders, upscaling=upscaling,
                          directions=local.directions, routing=engine)
