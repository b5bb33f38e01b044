"""Edit with words on a ComfyUI server: a Flux Kontext model given an image and an
instruction runs ComfyUI's own Kontext wiring (``studio.remote.workflow.edits``): the
instruction's conditioning with the encoded image as its reference (``ReferenceLatent``),
``FluxGuidance``, no negative, a new latent at the request's size sampled at CFG 1.

A real Kontext needs T5-XXL (9 GB: ComfyUI builds Flux's text encoder at its full shape
whatever the file holds), so the server tests use the spare server's name-only files, as
``test_remote_families`` does: the server's own ``/prompt`` validation (every node, input,
link type and file name) accepts the graph, the loaders then fail in one line; and every
node and input of the graph is one the server's ``/object_info`` lists.
"""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.document.pixels import Pixels
from studio.core.jobs.request import GenerationRequest
from studio.remote import workflow as wf

KONTEXT = "flux1-kontext-tiny.safetensors"


def _request(**kw) -> GenerationRequest:
    photo = np.zeros((64, 96, 3), np.uint8)
    photo[:, :48] = (200, 40, 40)
    values = dict(prompt="make the hair red", model=KONTEXT, steps=2, width=96, height=64,
                  guidance=2.5, scheduler="Flow Euler", task="img2img",
                  init_image=Pixels.from_array(photo), strength=0.75, seed=9)
    values.update(kw)
    return GenerationRequest(**values)


def _inputs(**kw) -> wf.Inputs:
    values = dict(checkpoint=KONTEXT, init_image="photo.png", family="flux-kontext",
                  folder="diffusion_models", text_encoders=("t5xxl_tiny.safetensors",
                                                            "clip_l.safetensors"),
                  vae="ae.safetensors")
    values.update(kw)
    return wf.Inputs(**values)


def _node(graph: dict, ref: list) -> dict:
    return graph[ref[0]]


def test_the_edit_graph_is_comfyuis_kontext_wiring():
    graph = wf.build(_request(), _inputs())
    (sampler,) = [n for n in graph.values() if n["class_type"] == "KSampler"]
    s = sampler["inputs"]
    assert (s["cfg"], s["denoise"], s["seed"], s["steps"]) == (1.0, 1.0, 9, 2)
    # A new image from noise at the request's size (not the photo refined by a strength).
    latent = _node(graph, s["latent_image"])
    assert latent["class_type"] == "EmptySD3LatentImage"
    assert (latent["inputs"]["width"], latent["inputs"]["height"]) == (96, 64)
    # Positive: the instruction, the image as its reference latent, then the guidance.
    guided = _node(graph, s["positive"])
    assert guided["class_type"] == "FluxGuidance" and guided["inputs"]["guidance"] == 2.5
    reference = _node(graph, guided["inputs"]["conditioning"])
    assert reference["class_type"] == "ReferenceLatent"
    text = _node(graph, reference["inputs"]["conditioning"])
    assert text["class_type"] == "CLIPTextEncode"
    assert text["inputs"]["text"] == "make the hair red"
    encoded = _node(graph, reference["inputs"]["latent"])
    assert encoded["class_type"] == "VAEEncode"
    loaded = _node(graph, encoded["inputs"]["pixels"])
    assert loaded == {"class_type": "LoadImage", "inputs": {"image": "photo.png"}}
    # Negative: the instruction zeroed out (Flux has no negative prompt).
    negative = _node(graph, s["negative"])
    assert negative["class_type"] == "ConditioningZeroOut"
    assert negative["inputs"]["conditioning"] == reference["inputs"]["conditioning"]
    # Kontext's own file with its encoders and VAE beside it; nothing resizes the image.
    kinds = [n["class_type"] for n in graph.values()]
    assert {"UNETLoader", "DualCLIPLoader", "VAELoader"} <= set(kinds)
    assert "FluxKontextImageScale" not in kinds and "ImageScale" not in kinds
    named = {n for key in ("txt2img", "flux", "edit") for n in wf.REQUIRED_NODES[key]}
    assert set(kinds) <= named  # what a server lacks is named before sending


def test_a_batch_edits_the_same_image_with_a_seed_each():
    graph = wf.build(_request(batch_size=2), _inputs(), seeds=[9, 10])
    samplers = [n["inputs"] for n in graph.values() if n["class_type"] == "KSampler"]
    assert [s["seed"] for s in samplers] == [9, 10]
    assert samplers[0]["positive"] == samplers[1]["positive"]  # one reference for both
    assert sum(n["class_type"] == "LoadImage" for n in graph.values()) == 1


