"""Projects from the command line: open or create one, and add generations to it.

A generation lands as the window's do: a record in the generation log and a layer on the
canvas for each image (one undoable step), so ``studio export P.studio --what canvas``
shows what ``studio generate --project P.studio`` made.
"""

from __future__ import annotations

from pathlib import Path

from studio.core.document.edits import ApplyGeneration, ResizeCanvas
from studio.core.document.layers import Document
from studio.core.document.undo import UndoStack
from studio.core.errors import ProjectCorruptError
from studio.core.jobs.events import GenerationResult
from studio.core.jobs.request import GenerationRequest
from studio.core.project.generation_log import GenerationLog
from studio.core.project.store import Project, ProjectStore


def open_or_create(path: Path, width: int, height: int) -> tuple[Document, UndoStack]:
    """The project at ``path`` (a clear error if it is damaged or too new), or a new one."""
    if path.exists():
        project: Project = ProjectStore.load(path)
        if project.problems:  # never write over a damaged file: it would lose the rest
            raise ProjectCorruptError(f"{path.name} is damaged: {project.problems[0]}",
                                      hint="Open it in the window and save a copy.")
        return project.document, project.undo_stack
    doc = Document(width=width, height=height)
    return doc, UndoStack(doc)


def layer_name(request: GenerationRequest, index: int = 0) -> str:
    """The layer's name as the window gives it: task, a short prompt and the seed."""
    from studio.core.document.operations import generated_layer_name

    return generated_layer_name(request, index)


def add_result(path: Path, result: GenerationResult) -> tuple[str, int]:
    """Add a generation to the project at ``path`` (created if missing): a log record and a
    layer per image at the canvas's top left; returns the record id and the layers added."""
    req = result.request
    doc, stack = open_or_create(path, req.width, req.height)
    log: GenerationLog = doc.log
    record = log.add_result(result)
    with stack.macro(f"Generate: {req.prompt[:40]}"):
        for i, image in enumerate(result.images):
            h, w = image.shape[:2]
            if not doc.layers and (doc.width, doc.height) != (w, h):
                stack.push(ResizeCanvas(w, h))  # an empty canvas takes the image's size
            elif w > doc.width or h > doc.height:
                stack.push(ResizeCanvas(max(w, doc.width), max(h, doc.height), 0, 0))
            stack.push(ApplyGeneration(image, (0, 0, w, h), record.id, name=layer_name(req, i)))
    ProjectStore.save(path, doc, stack, log)
    return record.id, len(result.images)
