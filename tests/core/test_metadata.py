"""Generation metadata: the A1111 text, our own round trips, and images made by other tools."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from studio.core.document.pixels import Pixels
from studio.core.errors import ImageReadError
from studio.core.formats.a1111 import lora_hash
from studio.core.formats.imageio import ImageWriteError, load_image
from studio.core.formats.metadata import (
    ImportedSettings,
    a1111_parameters,
    parse_a1111_parameters,
    read_settings,
    save_image,
)
from studio.core.formats.stealth import read_stealth, write_stealth
from studio.core.jobs.request import GenerationRequest, LoraWeight, SliderValue
from studio.core.samplers import to_scheduler


def _request(**changes) -> GenerationRequest:
    base = GenerationRequest(
        prompt="a lighthouse at dusk, oil painting", negative_prompt="blurry, text",
        model="models/dreamshaper_8.safetensors", model_hash="879db523c30d3b9017143d56705015e1",
        scheduler="Euler a", seed=1234, steps=20, guidance=7.0, width=512, height=768)
    return base.replace(**changes)


def _pixels(h: int = 16, w: int = 24, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)


# -- the A1111 text ------------------------------------------------------------------------
def test_a1111_text_for_txt2img_is_exact():
    assert a1111_parameters(_request()) == (
        "a lighthouse at dusk, oil painting\n"
        "Negative prompt: blurry, text\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 512x768, "
        "Model hash: 879db523c3, Model: dreamshaper_8")


def test_a1111_text_splits_karras_schedule_and_adds_img2img_variation_lora_and_clip_skip():
    init = Pixels.from_array(np.zeros((8, 8, 3), np.uint8))
    req = _request(scheduler="DPM++ 2M Karras", guidance=7.5, task="img2img", init_image=init,
                   strength=0.6, variation_seed=99, variation_strength=0.25, clip_skip=2,
                   negative_prompt="", loras=(LoraWeight("loras/film grain.safetensors", 0.8),))
    assert a1111_parameters(req) == (
        "a lighthouse at dusk, oil painting <lora:film grain:0.8>\n"
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 1234, "
        "Size: 512x768, Model hash: 879db523c3, Model: dreamshaper_8, Variation seed: 99, "
        "Variation seed strength: 0.25, Denoising strength: 0.6, Clip skip: 2")


def test_lora_hashes_as_a1111_writes_them(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    path = tmp_path / "ink.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\x00\x00\x80\x3f")
    expected = hashlib.sha256(b"\x00\x00\x80\x3f").hexdigest()[:12]
    assert lora_hash(path) == expected
    assert lora_hash(tmp_path / "missing.safetensors") == ""
    req = _request(loras=(LoraWeight(str(path), 1.0),), negative_prompt="")
    text = a1111_parameters(req, lora_hashes={"ink": expected})
    assert text.startswith("a lighthouse at dusk, oil painting <lora:ink:1>\n")
    assert text.endswith(f'Model: dreamshaper_8, Lora hashes: "ink: {expected}"')
    settings = parse_a1111_parameters(text)
    assert settings.extra["Lora hashes"] == f"ink: {expected}"
    assert settings.extra["loras"] == [("ink", 1.0)]


def test_a1111_text_quotes_values_with_commas_and_omits_unknown_hash():
    text = a1111_parameters(_request(model="stabilityai/sd-turbo, fp16", model_hash=""))
    assert text.endswith('Size: 512x768, Model: "stabilityai/sd-turbo, fp16"')
    assert "Model hash" not in text
    assert parse_a1111_parameters(text).model == "stabilityai/sd-turbo, fp16"


def test_a1111_text_reads_back_with_multiline_prompts():
    req = _request(prompt="line one\nline two", negative_prompt="bad\nworse",
                   scheduler="DPM++ 2M Karras", guidance=6.5)
    settings = parse_a1111_parameters(a1111_parameters(req))
    assert (settings.prompt, settings.negative_prompt) == ("line one\nline two", "bad\nworse")
    assert (settings.seed, settings.steps, settings.guidance) == (1234, 20, 6.5)
    assert (settings.width, settings.height) == (512, 768)
    assert (settings.sampler, settings.scheduler) == ("DPM++ 2M", "DPM++ 2M Karras")
    assert settings.model_hash == "879db523c3"


def test_parse_a1111_keeps_unknown_keys_and_lora_tags():
    text = ("cat <lora:detail:0.6>\nSteps: 30, Sampler: DPM++ SDE Karras, CFG scale: 5, "
            'Seed: 7, Size: 640x384, Hires upscale: 2, Lora hashes: "detail: abc123"')
    settings = parse_a1111_parameters(text)
    assert settings.prompt == "cat <lora:detail:0.6>"
    assert settings.negative_prompt == ""
    assert settings.scheduler == "DPM++ SDE Karras"
    assert settings.extra["Hires upscale"] == "2"
    assert settings.extra["Lora hashes"] == "detail: abc123"
    assert settings.extra["loras"] == [("detail", 0.6)]


def test_parse_a1111_prompt_only_text():
    settings = parse_a1111_parameters("just a prompt, nothing else")
    assert settings.prompt == "just a prompt, nothing else"
    assert settings.seed is None and settings.width is None


@pytest.mark.parametrize("name, schedule, ours", [
    ("Euler a", "", "Euler a"), ("euler_ancestral", "normal", "Euler a"),
    ("k_euler_ancestral", "", "Euler a"), ("k_lms", "", "LMS"),
    ("dpmpp_2m", "karras", "DPM++ 2M Karras"), ("dpmpp_2m_sde_gpu", "karras", "DPM++ 2M SDE Karras"),
    ("sample_dpmpp_2m", "normal", "DPM++ 2M"), ("dpmpp_2m_k", "", "DPM++ 2M Karras"),
    ("uni_pc_bh2", "normal", "UniPC"), ("unipc", "", "UniPC"), ("ddim", "", "DDIM"),
    ("lcm", "sgm_uniform", "LCM"), ("DPM++ 2M Karras", "", "DPM++ 2M Karras"),
    ("DPM++ 2M", "Karras", "DPM++ 2M Karras"), ("Euler", "Automatic", "Euler"),
    ("my_custom_sampler", "", None),
])
def test_foreign_sampler_names_map_to_ours(name, schedule, ours):
    assert to_scheduler(name, schedule) == ours


# -- our own files ---------------------------------------------------------------------------
def test_png_round_trip_restores_the_exact_request(tmp_path):
    req = _request(sliders=(SliderValue("age", 0.4, "text", (("a", "young"),)),),
                   loras=(LoraWeight("/l/ink.safetensors", -0.5, "ink"),), clip_skip=2)
    path = save_image(tmp_path / "out.png", _pixels(), req)
    with Image.open(path) as im:
        assert im.text["parameters"] == a1111_parameters(req)  # what A1111's PNG Info shows
        assert json.loads(im.text["studio"]) == json.loads(req.to_json())
    settings = read_settings(path)
    assert settings is not None and settings.source == "Latent Studio"
    assert settings.request == req
    assert settings.to_request() == req
    assert np.array_equal(load_image(path), _pixels())


def test_png_with_non_latin_prompt(tmp_path):
    req = _request(prompt="灯台 at dusk — «ünïcode»", negative_prompt="ぼやけ")
    path = save_image(tmp_path / "u.png", _pixels(), req)
    with Image.open(path) as im:
        assert im.text["parameters"] == a1111_parameters(req)
    settings = read_settings(path)
    assert settings.request == req
    assert parse_a1111_parameters(a1111_parameters(req)).prompt == "灯台 at dusk — «ünïcode»"


def test_img2img_request_comes_back_with_its_init_image_when_given_the_pixels(tmp_path):
    init = Pixels.from_array(_pixels(8, 8))
    req = _request(task="img2img", init_image=init, strength=0.55)
    save_image(tmp_path / "i2i.png", _pixels(), req)
    assert read_settings(tmp_path / "i2i.png", images={init.sha256: init}).request == req
    settings = read_settings(tmp_path / "i2i.png")  # pixels unknown: the settings still come back
    assert settings.strength == 0.55 and settings.extra["studio"]["task"] == "img2img"


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".webp"])
def test_jpeg_and_webp_carry_a1111_user_comment_and_our_request(tmp_path, suffix):
    req = _request(prompt="café ☕, ünïcode prompt")
    path = save_image(tmp_path / f"out{suffix}", _pixels(32, 32), req, quality=90)
    with Image.open(path) as im:
        comment = im.getexif().get_ifd(0x8769)[0x9286]
    # A1111 (piexif) and sd-parsers read: 8-byte "UNICODE\0" header, then UTF-16 big-endian.
    assert comment[:8] == b"UNICODE\x00"
    assert comment[8:].decode("utf_16_be") == a1111_parameters(req)
    assert read_settings(path).request == req
    assert read_settings(path.read_bytes()).request == req


@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
def test_user_comment_is_stored_as_a1111_does(tmp_path, suffix):
    """Type UNDEFINED in a big-endian Exif IFD: piexif, which A1111's PNG Info uses, needs it."""
    path = save_image(tmp_path / f"c{suffix}", _pixels(), _request())
    with Image.open(path) as im:
        raw = im.info["exif"]
    raw = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
    assert raw[:4] == b"MM\x00\x2a"
    entry = raw.index(b"\x92\x86\x00\x07")  # UserComment, type 7 (UNDEFINED)
    count = int.from_bytes(raw[entry + 4:entry + 8], "big")
    offset = int.from_bytes(raw[entry + 8:entry + 12], "big")
    assert raw[offset:offset + count] == b"UNICODE\x00" + a1111_parameters(_request()).encode(
        "utf_16_be")


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_other_readers_understand_our_files(tmp_path, suffix):
    """sd-parsers (a test dependency) reads what A1111 users see in our files."""
    import sd_parsers

    path = save_image(tmp_path / f"o{suffix}", _pixels(), _request(scheduler="DPM++ 2M Karras"))
    info = sd_parsers.ParserManager().parse(path)
    assert info.generator.name == "AUTOMATIC1111"
    assert [p.value for p in info.prompts] == ["a lighthouse at dusk, oil painting"]
    assert [p.value for p in info.negative_prompts] == ["blurry, text"]
    sampler = info.samplers[0]
    assert (sampler.name, sampler.parameters["scheduler"], sampler.parameters["seed"]) == (
        "DPM++ 2M", "Karras", "1234")


