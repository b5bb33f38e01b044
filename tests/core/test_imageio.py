"""Loading images: the pixels that come back, and one clear message for every bad file."""

from __future__ import annotations

import io
import os
import shutil
import stat
import struct
import subprocess
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from studio.core.errors import ImageReadError, StudioError
from studio.core.formats.imageio import ImageWriteError, atomic_write, load_image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\0" * 4)) + _chunk(b"IEND", b""))


def _random(h: int, w: int, c: int) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, size=(h, w, c), dtype=np.uint8)


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


# -- good files ------------------------------------------------------------------------------
def test_rgb_png_pixels_come_back_exactly(tmp_path):
    arr = _random(20, 30, 3)
    (tmp_path / "a.png").write_bytes(_png_bytes(arr))
    out = load_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
    assert np.array_equal(out, arr)


def test_rgba_keeps_alpha_and_bytes_work_too():
    arr = _random(8, 9, 4)
    assert np.array_equal(load_image(_png_bytes(arr)), arr)


def test_palette_with_transparency_becomes_rgba(tmp_path):
    im = Image.new("P", (4, 4), 1)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.info["transparency"] = 1
    im.save(tmp_path / "p.png", transparency=1)
    out = load_image(tmp_path / "p.png")
    assert out.shape == (4, 4, 4) and (out[..., 3] == 0).all()


def test_greyscale_becomes_rgb_and_16_bit_is_scaled(tmp_path):
    Image.fromarray(np.full((3, 3), 128, np.uint8)).save(tmp_path / "g.png")
    assert load_image(tmp_path / "g.png").tolist()[0][0] == [128, 128, 128]
    Image.fromarray(np.full((3, 3), 65535, np.uint16)).save(tmp_path / "g16.png")
    assert (load_image(tmp_path / "g16.png") == 255).all()


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)  # landscape, stored rotated
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(arr).save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").shape == (20, 10, 3)


def test_text_after_image_data_is_fine(foreign_metadata):
    assert load_image(foreign_metadata / "bad_images-text_after_idat.png").shape == (1, 1, 3)


@pytest.mark.parametrize("name, shape", [("bad_images-empty_image.png", (1, 1, 4)),
                                         ("bad_images-empty_image.jpg", (1, 1, 3))])
def test_tiny_images_without_metadata_load(foreign_metadata, name, shape):
    assert load_image(foreign_metadata / name).shape == shape


# -- bad files -----------------------------------------------------------------------------
def _message(source) -> str:
    with pytest.raises(ImageReadError) as info:
        load_image(source)
    assert isinstance(info.value, StudioError)
    return str(info.value)


def test_missing_file(tmp_path):
    assert _message(tmp_path / "gone.png") == "Could not open gone.png: the file does not exist."


def test_folder(tmp_path):
    (tmp_path / "dir.png").mkdir()
    assert _message(tmp_path / "dir.png") == "Could not open dir.png: it is a folder, not an image."


def test_empty_file(foreign_metadata):
    assert _message(foreign_metadata / "bad_images-empty_file.png") == (
        "Could not open bad_images-empty_file.png: the file is empty.")


def test_empty_bytes():
    assert _message(b"") == "Could not open the image data: it is empty."


def test_not_an_image(tmp_path):
    (tmp_path / "readme.jpg").write_text("This is text, not a picture.\n")
    assert _message(tmp_path / "readme.jpg") == (
        "Could not open readme.jpg: it is not an image, or its format is not supported "
        "(PNG, JPEG, WebP and most others are).")


@pytest.mark.parametrize("cut", [0.5, 0.1])
def test_truncated_png(tmp_path, cut):
    data = _png_bytes(_random(64, 64, 3))
    (tmp_path / "cut.png").write_bytes(data[: int(len(data) * cut)])
    assert _message(tmp_path / "cut.png") == (
        "Could not read cut.png: the file is incomplete (it may have been cut off while saving "
        "or downloading).")


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_random(64, 64, 3)).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert "cut.jpg: the file is incomplete" in _message(tmp_path / "cut.jpg")