def test_kontext_without_an_image_draws_from_words_and_plain_flux_still_refines():
    words = wf.build(_request(task="txt2img", init_image=None), _inputs(init_image=""))
    assert "ReferenceLatent" not in [n["class_type"] for n in words.values()]
    flux = wf.build(_request(model="flux1-dev.safetensors"),
                    _inputs(checkpoint="flux1-dev.safetensors", family="flux"))
    kinds = [n["class_type"] for n in flux.values()]
    assert "ReferenceLatent" not in kinds
    (sampler,) = [n["inputs"] for n in flux.values() if n["class_type"] == "KSampler"]
    assert sampler["denoise"] == 0.75  # Flux image to image uses its strength


# -- against the real server ------------------------------------------------------------------
def _check_against_object_info(graph: dict, info: dict) -> None:
    """Every node is one the server has, with every input it requires and no other."""
    for node in graph.values():
        spec = info[node["class_type"]]["input"]
        required = set(spec.get("required", {}))
        known = required | set(spec.get("optional", {}))
        given = set(node["inputs"])
        assert required <= given, (node["class_type"], required - given)
        assert given <= known, (node["class_type"], given - known)


@pytest.mark.slow
@pytest.mark.server
def test_a_kontext_edit_passes_the_servers_validation(spare) -> None:
    from studio.core.jobs.cancel import CancelToken
    from studio.remote.engine import RemoteEngine
    from studio.remote.errors import RemoteExecutionError, ServerRefusedError

    broken = (spare.base / "models" / "diffusion_models" / "flux1-tiny.safetensors").read_bytes()
    (spare.base / "models" / "diffusion_models" / KONTEXT).write_bytes(broken)  # names only
    engine = RemoteEngine([spare.url])
    try:
        (model,) = [m for m in engine.list_models("diffusion") if m.id == KONTEXT]
        assert model.family == "flux-kontext" and model.recommended_value("edit")  # the window
        info = engine._run(engine._object_info())
        _check_against_object_info(wf.build(_request(), _inputs()), info)
        with pytest.raises(RemoteExecutionError) as err:  # not ServerRefusedError: valid
            engine.generate(_request(), cancel=CancelToken())
    finally:
        engine.close()
    text = str(err.value)
    assert not isinstance(err.value, ServerRefusedError)
    assert "\n" not in text and spare.url in text
    assert any(name in text for name in ("UNETLoader", "DualCLIPLoader", "VAELoader"))


# -- Qwen-Image-Edit --------------------------------------------------------------------------
QWEN = "qwen_image_edit_fp8_e4m3fn.safetensors"
QWEN_PLUS = "qwen_image_edit_2509_fp8_e4m3fn.safetensors"
QWEN_VL = "qwen_2.5_vl_7b_fp8_scaled.safetensors"
QWEN_VAE = "qwen_image_vae.safetensors"


def _qwen_inputs(name: str = QWEN, **kw) -> wf.Inputs:
    values = dict(checkpoint=name, init_image="photo.png", family="qwen-image-edit",
                  folder="diffusion_models", text_encoders=(QWEN_VL,), vae=QWEN_VAE)
    values.update(kw)
    return wf.Inputs(**values)