def test_jpeg_flattens_alpha_onto_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)  # fully transparent black
    save_image(tmp_path / "a.jpg", rgba)
    assert load_image(tmp_path / "a.jpg").min() > 240


def test_foreign_tool_reads_our_jpeg_like_a1111_without_our_json(tmp_path):
    path = save_image(tmp_path / "x.jpg", _pixels(), _request())
    with Image.open(path) as im:
        exif = im.getexif()
        exif.get_ifd(0x8769).pop(0x927C, None)  # re-saved without our XMP (or MakerNote)
        buf = io.BytesIO()
        im.save(buf, "JPEG", exif=exif)
    settings = read_settings(buf.getvalue())
    assert settings.source == "AUTOMATIC1111" and settings.request is None
    assert (settings.prompt, settings.seed, settings.scheduler) == (
        "a lighthouse at dusk, oil painting", 1234, "Euler a")


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_strip_writes_no_metadata(tmp_path, suffix):
    path = save_image(tmp_path / f"s{suffix}", _pixels(), _request(), strip=True)
    assert read_settings(path) is None
    assert b"lighthouse" not in path.read_bytes()


def test_save_refuses_unknown_extension(tmp_path):
    with pytest.raises(ImageWriteError, match=r"Could not save out\.bmp: use a \.png"):
        save_image(tmp_path / "out.bmp", _pixels())


