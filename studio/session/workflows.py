"""``WORKFLOWS``: the ComfyUI workflow each image made on a server ran, by the image's content.

A remote result (``studio.remote.engine.RemoteGenerationResult``) carries the workflow(s)
that made its images; the job queue (``studio.session.jobs.JobQueue``) files each image's
workflow here under the image's content hash (``array_key``, the key the generation log
keeps the image under), and the window's exports look it up to write it into a PNG in
ComfyUI's own ``prompt`` chunk, as ``studio generate --server`` does. Pure
Python, thread-safe: results arrive on the engine thread, exports run on workers. A project
keeps them too (``GenerationRecord.workflows``): reopened, its records file them here again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from studio.core.document.layers import array_key

KEEP = 2000  # workflows remembered (the oldest go first); each a few KB of JSON


class ImageWorkflows:
    """Image content hash -> the workflow (ComfyUI API format) that made it."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._by_key: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, result: Any) -> int:
        """File the workflow of each image of ``result`` (a result without workflows, such
        as a local one, files nothing); returns how many were filed."""
        workflow_for = getattr(result, "workflow_for", None)
        if workflow_for is None:
            return 0
        filed = 0
        for i, image in enumerate(getattr(result, "images", ()) or ()):
            workflow = workflow_for(i)
            if workflow is None:
                continue
            key = array_key(np.asarray(image, dtype=np.uint8))
            with self._lock:
                self._by_key[key] = workflow
                self._by_key.move_to_end(key)
                while len(self._by_key) > self.keep:
                    self._by_key.popitem(last=False)
            filed += 1
        return filed

    def remember_records(self, records: Any) -> int:
        """File the workflows a project's generation log kept (``GenerationRecord.workflows``,
        a project reopened); returns how many were filed."""
        filed = 0
        for record in records:
            for key, workflow in zip(record.image_hashes, record.workflows, strict=False):
                if workflow:
                    self._file(key, workflow)
                    filed += 1
        return filed

    def _file(self, key: str, workflow: dict) -> None:
        with self._lock:
            self._by_key[key] = workflow
            self._by_key.move_to_end(key)
            while len(self._by_key) > self.keep:
                self._by_key.popitem(last=False)

    def get(self, key: str) -> dict | None:
        """The workflow of the image with content hash ``key`` (None: not a server's)."""
        with self._lock:
            return self._by_key.get(key)

    def for_pixels(self, pixels: np.ndarray) -> dict | None:
        """The workflow that made exactly these pixels (RGB, or RGBA fully opaque)."""
        arr = np.asarray(pixels)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
            return None
        if arr.shape[2] == 4:
            if int(arr[..., 3].min()) < 255:
                return None
            arr = np.ascontiguousarray(arr[..., :3])
        with self._lock:
            if not self._by_key:
                return None
        return self.get(array_key(arr))


WORKFLOWS = ImageWorkflows()
