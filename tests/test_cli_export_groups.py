"""``studio export --what layers`` writes a group as what its members draw together, and a
flat canvas export carries generation settings only when the canvas is one generated image."""

from __future__ import annotations

import numpy as np
from PIL import Image

from studio.cli.main import main
from studio.core.document.edits import AddLayer
from studio.core.document.layers import Document, Layer
from studio.core.document.undo import UndoStack
from studio.core.jobs.request import GenerationRequest
from studio.core.project.store import ProjectStore


def _rgba(rgb, alpha=255, size=(16, 16)):
    out = np.zeros(size + (4,), np.uint8)
    out[..., :3], out[..., 3] = rgb, alpha
    return out


def test_a_group_is_exported_as_its_members_drawn_together(tmp_path):
    doc = Document(width=16, height=16)
    stack = UndoStack(doc)
    stack.push(AddLayer(Layer(id="g", name="Lighting", kind="group", opacity=0.5,
                              pixels=np.zeros((1, 1, 4), np.uint8))))
    stack.push(AddLayer(Layer(id="a", name="grey", pixels=_rgba((200, 200, 200)), parent="g")))
    stack.push(AddLayer(Layer(id="b", name="red", pixels=_rgba((255, 0, 0)), parent="g",
                              blend="multiply")))
    path = tmp_path / "groups.studio"
    ProjectStore.save(path, doc, stack)
    out = tmp_path / "layers"
    assert main(["export", str(path), "--what", "layers", "--out", str(out)]) == 0
    with Image.open(out / "01-Lighting.png") as im:
        group = np.asarray(im.convert("RGBA"))
    assert group.shape == (16, 16, 4)
    # grey multiplied by red, as the group draws it (its own opacity applies on the canvas)
    assert tuple(group[8, 8]) == (200, 0, 0, 255)


def test_a_flat_export_carries_settings_only_for_one_generated_image(tmp_path):
    doc = Document(width=16, height=16)
    stack = UndoStack(doc)
    request = GenerationRequest(prompt="a fox", model="m", seed=3, width=16, height=16)
    record = doc.log.add(request, [np.full((16, 16, 3), 90, np.uint8)])
    stack.push(AddLayer(Layer(id="a", name="fox", pixels=_rgba((90, 90, 90)),
                              kind="generated", record_id=record.id)))
    path = tmp_path / "one.studio"
    ProjectStore.save(path, doc, stack)
    out = tmp_path / "one"
    assert main(["export", str(path), "--what", "canvas", "--out", str(out)]) == 0
    with Image.open(out / "one.png") as im:
        assert "Seed: 3" in im.text["parameters"]
    stack.push(AddLayer(Layer(id="b", name="paint", pixels=_rgba((0, 0, 255), size=(4, 4)))))
    ProjectStore.save(path, doc, stack)
    assert main(["export", str(path), "--what", "canvas", "--out", str(out)]) == 0
    with Image.open(out / "one.png") as im:
        assert "parameters" not in im.text  # a composite no generation made