def test_full_disk_leaves_no_file_and_says_so(tmp_path, monkeypatch):
    folder = tmp_path / "out"  # a folder of its own: fixtures may write beside tmp_path's files
    folder.mkdir()
    target = folder / "keep.png"
    target.write_bytes(b"old contents")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(ImageWriteError) as info:
        save_image(target, _pixels(), _request())
    assert str(info.value) == "Could not write keep.png: disk full."
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in folder.iterdir()) == ["keep.png"]


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ImageWriteError, match="Could not write a.png: the folder does not exist"):
        save_image(tmp_path / "nope" / "a.png", _pixels())


def test_damaged_studio_json_falls_back_to_parameters(tmp_path):
    info = PngInfo()
    info.add_text("parameters", a1111_parameters(_request()))
    info.add_text("studio", "{not json")
    Image.fromarray(_pixels()).save(tmp_path / "d.png", pnginfo=info)
    settings = read_settings(tmp_path / "d.png")
    assert settings.source == "AUTOMATIC1111" and settings.seed == 1234


def test_to_request_from_foreign_settings_fits_our_limits():
    settings = ImportedSettings(source="ComfyUI", prompt="p", seed=2**40 + 5, steps=9,
                                guidance=5.5, sampler="dpmpp_2m", width=700, height=1283,
                                extra={"schedule": "karras"})
    req = settings.to_request()
    assert (req.seed, req.steps, req.guidance, req.scheduler) == (5, 9, 5.5, "DPM++ 2M Karras")
    assert (req.width, req.height) == (704, 1280)


