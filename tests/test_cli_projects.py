"""Projects from the CLI: generate --project, info, export; bad input exits with a message."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio.cli import main
from studio.core.project.store import ProjectStore

COMMON = ["--steps", "2", "--size", "64x64", "--quiet", "--device", "cpu", "--dtype",
          "float32", "--no-hf-cache"]


@pytest.fixture(scope="module")
def project(tiny_sd1_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("proj")
    path = folder / "p.studio"
    for seed, prompt in ((1, "a red fox"), (2, "a blue bird")):
        assert main(["generate", prompt, "--model", str(tiny_sd1_dir), "--seed", str(seed),
                     "--project", str(path), "-o", str(folder / f"{seed}.png"), *COMMON]) == 0
    return path


def test_generate_with_project_creates_it_and_appends_each_generation(project):
    loaded = ProjectStore.load(project)
    records = loaded.document.log.records
    assert [r.request.prompt for r in sorted(records, key=lambda r: r.created)] == [
        "a red fox", "a blue bird"]
    assert all(len(r.image_hashes) == 1 for r in records)


def test_each_cli_generation_lands_on_the_canvas_as_a_layer(project, tmp_path, capsys):
    """The README's workflow: generate --project twice, then export the canvas."""
    doc = ProjectStore.load(project).document
    records = sorted(doc.log.records, key=lambda r: r.created)
    assert [layer.record_id for layer in doc.layers] == [r.id for r in records]
    assert [layer.name for layer in doc.layers] == ["txt2img · red fox · seed 1",
                                                    "txt2img · blue bird · seed 2"]
    assert (doc.width, doc.height) == (64, 64)
    top = doc.log.image(records[1].image_hashes[0])
    out = tmp_path / "canvas"
    assert main(["export", str(project), "--what", "canvas", "--out", str(out)]) == 0
    with Image.open(out / "p.png") as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), top[..., :3])  # the top layer
    assert main(["export", str(project), "--what", "layers", "--out", str(tmp_path / "l")]) == 0
    assert len(list((tmp_path / "l").iterdir())) == 2


@pytest.mark.parametrize("what, message", [
    ("canvas", "has no layers"), ("layers", "has no layers"),
    ("gallery", "has no generations"),
])
def test_an_export_with_nothing_to_write_says_so_and_exits_1(tmp_path, capsys, what, message):
    from studio.core.document.layers import Document
    from studio.core.document.undo import UndoStack

    empty = tmp_path / "empty.studio"
    doc = Document(width=64, height=64)
    ProjectStore.save(empty, doc, UndoStack(doc))
    out = tmp_path / "out"
    assert main(["export", str(empty), "--what", what, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing written, not even the folder


def test_info_prints_the_project_summary_and_log(project, capsys):
    assert main(["info", str(project)]) == 0
    out = capsys.readouterr().out
    assert "2 generations" in out
    assert "seed 1" in out and "'a red fox'" in out and "'a blue bird'" in out


def test_info_prints_an_images_settings(project, capsys):
    png = project.parent / "1.png"
    assert main(["info", str(png)]) == 0
    out = capsys.readouterr().out
    assert "Made by:         Latent Studio" in out
    assert "Prompt:          a red fox" in out and "Seed:            1" in out


def test_info_prints_the_sliders_an_image_was_made_with(tiny_sd1_dir, tmp_path, capsys):
    png = tmp_path / "old.png"
    assert main(["generate", "a person", "--model", str(tiny_sd1_dir), "--seed", "3",
                 "--slider", "age=1.5", "-o", str(png), *COMMON]) == 0
    capsys.readouterr()
    assert main(["info", str(png)]) == 0
    assert "Sliders:         age=1.5" in capsys.readouterr().out


def test_export_gallery_with_template_and_contact_sheet(project, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", str(project), "--what", "gallery", "--format", "webp", "--out",
                 str(out), "--template", "{seed}-{prompt}", "--contact-sheet"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["1-a_red_fox.webp", "2-a_blue_bird.webp", "contact-sheet.png"]
    from studio.core.formats.metadata import read_settings

    assert read_settings(out / "1-a_red_fox.webp").request.seed == 1
    with Image.open(out / "contact-sheet.png") as im:  # 64 px images: cells of 192 px
        assert im.size[0] < 2 * (192 + 8) + 8 + 1 and im.size[1] > 192


@pytest.fixture(scope="module")
def layered_project(tmp_path_factory):
    from studio.core.document.edits import AddLayer
    from studio.core.document.layers import Document, Layer
    from studio.core.document.undo import UndoStack

    doc = Document(width=64, height=48)
    stack = UndoStack(doc)
    red = np.zeros((48, 64, 4), np.uint8)
    red[..., 0] = red[..., 3] = 255
    dot = np.zeros((16, 16, 4), np.uint8)
    dot[..., 2] = dot[..., 3] = 255
    stack.push(AddLayer(Layer(id="a", name="background", pixels=red)))
    stack.push(AddLayer(Layer(id="b", name="blue dot", pixels=dot, x=8, y=4)))
    path = tmp_path_factory.mktemp("layered") / "art.studio"
    ProjectStore.save(path, doc, stack)
    return path


@pytest.mark.parametrize("fmt", ["ora", "psd", "png"])
def test_export_canvas_layered_and_flat(layered_project, tmp_path, fmt):
    from studio.core.formats.layered import import_ora, import_psd

    out = tmp_path / "canvas"
    assert main(["export", str(layered_project), "--what", "canvas", "--format", fmt,
                 "--out", str(out)]) == 0
    target = out / f"art.{fmt}"
    if fmt == "png":
        with Image.open(target) as im:
            flat = np.asarray(im.convert("RGB"))
        assert flat.shape == (48, 64, 3)
        assert tuple(flat[10, 12]) == (0, 0, 255) and tuple(flat[40, 40]) == (255, 0, 0)
        return
    layered = (import_ora if fmt == "ora" else import_psd)(target)
    assert [lay.name for lay in layered.layers] == ["background", "blue dot"]
    assert (layered.layers[1].x, layered.layers[1].y) == (8, 4)


def test_export_layers_one_file_each(layered_project, tmp_path):
    out = tmp_path / "layers"
    assert main(["export", str(layered_project), "--what", "layers", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["01-background.png", "02-blue-dot.png"]


@pytest.mark.parametrize("args, message", [
    (["info", "/no/such/file.png"], "file.png"),
    (["info", "/no/such/p.studio"], "p.studio"),
    (["export", "/no/such/p.studio", "--out", "x"], "p.studio"),
])
def test_bad_files_give_one_clear_line(args, message, capsys):
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_corrupt_project_is_refused_before_generating_and_left_untouched(tiny_sd1_dir,
                                                                         tmp_path, capsys):
    bad = tmp_path / "bad.studio"
    bad.write_bytes(b"this is not a project" * 10)
    before = bad.read_bytes()
    rc = main(["generate", "x", "--model", str(tiny_sd1_dir), "--project", str(bad), "-o",
               str(tmp_path / "x.png"), *COMMON])
    assert rc == 1
    assert bad.read_bytes() == before
    assert not (tmp_path / "x.png").exists()
    assert "bad.studio" in capsys.readouterr().err
