"""The studio's state and actions, between the widgets and ``studio.core``.

Pure Python (no Qt, no torch): observable objects with psygnal signals that widgets
subscribe to and whose actions they call, so the tests drive them without a window.

- ``Connection``: the backend (``EngineServices``), what it can do, loading / ready / failed.
- ``JobQueue``: the jobs sent to the runner, and their events as signals.
- ``DocumentModel``: the open document and its undo history.
- ``SliderSession``: the sliders over the current image: values, drags, requests, results.
"""

from studio.session.connection import Connection
from studio.session.document import DocumentModel
from studio.session.jobs import JobQueue
from studio.session.sliders import SliderSession

__all__ = ["Connection", "DocumentModel", "JobQueue", "SliderSession"]