# -- stealth -------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha, compressed", [(True, True), (True, False), (False, True),
                                               (False, False)])
def test_stealth_round_trip(tmp_path, alpha, compressed):
    text = a1111_parameters(_request())
    pixels = write_stealth(_pixels(64, 64, 4 if alpha else 3), text, compressed=compressed,
                           alpha=alpha)
    Image.fromarray(pixels).save(tmp_path / "s.png")
    assert read_stealth(load_image(tmp_path / "s.png")) == text
    assert read_settings(tmp_path / "s.png").seed == 1234


def test_stealth_refuses_image_too_small():
    with pytest.raises(ValueError, match="too small"):
        write_stealth(_pixels(4, 4, 4), "x" * 100, compressed=False)


def test_no_stealth_in_plain_pixels():
    assert read_stealth(_pixels(64, 64, 4)) is None


# -- images from other tools ----------------------------------------------------------------
COMFY_NEG = ("(hands), text, error, cropped, (worst quality:1.2), (low quality:1.2), normal "
             "quality, (jpeg artifacts:1.3), signature, watermark, username, blurry, artist name, "
             "monochrome, sketch, censorship, censor, (copyright:1.2), extra legs, (forehead "
             "mark) (depth of field) (emotionless) (penis) (pumpkin)")
DREAM_PROMPT = (
    "professional full body photo of young woman, hyper long brunette hair, elegant hair, wearing "
    "a bikini top and asymmetric short skirt, curvy body, long legs, (imperfect skin), detailed "
    "skin, intense freckles, super long eye lashes, at night, outside, city background, 8k ultra "
    "detailed, realistic, high quality, film grain, low contrast")
NAI_NEG = ", ".join(["lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, "
                     "fewer digits, cropped, worst quality, low quality, normal quality, jpeg "
                     "artifacts, signature, watermark, username, blurry"] * 2)

