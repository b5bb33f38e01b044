"""Regional prompts in core: the request value, the document's region layers, the project
file and the image metadata (no torch, no Qt)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from studio.core.document.edits import AddLayer, SetLayerProps
from studio.core.document.layers import Document, Layer
from studio.core.document.pixels import Pixels
from studio.core.document.undo import UndoStack
from studio.core.errors import InvalidRequestError
from studio.core.formats.metadata import read_settings, save_image
from studio.core.jobs.request import GenerationRequest, Region, request_image_refs
from studio.core.project.store import ProjectStore


def _half(left: bool = True, size: int = 64) -> Pixels:
    m = np.zeros((size, size), np.uint8)
    if left:
        m[:, : size // 2] = 255
    else:
        m[:, size // 2:] = 255
    return Pixels.from_array(m)


REGIONS = (Region(_half(True), "on a yellow background", 1.0),
           Region(_half(False), "on a blue background", 0.6))


def _request(**kw) -> GenerationRequest:
    return GenerationRequest("a person", width=64, height=64, seed=5, regions=REGIONS, **kw)


def test_a_request_keeps_its_regions_through_json():
    req = _request()
    data = json.loads(req.to_json())
    assert [r["prompt"] for r in data["regions"]] == ["on a yellow background",
                                                      "on a blue background"]
    assert data["regions"][1]["strength"] == 0.6
    assert data["regions"][0]["mask"]["sha256"] == REGIONS[0].mask.sha256
    images = {r.mask.sha256: r.mask for r in REGIONS}
    assert GenerationRequest.from_json(req.to_json(), images) == req
    assert set(request_image_refs(data)) == set(images)
    # without the masks at hand the regions are left out, the rest comes back
    assert GenerationRequest.from_json(req.to_json()) == req.replace(regions=())


def test_old_requests_load_with_no_regions():
    data = json.loads(GenerationRequest("a cat").to_json())
    del data["regions"]
    assert GenerationRequest.from_dict(data).regions == ()


@pytest.mark.parametrize("region, words", [
    (Region(_half(), "   "), "needs a prompt"),
    (Region(_half(), "x", 1.5), "between 0 and 1"),
    (Region(Pixels.from_array(np.zeros((8, 8, 3), np.uint8)), "x"), "grey"),
])
def test_bad_regions_are_refused_in_one_message(region, words):
    with pytest.raises(InvalidRequestError, match=words):
        GenerationRequest("a cat", regions=(region,))


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_image_files_bring_their_regions_back(tmp_path, suffix):
    req = _request()
    path = save_image(tmp_path / f"out{suffix}", np.zeros((64, 64, 3), np.uint8), req)
    settings = read_settings(path)
    assert settings is not None and settings.request == req


def test_the_a1111_text_notes_the_regions(tmp_path):
    from PIL import Image

    path = save_image(tmp_path / "out.png", np.zeros((64, 64, 3), np.uint8), _request())
    with Image.open(path) as im:
        text = im.text["parameters"]
    assert text.splitlines()[-1].endswith("Regions: 2")
    plain = save_image(tmp_path / "plain.png", np.zeros((64, 64, 3), np.uint8),
                       _request().replace(regions=()))
    with Image.open(plain) as im:
        assert "Regions" not in im.text["parameters"]


def test_a_damaged_region_mask_in_a_file_drops_only_that_region(tmp_path):
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    path = save_image(tmp_path / "out.png", np.zeros((64, 64, 3), np.uint8), _request())
    with Image.open(path) as im:
        data = json.loads(im.text["studio"])
        pixels = np.asarray(im.convert("RGB"))
    data["region_masks"][REGIONS[0].mask.sha256] = "not base64!"
    info = PngInfo()
    info.add_text("studio", json.dumps(data))
    Image.fromarray(pixels).save(tmp_path / "hurt.png", pnginfo=info)
    settings = read_settings(tmp_path / "hurt.png")
    assert settings is not None and settings.request.regions == REGIONS[1:]


def _doc_with_regions() -> Document:
    doc = Document(width=64, height=64)
    alpha = np.zeros((32, 64, 4), np.uint8)
    alpha[:, :20, 3] = 255  # a layer at y=32 whose alpha covers its left part
    doc.layers.append(Layer(name="sky", pixels=alpha, y=32, region_prompt="a red sky",
                            region_strength=0.5))
    masked = Layer.blank(64, 64, name="masked", region_prompt="blue hair")
    masked.mask = np.zeros((64, 64), np.uint8)
    masked.mask[:10, 40:] = 255
    doc.layers.append(masked)
    doc.layers.append(Layer.blank(64, 64, name="no region"))
    hidden = Layer.blank(64, 64, name="hidden", region_prompt="x", visible=False)
    hidden.pixels[..., 3] = 255
    doc.layers.append(hidden)
    return doc


def test_the_document_gives_its_region_layers_as_request_regions():
    doc = _doc_with_regions()
    sky, masked = doc.regions()
    assert (sky.prompt, sky.strength, masked.prompt, masked.strength) == (
        "a red sky", 0.5, "blue hair", 1.0)
    m = sky.mask.to_array()
    assert m.shape == (64, 64) and m[32:, :20].all() and not m[:32].any() and not m[:, 20:].any()
    assert masked.mask.to_array()[:10, 40:].all() and masked.mask.to_array().sum() == 10 * 24 * 255
    # cut to a selection and scaled to the request's size
    (sky_part,) = doc.regions(rect=(0, 32, 32, 32), size=(64, 64))
    part = sky_part.mask.to_array()
    assert part.shape == (64, 64) and part[:, :38].min() == 255 and part[:, 42:].max() == 0


def test_region_layers_are_saved_with_the_project_and_in_its_log(tmp_path):
    doc = _doc_with_regions()
    stack = UndoStack(doc)
    extra = Layer.blank(64, 64, name="new")
    stack.push(AddLayer(extra))
    stack.push(SetLayerProps(extra.id, region_prompt="a green hat", region_strength=0.25))
    req = GenerationRequest("a person", width=64, height=64, regions=doc.regions())
    doc.log.add(req, [np.zeros((64, 64, 3), np.uint8)])
    ProjectStore.save(tmp_path / "p.studio", doc, stack)
    project = ProjectStore.load(tmp_path / "p.studio")
    assert not project.problems
    again = project.document
    assert [(la.name, la.region_prompt, la.region_strength) for la in again.layers] == [
        (la.name, la.region_prompt, la.region_strength) for la in doc.layers]
    assert again.regions() == doc.regions()
    (record,) = project.log.records
    # the new layer is transparent and unmasked: it marks no place, so it is no region
    assert record.request == req and len(record.request.regions) == 2
    project.undo_stack.undo()
    assert project.document.layer(extra.id).region_prompt == ""


def test_old_projects_open_with_no_regions():
    data = Layer.blank(4, 4).to_dict(lambda a: "k")
    del data["region_prompt"], data["region_strength"]
    layer = Layer.from_dict(data, lambda k: np.zeros((4, 4, 4), np.uint8))
    assert layer.region_prompt == "" and layer.region_strength == 1.0
