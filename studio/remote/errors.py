"""What can go wrong with a ComfyUI server, each as one line the user can act on."""

from __future__ import annotations

from studio.core.errors import ImageReadError, ModelNotFoundError, StudioError


class ServerUnreachableError(StudioError):
    """Nothing answers at the address (refused, no route, timed out, bad TLS certificate)."""

    kind = "server-unreachable"


class NotComfyUIError(StudioError):
    """Something answers at the address, but it is not a ComfyUI server."""

    kind = "not-comfyui"


class ServerRefusedError(StudioError):
    """The server answered the request with an error (bad token, invalid workflow...)."""

    kind = "server-refused"


class ServerModelMissingError(ModelNotFoundError):
    """A model, LoRA or node the request needs is not on the server."""

    kind = "server-model-missing"


class RemoteExecutionError(StudioError):
    """The server ran the workflow and failed (``execution_error``: out of memory, ...)."""

    kind = "remote-execution"


class ServerLostError(StudioError):
    """The connection to the server dropped, or it restarted, while it had our job."""

    kind = "server-lost"


class RemoteImageError(ImageReadError):
    """The server sent an image that is malformed or too large to decode safely."""

    kind = "remote-image"
