"""``remote_services``: the remote backend built from the settings (``settings.servers``).

The composition roots (``studio.app``, ``studio.cli``) call it instead of ``local_services``
when the user named servers. Imports no torch: a machine without it drives remote GPUs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from studio.core.engines import EngineServices
from studio.core.jobs.cancel import CancelToken
from studio.core.jobs.events import StepProgress
from studio.remote.client import ServerConfig, check_url
from studio.remote.engine import RemoteEngine


class RemoteSettings(Protocol):
    """What ``remote_services`` reads of the settings (``studio.settings.Settings`` has it)."""

    @property
    def servers(self) -> Sequence[str]: ...


class RemoteUpscaling:
    """Super-resolution with the servers' upscale models (``values`` as the local one's)."""

    def __init__(self, engine: RemoteEngine) -> None:
        self.engine = engine

    def upscaler_names(self) -> list[str]:
        return [m.name for m in self.engine.list_models("upscaler")]

    def upscale(self, image: np.ndarray, values: dict[str, Any],
                on_step: Callable[[StepProgress], None], cancel: CancelToken) -> np.ndarray:
        if values.get("refine") and float(values.get("strength", 0.3)) > 0:
            return self.engine.hires_fix(image, values, on_step, cancel)  # one workflow
        return self.engine.upscale(image, str(values.get("model", "")),
                                   float(values.get("scale", 2.0)), on_step, cancel)


def server_configs(settings: Any) -> list[ServerConfig]:
    """The servers the settings name, with their token and trust choice."""
    token = str(getattr(settings, "server_token", "") or "")
    trust = bool(getattr(settings, "trust_servers", False))
    return [ServerConfig(check_url(url), token=token, trust=trust) for url in settings.servers]


def remote_services(settings: RemoteSettings) -> EngineServices:
    """The remote engine over ``settings.servers`` (one queue), with upscaling."""
    engine = RemoteEngine(server_configs(settings))
    return EngineServices(engine=engine, folders=None, upscaling=RemoteUpscaling(engine),
                          directions=None)
