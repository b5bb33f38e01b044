"""``studio export --what layers`` names each file after its layer, numbered in stack order,
with nothing a shell needs quoted: the names the window gives ("txt2img · seed 7 · a red
fox") become ``02-txt2img-seed-7-a-red-fox.png``, still readable."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from studio.cli.main import main
from studio.core.project.store import ProjectStore


def test_layer_files_are_numbered_readable_and_shell_safe(tmp_path):
    from studio.core.document.edits import AddLayer
    from studio.core.document.layers import Document, Layer
    from studio.core.document.undo import UndoStack

    doc = Document(width=32, height=32)
    stack = UndoStack(doc)
    names = ["background", "txt2img · seed 7 · a red fox, 'sunset'", "Été (copy) & $HOME",
             "  ·  "]
    for i, name in enumerate(names):
        pixels = np.full((32, 32, 4), 255, np.uint8)
        pixels[..., 0] = 60 * i
        stack.push(AddLayer(Layer(id=f"l{i}", name=name, pixels=pixels)))
    project = tmp_path / "art.studio"
    ProjectStore.save(project, doc, stack)
    out = tmp_path / "layers"
    assert main(["export", str(project), "--what", "layers", "--out", str(out)]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["01-background.png", "02-txt2img-seed-7-a-red-fox-sunset.png",
                     "03-Été-copy-HOME.png", "04-layer.png"]
    assert all(re.fullmatch(r"[\w.-]+", name) for name in files)  # no quoting needed
    with Image.open(out / "02-txt2img-seed-7-a-red-fox-sunset.png") as im:
        assert im.getpixel((0, 0))[0] == 60  # the file holds that layer
