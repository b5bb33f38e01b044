"""The headless CLI as a user runs it: files written, settings embedded, clear failures."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from studio.cli import main
from studio.core.formats.metadata import read_settings
from studio.settings import Settings, save_settings

HEAVY = ("torch", "diffusers", "transformers", "PySide6")


@pytest.fixture(autouse=True)
def _own_settings_file(tmp_path, monkeypatch):
    """Each test starts from no settings file (another test's default model stays there)."""
    monkeypatch.setenv("STUDIO_CONFIG_DIR", str(tmp_path / "config"))


def test_generate_writes_a_png_with_a1111_parameters_and_the_full_request(
        tiny_sd1_dir, tmp_path, capsys):
    out = tmp_path / "cat.png"
    rc = main(["generate", "a cat on a blue background", "--model", str(tiny_sd1_dir),
               "--seed", "7", "--steps", "3", "--size", "64x64", "--scheduler", "Euler a",
               "--negative", "blurry", "--device", "cpu", "--dtype", "float32", "-o", str(out),
               "--no-hf-cache", "--quiet"])
    assert rc == 0
    assert capsys.readouterr().out.strip() == str(out)
    with Image.open(out) as im:
        params = im.info["parameters"]
        assert im.size == (64, 64)
    assert params.startswith("a cat on a blue background\nNegative prompt: blurry\n")
    assert "Steps: 3" in params and "Sampler: Euler a" in params and "Seed: 7" in params
    assert "Size: 64x64" in params
    settings = read_settings(out)
    assert settings.request is not None
    assert settings.request.seed == 7 and settings.request.family == "sd1"
    assert len(settings.request.model_hash) == 64


def test_batch_writes_one_file_per_seed_and_img2img_with_mask(tiny_sd1_dir, tmp_path):
    out = tmp_path / "b.png"
    common = ["--model", str(tiny_sd1_dir), "--steps", "2", "--size", "64x64", "--quiet",
              "--device", "cpu", "--dtype", "float32", "--no-hf-cache"]
    assert main(["generate", "x", "--seed", "5", "--batch", "2", "-o", str(out), *common]) == 0
    files = [tmp_path / "b-1.png", tmp_path / "b-2.png"]
    seeds = [read_settings(f).request.seed for f in files]
    assert seeds == [5, 6]
    mask = np.zeros((64, 64), np.uint8)
    mask[20:40, 20:40] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    inp = tmp_path / "inp.png"
    assert main(["generate", "x", "--init-image", str(files[0]), "--mask",
                 str(tmp_path / "mask.png"), "--strength", "0.8", "-o", str(inp), *common]) == 0
    settings = read_settings(inp)
    assert settings.extra["studio"]["task"] == "inpaint"
    assert settings.extra["studio"]["mask"]["sha256"]
    assert settings.strength == 0.8


def test_generate_with_a_slider_swaps_the_hair_colour_in_the_prompt(tmp_path):
    """On the embedded model: red hair at 2 over a blonde-hair prompt draws red hair and
    keeps the rest of the blonde portrait (the slider is recorded in the file)."""
    from studio.core.portraits.oracle import read_portrait

    common = ["--model", "studio-tiny-diffusion", "--seed", "4", "--quiet", "--device", "cpu",
              "--dtype", "float32", "--no-hf-cache"]
    paths = [tmp_path / f"{n}.png" for n in ("slider", "red", "blonde")]
    assert main(["generate", "a person with blonde hair on a grey background", "--slider",
                 "hair-red=2", "-o", str(paths[0]), *common]) == 0
    assert main(["generate", "a person with red hair on a grey background", "-o",
                 str(paths[1]), *common]) == 0
    assert main(["generate", "a person with blonde hair on a grey background", "-o",
                 str(paths[2]), *common]) == 0
    images = [np.asarray(Image.open(p).convert("RGB")).astype(int) for p in paths]
    # Judged by the oracle (the renderer's hair region), not by the attribute classifier.
    assert [read_portrait(im.astype(np.uint8)).hair for im in images] == ["red", "red", "blonde"]
    # The face and what is below it stay nearer the blonde portrait than the red-hair
    # prompt's image does (the prompt alone redraws the mouth and the shirt).
    def near(a, b, rows, cols):
        return np.abs(a - b).mean(2)[rows, cols].mean()

    for rows, cols in ((slice(28, 46), slice(22, 42)), (slice(52, 64), slice(0, 64))):
        assert near(images[0], images[2], rows, cols) < 0.75 * near(images[1], images[2],
                                                                      rows, cols)
    entry = read_settings(paths[0]).request.sliders[0]
    assert (entry.slider_id, entry.value) == ("hair-red", 2.0)
    # The classic VAE workflow: encode a portrait, move along "blonde", decode (64 x 64).
    from studio.core.portraits.render import make_batch
    from studio.training.common import HELD_OUT_SEED

    batch = make_batch(HELD_OUT_SEED + 5, 0, 40)
    i = next(k for k, a in enumerate(batch.attributes) if a.hair == "black")
    Image.fromarray(batch.images[i]).save(tmp_path / "portrait.png")
    vae = tmp_path / "vae.png"
    assert main(["generate", "", "--model", "studio-tiny-vae", "--init-image",
                 str(tmp_path / "portrait.png"), "--slider", "vae:hair=blonde=2", "-o", str(vae),
                 "--quiet", "--no-hf-cache"]) == 0
    with Image.open(vae) as im:
        assert im.size == (64, 64)
        assert read_portrait(im).hair == "blonde"


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "x", "--model", "no-such-model"], "No model named 'no-such-model'"),
        (["generate", "x", "--slider", "hair-pink=2"], "Unknown slider 'hair-pink'"),
        (["generate", "x", "--slider", "hair-red"], "write ID=VALUE"),
        (["generate", "x", "--slider", "vae:hair=blonde=2"], "moves the latent of studio-tiny-vae"),
        (["generate", "x", "--size", "100x64"], "multiples of 8"),
        (["generate", "x", "--init-image", "/no/such.png"], "such.png"),
        (["generate", "x", "--mask", "m.png"], "--mask needs --init-image"),
        (["generate", "x", "-o", "out.bmp"], "use .png, .jpg or .webp"),
        (["generate", "x", "--scheduler", "Eulr"], "Unknown scheduler"),
        (["generate", "x", "--device", "tpu"], "Unknown device"),
    ],
)
def test_bad_input_exits_non_zero_with_one_clear_line(tiny_sd1_dir, tmp_path, capsys, args,
                                                      message):
    full = [*args, "--no-hf-cache"]
    if "--model" not in args:
        full += ["--model", str(tiny_sd1_dir)]
    rc = main(full)
    err = capsys.readouterr().err
    assert rc == 1
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3


