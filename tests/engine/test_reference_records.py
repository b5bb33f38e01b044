"""Reference images recorded and reproduced: in the request, the project, the PNG's
metadata (A1111's ControlNet fields with an IP-Adapter module) and read back; "Use
settings" (the image's own settings, the reference image from the project) makes the same
pixels again; from the CLI, with one clear line where a backend cannot take them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from studio.core.control import (
    REFERENCE_LOCAL_ONLY,
    REFERENCE_REMOTE_OFF,
    ControlLayer,
    a1111_control_fields,
    parse_control_spec,
    read_a1111_controls,
    reference_off_reason,
)
from studio.core.errors import InvalidRequestError
from studio.core.jobs.request import GenerationRequest
from tests.engine.reference_models import build_reference_root
from tests.engine.test_reference import photo

REF = ControlLayer("reference", photo(0), 0.8, 0.0, 0.75, "ip-adapter_tiny-sd1")


@pytest.fixture(scope="module")
def ref_root(tmp_path_factory, tiny_sd1_dir, tiny_sdxl_dir):
    return build_reference_root(tmp_path_factory.mktemp("user-refs"), tiny_sd1_dir,
                                tiny_sdxl_dir)


def test_a_reference_goes_through_json_project_and_png_metadata(tmp_path):
    from studio.core.document.layers import Document
    from studio.core.document.undo import UndoStack
    from studio.core.formats.a1111 import parse_a1111_parameters
    from studio.core.formats.metadata import read_settings, save_image
    from studio.core.project.store import ProjectStore

    req = GenerationRequest("a person", width=64, height=64, seed=5, controls=(REF,))
    assert json.loads(req.to_json())["controls"][0]["kind"] == "reference"
    doc = Document(64, 64)
    doc.log.add(req, [np.zeros((64, 64, 3), np.uint8)])
    ProjectStore.save(tmp_path / "p.studio", doc, UndoStack(doc))
    project = ProjectStore.load(tmp_path / "p.studio")
    (record,) = project.log.records
    assert record.request == req and not project.problems
    assert record.request.controls[0].image.to_array().tobytes() == \
        REF.image.to_array().tobytes()

    save_image(tmp_path / "r.png", np.zeros((64, 64, 3), np.uint8), req)
    with Image.open(tmp_path / "r.png") as im:
        text = im.info["parameters"]
    assert ('ControlNet 0: "Module: ip-adapter-auto, Model: ip-adapter_tiny-sd1, '
            'Weight: 0.8, Guidance Start: 0, Guidance End: 0.75"') in text
    assert parse_a1111_parameters(text).extra["controls"] == [
        {"kind": "reference", "model": "ip-adapter_tiny-sd1", "strength": 0.8,
         "start": 0.0, "end": 0.75}]
    assert read_settings(tmp_path / "r.png", images={REF.image.sha256: REF.image}
                         ).request == req


def test_a1111s_own_ip_adapter_units_read_as_references():
    read = read_a1111_controls({"ControlNet 0": "Module: ip-adapter_clip_sd15, Model: "
                                "ip-adapter_sd15 [6a3f6166], Weight: 0.7, Guidance Start: 0, "
                                "Guidance End: 1"})
    assert read[0]["kind"] == "reference" and read[0]["strength"] == 0.7
    assert a1111_control_fields((REF,))["ControlNet 0"].startswith("Module: ip-adapter")


def test_the_cli_reads_reference_and_says_which_backends_cannot():
    assert parse_control_spec("reference=look.png:0.6") == ("reference", "look.png", 0.6, 0, 1)
    import dataclasses

    from tests.fakes import FAKE_FEATURES

    assert reference_off_reason(dataclasses.replace(FAKE_FEATURES, backend="comfyui")) \
        == REFERENCE_REMOTE_OFF
    assert "ComfyUI_IPAdapter_plus" in REFERENCE_REMOTE_OFF
    assert reference_off_reason(FAKE_FEATURES) == REFERENCE_LOCAL_ONLY
    assert reference_off_reason(dataclasses.replace(FAKE_FEATURES, backend="local")) == ""
    assert reference_off_reason(dataclasses.replace(FAKE_FEATURES, backend="local+comfyui")) \
        == ""  # this computer's models and the servers': a server's job refuses it itself


def test_cli_generate_with_a_reference_records_it_and_use_settings_reproduces(
        tiny_sd1_dir, ref_root, tmp_path, monkeypatch, capsys):
    from studio.cli import main
    from studio.core.formats.metadata import read_settings
    from studio.engine.engine import Engine

    monkeypatch.setenv("STUDIO_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("STUDIO_MODEL_DIRS", str(ref_root))
    Image.fromarray(photo(0).to_array()).save(tmp_path / "look.png")
    out = tmp_path / "o.png"
    args = ["generate", "x", "--model", str(tiny_sd1_dir), "--steps", "3", "--size", "64x64",
            "--seed", "3", "--device", "cpu", "--dtype", "float32", "--no-hf-cache",
            "--quiet", "-o", str(out)]
    assert main([*args, "--control", f"reference={tmp_path / 'look.png'}:0.7",
                 "--control-model", "ip-adapter_tiny-sd1"]) == 0
    from studio.cli.generate import read_pixels

    look = read_pixels(tmp_path / "look.png", "RGBA")  # as the CLI reads it
    settings = read_settings(out, images={look.sha256: look})
    (control,) = settings.request.controls
    assert (control.kind, control.strength, control.model) == (
        "reference", 0.7, "ip-adapter_tiny-sd1")
    # "Use settings": the image's own request, run again, gives the same pixels.
    engine = Engine(device="cpu", dtype="float32", model_dirs=[tiny_sd1_dir, ref_root],
                    embedded_dir=tmp_path / "none", hf_cache=False)
    again = engine.generate(settings.request).images[0]
    with Image.open(out) as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), again)
    plain = engine.generate(settings.request.replace(controls=())).images[0]
    assert not np.array_equal(plain, again)


def test_cli_reference_without_an_ip_adapter_is_one_line_before_loading(
        tiny_sd1_dir, tmp_path, monkeypatch, capsys):
    from studio.cli import main
    from studio.engine.reference import REFERENCE_OFF

    monkeypatch.setenv("STUDIO_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("STUDIO_MODEL_DIRS", str(tmp_path / "empty"))
    Image.fromarray(photo(0).to_array()).save(tmp_path / "look.png")
    rc = main(["generate", "x", "--model", str(tiny_sd1_dir), "--steps", "2", "--size",
               "64x64", "--device", "cpu", "--no-hf-cache", "--quiet", "-o",
               str(tmp_path / "o.png"), "--control", f"reference={tmp_path / 'look.png'}"])
    err = capsys.readouterr().err
    assert rc != 0 and REFERENCE_OFF in err
    (line,) = [line for line in err.splitlines() if "IP-Adapter" in line]  # one line
    assert "--control reference" in line
    assert not (tmp_path / "o.png").exists()


def test_an_unknown_kind_is_still_refused(tmp_path):
    with pytest.raises(InvalidRequestError, match="one of scribble"):
        parse_control_spec("ipadapter=a.png")


def test_a_reference_sent_to_a_comfyui_server_is_refused_in_one_line_not_dropped():
    """Core ComfyUI has no IP-Adapter node: the server path refuses the request, naming the
    custom node, before anything is uploaded (not a ControlNet hunt, not a silent drop)."""
    from studio.remote.control import control_maps

    req = GenerationRequest("a person", width=64, height=64, seed=5, controls=(REF,))
    with pytest.raises(InvalidRequestError) as err:
        control_maps(req)
    assert str(err.value) == REFERENCE_REMOTE_OFF and "\n" not in str(err.value)
