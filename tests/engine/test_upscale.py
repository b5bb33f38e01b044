"""Upscaling: safe loading, the embedded tiny upscaler, tiling without seams, the refine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from studio.core.errors import InvalidRequestError, UnsafeModelFileError
from studio.core.portraits.render import render_sample
from studio.engine.nets.upscaler import CompactSR
from studio.engine.upscale import (
    UpscaleSettings,
    find_upscaler,
    lanczos_resize,
    load_upscaler,
    refine_tiles,
    upscale_image,
    upscale_with_engine,
)
from studio.paths import embedded_models_dir

EMBEDDED = embedded_models_dir() / "studio-tiny-upscaler"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def photo_like(width: int = 96, height: int = 80) -> np.ndarray:
    """Two held-out portraits on a lit, noisy backdrop: edges, flat areas and grain."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    sky = np.stack([120 + 80 * yy / height, 140 + 40 * xx / width,
                    200 - 60 * yy / height], -1)
    img = sky + np.random.default_rng(3).normal(0, 3, sky.shape)
    side = min(64, height, width // 2)
    for i, left in enumerate((0, width - side)):
        face = Image.fromarray(render_sample(1_000_003, 10 + i)[0]).resize((side, side))
        img[height - side:, left:left + side] = np.asarray(face, np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_embedded_upscaler_loads_and_beats_nothing_less_than_lanczos():
    up = load_upscaler(EMBEDDED)
    assert up.scale == 2 and isinstance(up.module, CompactSR)
    portrait = render_sample(1_000_003, 3)[0]
    small = np.asarray(Image.fromarray(portrait).resize((32, 32), Image.Resampling.BICUBIC))
    ours = upscale_image(small, 2, up)
    lanczos = lanczos_resize(small, 64, 64)
    assert ours.shape == portrait.shape
    # The model card's claim, on one held-out portrait: at least as good as Lanczos.
    assert psnr(ours, portrait) > psnr(lanczos, portrait) - 0.25


def test_tiled_upscale_keeps_size_and_content_without_seams():
    image = photo_like()
    up = load_upscaler(EMBEDDED)
    whole = up(image)
    up.tile = 32  # overlapping tiles (16 px overlap)
    steps = []
    tiled = upscale_image(image, 2, up, on_step=steps.append)
    assert tiled.shape == (160, 192, 3)
    assert steps[-1].step == steps[-1].total == 20  # 4 rows x 5 columns of tiles
    lanczos = lanczos_resize(image, 192, 160)
    assert psnr(tiled, lanczos) > 27.0  # same picture as the plain enlargement
    assert psnr(tiled, whole) > 40.0  # tiling leaves no visible seams


def test_non_integer_scale_and_lanczos_fallback(engine):
    image = photo_like(40, 32)
    out = upscale_image(image, 3.0, load_upscaler(EMBEDDED))  # 2x twice, then down to 3x
    assert out.shape == (96, 120, 3)
    assert find_upscaler(engine, "lanczos") is None
    plain = upscale_with_engine(engine, image, UpscaleSettings(scale=1.5, model="lanczos"))
    assert plain.shape == (48, 60, 3)
    with pytest.raises(InvalidRequestError, match="between 1 and 8"):
        UpscaleSettings(scale=20)


def test_pth_files_load_weights_only(tmp_path):
    model = CompactSR(num_feat=8, num_conv=2, upscale=2)
    torch.save({"params": model.state_dict()}, tmp_path / "x2.pth")
    assert load_upscaler(tmp_path / "x2.pth").scale == 2

    class Payload:
        def __reduce__(self):
            return (print, ("this would run on load",))

    torch.save({"params": model.state_dict(), "evil": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(UnsafeModelFileError, match="contains code"):
        load_upscaler(tmp_path / "evil.pth")


def test_refine_tiles_blend_back_exactly_and_feather_seams():
    image = photo_like(96, 96)
    same = refine_tiles(image, lambda tile, i: tile, tile=48, overlap=16)
    assert np.array_equal(same, image)
    # Tiles that each shift brightness differently meet with a gradual ramp, not a step.
    shifted = refine_tiles(np.full((96, 96, 3), 100, np.uint8),
                           lambda tile, i: np.clip(tile.astype(int) + 20 * i, 0, 255), 48, 16)
    row = shifted[10, :, 0].astype(int)
    assert np.abs(np.diff(row)).max() <= 4


def test_refine_with_a_diffusion_model(engine, tiny_sd1_dir):
    image = photo_like(64, 64)
    settings = UpscaleSettings(scale=1.5, model="lanczos", refine=True, strength=0.3,
                               prompt="a portrait", refine_model=str(tiny_sd1_dir), steps=3,
                               tile=64, overlap=16)
    steps = []
    out = upscale_with_engine(engine, image, settings, on_step=steps.append)
    assert out.shape == (96, 96, 3) and out.dtype == np.uint8
    assert steps[-1].step == steps[-1].total == 4  # 2 x 2 overlapping 64 px tiles
    # The tiny test model has random weights, so only "changed, same size" can be asserted.
    assert not np.array_equal(out, lanczos_resize(image, 96, 96))


def test_upscale_command(tmp_path, capsys):
    from studio.cli import main

    src = tmp_path / "face.png"
    Image.fromarray(photo_like(48, 40)).save(src)
    out = tmp_path / "big.png"
    assert main(["upscale", str(src), "-o", str(out), "--scale", "2", "--quiet",
                 "--no-hf-cache", "--device", "cpu"]) == 0
    assert Image.open(out).size == (96, 80)
    assert main(["upscale", str(src), "-o", str(out), "--model", "nope", "--quiet",
                 "--no-hf-cache", "--device", "cpu"]) == 1
    assert "No upscaler named 'nope'" in capsys.readouterr().err
