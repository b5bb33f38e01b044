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
        (["generate", "x", "-o", "x.gif"], "use .png, .jpg or .webp"),
        (["generate", "x", "--scheduler", "Eulr"], "Unknown scheduler 'Eulr'"),
        (["generate", "x", "--device", "tpu"], "Unknown device"),
        (["generate", "x", "--model", "/no/such/model.safetensors"],
         "no model file or folder at /no/such/model.safetensors"),
        (["generate", "x", "--slider", "hair-red=9"], "must be from -2 to 2"),
    ],
)
def test_bad_input_exits_non_zero_with_one_clear_line(tiny_sd1_dir, tmp_path, capsys, args,
                                                      message):
    full = [*args, "--no-hf-cache"]
    if "--model" not in args:
        full += ["--model", str(tiny_sd1_dir)]
    rc = main(full)
    err = capsys.readouterr().err
    # 2: a mistake in the arguments themselves (caught while parsing); 1: any other error
    assert rc == (2 if "--size" in args or "--scheduler" in args else 1)
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("flag, value, message", [
    ("--guidance", "nan", "--guidance: must be a number from 0 to 100, not 'nan'"),
    ("--guidance", "inf", "--guidance: must be a number from 0 to 100, not 'inf'"),
    ("--guidance", "-1", "--guidance: must be from 0 to 100, not -1"),
    ("--steps", "0", "--steps: must be from 1 to 1000, not 0"),
    ("--steps", "2.5", "--steps: must be a whole number from 1 to 1000"),
    ("--batch", "-1", "--batch: must be from 1 to 64, not -1"),
    ("--batch", "0", "--batch: must be from 1 to 64, not 0"),
    ("--strength", "1.5", "--strength: must be from 0 to 1, not 1.5"),
    ("--strength", "nan", "--strength: must be a number from 0 to 1"),
    ("--seed", "-3", "--seed: must be from 0 to 4294967295"),
    ("--variation-strength", "2", "--variation-strength: must be from 0 to 1"),
    ("--size", "0", "--size: each side must be from 8 to 4096"),
    ("--size", "big", "--size: must look like 512x768 or 512"),
])
def test_every_number_is_checked_at_the_boundary_naming_its_range(capsys, flag, value,
                                                                   message):
    assert main(["generate", "a person", flag, value]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert "half precision" not in err and "Traceback" not in err


def _run_and_list_heavy_modules(argv_lists, cwd):
    """Run ``main`` on each argv in a fresh interpreter; the exit codes and the heavy
    modules imported by the end."""
    code = (
        "import sys\n"
        "from studio.cli import main\n"
        f"codes = [main(a) for a in {argv_lists!r}]\n"
        "print(codes)\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'PySide6') "
        "if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    codes, heavy = proc.stdout.strip().splitlines()[-2:]
    return codes, heavy, proc.stderr


def test_each_argument_mistake_is_answered_without_torch(tmp_path):
    """The issue's list: unknown scheduler, size not a multiple of 8, missing init image,
    -o x.gif, missing model file; none of them waits for torch or diffusers."""
    codes, heavy, err = _run_and_list_heavy_modules([
        ["generate", "x", "--scheduler", "Eulr"],
        ["generate", "x", "--size", "100x64"],
        ["generate", "x", "--init-image", "missing.png"],
        ["generate", "x", "-o", "x.gif"],
        ["generate", "x", "--model", "missing.safetensors"],
        ["generate", "x", "--guidance", "inf"],
        ["grid", "x", "--x", "seed=1,2", "--steps", "0"],
        ["upscale", "missing.png", "--scale", "9"],
    ], tmp_path)
    assert codes == "[2, 2, 1, 1, 1, 2, 2, 2]"
    assert heavy == "[]"
    assert len(err.strip().splitlines()) == 8  # one line each


def test_models_lists_without_torch_and_device_without_diffusers(tmp_path):
    codes, heavy, _ = _run_and_list_heavy_modules([["models", "--no-hf-cache"]], tmp_path)
    assert codes == "[0]" and heavy == "[]"
    codes, heavy, _ = _run_and_list_heavy_modules([["device", "--no-hf-cache"]], tmp_path)
    assert codes == "[0]" and heavy == "['torch']"  # torch alone says which GPU there is


def test_generate_help_shows_every_default_and_range_and_the_engines_schedulers(capsys):
    from studio.core.samplers import SCHEDULER_NAMES
    from studio.engine.schedulers import SCHEDULERS

    assert set(SCHEDULERS) == set(SCHEDULER_NAMES)  # the engine maps every name listed
    assert main(["generate", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for name in SCHEDULER_NAMES:
        assert name in out
    for text in ("1 to 1000", "0 to 100", "0 to 1 (default: 0.75)", "1 to 64",
                 "multiples of 8 from 8 to 4096", "default: random", "out-0001.png",
                 "--overwrite"):
        assert text in out, text
    import argparse

    from studio.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    generate = sub.choices["generate"]
    for action in generate._actions:
        if action.option_strings and action.nargs != 0 and action.dest != "help":
            assert "default" in (action.help or ""), action.dest


TINY = ["--model", "studio-tiny-diffusion", "--steps", "2", "--no-hf-cache", "--device", "cpu",
        "--dtype", "float32"]


def test_without_o_new_numbered_files_and_an_existing_o_is_never_replaced_unasked(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out-0007.png").write_bytes(b"an older image")
    assert main(["generate", "a person", "--seed", "1", "--quiet", *TINY]) == 0
    assert main(["generate", "a person", "--seed", "2", "--batch", "2", "--quiet", *TINY]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == ["out-0008.png", "out-0009.png", "out-0010.png"]
    assert (tmp_path / "out-0007.png").read_bytes() == b"an older image"
    assert read_settings(tmp_path / "out-0008.png").request.seed == 1
    # Numbered files are plain images, as -o writes them (they were made executable: 0o777).
    written = tmp_path / "by-o.png"
    assert main(["generate", "a person", "-o", str(written), "--quiet", *TINY]) == 0
    assert (tmp_path / "out-0008.png").stat().st_mode & 0o777 == written.stat().st_mode & 0o777
    assert not (tmp_path / "out-0008.png").stat().st_mode & 0o111
    # An explicit -o that exists: refused in one line, the file kept; --overwrite replaces it.
    mine = tmp_path / "mine.png"
    mine.write_bytes(b"keep me")
    capsys.readouterr()  # the runs above may note the model's fast setting (2 steps)
    assert main(["generate", "a person", "-o", str(mine), "--quiet", *TINY]) == 1
    err = capsys.readouterr().err
    assert "mine.png exists: add --overwrite" in err and len(err.strip().splitlines()) == 1
    assert mine.read_bytes() == b"keep me"
    assert main(["generate", "a person", "-o", str(mine), "--overwrite", "--quiet", *TINY]) == 0
    assert read_settings(mine).request.steps == 2


def test_progress_shows_loading_encoding_steps_and_decoding_in_order(tmp_path, capsys):
    assert main(["generate", "a person with red hair", "-o", str(tmp_path / "p.png"),
                 *TINY]) == 0
    err = capsys.readouterr().err
    marks = [err.index(text) for text in ("Loading model studio-tiny-diffusion",
                                          "Encoding prompt", "Sampling", "Decoding", "done in")]
    assert marks == sorted(marks)


def test_embedded_model_warns_once_about_size_and_words_it_does_not_know(tmp_path, capsys):
    assert main(["generate", "a red fox", "--size", "128", "-o", str(tmp_path / "f.png"),
                 "--quiet", *TINY]) == 0
    # (at its 2 steps the model's fast setting is noted too: tests/ui/test_fast_setting.py)
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if not line.startswith("studio: note:")]
    assert len(err) == 1 and err[0].startswith("studio: warning: studio-tiny-diffusion draws "
                                               "64x64 portraits: 128x128 gives noise")
    assert "'fox'" in err[0] and "hair black/brown/blonde" in err[0]
    assert main(["generate", "a smiling person with red hair on a blue background", "-o",
                 str(tmp_path / "g.png"), "--quiet", *TINY]) == 0
    assert "warning" not in capsys.readouterr().err  # within its size and words: none


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
