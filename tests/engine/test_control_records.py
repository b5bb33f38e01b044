"""Control layers recorded: in the request, the project, the image metadata (A1111's
ControlNet fields) and from the CLI; and the preprocessors' maps."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from studio.core.control import (
    ControlLayer,
    a1111_control_fields,
    canny,
    control_map,
    is_empty,
    parse_control_spec,
    read_a1111_controls,
)
from studio.core.document.pixels import Pixels
from studio.core.errors import InvalidRequestError
from studio.core.jobs.request import GenerationRequest, request_image_refs


def _sketch(size: int = 64) -> Pixels:
    arr = np.zeros((size, size, 4), np.uint8)
    arr[10:12, 8:56, 3] = 255  # a transparent layer with two dark strokes
    arr[8:56, 30:32, 3] = 255
    return Pixels.from_array(arr)


CONTROLS = (ControlLayer("scribble", _sketch(), 0.8, 0.0, 0.75, "tiny-sd1-scribble"),
            ControlLayer("edges", Pixels.from_array(np.full((64, 64, 3), 90, np.uint8)), 1.0,
                         0.25, 1.0, "/models/ControlNet/control_canny.safetensors"))


def _request(**kw) -> GenerationRequest:
    return GenerationRequest("a person", width=64, height=64, seed=5, controls=CONTROLS, **kw)


def test_a_request_keeps_its_controls_through_json():
    req = _request()
    data = json.loads(req.to_json())
    assert [c["kind"] for c in data["controls"]] == ["scribble", "edges"]
    assert data["controls"][0]["end"] == 0.75
    images = {c.image.sha256: c.image for c in CONTROLS}
    assert set(request_image_refs(data)) == set(images)
    assert GenerationRequest.from_json(req.to_json(), images) == req
    # Without the images at hand the controls are left out, the rest comes back.
    assert GenerationRequest.from_json(req.to_json()) == req.replace(controls=())
    old = json.loads(GenerationRequest("a cat").to_json())
    del old["controls"]
    assert GenerationRequest.from_dict(old).controls == ()


@pytest.mark.parametrize("control, words", [
    (ControlLayer("inpaint-only", _sketch()), "unknown kind"),
    (ControlLayer("edges", _sketch(), strength=3.0), "between 0 and 2"),
    (ControlLayer("edges", _sketch(), start=0.6, end=0.5), "start < end"),
])
def test_bad_controls_are_refused_in_one_line(control, words):
    with pytest.raises(InvalidRequestError, match=words):
        GenerationRequest("x", controls=(control,))


def test_the_project_keeps_the_controls_of_each_generation(tmp_path):
    from studio.core.document.layers import Document
    from studio.core.document.undo import UndoStack
    from studio.core.project.store import ProjectStore

    doc = Document(64, 64)
    req = _request()
    doc.log.add(req, [np.zeros((64, 64, 3), np.uint8)])
    ProjectStore.save(tmp_path / "p.studio", doc, UndoStack(doc))
    project = ProjectStore.load(tmp_path / "p.studio")
    assert not project.problems
    (record,) = project.log.records
    assert record.request == req
    assert record.request.controls[0].image.to_array().tobytes() == \
        CONTROLS[0].image.to_array().tobytes()


def test_png_metadata_has_a1111s_controlnet_fields_and_reads_them_back(tmp_path):
    from studio.core.formats.a1111 import parse_a1111_parameters
    from studio.core.formats.metadata import read_settings, save_image

    path = tmp_path / "c.png"
    save_image(path, np.zeros((64, 64, 3), np.uint8), _request())
    with Image.open(path) as im:
        text = im.info["parameters"]
    assert ('ControlNet 0: "Module: scribble, Model: tiny-sd1-scribble, Weight: 0.8, '
            'Guidance Start: 0, Guidance End: 0.75"') in text
    assert ('ControlNet 1: "Module: canny, Model: control_canny, Weight: 1, '
            'Guidance Start: 0.25, Guidance End: 1"') in text
    read = parse_a1111_parameters(text).extra["controls"]
    assert read == [{"kind": "scribble", "model": "tiny-sd1-scribble", "strength": 0.8,
                     "start": 0.0, "end": 0.75},
                    {"kind": "edges", "model": "control_canny", "strength": 1.0,
                     "start": 0.25, "end": 1.0}]
    images = {c.image.sha256: c.image for c in CONTROLS}
    assert read_settings(path, images=images).request == _request()


def test_a1111s_own_controlnet_text_reads_as_controls():
    line = ('Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, '
            'ControlNet 0: "Module: depth_midas, Model: control_v11f1p_sd15_depth [cfd03158], '
            'Weight: 0.6, Resize Mode: Crop and Resize, Low Vram: False, Processor Res: 512, '
            'Guidance Start: 0.1, Guidance End: 0.9, Pixel Perfect: False, Control Mode: '
            'Balanced"')
    assert read_a1111_controls({"ControlNet 0": json.loads(line.split("ControlNet 0: ")[1])}
                               ) == [{"kind": "depth-estimate", "strength": 0.6,
                                      "start": 0.1, "end": 0.9,
                                      "model": "control_v11f1p_sd15_depth [cfd03158]"}]
    # A1111's "depth_midas" ran on a photo; "Module: none" with a depth model read it as is.
    assert read_a1111_controls({"ControlNet 0": "Module: none, Model: control_sd15_depth, "
                                "Weight: 1, Guidance Start: 0, Guidance End: 1"}
                               )[0]["kind"] == "depth"
    assert a1111_control_fields(()) == {}


def test_the_cli_control_argument_is_read_and_checked():
    assert parse_control_spec("scribble=sketch.png") == ("scribble", "sketch.png", 1, 0, 1)
    assert parse_control_spec("edges=C:/art/a.png:0.8") == ("edges", "C:/art/a.png", 0.8, 0, 1)
    assert parse_control_spec("depth=d.png:0.5:0.2:0.7") == ("depth", "d.png", 0.5, 0.2, 0.7)
    with pytest.raises(InvalidRequestError, match="one of scribble"):
        parse_control_spec("sketchy=a.png")
    with pytest.raises(InvalidRequestError, match="start < end"):
        parse_control_spec("edges=a.png:1:0.8:0.2")


def test_cli_generate_with_control_records_it(tiny_sd1_dir, tmp_path, monkeypatch, capsys):
    from diffusers import ControlNetModel, UNet2DConditionModel

    from studio.cli import main
    from studio.core.formats.metadata import read_settings
    from studio.engine.control_models import controlnet_config

    monkeypatch.setenv("STUDIO_CONFIG_DIR", str(tmp_path / "config"))
    unet = UNet2DConditionModel.from_pretrained(tiny_sd1_dir / "unet")
    cn = ControlNetModel.from_config(controlnet_config(dict(unet.config), (16, 32)))
    cn.save_pretrained(tmp_path / "models" / "ControlNet" / "my-scribble")
    (tmp_path / "models" / "ControlNet" / "my-scribble" / "studio.json").write_text(
        '{"family": "sd1"}')
    monkeypatch.setenv("STUDIO_MODEL_DIRS", str(tmp_path / "models"))
    Image.fromarray(_sketch(96).to_array()).save(tmp_path / "sketch.png")
    out = tmp_path / "o.png"
    rc = main(["generate", "x", "--model", str(tiny_sd1_dir), "--steps", "2", "--size",
               "64x64", "--seed", "3", "--device", "cpu", "--dtype", "float32",
               "--no-hf-cache", "--quiet", "-o", str(out),
               "--control", f"scribble={tmp_path / 'sketch.png'}:0.5:0:0.5",
               "--control-model", "my-scribble"])
    assert rc == 0
    assert "(96x96) will be scaled to 64x64" in capsys.readouterr().err
    (control,) = read_settings(out, images={_sketch(96).sha256: _sketch(96)}).request.controls
    assert (control.kind, control.strength, control.end, control.model) == (
        "scribble", 0.5, 0.5, "my-scribble")
    assert main(["generate", "x", "--model", str(tiny_sd1_dir), "--no-hf-cache", "--quiet",
                 "--control", f"scribble={tmp_path / 'missing.png'}"]) != 0


# -- the preprocessors -----------------------------------------------------------------------
def test_strokes_are_white_on_black_whatever_they_were_drawn_on():
    on_clear = control_map("scribble", _sketch(), 64, 64)[0]
    paper = np.full((64, 64, 3), 255, np.uint8)
    paper[10:12, 8:56] = 0
    paper[8:56, 30:32] = 0
    on_paper = control_map("lineart", Pixels.from_array(paper), 64, 64)[0]
    assert np.array_equal(on_clear, on_paper)
    assert on_clear[10, 20].tolist() == [255, 255, 255] and on_clear[40, 10].tolist() == [0, 0, 0]


def test_canny_finds_the_outline_of_a_shape_and_nothing_in_flat_areas():
    img = np.zeros((64, 64), np.float64)
    img[16:48, 16:48] = 200.0
    edges = canny(img)
    assert edges[16:48, 14:19].any(axis=1).all()  # the left side, every row
    assert not edges[24:40, 24:40].any() and not edges[:8, :8].any()
    # One pixel thin: no row of the left side holds more than two edge pixels.
    assert edges[20:44, 10:22].astype(bool).sum(axis=1).max() <= 2


def test_empty_layers_are_recognised():
    assert is_empty(Pixels.from_array(np.zeros((8, 8, 4), np.uint8)))
    assert is_empty(Pixels.from_array(np.full((8, 8, 3), 255, np.uint8)))
    assert not is_empty(_sketch())