# file: (source, prompt, negative, seed, steps, guidance, sampler, scheduler, width, height)
EXPECTED = {
    "AUTOMATIC1111-automatic1111_cropped.png": (
        "AUTOMATIC1111", "photo of a duck", "monochrome", 235284042, 15, 5.0, "UniPC", "UniPC",
        512, 400),
    "AUTOMATIC1111-automatic1111_cropped.jpg": (
        "AUTOMATIC1111", "photo of a duck", "monochrome", 235284042, 15, 5.0, "UniPC", "UniPC",
        512, 400),
    "AUTOMATIC1111-automatic1111_stealth.png": (
        "AUTOMATIC1111", "a circle", "a square", 2015833630, 20, 7.0, "Euler", "Euler", 64, 64),
    "bad_images-text_after_idat.png": (
        "AUTOMATIC1111", "photo of a duck", "monochrome", 235284042, 15, 5.0, "UniPC", "UniPC",
        512, 400),
    "ComfyUI-img2img_cropped.png": (
        "ComfyUI", "photograph of victorian woman with wings, sky clouds, meadow grass",
        "watermark, text", 280823642470253, 20, 8.0, "sample_dpmpp_2m", "DPM++ 2M", None, None),
    "ComfyUI-night_evening_day_morning_cropped.png": (
        "ComfyUI",
        "(best quality) (night:1.3) (darkness) sky (black) (stars:1.2) (galaxy:1.2) (space) "
        "(universe)\n(best quality) (evening:1.2) (sky:1.2) (clouds) (colorful) (HDR:1.2) "
        "(sunset:1.3)\n(best quality) (daytime:1.2) sky (blue)\n(masterpiece) (best quality) "
        "morning sky\n(masterpiece) (best quality) beautiful landscape breathtaking amazing view "
        "nature photograph forest mountains ocean (sky) national park scenery",
        COMFY_NEG, 335608130539327, 13, 8.5, "dpmpp_sde", "DPM++ SDE", 704, 1280),
    "ComfyUI-noisy_latents_3_subjects_cropped.png": (
        "ComfyUI",
        "(solo) girl (flat chest:0.9), (fennec ears:1.0)\u00a0 (fox ears:1.0), long hair, (black "
        "hair), (messy hair), (red highlights), hair over one eye, red eyes, sharp eyes, choker, "
        "(hoodie), open jacket, running (school uniform)\nsky clouds nature national park "
        "beautiful winter snow scenery HDR landscape",
        COMFY_NEG, 890421140397575, 16, 7.0, "sample_dpmpp_sde", "DPM++ SDE", 256, 512),
    "ComfyUI-unclip_2pass_cropped.png": (
        "ComfyUI",
        "(waifu, anime, exceptional, best aesthetic, new, newest, best quality, masterpiece, "
        "extremely detailed:1.2)",
        "lowres, (bad anatomy), (bad hands), text, missing finger, extra digits, fewer digits, "
        "blurry, (mutated hands and fingers), (poorly drawn face), (mutation), (deformed face), "
        "(ugly), ((bad proportions)), (extra limbs), extra face, (double head), (extra head), "
        "(extra feet), monster, logo, cropped, worst quality, jpeg, humpbacked, long body, long "
        "neck, (jpeg artifacts), deleted, old, oldest, (censored), (bad aesthetic), (mosaic "
        "censoring, bar censor, blur censor)",
        1106257833005336, 26, 8.0, "uni_pc_bh2", "UniPC", 1280, 704),
    "Fooocus-fooocus1_cropped.png": (
        "Fooocus", "a smiling goldfish", "", 6952411511246973023, 30, 4.0, "dpmpp_2m_sde_gpu",
        "DPM++ 2M SDE Karras", 768, 1280),
    "InvokeAI-invokeai_dream1.png": (
        "InvokeAI", DREAM_PROMPT, "rendering, glowing eyes, skinny", 2980747362, 50, 5.0, "k_lms",
        "LMS", 512, 768),
    "InvokeAI-invokeai_sdmeta1.png": (
        "InvokeAI", DREAM_PROMPT, "rendering, glowing eyes, skinny", 2980747362, 50, 5.0, "k_lms",
        "LMS", 512, 768),
    "InvokeAI-invokeai_imeta1.png": (
        "InvokeAI", "digital artwork, oil painting. painterly brushstrokes, holidays,",
        "grainy+, photo, oversaturated, overexposed, blurry, compressed jpg+, noisy++, unfocused "
        ", black and white", 3293022630, 35, 8.0, "euler", "Euler", 1024, 1024),
    "NovelAI-novelai1_cropped.png": (
        "NovelAI", "masterpiece, best quality,  cat, space, icon", NAI_NEG, 2253955223, 50, 10.0,
        "k_euler_ancestral", "Euler a", None, None),
}


def test_every_foreign_file_is_covered(foreign_metadata):
    files = {p.name for p in foreign_metadata.iterdir() if p.suffix != ".md"}
    bad = {n for n in files if n.startswith("bad_images-")} - {"bad_images-text_after_idat.png"}
    assert files - bad == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_foreign_file_restores_its_settings(foreign_metadata, name):
    settings = read_settings(foreign_metadata / name)
    source, prompt, negative, seed, steps, guidance, sampler, scheduler, width, height = EXPECTED[name]
    assert settings is not None and settings.source == source
    assert settings.prompt == prompt
    assert settings.negative_prompt == negative
    assert (settings.seed, settings.steps, settings.guidance) == (seed, steps, guidance)
    assert (settings.sampler, settings.scheduler) == (sampler, scheduler)
    assert (settings.width, settings.height) == (width, height)
    req = settings.to_request()
    assert req.prompt == prompt and req.scheduler == scheduler and req.steps == steps


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n.startswith("ComfyUI")))
def test_comfyui_workflow_alone_gives_the_same_settings(foreign_metadata, tmp_path, name):
    with Image.open(foreign_metadata / name) as im:
        workflow = im.info["workflow"]
    info = PngInfo()
    info.add_text("workflow", workflow)  # as if the API graph were missing
    Image.new("RGB", (1, 1)).save(tmp_path / "w.png", pnginfo=info)
    from_prompt = read_settings(foreign_metadata / name)
    from_workflow = read_settings(tmp_path / "w.png")
    for key in ("prompt", "negative_prompt", "seed", "steps", "guidance", "sampler", "width",
                "height", "model", "strength"):
        assert getattr(from_workflow, key) == getattr(from_prompt, key), key


