"""Errors a user can cause, each with one clear message.

They live in core so that the UI and the CLI can catch them without importing the engine.
"""

from __future__ import annotations


class StudioError(Exception):
    """Base of every error the user can cause. ``str(err)`` is the message to show."""

    kind = "error"

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class ModelNotFoundError(StudioError):
    kind = "model-not-found"


class WrongModelKindError(StudioError):
    kind = "wrong-model-kind"


class UnsafeModelFileError(StudioError):
    kind = "unsafe-model-file"


class CorruptModelError(StudioError):
    kind = "corrupt-model"


class OutOfMemoryError(StudioError):
    kind = "out-of-memory"


class NaNOutputError(StudioError):
    kind = "nan-output"


class InvalidRequestError(StudioError):
    kind = "invalid-request"


class ImageReadError(StudioError):
    kind = "image-read"


class CancelledError(StudioError):
    """Raised inside the engine when a job is cancelled; never shown as an error."""

    kind = "cancelled"

    def __init__(self, message: str = "Cancelled.") -> None:
        super().__init__(message)


class ProjectVersionError(StudioError):
    """The project was saved by a newer Latent Studio; it is left untouched."""

    kind = "project-version"


class ProjectCorruptError(StudioError):
    """The file is damaged, truncated or not a Latent Studio project; it is left untouched."""

    kind = "project-corrupt"


class ProjectSaveError(StudioError):
    """Saving failed (disk full, no permission, ...); the last saved file is intact."""

    kind = "project-save"


class ProjectNotFoundError(StudioError):
    kind = "project-not-found"
