"""Composition root of the GUI: settings, the engine (made after the window shows), the window.

Only this module and ``studio.cli`` name the concrete backend; the window gets an
``EngineServices`` (``studio.core.engines``) through its session, never the engine class.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from studio.core.engines import EngineServices

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from studio.core.jobs.runner import Work
    from studio.settings import Settings


def run_app(settings: Settings, paths: list[str]) -> int:
    """Open the studio window on ``paths`` and run until it closes.

    ``settings`` are the run's settings (``studio.settings.load_settings``: the file, the
    ``STUDIO_*`` environment and the command's flags).
    """
    from studio.ui.launch import run_gui

    def services_factory() -> EngineServices:
        if settings.servers:  # ComfyUI servers (studio.remote), with this computer's models
            from studio.remote.routing import local_engine_installed
            from studio.remote.services import remote_services

            remote = remote_services(settings)
            if not local_engine_installed():  # the thin install: no torch is imported
                return remote
            from studio.engine.services import local_services
            from studio.remote.routing import routing_services

            try:
                local = local_services(settings)
            except Exception:  # a broken torch install: the servers still work
                log.exception("the local engine did not start; generating on servers only")
                return remote
            # Local models and server models side by side, each job where its model is.
            return routing_services(local, remote)
        # Heavy imports (torch, diffusers) happen here, on the loader thread, after the
        # window is up.
        from studio.engine.services import local_services

        return local_services(settings)

    def preload(services: EngineServices, model_id: str) -> Work | None:
        if settings.servers:  # a server loads its models itself
            from studio.remote.routing import RoutingEngine

            engine = services.engine
            if not isinstance(engine, RoutingEngine) or engine.backend_for(model_id) != "local":
                return None
        return local_preload(services, model_id)

    code = run_gui(services_factory, ["studio"], list(paths), preload=preload)
    from studio.ui.launch import end_process

    end_process(code)  # saved and stopped: no wait for the teardown of torch
    return code  # (not reached)


def local_preload(services: EngineServices, model_id: str) -> Work | None:
    """The work that loads the model shown in the window on the engine thread while the
    user writes the prompt (the local backend only). The status bar's Cancel stops it
    within a moment (the load checks the job's cancel token between its parts); a cancelled
    load keeps nothing, and the next Generate loads the model again."""
    from studio.core.errors import CancelledError, StudioError
    from studio.engine.engine import Engine
    from studio.remote.routing import RoutingEngine

    engine = services.engine
    if isinstance(engine, RoutingEngine):  # this computer's model of local + servers
        engine = engine.local
    if not isinstance(engine, Engine):
        return None

    def work(_on_step: object, _cancel: object) -> bool:
        try:
            engine.load(model_id)
        except CancelledError:
            raise
        except StudioError:
            return False  # the Generate that needs it says why, in its own words
        return True

    return work