def test_comfyui_settings_through_links_to_seed_and_text_nodes(tmp_path):
    graph = {
        "1": {"class_type": "KSampler", "inputs": {
            "seed": ["5", 0], "steps": 12, "cfg": 4.5, "sampler_name": "euler", "scheduler": "karras",
            "denoise": 1.0, "model": ["2", 0], "positive": ["3", 0], "negative": ["4", 0],
            "latent_image": ["6", 0]}},
        "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": ["7", 0], "clip": ["2", 1]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "ugly", "clip": ["2", 1]}},
        "5": {"class_type": "Seed (rgthree)", "inputs": {"seed": 987654}},
        "6": {"class_type": "EmptyLatentImage", "inputs": {"width": 832, "height": 1216,
                                                           "batch_size": 1}},
        "7": {"class_type": "String Literal", "inputs": {"string": "a red fox"}},
    }
    info = PngInfo()
    info.add_text("prompt", json.dumps(graph))
    Image.new("RGB", (1, 1)).save(tmp_path / "c.png", pnginfo=info)
    settings = read_settings(tmp_path / "c.png")
    assert (settings.source, settings.prompt, settings.negative_prompt) == ("ComfyUI", "a red fox",
                                                                           "ugly")
    assert (settings.seed, settings.steps, settings.guidance) == (987654, 12, 4.5)
    assert (settings.scheduler, settings.width, settings.height) == ("Euler Karras", 832, 1216)
    assert settings.model == "sdxl.safetensors"


def test_foreign_models_and_extra_details(foreign_metadata):
    a1111 = read_settings(foreign_metadata / "AUTOMATIC1111-automatic1111_cropped.png")
    assert (a1111.model, a1111.model_hash) == ("realistic_realisticVisionV20_v20", "c0d1994c73")
    stealth = read_settings(foreign_metadata / "AUTOMATIC1111-automatic1111_stealth.png")
    assert stealth.extra["Clip skip"] == "2" and stealth.extra["schedule"] == "Automatic"
    comfy = read_settings(foreign_metadata / "ComfyUI-img2img_cropped.png")
    assert comfy.model == "v1-5-pruned-emaonly.ckpt" and comfy.strength == pytest.approx(0.87)
    two_pass = read_settings(foreign_metadata / "ComfyUI-night_evening_day_morning_cropped.png")
    assert [s["seed"] for s in two_pass.extra["samplers"]] == [335608130539327, 1122440447966177]
    assert two_pass.model == "Anything-V3.0.ckpt"
    invoke = read_settings(foreign_metadata / "InvokeAI-invokeai_imeta1.png")
    assert invoke.model == "juggernautXL"
    fooocus = read_settings(foreign_metadata / "Fooocus-fooocus1_cropped.png")
    assert (fooocus.model, fooocus.model_hash) == ("juggernautXL_v8Rundiffusion", "aeb7e9e689")


@pytest.mark.parametrize("name", ["bad_images-empty_image.png", "bad_images-empty_image.jpg"])
def test_images_without_metadata_give_none(foreign_metadata, name):
    assert read_settings(foreign_metadata / name) is None


def test_empty_file_is_a_clear_error(foreign_metadata):
    with pytest.raises(ImageReadError) as info:
        read_settings(foreign_metadata / "bad_images-empty_file.png")
    assert str(info.value) == "Could not open bad_images-empty_file.png: the file is empty."


def test_not_an_image_is_a_clear_error(tmp_path):
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(ImageReadError, match="notes.png: it is not an image"):
        read_settings(tmp_path / "notes.png")
