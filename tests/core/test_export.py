"""Batch export: file names from templates, unique and safe; contact sheets."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from studio.core.errors import StudioError
from studio.core.formats.contact_sheet import caption_for, contact_sheet
from studio.core.formats.naming import (
    FileNameTemplateError,
    batch_paths,
    format_file_name,
    sanitize_file_name,
    unique_path,
)
from studio.core.jobs.request import GenerationRequest

WHEN = datetime(2026, 11, 23, 17, 5, 9)


def _request(**changes) -> GenerationRequest:
    return GenerationRequest(prompt="(a lighthouse:1.2) at dusk, <lora:ink:0.8> oil/painting?",
                             model="C:\\models\\dreamshaper_8.safetensors", seed=42, steps=25,
                             guidance=7.5, scheduler="DPM++ 2M Karras").replace(**changes)


# -- file names ------------------------------------------------------------------------------
def test_default_style_template():
    name = format_file_name("{date}_{index:03}_{seed}_{prompt}", _request(), index=7, when=WHEN)
    assert name == "2026-11-23_007_42_a_lighthouse_1.2_at_dusk_oil_painting"


def test_all_fields():
    name = format_file_name(
        "{model}-{steps}-{guidance}-{sampler}-{width}x{height}-{time}-{task}-{negative}",
        _request(negative_prompt="blurry, text"), when=WHEN)
    assert name == "dreamshaper_8-25-7.5-DPM++_2M_Karras-512x512-170509-txt2img-blurry_text"


def test_prompt_is_truncated():
    req = _request(prompt="word " * 100)
    assert format_file_name("{prompt:12}", req, when=WHEN) == "word_word_wo"
    assert len(format_file_name("{prompt}", req, when=WHEN)) <= 60


def test_unknown_field_is_a_clear_error():
    with pytest.raises(FileNameTemplateError) as info:
        format_file_name("{seed}_{colour}", _request())
    assert isinstance(info.value, StudioError)
    assert str(info.value).startswith("Unknown field {colour} in the file name template; use "
                                      "one of {seed}, {prompt},")


def test_bad_format_spec_is_a_clear_error():
    with pytest.raises(FileNameTemplateError, match=r"\{seed:zz\} is not a valid format"):
        format_file_name("{seed:zz}", _request())


@pytest.mark.parametrize("text, safe", [
    ('a<b>c:d"e/f\\g|h?i*j', "a_b_c_d_e_f_g_h_i_j"),
    ("tab\there\nnewline", "tab here newline"),
    ("trailing dots...", "trailing dots"),
    ("  spaces  ", "spaces"),
    ("CON", "_CON"), ("nul.tar", "_nul.tar"), ("com1", "_com1"), ("console", "console"),
    ("", "image"), ("...", "image"), ("/", "_"),
    ("日本語のプロンプト", "日本語のプロンプト"),
])
def test_sanitize_for_every_system(text, safe):
    assert sanitize_file_name(text) == safe


def test_long_names_are_cut_on_character_boundaries():
    name = sanitize_file_name("é" * 300)
    assert len(name.encode("utf-8")) <= 150
    assert name == "é" * 75


def test_template_cannot_make_folders():
    assert "/" not in format_file_name("../{seed}/x", _request(), when=WHEN)


def test_unique_path_counts_up_ignoring_case(tmp_path):
    (tmp_path / "Image.png").write_bytes(b"x")
    assert unique_path(tmp_path, "image", ".png").name == "image-2.png"
    assert unique_path(tmp_path, "image", ".png", taken=["image-2.png"]).name == "image-3.png"
    assert unique_path(tmp_path, "other", ".png").name == "other.png"


def test_batch_paths_are_unique_and_use_each_images_seed(tmp_path):
    batch = _request(batch_size=3)
    requests = [batch.for_image(i) for i in range(3)] + [batch.for_image(0)]
    (tmp_path / "42.png").write_bytes(b"old")
    paths = batch_paths(tmp_path, requests, template="{seed}", when=WHEN)
    assert [p.name for p in paths] == ["42-2.png", "43.png", "44.png", "42-3.png"]
    assert all(p.parent == tmp_path for p in paths)


# -- contact sheets --------------------------------------------------------------------------
def _solid(color, h=40, w=60, alpha=None):
    arr = np.zeros((h, w, 3 if alpha is None else 4), np.uint8)
    arr[..., :3] = color
    if alpha is not None:
        arr[..., 3] = alpha
    return arr


def test_contact_sheet_grid_and_pixels():
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    sheet = contact_sheet([_solid(c) for c in colors], cell=64, padding=8)
    # 5 images -> 3 columns x 2 rows of 72-pixel cells plus the outer padding
    assert sheet.shape == (2 * 72 + 8, 3 * 72 + 8, 3) and sheet.dtype == np.uint8
    # each image is centred in its cell; 60x40 fits 64x64 unscaled
    for i, color in enumerate(colors):
        cx = 8 + (i % 3) * 72 + 32
        cy = 8 + (i // 3) * 72 + 32
        assert tuple(sheet[cy, cx]) == color
    assert tuple(sheet[2, 2]) == (24, 24, 24)
    assert tuple(sheet[8 + 72 + 32, 8 + 2 * 72 + 32]) == (24, 24, 24)  # empty sixth cell


def test_contact_sheet_scales_down_and_flattens_alpha():
    big = _solid((200, 100, 50), h=400, w=800)
    clear = _solid((255, 255, 255), alpha=0)
    sheet = contact_sheet([big, clear], columns=2, cell=100, padding=0, background=(9, 9, 9))
    assert sheet.shape == (100, 200, 3)
    assert tuple(sheet[50, 50]) == (200, 100, 50)  # 800x400 -> 100x50, centred
    assert tuple(sheet[10, 50]) == (9, 9, 9)
    assert tuple(sheet[50, 150]) == (9, 9, 9)  # transparent image shows the background


def test_contact_sheet_captions_are_drawn_below():
    plain = contact_sheet([_solid((0, 0, 0))], cell=80, padding=4)
    sheet = contact_sheet([_solid((0, 0, 0))], ["seed 42 · Euler a"], cell=80, padding=4,
                          text_color=(255, 255, 255), background=(0, 0, 0))
    assert sheet.shape[0] > plain.shape[0]
    caption_area = sheet[4 + 80:, :, :]
    assert caption_area.max() > 128  # white text drawn under the image


def test_long_captions_stay_inside_their_cell():
    black = _solid((0, 0, 0))
    sheet = contact_sheet([black, black], ["word " * 60, "short"], columns=2, cell=80,
                          padding=6, text_color=(255, 255, 255), background=(0, 0, 0))
    gutter = sheet[6 + 80:, 6 + 80:6 + 80 + 4]  # between the two cells, under the images
    assert gutter.max() == 0
    plain = contact_sheet([black, black], ["a", "b"], columns=2, cell=80, padding=6)
    assert sheet.shape == plain.shape  # the caption is cut, not given more room


def test_caption_for_request():
    assert caption_for(_request()) == "seed 42 · DPM++ 2M Karras · 25 steps · CFG 7.5"


def test_contact_sheet_bad_input():
    with pytest.raises(ValueError, match="at least one image"):
        contact_sheet([])
    with pytest.raises(ValueError, match="one caption per image"):
        contact_sheet([_solid((0, 0, 0))], ["a", "b"])
