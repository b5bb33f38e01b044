"""The ComfyUI workflows as graphs (no server): each task, batch, seeds, LoRAs, schedulers."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.document.pixels import Pixels
from studio.core.errors import InvalidRequestError
from studio.core.jobs.request import GenerationRequest, SliderValue
from studio.remote import workflow as wf
from studio.remote.engine import features_from_nodes, split


def nodes_of(graph: dict, class_type: str) -> list[dict]:
    return [n["inputs"] for n in graph.values() if n["class_type"] == class_type]


def request(**kw) -> GenerationRequest:
    base = dict(prompt="a cat", negative_prompt="blurry", model="tiny", steps=2, width=64,
                height=64, seed=7, guidance=5.0)
    return GenerationRequest(**{**base, **kw})


def image(value: int = 128) -> Pixels:
    return Pixels.from_array(np.full((64, 64, 3), value, np.uint8))


def test_txt2img_graph() -> None:
    g = wf.txt2img(request(scheduler="DPM++ 2M Karras"), "tiny.safetensors")
    assert nodes_of(g, "CheckpointLoaderSimple") == [{"ckpt_name": "tiny.safetensors"}]
    (latent,) = nodes_of(g, "EmptyLatentImage")
    assert (latent["width"], latent["height"], latent["batch_size"]) == (64, 64, 1)
    (ks,) = nodes_of(g, "KSampler")
    assert (ks["seed"], ks["steps"], ks["cfg"], ks["denoise"]) == (7, 2, 5.0, 1.0)
    assert (ks["sampler_name"], ks["scheduler"]) == ("dpmpp_2m", "karras")
    texts = sorted(n["text"] for n in nodes_of(g, "CLIPTextEncode"))
    assert texts == ["a cat", "blurry"]
    assert wf.output_nodes(g) and not nodes_of(g, "LoadImage")


def test_img2img_uses_strength_as_denoise() -> None:
    g = wf.img2img(request(task="img2img", init_image=image(), strength=0.4), "m", "up.png")
    assert nodes_of(g, "LoadImage") == [{"image": "up.png"}]
    assert nodes_of(g, "VAEEncode") and not nodes_of(g, "EmptyLatentImage")
    assert nodes_of(g, "KSampler")[0]["denoise"] == pytest.approx(0.4)


def test_inpaint_masks_the_latent_noise() -> None:
    mask = Pixels.from_array(np.zeros((64, 64), np.uint8))
    g = wf.inpaint(request(task="inpaint", init_image=image(), mask=mask), "m", "i.png", "k.png")
    assert nodes_of(g, "LoadImageMask") == [{"image": "k.png", "channel": "red"}]
    (noise_mask,) = nodes_of(g, "SetLatentNoiseMask")
    ks = nodes_of(g, "KSampler")[0]
    set_id = next(k for k, n in g.items() if n["class_type"] == "SetLatentNoiseMask")
    assert ks["latent_image"] == [set_id, 0] and noise_mask["samples"]


def test_batch_gives_each_image_its_own_seed() -> None:
    g = wf.build(request(batch_size=3, seed=10), wf.Inputs("m"))
    assert [ks["seed"] for ks in nodes_of(g, "KSampler")] == [10, 11, 12]
    assert len(wf.output_nodes(g)) == 3
    assert len(nodes_of(g, "CheckpointLoaderSimple")) == 1  # one model for the batch


def test_seeds_up_to_64_bits() -> None:
    big = 2**63 + 5
    g = wf.build(request(), wf.Inputs("m"), seeds=[big])
    assert nodes_of(g, "KSampler")[0]["seed"] == big
    with pytest.raises(InvalidRequestError, match="out of range"):
        wf.build(request(), wf.Inputs("m"), seeds=[2**64])


def test_loras_chain_with_their_weights() -> None:
    g = wf.build(request(prompt="a cat <lora:ink:0.5>"),
                 wf.Inputs("m", loras=(("ink.safetensors", 0.5), ("b.safetensors", -1.0))))
    loras = nodes_of(g, "LoraLoader")
    assert [(n["lora_name"], n["strength_model"]) for n in loras] == [
        ("ink.safetensors", 0.5), ("b.safetensors", -1.0)]
    second_id = [k for k, n in g.items() if n["class_type"] == "LoraLoader"][1]
    assert nodes_of(g, "KSampler")[0]["model"] == [second_id, 0]
    assert "<lora" not in " ".join(n["text"] for n in nodes_of(g, "CLIPTextEncode"))


def test_clip_skip_counts_from_the_end() -> None:
    g = wf.build(request(clip_skip=1), wf.Inputs("m"))
    assert nodes_of(g, "CLIPSetLastLayer")[0]["stop_at_clip_layer"] == -2


def test_every_scheduler_of_ours_maps_or_names_the_nearest() -> None:
    from studio.core.samplers import SCHEDULER_NAMES

    for name in SCHEDULER_NAMES:
        if name in wf.NEAREST:
            with pytest.raises(InvalidRequestError) as err:
                wf.comfy_sampler(name)
            assert wf.NEAREST[name] in str(err.value) and "\n" not in str(err.value)
        else:
            assert wf.comfy_sampler(name) == wf.SCHEDULERS[name]
    with pytest.raises(InvalidRequestError, match="nearest is Euler"):
        wf.comfy_sampler("Heun", available=("euler",))


def test_local_only_requests_are_refused_in_one_line() -> None:
    req = request(sliders=(SliderValue("hair", 1.0, "prompt"),))
    with pytest.raises(InvalidRequestError, match="local engine only"):
        wf.build(req, wf.Inputs("m"))


def test_upscale_graph() -> None:
    g = wf.upscale("in.png", "4x.pth")
    assert nodes_of(g, "UpscaleModelLoader") == [{"model_name": "4x.pth"}]
    assert nodes_of(g, "ImageUpscaleWithModel") and wf.output_nodes(g)


def test_features_follow_the_servers_nodes() -> None:
    info = {name: {} for name in wf.REQUIRED_NODES["txt2img"]}
    info["KSampler"] = {"input": {"required": {"sampler_name": [["euler", "lcm"]]}}}
    features = features_from_nodes(info)
    assert features.backend == "comfyui" and "sd1" in features.families
    assert not features.img2img and "VAEEncode" in features.reason("img2img")
    assert set(features.schedulers) == {"Euler", "Euler Karras", "Euler Exponential", "LCM",
                                        "Flow Euler"}
    assert "local engine" in features.reason("latent_sliders")


def test_batches_split_across_servers() -> None:
    assert split([0, 1, 2, 3, 4], 2) == [[0, 1, 2], [3, 4]]
    assert split([0], 3) == [[0]]


def test_servers_setting_from_environment(monkeypatch, tmp_path) -> None:
    from studio.settings import load_settings

    monkeypatch.setenv("STUDIO_SERVERS", "127.0.0.1:8188, https://gpu.example/")
    settings = load_settings(file=tmp_path / "none.json")
    assert settings.servers == ("http://127.0.0.1:8188", "https://gpu.example")
    assert load_settings(file=tmp_path / "n.json", servers=["http://127.0.0.1:1"]).servers == (
        "http://127.0.0.1:1",)
    monkeypatch.setenv("STUDIO_SERVERS", "ftp://x")
    with pytest.raises(InvalidRequestError, match="STUDIO_SERVERS"):
        load_settings(file=tmp_path / "none.json")


def test_variation_blends_two_seeds_noise_per_image() -> None:
    g = wf.build(request(batch_size=2, seed=10, variation_seed=90, variation_strength=0.25),
                 wf.Inputs("m"))
    assert not nodes_of(g, "KSampler") and len(wf.sampler_nodes(g)) == 2
    assert [n["noise_seed"] for n in nodes_of(g, "RandomNoise")] == [10, 90, 11, 91]
    keep, move = (n["multiplier"] for n in nodes_of(g, "LatentMultiply")[:2])
    assert keep**2 + move**2 == pytest.approx(1.0) and keep > move > 0  # noise keeps its scale
    assert wf.variation_weights(0.0) == (1.0, 0.0) and wf.variation_weights(1.0) == (0.0, 1.0)
    assert len(wf.output_nodes(g)) == 2
    plain = wf.build(request(task="img2img", init_image=image(), variation_seed=90,
                             variation_strength=0.25), wf.Inputs("m", init_image="i.png"))
    assert nodes_of(plain, "KSampler")  # as on the local engine: text to image only


def test_hires_fix_enlarges_on_the_server_then_samples_again() -> None:
    req = request(task="img2img", init_image=image(), strength=0.35, width=128, height=128)
    g = wf.build(req, wf.Inputs("m", init_image="small.png", enlarge_with="4x.pth"))
    assert nodes_of(g, "UpscaleModelLoader") == [{"model_name": "4x.pth"}]
    (scale,) = nodes_of(g, "ImageScale")
    assert (scale["width"], scale["height"], scale["upscale_method"]) == (128, 128, "lanczos")
    up_id = next(k for k, n in g.items() if n["class_type"] == "ImageUpscaleWithModel")
    assert scale["image"] == [up_id, 0]
    assert nodes_of(g, "KSampler")[0]["denoise"] == pytest.approx(0.35)
    lanczos = wf.build(req, wf.Inputs("m", init_image="s.png", enlarge_with="lanczos"))
    assert nodes_of(lanczos, "ImageScale") and not nodes_of(lanczos, "UpscaleModelLoader")


def test_flux_from_a_lone_diffusion_model() -> None:
    encoders, vae, missing = wf.companions(
        "flux", ["clip_l.safetensors", "t5/t5xxl_fp8.safetensors", "clip_g.safetensors"],
        ["sdxl_vae.safetensors", "ae.safetensors"])
    assert encoders == ("t5/t5xxl_fp8.safetensors", "clip_l.safetensors")
    assert vae == "ae.safetensors" and not missing
    g = wf.build(request(guidance=3.5, prompt="a cat <lora:ink:0.5>"),
                 wf.Inputs("flux1-dev.safetensors", loras=(("ink.safetensors", 0.5),),
                           family="flux", folder="diffusion_models", text_encoders=encoders,
                           vae=vae))
    assert nodes_of(g, "UNETLoader")[0]["unet_name"] == "flux1-dev.safetensors"
    assert nodes_of(g, "DualCLIPLoader")[0]["type"] == "flux"
    assert nodes_of(g, "FluxGuidance")[0]["guidance"] == 3.5
    assert nodes_of(g, "KSampler")[0]["cfg"] == 1.0  # Flux: guidance is distilled
    assert nodes_of(g, "EmptySD3LatentImage") and not nodes_of(g, "CheckpointLoaderSimple")
    assert len(nodes_of(g, "CLIPTextEncode")) == 1  # no negative prompt for Flux
    vae_id = next(k for k, n in g.items() if n["class_type"] == "VAELoader")
    assert nodes_of(g, "VAEDecode")[0]["vae"] == [vae_id, 0]


def test_sd3_with_three_text_encoders_or_a_checkpoint() -> None:
    encoders, vae, missing = wf.companions(
        "sd3", ["clip_g.safetensors", "clip_l.safetensors", "t5xxl_fp16.safetensors"],
        ["sd3_vae.safetensors"])
    assert encoders == ("clip_l.safetensors", "clip_g.safetensors", "t5xxl_fp16.safetensors")
    g = wf.build(request(), wf.Inputs("sd3.5_medium.safetensors", family="sd3",
                                      folder="diffusion_models", text_encoders=encoders,
                                      vae=vae))
    assert nodes_of(g, "TripleCLIPLoader") and nodes_of(g, "EmptySD3LatentImage")
    assert nodes_of(g, "KSampler")[0]["cfg"] == 5.0 and len(nodes_of(g, "CLIPTextEncode")) == 2
    whole = wf.build(request(), wf.Inputs("sd3_medium_incl_clips.safetensors", family="sd3"))
    assert nodes_of(whole, "CheckpointLoaderSimple") and nodes_of(whole, "EmptySD3LatentImage")


def test_what_a_lone_diffusion_model_lacks_is_named_with_where_it_goes() -> None:
    _e, _v, missing = wf.companions("flux", ["clip_l.safetensors"], [])
    assert len(missing) == 2 and all("\n" not in m for m in missing)
    assert "T5-XXL" in missing[0] and "models/text_encoders" in missing[0]
    assert "ae.safetensors" in missing[1] and "models/vae" in missing[1]
    with pytest.raises(InvalidRequestError, match="Flux, SD3 and Qwen-Image-Edit only"):
        wf.build(request(), wf.Inputs("x.safetensors", family="sd1", folder="diffusion_models"))


def test_connect_check_names_what_a_family_lacks_and_where_it_goes() -> None:
    from studio.remote.check import _family_line

    folders = {"checkpoints": ["tiny-sd1.safetensors"], "diffusion_models": ["flux1-dev.safetensors"],
               "text_encoders": ["clip_l.safetensors"], "vae": []}
    line = _family_line("flux", "Flux", [], folders)
    assert not line.ok and line.detail.startswith("flux1-dev.safetensors needs")
    assert "T5-XXL" in line.detail and "models/text_encoders/" in line.detail
    assert "ae.safetensors" in line.detail and "\n" not in line.detail
    folders.update(text_encoders=["clip_l.safetensors", "t5xxl_fp16.safetensors"],
                   vae=["ae.safetensors"])
    assert _family_line("flux", "Flux", [], folders).ok
    none = _family_line("sd3", "SD3", [], folders)
    assert not none.ok and "models/diffusion_models/" in none.detail and "CLIP-G" in none.detail
    old = _family_line("flux", "Flux", ["FluxGuidance"], folders)
    assert not old.ok and "FluxGuidance" in old.detail and "update ComfyUI" in old.detail


def test_a_klein_checkpoint_on_a_server_is_refused_not_run_as_plain_flux() -> None:
    # Run as Flux, a Flux 2 Klein file would fail or give another picture; Kontext edits
    # with its own workflow (test_remote_edit).
    from studio.remote.engine import guess_family, refuse_edit_model

    assert guess_family("flux1-kontext-dev-Q8_0.gguf") == "flux-kontext"
    assert guess_family("flux1-dev-fp8.safetensors") == "flux"
    assert guess_family("flux-2-klein-4b.safetensors") == "flux2-klein"
    with pytest.raises(InvalidRequestError, match="builds no ComfyUI workflow for it yet"):
        refuse_edit_model(guess_family("flux-2-klein-4b.safetensors"), "flux-2-klein-4b")
    refuse_edit_model("flux", "flux1-dev")  # plain Flux runs
    refuse_edit_model("flux-kontext", "flux1-kontext-dev")  # its edit workflow is built