@pytest.mark.parametrize("name", [QWEN, QWEN_PLUS])
def test_the_qwen_edit_graph_is_comfyuis_template_wiring(name):
    """As ComfyUI's Qwen-Image-Edit templates: Qwen2.5-VL encodes the instruction and the
    negative prompt each with the image (the 2509/2511 files with the Plus encoder), the model
    patched by ModelSamplingAuraFlow (shift 3) and CFGNorm, sampled at the request's
    guidance from a new latent at the request's size."""
    request = _request(model=name, guidance=4.0, negative_prompt="blurry")
    graph = wf.build(request, _qwen_inputs(name))
    (sampler,) = [n for n in graph.values() if n["class_type"] == "KSampler"]
    s = sampler["inputs"]
    assert (s["cfg"], s["denoise"], s["seed"], s["steps"]) == (4.0, 1.0, 9, 2)
    latent = _node(graph, s["latent_image"])
    assert latent["class_type"] == "EmptySD3LatentImage"
    assert (latent["inputs"]["width"], latent["inputs"]["height"]) == (96, 64)
    plus = name == QWEN_PLUS
    node = "TextEncodeQwenImageEditPlus" if plus else "TextEncodeQwenImageEdit"
    image_key = "image1" if plus else "image"
    positive, negative = _node(graph, s["positive"]), _node(graph, s["negative"])
    for encoded, text in ((positive, "make the hair red"), (negative, "blurry")):
        assert encoded["class_type"] == node and encoded["inputs"]["prompt"] == text
        assert _node(graph, encoded["inputs"][image_key]) == {
            "class_type": "LoadImage", "inputs": {"image": "photo.png"}}
        assert _node(graph, encoded["inputs"]["vae"]) == {
            "class_type": "VAELoader", "inputs": {"vae_name": QWEN_VAE}}
        clip = _node(graph, encoded["inputs"]["clip"])
        assert clip == {"class_type": "CLIPLoader",
                        "inputs": {"clip_name": QWEN_VL, "type": "qwen_image"}}
    norm = _node(graph, s["model"])
    assert norm["class_type"] == "CFGNorm" and norm["inputs"]["strength"] == 1.0
    shift = _node(graph, norm["inputs"]["model"])
    assert shift["class_type"] == "ModelSamplingAuraFlow" and shift["inputs"]["shift"] == 3.0
    assert _node(graph, shift["inputs"]["model"]) == {
        "class_type": "UNETLoader", "inputs": {"unet_name": name, "weight_dtype": "default"}}
    kinds = {n["class_type"] for n in graph.values()}
    named = {n for key in ("txt2img", "qwen", "edit-qwen") for n in wf.REQUIRED_NODES[key]}
    assert kinds <= named


def test_a_qwen_edit_model_alone_names_what_to_put_beside_it():
    encoders, vae, missing = wf.companions("qwen-image-edit", ["clip_l.safetensors"],
                                           ["ae.safetensors"])
    assert len(missing) == 2 and all("\n" not in m for m in missing)
    assert "qwen_2.5_vl" in missing[0] and "text_encoders" in missing[0]
    assert "qwen_image_vae" in missing[1] and "models/vae" in missing[1]
    encoders, vae, missing = wf.companions("qwen-image-edit", [QWEN_VL, "clip_l.safetensors"],
                                           ["ae.safetensors", QWEN_VAE])
    assert (encoders, vae, missing) == ((QWEN_VL,), QWEN_VAE, [])


@pytest.mark.slow
@pytest.mark.server
def test_a_qwen_edit_passes_the_servers_validation(spare) -> None:
    """The server's own /prompt validation accepts both Qwen-Image-Edit graphs (every node,
    input, link type and file name), and `studio servers --check` finds the model with its
    encoder and VAE; the names-only files then fail in the loaders, in one line."""
    from studio.core.jobs.cancel import CancelToken
    from studio.remote.check import check_servers
    from studio.remote.client import ServerConfig
    from studio.remote.engine import RemoteEngine
    from studio.remote.errors import RemoteExecutionError, ServerRefusedError

    models = spare.base / "models"
    broken = (models / "diffusion_models" / "flux1-tiny.safetensors").read_bytes()
    written = [models / "diffusion_models" / QWEN, models / "diffusion_models" / QWEN_PLUS,
               models / "text_encoders" / QWEN_VL, models / "vae" / QWEN_VAE]
    for path in written:
        path.write_bytes(broken)  # names only: a real one is 20 GB and more
    engine = RemoteEngine([spare.url])
    try:
        listed = {m.id: m for m in engine.list_models("diffusion")}
        for name in (QWEN, QWEN_PLUS):
            assert listed[name].family == "qwen-image-edit"
            assert listed[name].recommended_value("edit")  # the window's edit mode
        info = engine._run(engine._object_info())
        for name in (QWEN, QWEN_PLUS):
            _check_against_object_info(wf.build(_request(model=name), _qwen_inputs(name)), info)
            with pytest.raises(RemoteExecutionError) as err:  # not ServerRefusedError: valid
                engine.generate(_request(model=name, guidance=4.0), cancel=CancelToken())
            text = str(err.value)
            assert not isinstance(err.value, ServerRefusedError)
            assert "\n" not in text and spare.url in text
            assert any(n in text for n in ("UNETLoader", "CLIPLoader", "VAELoader"))
        report = check_servers([ServerConfig(spare.url)])
        (line,) = [ln for ln in report.splitlines() if "Qwen-Image-Edit" in ln]
        assert QWEN_VL in line and QWEN_VAE in line, line
    finally:
        engine.close()
        for path in written:
            path.unlink(missing_ok=True)