def test_models_lists_found_models_with_family_and_source(tiny_sd1_dir, tiny_sdxl_dir, capsys):
    rc = main(["models", "--model-dir", str(tiny_sd1_dir.parent), "--model-dir",
               str(tiny_sdxl_dir), "--no-hf-cache"])
    out = capsys.readouterr().out
    assert rc == 0
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert lines["tiny-sd1"][1:4] == ["diffusion", "sd1", "diffusers"]
    assert lines["tiny-sdxl"][1:4] == ["diffusion", "sdxl", "diffusers"]


def test_python_dash_m_studio_works_without_qt_or_torch_for_help():
    proc = subprocess.run([sys.executable, "-m", "studio", "generate", "--help"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "--init-image" in proc.stdout


def test_generate_without_model_uses_the_default_model_of_the_settings(tiny_sd1_dir, tmp_path):
    """The model manager's "Set as default" writes ``default_model``; generate follows it
    (without it, the embedded studio-tiny model would be used)."""
    save_settings(Settings(model_dirs=(str(tiny_sd1_dir.parent),), default_model="tiny-sd1"))
    out = tmp_path / "default.png"
    assert main(["generate", "a cat", "--seed", "1", "--steps", "2", "--size", "64x64",
                 "--device", "cpu", "--dtype", "float32", "--no-hf-cache", "--quiet",
                 "-o", str(out)]) == 0
    request = read_settings(out).request
    assert request.model == str(tiny_sd1_dir) and request.family == "sd1"


def test_a_missing_default_model_says_where_it_came_from(tmp_path, capsys):
    save_settings(Settings(default_model="gone-model"))
    rc = main(["generate", "x", "--no-hf-cache", "--device", "cpu", "-o",
               str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 1 and "default model of the settings" in err and "gone-model" in err


def test_argument_mistakes_are_answered_before_torch_or_qt_is_imported(tmp_path):
    code = (
        "import sys\n"
        "from studio.cli import main\n"
        "for argv in (['generate'], ['generate', 'x', '--steps', 'many'], ['--version']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "codes = [main(['generate', 'x', '--mask', 'm.png']),\n"
        "         main(['generate', 'x', '-o', 'out.bmp']),\n"
        "         main(['generate', 'x', '--slider', 'hair-pink=2']),\n"
        "         main(['device', '--device', 'tpu']),\n"
        "         main(['gui', '--dtype', 'float8'])]\n"
        f"print(codes, [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    version, result = proc.stdout.strip().splitlines()
    assert version.startswith("Latent Studio ")
    assert result == "[1, 1, 1, 1, 1] []"  # each mistake exits 1; nothing heavy was imported
    assert "--mask needs --init-image" in proc.stderr and "Unknown device 'tpu'" in proc.stderr
    assert "--dtype: Unknown precision 'float8'" in proc.stderr
