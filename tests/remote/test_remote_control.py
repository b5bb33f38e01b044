"""Control layers sent to a real ComfyUI server (its ``ControlNetLoader`` and
``ControlNetApplyAdvanced``), with the tiny ControlNet the server fixture puts in its
models/controlnet (``tiny_controlnet``).

The server's tiny model is random, so no picture on it can be judged by the oracle; what a
user notices and these tests measure: the image changes where the control is drawn (strokes
on the left change the left more than the right, and the same strokes on the right the
reverse), strength 0 is the image without control pixel for pixel, the workflow that ran
holds the ControlNet nodes, and a ControlNet the server lacks is one line before anything
runs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from studio.core.control import ControlLayer
from studio.core.document.pixels import Pixels
from studio.core.jobs.request import GenerationRequest, Region
from studio.remote.engine import RemoteEngine
from studio.remote.errors import ServerModelMissingError

pytestmark = [pytest.mark.slow, pytest.mark.server]

SIDE = 64


def request(**kw) -> GenerationRequest:
    base = dict(prompt="a portrait", model="tiny-sd1", steps=6, width=SIDE, height=SIDE,
                seed=3, guidance=5.0)
    return GenerationRequest(**{**base, **kw})


def strokes(side: str) -> np.ndarray:
    """A sketch (white strokes on black: a box and its diagonal) in one half of the image."""
    arr = np.zeros((SIDE, SIDE, 3), np.uint8)
    x0 = 4 if side == "left" else SIDE // 2 + 4
    x1 = x0 + SIDE // 2 - 12
    arr[8:11, x0:x1] = arr[SIDE - 11:SIDE - 8, x0:x1] = 255
    arr[8:SIDE - 8, x0:x0 + 3] = arr[8:SIDE - 8, x1 - 3:x1] = 255
    for t in range(SIDE - 16):
        x = x0 + t * (x1 - x0 - 3) // (SIDE - 16)
        arr[8 + t, x:x + 3] = 255
    return arr


def scribble(side: str, strength: float = 1.0, **kw) -> ControlLayer:
    return ControlLayer("scribble", Pixels.from_array(strokes(side)), strength, **kw)


def one_line(err: BaseException) -> str:
    text = str(err)
    assert text and "\n" not in text and "Traceback" not in text
    return text


def history_size(engine: RemoteEngine) -> int:
    client = engine.servers[0].client

    async def size() -> int:
        return len(await client._request("GET", "/history"))

    return engine.loop.run(size(), timeout=30)


def test_the_image_changes_where_the_control_is_drawn(remote_engine: RemoteEngine) -> None:
    none = remote_engine.generate(request()).images[0].astype(np.float64)
    changes = {}
    for side in ("left", "right"):
        result = remote_engine.generate(request(controls=(scribble(side),)))
        diff = np.abs(result.images[0] - none).mean(axis=2)
        changes[side] = (diff[:, :SIDE // 2].mean(), diff[:, SIDE // 2:].mean())
        ran = result.workflows[0]
        kinds = [n["class_type"] for n in ran.values()]
        assert "ControlNetLoader" in kinds and "ControlNetApplyAdvanced" in kinds
        assert result.metadata()["workflows"][0] == ran
    print(f"mean change (levels) left|right half: strokes left {changes['left'][0]:.1f}|"
          f"{changes['left'][1]:.1f}, strokes right {changes['right'][0]:.1f}|"
          f"{changes['right'][1]:.1f}")
    (ll, lr), (rl, rr) = changes["left"], changes["right"]
    assert ll > 1.25 * lr and rr > 1.25 * rl  # it follows where the strokes are
    assert min(ll, rr) > 3.0  # and is more than a rounding difference


def test_strength_zero_is_the_image_without_control(remote_engine: RemoteEngine) -> None:
    plain = remote_engine.generate(request(seed=11)).images[0]
    zero = remote_engine.generate(request(seed=11, controls=(scribble("left", 0.0),)))
    assert np.array_equal(zero.images[0], plain)
    late = remote_engine.generate(request(seed=11, controls=(
        scribble("left", 1.0, start=0.5, end=1.0),))).images[0]
    full = remote_engine.generate(request(seed=11, controls=(scribble("left"),))).images[0]
    d_late = np.abs(late.astype(int) - plain).mean()
    d_full = np.abs(full.astype(int) - plain).mean()
    assert 0 < d_late < d_full  # half the steps: a smaller change than all of them


def test_a_controlnet_the_server_lacks_is_one_line_before_anything_runs(
        remote_engine: RemoteEngine) -> None:
    before = history_size(remote_engine)
    with pytest.raises(ServerModelMissingError) as err:
        remote_engine.generate(request(controls=(scribble("left", model="control_v11f1p_sd15_"
                                                                        "depth"),)))
    text = one_line(err.value)
    assert "control_v11f1p_sd15_depth" in text and "control_sd15_scribble_tiny" in text
    with pytest.raises(ServerModelMissingError) as err:  # no depth ControlNet at all
        remote_engine.generate(request(controls=(ControlLayer(
            "depth", Pixels.from_array(strokes("left"))),)))
    assert "No depth ControlNet for SD 1.x" in one_line(err.value)
    assert history_size(remote_engine) == before  # nothing was sent to run


def test_two_controls_and_regions_in_one_workflow(remote_engine: RemoteEngine) -> None:
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[:, SIDE // 2:] = 255
    one = request(controls=(scribble("left"),))
    two = request(controls=(scribble("left"), scribble("right", 0.7, start=0.0, end=0.8)),
                  regions=(Region(Pixels.from_array(mask), "a red hat", 1.0),))
    first = remote_engine.generate(one).images[0]
    result = remote_engine.generate(two)
    ran = result.workflows[0]
    applied = [n["inputs"] for n in ran.values() if n["class_type"] == "ControlNetApplyAdvanced"]
    assert [(a["strength"], a["end_percent"]) for a in applied] == [(1.0, 1.0), (0.7, 0.8)]
    assert any(n["class_type"] == "ConditioningSetMask" for n in ran.values())
    assert not np.array_equal(result.images[0], first)
    assert remote_engine.features.control


def test_studio_generate_with_server_and_control(comfy_server, tmp_path, monkeypatch,
                                                  capsys) -> None:
    from PIL import Image

    from studio.cli.main import main
    from studio.core.formats.metadata import read_settings

    monkeypatch.setenv("STUDIO_CONFIG_DIR", str(tmp_path / "config"))
    sketch = tmp_path / "sketch.png"
    Image.fromarray(strokes("left")).save(sketch)
    out = tmp_path / "controlled.png"
    code = main(["generate", "a portrait", "--server", comfy_server.url, "--model", "tiny-sd1",
                 "--size", "64", "--steps", "4", "--seed", "3", "--control",
                 f"scribble={sketch}:0.9:0:0.8", "-o", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    with Image.open(out) as img:
        ran = json.loads(img.info["prompt"])
        parameters = img.info.get("parameters", "")
    (applied,) = [n["inputs"] for n in ran.values() if n["class_type"] == "ControlNetApplyAdvanced"]
    assert (applied["strength"], applied["start_percent"], applied["end_percent"]) == (0.9, 0, 0.8)
    # A1111's fields, as locally, naming the server's ControlNet that ran
    assert ('ControlNet 0: "Module: scribble, Model: control_sd15_scribble_tiny, Weight: 0.9, '
            'Guidance Start: 0, Guidance End: 0.8"') in parameters
    assert read_settings(out).request.seed == 3
    assert str(tmp_path) not in json.dumps(ran)  # no local path went to the server
    code = main(["servers", "--check", comfy_server.url])
    text = capsys.readouterr().out
    assert code == 0 and "control (SD 1.x)" in text and "control_sd15_scribble_tiny" in text
    code = main(["generate", "x", "--server", comfy_server.url, "--model", "tiny-sd1", "--size",
                 "64", "--control", f"scribble={sketch}", "--control-model", "control_sdxl_x",
                 "-o", str(tmp_path / "x.png"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "control_sdxl_x" in err


def test_the_result_records_the_controlnet_and_use_settings_makes_it_again(
        remote_engine: RemoteEngine, qtbot) -> None:
    result = remote_engine.generate(request(seed=5, controls=(scribble("right", 0.8),)))
    (control,) = result.request.controls
    assert control.model == "control_sd15_scribble_tiny.safetensors"  # the one that ran
    assert (control.strength, control.kind) == (0.8, "scribble")
    again = remote_engine.generate(result.request)  # "Use settings" on the image
    assert np.array_equal(again.images[0], result.images[0])
    # The window's control model picker offers the server's ControlNets (read off its thread).
    remote_engine.controls.list()
    qtbot.waitUntil(lambda: bool(remote_engine.controls.list()), timeout=30000)
    offered = {o.name: o for o in remote_engine.controls.list()}[control.model]
    assert offered.family == "sd1" and offered.kind == "controlnet"
    assert "server" in offered.label and "controlnet/" in offered.path
