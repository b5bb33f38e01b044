"""Images from every tool we read, built as each tool writes them (tests/data/metadata), with
expected values written by hand; and files built to hurt a reader."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from studio.core.errors import ImageReadError
from studio.core.formats.a1111 import parse_a1111_parameters
from studio.core.formats.imported import ImportedSettings
from studio.core.formats.metadata import read_settings, save_image
from studio.core.jobs.request import GenerationRequest

DATA = Path(__file__).parents[1] / "data" / "metadata"
FIELDS = ("source", "prompt", "negative_prompt", "seed", "steps", "guidance", "sampler",
          "schedule", "width", "height", "model", "strength", "task")

# file: the values a person reads off the tool's own screen for that image.
EXPECTED: dict[str, dict[str, object]] = {
    "a1111/hires_fix.png": dict(
        source="AUTOMATIC1111", prompt="a castle on a hill", negative_prompt="fog", seed=42,
        steps=20, guidance=7.0, sampler="Euler a", schedule="Automatic", width=512, height=768,
        model="v1-5-pruned-emaonly", strength=None, task="txt2img"),
    "a1111/inpaint.png": dict(
        source="AUTOMATIC1111", prompt="a red door", negative_prompt="text", seed=7, steps=30,
        guidance=5.0, sampler="DPM++ SDE", schedule="Karras", width=640, height=640,
        model="dreamshaper_8", strength=0.6, task="inpaint"),
    "forge/forge_cfg_scale.jpg": dict(
        source="Forge", prompt="a knight in the rain, cinematic", negative_prompt="lowres, blurry",
        seed=3141592653, steps=25, guidance=6.5, sampler="DPM++ 2M", schedule="Karras",
        width=832, height=1216, model="ponyDiffusionV6XL", strength=None, task="txt2img"),
    "sdnext/sdnext.png": dict(
        source="SD.Next", prompt="portrait of an old sailor", negative_prompt="cartoon",
        seed=1234567, steps=30, guidance=4.5, sampler="DPM++ 2M", schedule="", width=1024,
        height=1024, model="juggernautXL_v9", strength=None, task="txt2img"),
    "comfyui/flux_sampler_custom_advanced.png": dict(
        source="ComfyUI", prompt="a lighthouse on a cliff at dawn, volumetric light",
        negative_prompt="", seed=18446744073709551000, steps=28, guidance=3.5, sampler="euler",
        schedule="simple", width=1024, height=768, model="flux1-dev.safetensors", strength=None,
        task="txt2img"),
    "comfyui/sd_turbo_sampler_custom.png": dict(
        source="ComfyUI", prompt="a cat wearing a tiny hat", negative_prompt="", seed=5551212,
        steps=1, guidance=1.0, sampler="euler_ancestral", schedule="sd_turbo", width=512,
        height=512, model="sd_xl_turbo_1.0_fp16.safetensors", strength=None, task="txt2img"),
    "comfyui/turbo_user_comment.jpg": dict(
        source="ComfyUI", prompt="a cat wearing a tiny hat", seed=5551212, steps=1,
        guidance=1.0, sampler="euler_ancestral", width=512, height=512),
    "comfyui/sdxl_cfg_guider.webp": dict(
        source="ComfyUI", prompt="a paper boat on a puddle, macro", negative_prompt="blurry",
        seed=77, steps=30, guidance=5.5, sampler="dpmpp_2m", schedule="karras", width=1152,
        height=896, model="sdxl_base.safetensors", strength=None, task="txt2img"),
    "comfyui/text_from_other_nodes.png": dict(
        source="ComfyUI", prompt="an owl in a library, warm light",
        negative_prompt="lowres, watermark", seed=123456789012, steps=24, guidance=6.0,
        sampler="dpmpp_2m_sde", schedule="exponential", width=768, height=1344,
        model="dreamshaper_8.safetensors", strength=None, task="txt2img"),
    "comfyui/text_nodes_description.jpg": dict(
        source="ComfyUI", prompt="an owl in a library, warm light",
        negative_prompt="lowres, watermark", seed=123456789012, width=768, height=1344),
    "comfyui/img2img_image_scale.png": dict(
        source="ComfyUI", prompt="a watercolor harbour", negative_prompt="photo", seed=99,
        steps=20, guidance=7.5, sampler="euler", schedule="normal", width=768, height=512,
        model="v1-5-pruned-emaonly.safetensors", strength=0.6, task="img2img"),
    "comfyui/inpaint_size_from_image.png": dict(
        source="ComfyUI", prompt="a potted plant", negative_prompt="", seed=4242, steps=25,
        guidance=8.0, sampler="uni_pc", schedule="normal", width=96, height=64,
        model="sd15_inpainting.safetensors", strength=None, task="inpaint"),
    "comfyui/workflow_only_primitive_seed.png": dict(
        source="ComfyUI", prompt="a fox in snow", seed=31337, steps=32, guidance=4.0,
        sampler="dpmpp_2m", schedule="karras", width=896, height=1152,
        model="juggernautXL_v9.safetensors", task="txt2img"),
    "novelai/novelai_v4.webp": dict(
        source="NovelAI", prompt="1girl, reading a book, window light, best quality",
        negative_prompt="lowres, bad anatomy", seed=1732050807, steps=28, guidance=5.0,
        sampler="k_euler_ancestral", schedule="karras", width=832, height=1216, strength=None,
        task="txt2img"),
    "civitai/civitai_generator.jpg": dict(
        source="Civitai", prompt="a samurai cat, ukiyo-e", negative_prompt="bad hands",
        seed=1911142, steps=30, guidance=4.0, sampler="euler_ancestral", schedule="normal",
        width=832, height=1216, model="urn:air:sdxl:checkpoint:civitai:827184@1410435",
        task="txt2img"),
    "swarmui/swarmui.png": dict(
        source="SwarmUI", prompt="a glass terrarium with a tiny forest",
        negative_prompt="text, watermark", seed=2042464333, steps=25, guidance=1.0,
        sampler="euler", schedule="simple", width=768, height=1024, model="Flux/flux1-dev-fp8",
        task="txt2img"),
    "swarmui/swarmui.jpg": dict(
        source="SwarmUI", prompt="a glass terrarium with a tiny forest",
        negative_prompt="text, watermark", seed=2042464333, steps=25, guidance=1.0,
        sampler="euler", schedule="simple", width=768, height=1024, model="Flux/flux1-dev-fp8"),
    "ruinedfooocus/ruinedfooocus.png": dict(
        source="RuinedFooocus", prompt="a bowl of ramen, studio photo", negative_prompt="cartoon",
        seed=3864674281, steps=30, guidance=8.5, sampler="dpmpp_2m_sde_gpu", schedule="karras",
        width=1152, height=896, model="sd_xl_base_1.0_0.9vae.safetensors", strength=None,
        task="txt2img"),
    "hf_space/animagine_space.png": dict(
        source="Hugging Face Space", prompt="1girl, silver hair, starry sky",
        negative_prompt="nsfw, lowres", seed=210517, steps=28, guidance=7.0, sampler="Euler a",
        width=832, height=1216, model="Animagine XL 3.1", task="txt2img"),
    "drawthings/drawthings.png": dict(
        source="Draw Things", prompt="a mossy stone bridge over a creek", negative_prompt="people",
        seed=2718281, steps=20, guidance=4.5, sampler="DPM++ 2M Karras", width=768, height=512,
        model="sd_xl_base_1.0_f16.ckpt", strength=None, task="txt2img"),
}
# Our scheduler for each sampler above (the name mapping itself is samplers.py's job).
SCHEDULERS = {"forge/forge_cfg_scale.jpg": "DPM++ 2M Karras",
              "comfyui/sdxl_cfg_guider.webp": "DPM++ 2M Karras",
              "ruinedfooocus/ruinedfooocus.png": "DPM++ 2M SDE Karras",
              "drawthings/drawthings.png": "DPM++ 2M Karras",
              "comfyui/flux_sampler_custom_advanced.png": "Euler"}


def _same(got: object, want: object) -> bool:
    if isinstance(want, float) and isinstance(got, float):
        return math.isclose(got, want, rel_tol=1e-6)
    return got == want


def test_every_fixture_is_covered():
    files = {str(p.relative_to(DATA)) for p in DATA.rglob("*") if p.suffix != ".py" and p.is_file()}
    assert files == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_tool_is_read_right(name):
    settings = read_settings(DATA / name)
    assert settings is not None
    wrong = {k: (getattr(settings, k), v) for k, v in EXPECTED[name].items()
             if not _same(getattr(settings, k), v)}
    assert not wrong
    assert settings.source != "AUTOMATIC1111" or name.startswith("a1111/")
    if name in SCHEDULERS:
        assert settings.scheduler == SCHEDULERS[name]


def field_accuracy(shared: Path | None) -> tuple[int, int, list[str]]:
    """Fields right over our fixtures and (given) the shared sd-parsers files."""
    right = total = 0
    misses: list[str] = []
    cases = [(DATA / n, want) for n, want in EXPECTED.items()]
    if shared is not None:
        from test_metadata import EXPECTED as SHARED  # tests/core is on sys.path (rootdir)

        keys = ("source", "prompt", "negative_prompt", "seed", "steps", "guidance", "sampler",
                "scheduler", "width", "height")
        cases += [(shared / n, dict(zip(keys, v, strict=True))) for n, v in SHARED.items()]
    for path, want in cases:
        settings = read_settings(path)
        for key, value in want.items():
            total += 1
            if settings is not None and _same(getattr(settings, key), value):
                right += 1
            else:
                misses.append(f"{path.name}:{key}")
    return right, total, misses


def test_field_accuracy_is_at_least_97_percent(foreign_metadata):
    right, total, misses = field_accuracy(foreign_metadata)
    print(f"\nfield accuracy: {right}/{total} = {right / total:.1%}; missed: {misses}")
    assert right / total >= 0.97, misses


# -- the import rule -----------------------------------------------------------------------
def test_unread_fields_are_named_in_one_line():
    settings = parse_a1111_parameters("just a prompt")
    assert settings.unread == ("seed", "steps", "guidance", "sampler", "width", "height", "model")
    assert settings.unread_message == "could not read: seed, steps, CFG, sampler, size, model"


def test_an_import_changes_only_what_it_read():
    base = GenerationRequest(prompt="my own words", negative_prompt="my negative", seed=5,
                             steps=12, width=640, height=448)
    empty = ImportedSettings(source="ComfyUI", steps=30)
    assert empty.changes(base) == {"steps": 30}
    req = empty.to_request(base)
    assert (req.prompt, req.negative_prompt, req.seed, req.width) == (
        "my own words", "my negative", 5, 640)


def test_json_is_never_a_prompt(tmp_path):
    info = PngInfo()
    info.add_text("parameters", json.dumps({"nodes": 3, "something": {"else": 1}}))
    Image.new("RGB", (8, 8)).save(tmp_path / "j.png", pnginfo=info)
    settings = read_settings(tmp_path / "j.png")
    assert settings.prompt == "" and settings.source != "AUTOMATIC1111"
    assert ImportedSettings(source="x", prompt='{"3": {"class_type": "KSampler"}}').prompt == ""
    assert ImportedSettings(source="x", prompt="[cat:dog:0.5], sunny").prompt.startswith("[cat")


@pytest.mark.parametrize("text, dropped", [
    ("a\nSteps: 20, Sampler: Euler, CFG scale: nan, Seed: 1, Size: 512x512", "guidance"),
    ("a\nSteps: 20, Sampler: Euler, CFG scale: inf, Seed: 1, Size: 512x512", "guidance"),
    ("a\nSteps: 99999999, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512", "steps"),
    ("a\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 1000000x512", "width"),
    ("a\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: -5, Size: 512x512", "seed"),
])
def test_impossible_values_are_dropped_and_never_reach_a_request(text, dropped):
    settings = parse_a1111_parameters(text)
    assert getattr(settings, dropped) is None and dropped in settings.dropped
    assert dropped in settings.unread
    req = settings.to_request(GenerationRequest(prompt="p"))  # valid: nothing absurd got in
    assert math.isfinite(req.guidance) and req.steps <= 1000 and req.width <= 4096


def test_hires_denoising_is_not_the_image_strength():
    settings = read_settings(DATA / "a1111/hires_fix.png")
    assert settings.strength is None and settings.extra["Denoising strength"] == "0.45"


def test_keys_match_whatever_their_case():
    settings = parse_a1111_parameters("a\nsteps: 9, SAMPLER: Euler, CFG Scale: 3.5, seed: 4")
    assert (settings.steps, settings.sampler, settings.guidance, settings.seed) == (
        9, "Euler", 3.5, 4)


def test_our_img2img_image_reads_back_as_img2img(tmp_path):
    from studio.core.document.pixels import Pixels

    init = Pixels.from_array(np.zeros((8, 8, 3), np.uint8))
    mask = Pixels.from_array(np.full((8, 8), 255, np.uint8))
    for task in ("img2img", "inpaint"):
        req = GenerationRequest(prompt="p", task=task, init_image=init, strength=0.4,
                                mask=mask if task == "inpaint" else None)
        path = save_image(tmp_path / f"{task}.png", np.zeros((16, 16, 3), np.uint8), req)
        settings = read_settings(path)  # without the init image at hand
        assert (settings.task, settings.strength) == (task, 0.4)


# -- hostile files -------------------------------------------------------------------------
def _png_with(tmp_path: Path, **texts: str) -> Path:
    info = PngInfo()
    for key, text in texts.items():
        info.add_text(key, text)
    path = tmp_path / "h.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


@pytest.mark.parametrize("key", ["prompt", "workflow", "parameters", "studio", "Comment"])
def test_a_json_nesting_bomb_is_one_clear_message(tmp_path, key):
    path = _png_with(tmp_path, **{key: "[" * 100_000 + "]" * 100_000})
    with pytest.raises(ImageReadError, match="nested too deeply"):
        read_settings(path)


def _chain(n: int, cycle: bool = False) -> dict:
    """A KSampler whose positive prompt is ``n`` conditioning nodes upstream."""
    graph = {"0": {"class_type": "KSampler", "inputs": {
        "seed": 1, "steps": 2, "cfg": 3.0, "sampler_name": "euler", "scheduler": "normal",
        "positive": ["1", 0], "negative": ["1", 0], "latent_image": ["1", 0]}}}
    for i in range(1, n):
        graph[str(i)] = {"class_type": "ConditioningCombine", "inputs": {
            "conditioning_1": [str(i + 1), 0], "samples": [str(i + 1), 0]}}
    graph[str(n)] = ({"class_type": "ConditioningCombine", "inputs": {
        "conditioning_1": ["1", 0]}} if cycle else
        {"class_type": "CLIPTextEncode", "inputs": {"text": "deep", "clip": ["x", 1]}})
    return graph


@pytest.mark.parametrize("cycle", [False, True])
def test_long_chains_and_cycles_read_quickly(tmp_path, cycle):
    path = _png_with(tmp_path, prompt=json.dumps(_chain(5000, cycle)))
    settings = read_settings(path)
    assert settings.prompt == ("" if cycle else "deep") and settings.seed == 1


def _parse_time(size: int) -> float:
    text = "word " * (size // 5)
    start = time.perf_counter()
    parse_a1111_parameters(text)
    return time.perf_counter() - start


def test_a_long_parameters_text_without_commas_reads_in_linear_time():
    small = min(_parse_time(50_000) for _ in range(3))
    large = min(_parse_time(100_000) for _ in range(3))
    assert large < 2.0 and large < 4 * max(small, 1e-4)


def test_seeds_above_32_bits_are_kept_exact():
    settings = read_settings(DATA / "comfyui/flux_sampler_custom_advanced.png")
    assert settings.seed == 18446744073709551000
    assert settings.to_request().seed == 18446744073709551000 % 2**32


# -- studio info --json --------------------------------------------------------------------
def test_info_json_prints_tool_fields_and_unread(capsys):
    from studio.cli.main import main

    assert main(["info", "--json", str(DATA / "novelai/novelai_v4.webp")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tool"] == "NovelAI" and out["unread"] == ["model"]
    # NovelAI's k_euler_ancestral with its karras noise schedule: our engine has no Karras form
    # of Euler a, so it runs as Euler a (the import says so: samplers.import_note).
    assert out["fields"]["seed"] == 1732050807 and out["fields"]["scheduler"] == "Euler a"
    assert (out["width"], out["height"], out["task"]) == (64, 64, "txt2img")


def test_info_json_for_an_image_without_settings(tmp_path, capsys):
    from studio.cli.main import main

    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    assert main(["info", "--json", str(tmp_path / "plain.png")]) == 0
    assert json.loads(capsys.readouterr().out)["tool"] is None


def test_info_on_a_nesting_bomb_exits_non_zero_with_one_line(tmp_path, capsys):
    from studio.cli.main import main

    path = _png_with(tmp_path, prompt="{" * 50_000)
    assert main(["info", "--json", str(path)]) != 0
    assert "nested too deeply" in capsys.readouterr().err
