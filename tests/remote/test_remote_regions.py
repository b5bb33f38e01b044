"""Regional prompts on a ComfyUI server (studio/remote/regions.py): the graph built from
ComfyUI's own nodes, and (server tier) what a real ComfyUI 0.8.0 makes of it with the tiny
SD 1.x checkpoint (tests/remote/conftest.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from studio.core.document.pixels import Pixels
from studio.core.errors import InvalidRequestError
from studio.core.jobs.request import GenerationRequest, Region
from studio.remote import workflow as wf
from studio.remote.engine import features_from_nodes
from studio.remote.regions import mask_image

LEFT = np.zeros((64, 64), np.uint8)
LEFT[:, :32] = 255


def request(**kw) -> GenerationRequest:
    base = dict(prompt="a lighthouse at dusk", negative_prompt="blurry", model="tiny-sd1",
                steps=2, width=64, height=64, seed=3, guidance=5.0)
    return GenerationRequest(**{**base, **kw})


def two_regions(strength: float = 1.0) -> tuple[Region, Region]:
    return (Region(Pixels.from_array(LEFT), "a red apple", strength),
            Region(Pixels.from_array(255 - LEFT), "a blue whale", strength))


def node(graph: dict, ref: list) -> dict:
    return graph[ref[0]]


def test_regions_become_masked_conditioning_combined_with_the_main_prompt() -> None:
    g = wf.build(request(regions=two_regions(0.6)),
                 wf.Inputs("tiny-sd1.safetensors", regions=("left.png", "right.png")))
    (sampler,) = [n["inputs"] for n in g.values() if n["class_type"] == "KSampler"]
    negative = node(g, sampler["negative"])
    assert negative["class_type"] == "CLIPTextEncode" and negative["inputs"]["text"] == "blurry"
    # positive = Combine(Combine(main masked, left region), right region)
    top = node(g, sampler["positive"])
    assert top["class_type"] == "ConditioningCombine"
    parts, pending = [], [top]
    while pending:
        n = pending.pop()
        if n["class_type"] == "ConditioningCombine":
            pending += [node(g, n["inputs"]["conditioning_1"]),
                        node(g, n["inputs"]["conditioning_2"])]
        else:
            parts.append(n)
    assert [p["class_type"] for p in parts] == ["ConditioningSetMask"] * 3
    by_text = {node(g, p["inputs"]["conditioning"])["inputs"]["text"]: p["inputs"] for p in parts}
    assert set(by_text) == {"a lighthouse at dusk", "a red apple", "a blue whale"}
    for text, name in (("a red apple", "left.png"), ("a blue whale", "right.png")):
        assert by_text[text]["strength"] == 0.6
        loaded = node(g, by_text[text]["mask"])
        assert loaded == {"class_type": "LoadImageMask",
                          "inputs": {"image": name, "channel": "red"}}
    # the main prompt keeps what the regions leave: 1 - 0.6 * left - 0.6 * right
    main = by_text["a lighthouse at dusk"]
    assert main["strength"] == 1.0
    ops, ref = [], main["mask"]
    while node(g, ref)["class_type"] == "MaskComposite":
        inputs = node(g, ref)["inputs"]
        ops.append(inputs["operation"])
        scaled = node(g, inputs["source"])
        assert scaled["class_type"] == "MaskComposite" and scaled["inputs"]["operation"] == \
            "multiply" and node(g, scaled["inputs"]["source"])["inputs"]["value"] == 0.6
        ref = inputs["destination"]
    assert ops == ["subtract", "subtract"] and node(g, ref)["inputs"]["value"] == 1.0


def test_without_regions_the_graph_is_as_before_and_flux_zeroes_the_plain_prompt() -> None:
    plain = wf.build(request(), wf.Inputs("tiny-sd1.safetensors"))
    assert not any(n["class_type"] == "ConditioningSetMask" for n in plain.values())
    g = wf.build(request(regions=two_regions()[:1]),
                 wf.Inputs("flux1.safetensors", family="flux", regions=("left.png",)))
    (zero,) = [n["inputs"] for n in g.values() if n["class_type"] == "ConditioningZeroOut"]
    assert node(g, zero["conditioning"])["class_type"] == "CLIPTextEncode"
    (guided,) = [n["inputs"] for n in g.values() if n["class_type"] == "FluxGuidance"]
    assert node(g, guided["conditioning"])["class_type"] == "ConditioningCombine"
    # strength 1: the mask is the weight, no multiply
    assert [n["inputs"]["operation"] for n in g.values()
            if n["class_type"] == "MaskComposite"] == ["subtract"]


def test_a_region_without_its_uploaded_mask_is_refused_in_one_line() -> None:
    with pytest.raises(InvalidRequestError, match="need their masks") as err:
        wf.build(request(regions=two_regions()), wf.Inputs("m", regions=("left.png",)))
    assert "\n" not in str(err.value)


def test_masks_are_sent_at_the_request_size_white_inside() -> None:
    small = Region(Pixels.from_array(LEFT[::2, ::2]), "x")
    image = mask_image(request(width=128, height=64, regions=(small,)), 0)
    assert image.shape == (64, 128, 3) and image.dtype == np.uint8
    assert (image[:, :60] == 255).all() and (image[:, 68:] == 0).all()


def test_the_regions_feature_follows_the_servers_nodes() -> None:
    every = {name: {} for names in wf.REQUIRED_NODES.values() for name in names}
    features = features_from_nodes(every)
    assert features.regions and features.regions_reason("sd1") == ""
    del every["MaskComposite"]
    lacking = features_from_nodes(every)
    assert not lacking.regions and "MaskComposite" in lacking.regions_reason("sd1")


# -- against the real server -------------------------------------------------------------------
def apart(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


@pytest.mark.slow
@pytest.mark.server
def test_each_half_follows_its_region_on_the_server(remote_engine) -> None:
    """Left half "a red apple", right half "a blue whale", main prompt elsewhere: each half of
    the picture comes out as that prompt's own picture there (the same seed, the prompt over
    everything), far closer to it than to the other prompt's, which the picture without
    regions is not."""
    regions = two_regions()
    ran = remote_engine.generate(request(regions=regions))
    plain = remote_engine.generate(request()).images[0]
    apple = remote_engine.generate(request(prompt="a red apple")).images[0]
    whale = remote_engine.generate(request(prompt="a blue whale")).images[0]
    image = ran.images[0]
    left, right = np.s_[:, :24], np.s_[:, 40:]  # away from the seam
    assert apart(apple[left], whale[left]) > 4  # the two prompts do give other pictures
    assert apart(image[left], apple[left]) < 0.3 * apart(image[left], whale[left])
    assert apart(image[right], whale[right]) < 0.3 * apart(image[right], apple[right])
    assert not (apart(plain[left], apple[left]) < 0.3 * apart(plain[left], whale[left]))
    # the workflow that ran holds the masked conditioning; the request keeps the regions
    (workflow,) = ran.workflows
    assert sum(n["class_type"] == "ConditioningSetMask" for n in workflow.values()) == 3
    assert [(r.prompt, r.strength) for r in ran.request.regions] == \
        [(r.prompt, r.strength) for r in regions]
    again = remote_engine.generate(request(regions=regions)).images[0]
    assert np.array_equal(again, image)


@pytest.mark.slow
@pytest.mark.server
def test_one_region_over_everything_with_the_main_prompt_is_the_plain_image(remote_engine
                                                                           ) -> None:
    whole = Region(Pixels.from_array(np.full((64, 64), 255, np.uint8)), "a lighthouse at dusk")
    regional = remote_engine.generate(request(regions=(whole,))).images[0]
    plain = remote_engine.generate(request()).images[0]
    assert apart(regional, plain) < 0.5  # the same prediction, batched otherwise


@pytest.mark.slow
@pytest.mark.server
def test_cli_regions_on_a_server_reach_the_file_and_its_workflow(comfy_server, tmp_path,
                                                                 monkeypatch, capsys) -> None:
    from PIL import Image

    from studio.cli.main import main
    from studio.core.formats.metadata import read_settings

    monkeypatch.setenv("STUDIO_CONFIG_DIR", str(tmp_path / "config"))
    Image.fromarray(LEFT).save(tmp_path / "left.png")
    out = tmp_path / "r.png"
    code = main(["generate", "a lighthouse", "--server", comfy_server.url, "--model",
                 "tiny-sd1", "--size", "64", "--steps", "2", "--seed", "3", "--region",
                 f"{tmp_path / 'left.png'}=a blue square:0.7", "-o", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    (region,) = read_settings(out).request.regions
    assert (region.prompt, region.strength) == ("a blue square", 0.7)
    assert np.array_equal(region.mask.to_array(), LEFT)
    with Image.open(out) as img:
        assert "Regions: 1" in img.info["parameters"]
        ran = json.loads(img.info["prompt"])
    (masked,) = [n["inputs"] for n in ran.values() if n["class_type"] == "ConditioningSetMask"
                 and n["inputs"]["strength"] == 0.7]
    assert ran[masked["mask"][0]]["class_type"] == "LoadImageMask"
