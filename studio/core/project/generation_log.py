"""The generation log: an append-only tree of every generation made in a project.

Each ``GenerationRecord`` holds the full request, the content hash of each image it made,
and a link to the record it grew from (vary, img2img, inpaint, slider, edit). Records are
never removed: "delete from gallery" only sets a ``deleted`` flag (undoable, see
``commands.SetGenerationDeleted``), so undo never destroys a generated image.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from studio.core.document.layers import array_key, new_id
from studio.core.document.pixels import Pixels
from studio.core.jobs.events import GenerationResult
from studio.core.jobs.request import GenerationRequest
from studio.core.jobs.request import request_image_refs as image_refs

RELATIONS = ("vary", "img2img", "inpaint", "slider", "edit")
"""How a record relates to its parent; a root record has relation ``""``."""

_log = logging.getLogger(__name__)

LogListener = Callable[[str, dict[str, Any]], None]
ImageSource = Callable[[str], np.ndarray]


@dataclass(frozen=True)
class GenerationRecord:
    """One generation: what was asked, what came out, and where it came from.

    Attributes
    ----------
    id : str
        uuid hex.
    request : GenerationRequest
        The request as it was run (the engine filled in model hash and device).
    image_hashes : tuple of str
        ``Pixels.sha256`` of each image, in batch order; the images live in the blob store.
    parent_id, relation : str or None, str
        The record this one grew from and how (one of ``RELATIONS``); ``None``/``""`` for
        a root.
    created, duration : float
        Unix time when it finished and how long it took, in seconds.
    model_hash : str
        Hash of the model weights that made it.
    deleted : bool
        Hidden from the gallery; the record and its images are kept.
    mode : str
        What the canvas did when the request's task does not say it: ``"outpaint"`` for
        an inpaint that filled past the canvas's edge; ``""`` (older projects too): the
        request's task.
    """

    id: str
    request: GenerationRequest
    image_hashes: tuple[str, ...]
    parent_id: str | None = None
    relation: str = ""
    created: float = 0.0
    duration: float = 0.0
    model_hash: str = ""
    deleted: bool = False
    mode: str = ""
    # A server's result: the ComfyUI workflow (API format) that made each image, in batch
    # order ({} for an image without one); the server's address is in ``request.device``.
    workflows: tuple[dict, ...] = field(default=(), compare=False, repr=False)

    def workflow(self, index: int = 0) -> dict | None:
        """The ComfyUI workflow that made image ``index`` (None: not a server's)."""
        if 0 <= index < len(self.workflows) and self.workflows[index]:
            return self.workflows[index]
        return None

    @property
    def task(self) -> str:
        """The task as History names it: ``"outpaint"``, ``"edit"`` (edit with words), else
        the request's task."""
        return self.mode or self.request.task_label

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; request images are referred to by their hash."""
        return {"id": self.id, "request": self.request.to_dict(),
                "image_hashes": list(self.image_hashes), "parent_id": self.parent_id,
                "relation": self.relation, "created": self.created,
                "duration": self.duration, "model_hash": self.model_hash,
                "deleted": self.deleted, **({"mode": self.mode} if self.mode else {}),
                **({"workflows": list(self.workflows)} if any(self.workflows) else {})}

    @classmethod
    def from_dict(cls, data: dict[str, Any],
                  images: dict[str, Pixels] | None = None) -> GenerationRecord:
        return cls(
            id=data["id"], request=GenerationRequest.from_dict(data["request"], images),
            image_hashes=tuple(data.get("image_hashes", ())), parent_id=data.get("parent_id"),
            relation=data.get("relation", ""), created=float(data.get("created", 0.0)),
            duration=float(data.get("duration", 0.0)), model_hash=data.get("model_hash", ""),
            deleted=bool(data.get("deleted", False)), mode=str(data.get("mode", "") or ""),
            workflows=tuple(w if isinstance(w, dict) else {}
                            for w in data.get("workflows", ()) or ()))


def request_image_refs(data: dict[str, Any]) -> list[str]:
    """Content hashes of the init image, mask and region masks a serialised request
    refers to."""
    return image_refs(data)


class GenerationLog:
    """Append-only tree of ``GenerationRecord``, with the images they made.

    Images of records made in this session are kept in memory until the project is saved;
    a log loaded from a project reads older images on demand through ``image_source``.
    """

    def __init__(self, image_source: ImageSource | None = None) -> None:
        self._records: dict[str, GenerationRecord] = {}
        self._images: dict[str, np.ndarray] = {}
        self.image_source = image_source
        self._listeners: list[LogListener] = []

    # -- adding ----------------------------------------------------------------------------
    def add(self, request: GenerationRequest, images: Sequence[np.ndarray],
            parent_id: str | None = None, relation: str = "", duration: float = 0.0,
            created: float | None = None, record_id: str | None = None, mode: str = "",
            deleted: bool = False, workflows: Sequence[dict | None] = ()
            ) -> GenerationRecord:
        """Record a generation and keep its images; returns the new record.

        ``mode``: see ``GenerationRecord.mode``; ``deleted``: recorded hidden from History
        (a grid's cell, shown only once it is kept)."""
        if parent_id is not None and parent_id not in self._records:
            raise KeyError(f"no generation record {parent_id!r}")
        if parent_id is not None and relation not in RELATIONS:
            raise ValueError(f"relation must be one of {', '.join(RELATIONS)}")
        if parent_id is None:
            relation = ""
        hashes = []
        for image in images:
            arr = np.array(image, dtype=np.uint8, copy=True)
            arr.setflags(write=False)
            key = array_key(arr)
            self._images.setdefault(key, arr)
            hashes.append(key)
        for pixels in request.pixels:
            self._images.setdefault(pixels.sha256, pixels.to_array())
        record = GenerationRecord(
            id=record_id or new_id(), request=request, image_hashes=tuple(hashes),
            parent_id=parent_id, relation=relation,
            created=time.time() if created is None else created, duration=duration,
            model_hash=request.model_hash, deleted=deleted,
            mode=mode if mode and mode != request.task else "",
            workflows=tuple(w or {} for w in workflows) if any(workflows) else ())
        if record.id in self._records:
            raise ValueError(f"record {record.id!r} already exists")
        self._records[record.id] = record
        self._emit("record_added", record=record)
        return record

    def add_result(self, result: GenerationResult, parent_id: str | None = None,
                   relation: str = "", mode: str = "",
                   deleted: bool = False) -> GenerationRecord:
        """Record what the engine returned for one request (``mode``, ``deleted``: see
        ``add``)."""
        # A server's result (``workflow_for``): each image keeps the workflow that made it.
        workflow_for = getattr(result, "workflow_for", None)
        workflows = [workflow_for(i) for i in range(len(result.images))] \
            if callable(workflow_for) else []
        return self.add(result.request, result.images, parent_id, relation,
                        duration=result.seconds, mode=mode, deleted=deleted,
                        workflows=workflows)

    def insert(self, record: GenerationRecord) -> None:
        """Put back a record read from a project file (no event)."""
        self._records[record.id] = record

    # -- the gallery flag --------------------------------------------------------------------
    def set_deleted(self, record_id: str, deleted: bool) -> GenerationRecord:
        """Hide or show a record in the gallery; its images are always kept."""
        record = replace(self.get(record_id), deleted=deleted)
        self._records[record_id] = record
        self._emit("record_changed", record=record)
        return record

    # -- queries -------------------------------------------------------------------------------
    def get(self, record_id: str) -> GenerationRecord:
        try:
            return self._records[record_id]
        except KeyError:
            raise KeyError(f"no generation record {record_id!r}") from None

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._records

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[GenerationRecord]:
        return iter(list(self._records.values()))

    @property
    def records(self) -> list[GenerationRecord]:
        """All records, oldest first, deleted ones included."""
        return list(self._records.values())

    def gallery(self) -> list[GenerationRecord]:
        """Records not deleted from the gallery, oldest first."""
        return [r for r in self._records.values() if not r.deleted]

    def roots(self) -> list[GenerationRecord]:
        return [r for r in self._records.values() if r.parent_id is None]

    def children(self, record_id: str) -> list[GenerationRecord]:
        return [r for r in self._records.values() if r.parent_id == record_id]

    def lineage(self, record_id: str) -> list[GenerationRecord]:
        """The record and its ancestors, root first."""
        chain = []
        current: str | None = record_id
        while current is not None:
            record = self.get(current)
            chain.append(record)
            current = record.parent_id
        return chain[::-1]

    # -- images --------------------------------------------------------------------------------
    def image(self, sha256: str) -> np.ndarray:
        """The image with this hash, from memory or from the project file."""
        if sha256 in self._images:
            return self._images[sha256]
        if self.image_source is None:
            raise KeyError(f"no image {sha256}")
        return self.image_source(sha256)

    def image_hashes(self) -> set[str]:
        """Every image the log refers to: results, init images, masks and region masks."""
        out: set[str] = set()
        for record in self._records.values():
            out.update(record.image_hashes)
            out.update(pixels.sha256 for pixels in record.request.pixels)
        return out

    def pending_images(self) -> dict[str, np.ndarray]:
        """Images held in memory (made in this session, perhaps not saved yet)."""
        return dict(self._images)

    def forget_images(self, saved: set[str], source: ImageSource) -> None:
        """Drop in-memory images that are now saved, reading them from ``source`` later."""
        for key in saved:
            self._images.pop(key, None)
        self.image_source = source

    # -- snapshots and listeners -------------------------------------------------------------
    def snapshot(self) -> GenerationLog:
        """A copy for a saving thread: records are frozen and images read-only, so shared."""
        log = GenerationLog(self.image_source)
        log._records = dict(self._records)
        log._images = dict(self._images)
        return log

    def add_listener(self, fn: LogListener) -> None:
        if fn not in self._listeners:
            self._listeners.append(fn)

    def remove_listener(self, fn: LogListener) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def _emit(self, event: str, **payload: Any) -> None:
        for fn in list(self._listeners):
            try:
                fn(event, payload)
            except Exception:
                _log.exception("generation log listener failed on %r", event)
