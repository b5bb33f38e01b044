"""Control layers in ComfyUI workflows (no server): the nodes, their chain, the ControlNet
chosen among the server's by family and kind, and the connect check's lines."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.control import ControlLayer
from studio.core.document.pixels import Pixels
from studio.core.errors import InvalidRequestError
from studio.core.jobs.request import GenerationRequest, Region
from studio.remote import control as rc
from studio.remote import workflow as wf
from studio.remote.engine import features_from_nodes
from studio.remote.errors import ServerModelMissingError

SD15 = "control_v11p_sd15_scribble.safetensors"
SD15_CANNY = "control_sd15_canny.safetensors"
XL = "controlnet-canny-sdxl-1.0.safetensors"
URL = "http://gpu:8188"


def strokes() -> Pixels:
    arr = np.zeros((64, 64, 3), np.uint8)
    arr[20:24, 8:56] = 255
    return Pixels.from_array(arr)


def request(controls=(), **kw) -> GenerationRequest:
    base = dict(prompt="a cat", negative_prompt="blurry", model="tiny", steps=2, width=64,
                height=64, seed=7, guidance=5.0, controls=tuple(controls))
    return GenerationRequest(**{**base, **kw})


def nodes(graph: dict, class_type: str) -> list[tuple[str, dict]]:
    return [(i, n["inputs"]) for i, n in graph.items() if n["class_type"] == class_type]


def test_controls_are_chained_controlnet_nodes_on_both_conditionings() -> None:
    controls = (rc.ServerControl(SD15, "a.png", 0.8, 0.1, 0.7),
                rc.ServerControl(SD15, "b.png", 0.5, 0.0, 1.0),
                rc.ServerControl(SD15_CANNY, "c.png", 1.2, 0.2, 0.9))
    g = wf.build(request(), wf.Inputs("tiny.safetensors", family="sd1", controls=controls))
    loaders = nodes(g, "ControlNetLoader")
    assert sorted(i["control_net_name"] for _id, i in loaders) == [SD15_CANNY, SD15]  # shared
    applied = nodes(g, "ControlNetApplyAdvanced")
    assert [(i["strength"], i["start_percent"], i["end_percent"]) for _id, i in applied] == [
        (0.8, 0.1, 0.7), (0.5, 0.0, 1.0), (1.2, 0.2, 0.9)]
    images = {node_id: i["image"] for node_id, i in nodes(g, "LoadImage")}
    assert [images[i["image"][0]] for _id, i in applied] == ["a.png", "b.png", "c.png"]
    texts = {node_id: i["text"] for node_id, i in nodes(g, "CLIPTextEncode")}
    first = applied[0][1]
    assert (texts[first["positive"][0]], texts[first["negative"][0]]) == ("a cat", "blurry")
    for (prev_id, _p), (_id, nxt) in zip(applied, applied[1:], strict=False):
        assert nxt["positive"] == [prev_id, 0] and nxt["negative"] == [prev_id, 1]
    (_ks_id, ks), = nodes(g, "KSampler")
    assert ks["positive"] == [applied[-1][0], 0] and ks["negative"] == [applied[-1][0], 1]
    assert "vae" not in first  # SD ControlNets read the map as is
    plain = wf.build(request(), wf.Inputs("tiny.safetensors", family="sd1"))
    assert not nodes(plain, "ControlNetApplyAdvanced") and not nodes(plain, "ControlNetLoader")


def test_regions_and_controls_in_one_workflow() -> None:
    mask = Pixels.from_array(np.pad(np.full((32, 64), 255, np.uint8), ((0, 32), (0, 0))))
    req = request(regions=(Region(mask, "a red hat", 1.0),))
    g = wf.build(req, wf.Inputs("tiny.safetensors", family="sd1", regions=("m.png",),
                                controls=(rc.ServerControl(SD15, "a.png"),)))
    (apply_id, applied), = nodes(g, "ControlNetApplyAdvanced")
    combined = [i for i, _n in nodes(g, "ConditioningCombine")]
    assert applied["positive"][0] == combined[-1]  # the regions' conditioning, controlled
    (_ks_id, ks), = nodes(g, "KSampler")
    assert ks["positive"] == [apply_id, 0]


def test_the_controlnet_is_chosen_by_family_and_kind() -> None:
    names = [XL, SD15_CANNY, SD15, "control_anything.safetensors"]
    scribble = ControlLayer("scribble", strokes())
    edges = ControlLayer("edges", strokes())
    depth = ControlLayer("depth", strokes())
    assert rc.choose(scribble, names, "sd1", URL) == SD15
    assert rc.choose(edges, names, "sd1", URL) == SD15_CANNY
    assert rc.choose(edges, names, "sdxl", URL) == XL
    assert rc.choose(depth, names, "sd1", URL) == "control_anything.safetensors"  # may be any
    assert rc.choose(ControlLayer("edges", strokes(), model="control_sd15_canny"), names,
                     "sd1", URL) == SD15_CANNY  # by its stem, as A1111's fields name it
    # A local path names the file; only its name is matched (no path goes to a server).
    assert rc.choose(ControlLayer("edges", strokes(), model="/home/me/cn/" + SD15_CANNY),
                     names, "sd1", URL) == SD15_CANNY
    assert [rc.controlnet_family(n) for n in names] == ["sdxl", "sd1", "sd1", ""]


def test_a_controlnet_of_another_family_is_refused_in_one_line_naming_both() -> None:
    with pytest.raises(InvalidRequestError) as err:
        rc.choose(ControlLayer("scribble", strokes(), model=SD15), [SD15, XL], "sdxl", URL,
                  "juggernautXL.safetensors")
    text = str(err.value)
    assert "\n" not in text and SD15 in text and "SD 1.x" in text and "SDXL" in text
    assert "juggernautXL" in text


def test_a_missing_controlnet_says_what_and_where_in_one_line() -> None:
    with pytest.raises(ServerModelMissingError) as err:
        rc.choose(ControlLayer("scribble", strokes()), [XL], "sd1", URL)
    text = str(err.value)
    assert "\n" not in text and "No ControlNet for SD 1.x in models/controlnet/" in text
    assert URL in text and XL in text
    with pytest.raises(ServerModelMissingError) as err:
        rc.choose(ControlLayer("scribble", strokes(), model="my_depth_cn"), [SD15], "sd1", URL)
    assert "my_depth_cn" in str(err.value) and SD15 in str(err.value)
    with pytest.raises(ServerModelMissingError, match="No depth ControlNet for SD 1.x"):
        rc.choose(ControlLayer("depth", strokes()), [SD15, SD15_CANNY], "sd1", URL)


def test_maps_are_made_here_empty_layers_skipped_depth_from_a_photo_refused() -> None:
    blank = Pixels.from_array(np.zeros((64, 64, 4), np.uint8))
    big = Pixels.from_array(np.kron(strokes().to_array(), np.ones((2, 2, 1), np.uint8)))
    maps = rc.control_maps(request([ControlLayer("scribble", blank),
                                    ControlLayer("lineart", big)]))
    assert len(maps) == 1 and maps[0][0].kind == "lineart"
    arr = maps[0][1]
    assert arr.shape == (64, 64, 3) and arr[21, 30].min() > 200 and arr[40, 30].max() < 30
    with pytest.raises(InvalidRequestError) as err:
        rc.control_maps(request([ControlLayer("depth-estimate", strokes())]))
    assert "\n" not in str(err.value) and "Depth" in str(err.value)


def test_features_say_control_is_on_with_the_nodes_and_off_with_the_reason() -> None:
    info = {n: {} for nodes_ in wf.REQUIRED_NODES.values() for n in nodes_}
    on = features_from_nodes(info)
    assert on.control and "depth-estimate" in dict(on.why_not)
    del info["ControlNetApplyAdvanced"]
    off = features_from_nodes(info)
    assert not off.control and "ControlNetApplyAdvanced" in off.reason("control")


def test_the_connect_check_says_per_family_what_is_missing() -> None:
    info = {n: {} for n in rc.NODES}
    lines = rc.check_lines(info, [SD15], ["v1-5-pruned.safetensors", "sd_xl_base_1.0.safetensors"])
    by = {what: (ok, detail) for what, ok, detail in lines}
    assert by["control (SD 1.x)"][0] and SD15 in by["control (SD 1.x)"][1]
    ok, detail = by["control (SDXL)"]
    assert not ok and "no ControlNet for SDXL in models/controlnet/" in detail
    (what, ok, detail), = rc.check_lines({}, [SD15], [])
    assert not ok and "ControlNetLoader" in detail


def test_without_scipy_edges_are_off_with_the_reason_and_one_line(monkeypatch) -> None:
    import builtins
    import importlib.util

    real_find, real_import = importlib.util.find_spec, builtins.__import__
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "scipy" else real_find(name, *a))
    assert "pip install scipy" in dict(rc.kinds_off())["edges"]

    def no_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError("No module named 'scipy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_scipy)  # the thin install
    with pytest.raises(InvalidRequestError) as err:
        rc.control_maps(request([ControlLayer("edges", strokes())]))
    assert "\n" not in str(err.value) and "scipy" in str(err.value)
    assert rc.control_maps(request([ControlLayer("scribble", strokes())]))  # needs none
