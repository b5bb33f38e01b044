"""Projects from the command line: open or create one, and add generations to it."""

from __future__ import annotations

from pathlib import Path

from studio.core.document.layers import Document
from studio.core.document.undo import UndoStack
from studio.core.jobs.events import GenerationResult
from studio.core.project.generation_log import GenerationLog
from studio.core.project.store import Project, ProjectStore


def open_or_create(path: Path, width: int, height: int) -> tuple[Document, UndoStack]:
    """The project at ``path`` (a clear error if it is damaged or too new), or a new one."""
    if path.exists():
        project: Project = ProjectStore.load(path)
        return project.document, project.undo_stack
    doc = Document(width=width, height=height)
    return doc, UndoStack(doc)


def add_result(path: Path, result: GenerationResult) -> str:
    """Add a generation to the project at ``path`` (created if missing); returns its id."""
    req = result.request
    doc, stack = open_or_create(path, req.width, req.height)
    log: GenerationLog = doc.log
    record = log.add_result(result)
    ProjectStore.save(path, doc, stack, log)
    return record.id