def test_corrupt_png_data(tmp_path):
    data = bytearray(_png_bytes(_random(64, 64, 3)))
    data[200:204] = b"\xff\x00\xff\x00"  # inside the compressed pixel data
    (tmp_path / "bad.png").write_bytes(bytes(data))
    assert _message(tmp_path / "bad.png") == "Could not read bad.png: the file is damaged."


def test_damaged_png_header_is_not_called_a_non_image(tmp_path):
    data = bytearray(_png_bytes(_random(8, 8, 3)))
    data[20] ^= 0xFF  # IHDR no longer matches its checksum
    (tmp_path / "hdr.png").write_bytes(bytes(data))
    assert _message(tmp_path / "hdr.png") == (
        "Could not open hdr.png: the file is damaged (it starts like a PNG image but cannot "
        "be read).")


def test_zero_sized_png_header(tmp_path):
    (tmp_path / "zero.png").write_bytes(_png_header_only(0, 0))
    assert _message(tmp_path / "zero.png") == "Could not open zero.png: the image has no pixels (0 x 0)."


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    (tmp_path / "bomb.png").write_bytes(_png_header_only(50000, 50000))

    def never(self):
        raise AssertionError("the pixels must not be decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", never)
    message = _message(tmp_path / "bomb.png")
    assert message.startswith("Could not open bomb.png: the image is too large "
                              "(50000 x 50000 pixels; the limit is ")
    assert message.endswith(" megapixels).")


def test_pixel_limit_is_configurable(tmp_path):
    (tmp_path / "big.png").write_bytes(_png_bytes(_random(100, 100, 3)))
    with pytest.raises(ImageReadError) as info:
        load_image(tmp_path / "big.png", max_pixels=5000)
    assert str(info.value) == ("Could not open big.png: the image is too large "
                               "(100 x 100 pixels; the limit is 5000 pixels).")
    assert load_image(tmp_path / "big.png", max_pixels=10000).shape == (100, 100, 3)


# -- atomic writes -------------------------------------------------------------------------
def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    atomic_write(target, lambda f: f.write(b"new contents"))
    assert target.read_bytes() == b"new contents"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_atomic_write_failure_keeps_old_file(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def fail(stream):
        stream.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(ImageWriteError, match="Could not write f.bin: disk full."):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


@pytest.fixture
def umask():
    """Set the process umask for one test, and put the old one back."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_exported_files_follow_the_umask(tmp_path, umask, mask):
    from studio.core.formats.layered import LayerData, export_ora, export_psd
    from studio.core.formats.metadata import save_image

    umask(mask)
    px = _random(8, 8, 3)
    paths = [save_image(tmp_path / f"a{ext}", px) for ext in (".png", ".jpg", ".webp")]
    paths += [export(tmp_path / f"a{ext}", 8, 8, [LayerData("x", px)])
              for ext, export in ((".ora", export_ora), (".psd", export_psd))]
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path.name


def test_replacing_a_file_keeps_its_mode(tmp_path, umask):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    target.chmod(0o640)
    atomic_write(target, lambda f: f.write(b"new"))
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


@pytest.mark.skipif(shutil.which("exiftool") is None,
                    reason="exiftool is not installed (apt-get install libimage-exiftool-perl)")
@pytest.mark.parametrize("ext", [".webp", ".jpg"])
def test_exiftool_edits_our_images_cleanly_and_settings_survive(tmp_path, ext):
    from studio.core.formats.metadata import read_settings, save_image
    from studio.core.jobs.request import GenerationRequest

    request = GenerationRequest("a lighthouse ×2, 夜", negative_prompt="fog", seed=77, steps=12)
    path = save_image(tmp_path / f"art{ext}", _random(64, 64, 3), request)
    done = subprocess.run(["exiftool", "-Artist=Ada", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "1 image files updated" in done.stdout, done
    assert done.stderr.strip() == "" and "Warning" not in done.stdout, done
    check = subprocess.run(["exiftool", "-s3", "-Artist", "-Warning", str(path)],
                           capture_output=True, text=True, timeout=60)
    assert check.stdout.split() == ["Ada"], check  # and no warning reading it back
    settings = read_settings(path)
    assert settings is not None and settings.request == request
