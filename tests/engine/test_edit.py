"""Edit with words: instruction-editing pipelines (Flux Kontext, Flux 2 Klein) as image to
image.

Tiny random-weight ``FluxKontextPipeline`` and ``Flux2KleinPipeline`` folders are built
here from configs (the tiny Flux parts of ``test_dit_families``; for Klein a 27-layer
Qwen3 of width 16, as its pipeline reads layers 9, 18 and 27, with a byte-level BPE
tokenizer and chat template trained here). The edit must give the pixels of a bare diffusers
call with the same seed, image and instruction, at the request's size; land in a project
as a layer with its request in the history; come back from the file's metadata; and run
again from those settings ("Use settings") to the same pixels. What the pipeline cannot do
is refused in one line before loading.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_dit_families import SIZE, WORDS, _clip, _t5, _vae, unigram_tokenizer

from studio.core.document.pixels import Pixels
from studio.core.errors import InvalidRequestError
from studio.core.jobs.request import GenerationRequest, SliderValue
from studio.engine.models.families import EDIT_FAMILIES, detect_folder_family, spec_for

INSTRUCTION = "make the hair red"


def build_kontext(root: Path) -> Path:
    import diffusers as d

    torch.manual_seed(0)
    tok, clip = _clip(root / "_kontext" / "clip")
    t5 = unigram_tokenizer(root / "_kontext" / "t5")
    pipe = d.FluxKontextPipeline(
        transformer=d.FluxTransformer2DModel(
            patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
            attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
            pooled_projection_dim=32, axes_dims_rope=[2, 2, 4], guidance_embeds=True),
        scheduler=d.FlowMatchEulerDiscreteScheduler(
            use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
            max_image_seq_len=4096, shift=3.0),
        vae=_vae(True), text_encoder=clip(), tokenizer=tok, text_encoder_2=_t5(len(t5)),
        tokenizer_2=t5)
    for module in pipe.components.values():
        if hasattr(module, "eval"):
            module.eval()
    out = root / "models" / "kontext"
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def qwen_tokenizer(out: Path, extra: tuple[str, ...] = ()):
    """A byte-level BPE tokenizer over a few words with Qwen's chat template (``extra``:
    more special tokens, Qwen2.5-VL's vision markers)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>", *extra],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([" ".join(WORDS), "user assistant system"] * 4, trainer)
    fast = Qwen2TokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                              pad_token="<|endoftext|>", unk_token=None, bos_token=None)
    fast.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    fast.save_pretrained(out)
    return Qwen2TokenizerFast.from_pretrained(out)


def build_klein(root: Path) -> Path:
    import diffusers as d
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    tok = qwen_tokenizer(root / "_klein" / "tokenizer")
    qwen = Qwen3ForCausalLM(Qwen3Config(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=27,
        num_attention_heads=2, num_key_value_heads=2, head_dim=8, max_position_embeddings=1024,
        tie_word_embeddings=True, pad_token_id=tok.pad_token_id))
    vae = d.AutoencoderKLFlux2(
        block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, latent_channels=4,
        norm_num_groups=4, sample_size=32, use_quant_conv=False, use_post_quant_conv=False,
        mid_block_add_attention=False)
    transformer = d.Flux2Transformer2DModel(  # 3 Qwen3 layers of 16 read: 48 wide text
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=48, timestep_guidance_channels=16,
        axes_dims_rope=(2, 2, 2, 2), guidance_embeds=False)
    pipe = d.Flux2KleinPipeline(
        scheduler=d.FlowMatchEulerDiscreteScheduler(
            use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
            max_image_seq_len=4096, shift=3.0),
        vae=vae, text_encoder=qwen, tokenizer=tok, transformer=transformer)
    for module in pipe.components.values():
        if hasattr(module, "eval"):
            module.eval()
    out = root / "models" / "klein"
    pipe.save_pretrained(out, safe_serialization=True)
    return out


VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")


def build_qwen_edit(root: Path, plus: bool = False, edit: bool = True) -> Path:
    """A tiny Qwen-Image-Edit folder (``QwenImageEditPipeline``, or the 2509 release's
    ``QwenImageEditPlusPipeline``): a 2-layer Qwen2.5-VL of width 16 with a 2-block vision
    tower, the Qwen-Image VAE and transformer, and the processor folder as Qwen's own
    folders hold it (image and video processor configs beside the tokenizer). ``edit``
    False: the same parts as a Qwen-Image (text to image) folder."""
    import json

    import diffusers as d
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLImageProcessorPil,
    )

    torch.manual_seed(0)
    name = ("qwen-edit-plus" if plus else "qwen-edit") if edit else "qwen-image"
    out = root / "models" / name
    tok = qwen_tokenizer(root / f"_{name}" / "tokenizer", extra=VISION_TOKENS)
    ids = {t: tok.convert_tokens_to_ids(t) for t in VISION_TOKENS}
    text_encoder = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=4096, bos_token_id=None,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                          "mrope_section": [2, 1, 1]}),
        vision_config=dict(depth=2, hidden_size=16, intermediate_size=32, num_heads=2,
                           out_hidden_size=16, fullatt_block_indexes=[1], window_size=112,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=True))
    vae = d.AutoencoderKLQwenImage(base_dim=4, z_dim=4, dim_mult=[1, 1, 1, 1],
                                   num_res_blocks=1, attn_scales=[],
                                   temperal_downsample=[False, True, True],
                                   latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    transformer = d.QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=1, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=16, axes_dims_rope=(2, 2, 4))
    scheduler = d.FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9, base_image_seq_len=256,
        max_image_seq_len=8192, shift=1.0, shift_terminal=0.02, time_shift_type="exponential")
    parts = dict(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tok,
                 transformer=transformer)
    for module in (text_encoder, vae, transformer):
        module.eval()
    # Saved without the processor (it cannot be built here: its video processor needs
    # torchvision), then the processor folder written as Qwen's releases hold it.
    cls = d.QwenImageEditPlusPipeline if plus else d.QwenImageEditPipeline
    d.QwenImagePipeline(**parts).save_pretrained(out, safe_serialization=True)
    if not edit:
        return out
    index = json.loads((out / "model_index.json").read_text())
    index.update(_class_name=cls.__name__, processor=["transformers", "Qwen2VLProcessor"])
    (out / "model_index.json").write_text(json.dumps(index, indent=2))
    tok.save_pretrained(out / "processor")
    image = Qwen2VLImageProcessorPil().to_dict()
    image.pop("image_processor_class", None)
    image.update(image_processor_type="Qwen2VLImageProcessor", processor_class="Qwen2VLProcessor")
    (out / "processor" / "preprocessor_config.json").write_text(json.dumps(image, indent=2))
    video = {k: image[k] for k in ("do_convert_rgb", "do_normalize", "do_rescale", "do_resize",
                                   "image_mean", "image_std", "merge_size", "patch_size",
                                   "temporal_patch_size", "rescale_factor", "resample")}
    video.update(video_processor_type="Qwen2VLVideoProcessor",
                 processor_class="Qwen2VLProcessor",
                 size={"longest_edge": 12845056, "shortest_edge": 3136})
    (out / "processor" / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2))
    return out


@pytest.fixture(scope="module")
def edit_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("edit")
    build_kontext(root)
    build_klein(root)
    build_qwen_edit(root)
    build_qwen_edit(root, plus=True)
    build_qwen_edit(root, edit=False)
    return root / "models"


@pytest.fixture(scope="module")
def kontext(edit_root) -> Path:
    return edit_root / "kontext"


@pytest.fixture(scope="module")
def engine(edit_root, tmp_path_factory):
    from studio.engine.engine import Engine

    return Engine(device="cpu", dtype="float32", model_dirs=[edit_root],
                  embedded_dir=tmp_path_factory.mktemp("no-embedded"), hf_cache=False)


def _photo(seed: int = 0) -> Pixels:
    """A portrait-like picture: a face disc on a background, hair on top (and noise)."""
    rng = np.random.default_rng(seed)
    img = np.full((SIZE, SIZE, 3), (60, 90, 160), np.uint8)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    img[(yy - 36) ** 2 + (xx - 32) ** 2 < 18 ** 2] = (230, 190, 160)
    img[(yy < 24) & ((yy - 36) ** 2 + (xx - 32) ** 2 < 22 ** 2)] = (40, 30, 20)
    noise = rng.integers(-8, 8, img.shape)
    return Pixels.from_array(np.clip(img + noise, 0, 255).astype(np.uint8))


def _req(folder: Path, **kw) -> GenerationRequest:
    guidance = {"kontext": 2.5, "klein": 1.0}.get(folder.name, 4.0)  # Klein: no CFG
    values = dict(prompt=INSTRUCTION, model=str(folder), steps=2, width=SIZE, height=SIZE,
                  seed=5, guidance=guidance,
                  scheduler="Flow Euler", task="img2img",
                  init_image=_photo(), strength=0.75)
    values.update(kw)
    return GenerationRequest(**values)


def _bare(folder: Path, req: GenerationRequest, engine=None) -> np.ndarray:
    """The edit as a bare diffusers call: the folder's own pipeline and scheduler, on as many
    CPU threads as the engine gives that model (a sum split another way differs in its last
    bits on an AVX2-only CPU)."""
    from contextlib import nullcontext

    from diffusers import DiffusionPipeline
    from PIL import Image

    from studio.engine.models.processors import load_still_image_processor
    from studio.engine.tuning import cpu_threads_for, torch_threads

    qwen = folder.name.startswith("qwen")  # its processor, without the video part
    parts = dict(processor=load_still_image_processor(folder / "processor")) if qwen else {}
    pipe = DiffusionPipeline.from_pretrained(folder, local_files_only=True, **parts)
    pipe.set_progress_bar_config(disable=True)
    kontext = type(pipe).__name__ == "FluxKontextPipeline"
    extra = dict(max_area=req.width * req.height, _auto_resize=False) if kontext else {}
    guidance = dict(guidance_scale=req.guidance)
    if qwen:  # Qwen's CFG: true_cfg_scale over a negative prompt, " " as Qwen's examples
        guidance = dict(true_cfg_scale=req.guidance, negative_prompt=req.negative_prompt or " ")
    threads = (torch_threads(cpu_threads_for(pipe, engine.choice)) if engine is not None
               else nullcontext())
    with torch.inference_mode(), threads:
        out = pipe(image=Image.fromarray(req.init_image.to_array()), prompt=req.prompt,
                   num_inference_steps=req.steps, **guidance,
                   height=req.height, width=req.width, output_type="np",
                   generator=[torch.Generator("cpu").manual_seed(req.seed)], **extra)
    return (np.clip(out.images[0], 0, 1) * 255).round().astype(np.uint8)


def test_the_family_and_its_edit_feature_come_from_model_index(edit_root):
    assert detect_folder_family(edit_root / "kontext") == "flux-kontext"
    assert detect_folder_family(edit_root / "klein") == "flux2-klein"
    assert detect_folder_family(edit_root / "qwen-edit") == "qwen-image-edit"
    assert detect_folder_family(edit_root / "qwen-edit-plus") == "qwen-image-edit"
    from studio.engine.models.discovery import diffusers_info

    # The window's edit box: locked on for the model that cannot draw from words alone.
    assert diffusers_info(edit_root / "qwen-edit", "diffusers").recommended_value("edit_only")
    assert not diffusers_info(edit_root / "kontext", "diffusers").recommended_value("edit_only")
    for family in ("flux-kontext", "flux2-klein", "qwen-image-edit"):
        assert spec_for(family).edit and family in EDIT_FAMILIES
    assert not spec_for("flux").edit and not spec_for("sd3").edit
    # The core names these families' image to image "edit" (History, metadata): the same list.
    from studio.core.jobs import request as core_request

    assert set(core_request.EDIT_FAMILIES) == set(EDIT_FAMILIES)


@pytest.mark.parametrize("kind", ["kontext", "klein", "qwen-edit", "qwen-edit-plus"])
def test_an_edit_gives_the_pixels_of_a_bare_diffusers_call(engine, edit_root, kind):
    steps = []
    req = _req(edit_root / kind)
    res = engine.generate(req, on_step=steps.append)
    assert res.request.family in EDIT_FAMILIES and res.request.task == "img2img"
    assert res.images[0].shape == (SIZE, SIZE, 3)  # the request's size, not the model's own
    assert np.array_equal(res.images[0], _bare(edit_root / kind, req, engine))
    assert [p.step for p in steps if p.phase == "sampling"][-1:] == [2]
    # The image is what is edited: another picture, the same words and seed, another result.
    negative = Pixels.from_array(255 - _photo(7).to_array())  # (a tiny random model's
    other = engine.generate(_req(edit_root / kind, init_image=negative))  # pull is weak)
    assert not np.array_equal(other.images[0], res.images[0])
    if kind.startswith("qwen"):  # it reads the image to draw: no text to image
        with pytest.raises(InvalidRequestError) as err:
            engine.generate(_req(edit_root / kind, task="txt2img", init_image=None))
        assert "\n" not in err.value.message and "Qwen-Image-Edit" in err.value.message
        return
    # Without an image the words alone draw (text to image), as the bare call does.
    words = engine.generate(_req(edit_root / kind, task="txt2img", init_image=None))
    assert words.images[0].shape == (SIZE, SIZE, 3)  # not Kontext's 1 megapixel
    assert not np.array_equal(words.images[0], res.images[0])


def test_qwen_image_edit_loads_without_torchvision_and_reads_the_image_as_qwen_does(
        engine, edit_root):
    """transformers builds Qwen2-VL's video processor only with torchvision: the folder's
    processor as diffusers loads it fails here; the studio's, without the video part,
    tokenizes the image as transformers' own image processor cuts it."""
    from diffusers import DiffusionPipeline
    from PIL import Image
    from transformers import Qwen2VLImageProcessorPil
    from transformers.utils import is_torchvision_available

    from studio.engine.models.processors import load_still_image_processor

    folder = edit_root / "qwen-edit"
    if not is_torchvision_available():
        with pytest.raises((ImportError, OSError, ValueError), match="(?i)torchvision|video"):
            DiffusionPipeline.from_pretrained(folder, local_files_only=True)
    processor = load_still_image_processor(folder / "processor")
    photo = Image.fromarray(_photo().to_array()).resize((112, 84))
    got = processor(text=["<|vision_start|><|image_pad|><|vision_end|>make the hair red"],
                    images=photo, return_tensors="pt")
    own = Qwen2VLImageProcessorPil.from_pretrained(folder / "processor")(photo,
                                                                         return_tensors="pt")
    assert torch.equal(got["pixel_values"], own["pixel_values"])
    assert torch.equal(got["image_grid_thw"], own["image_grid_thw"])
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    # One placeholder per 2x2 merged patch of 14 px: 112x84 -> 8x6 patches -> 12 tokens.
    assert int((got["input_ids"] == pad).sum()) == int(own["image_grid_thw"].prod()) // 4 == 12
    # The engine loads the folder (the edit test above draws with it).
    loaded = engine.load(str(folder))
    assert type(loaded.pipe.processor).__name__ == "StillImageQwenProcessor"


def test_qwen_guidance_is_its_true_cfg_and_a_negative_prompt_counts(engine, edit_root):
    """Qwen-Image's guidance is ``true_cfg_scale`` over a negative prompt (it ignores
    ``guidance_scale``): the request's guidance must change the picture, as must a negative
    prompt; text to image on Qwen-Image gives the bare call's pixels with the same
    mapping."""
    folder = edit_root / "qwen-edit"
    base = engine.generate(_req(folder)).images[0]
    assert not np.array_equal(engine.generate(_req(folder, guidance=1.0)).images[0], base)
    negative = engine.generate(_req(folder, negative_prompt="blurry")).images[0]
    assert not np.array_equal(negative, base)
    assert np.array_equal(negative, _bare(folder, _req(folder, negative_prompt="blurry"),
                                          engine))
    # Qwen-Image (text to image, read as the generic family "qwenimage").
    words = edit_root / "qwen-image"
    assert detect_folder_family(words) == "qwenimage"
    req = _req(words, task="txt2img", init_image=None, strength=1.0)
    res = engine.generate(req)
    assert res.request.family == "qwenimage"
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(words, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    from studio.engine.tuning import cpu_threads_for, torch_threads

    with torch.inference_mode(), torch_threads(cpu_threads_for(pipe, engine.choice)):
        bare = pipe(prompt=req.prompt, negative_prompt=" ", true_cfg_scale=req.guidance,
                    num_inference_steps=req.steps, height=SIZE, width=SIZE, output_type="np",
                    generator=[torch.Generator("cpu").manual_seed(req.seed)]).images[0]
    assert np.array_equal(res.images[0], (np.clip(bare, 0, 1) * 255).round().astype(np.uint8))
    flat = engine.generate(req.replace(guidance=1.0)).images[0]
    assert not np.array_equal(flat, res.images[0])


@pytest.mark.parametrize("kind", ["kontext", "qwen-edit"])
def test_what_an_edit_model_cannot_do_is_refused_in_one_line(engine, edit_root, tmp_path,
                                                              kind):
    import shutil

    mask = Pixels.from_array(np.full((SIZE, SIZE), 255, np.uint8))
    cases = {
        "inpaint": dict(task="inpaint", mask=mask),
        "slider": dict(sliders=(SliderValue("smile", 1.0, "prompt",
                                            (("positive", "smiling"),
                                             ("negative", "frowning"))),)),
        "variation": dict(variation_seed=3, variation_strength=0.4),
        "size": dict(width=72, height=64),
    }
    if kind == "kontext":
        cases["negative prompt"] = dict(negative_prompt="blurry")
    else:  # Qwen-Image-Edit takes a negative prompt, and needs an image to draw
        cases["text to image"] = dict(task="txt2img", init_image=None)
    folder = tmp_path / "models" / kind  # a copy no test has loaded yet
    shutil.copytree(edit_root / kind, folder)
    before = len(engine.pipelines)
    for what, kw in cases.items():
        with pytest.raises(InvalidRequestError) as err:
            engine.generate(_req(folder, **kw))
        assert "\n" not in err.value.message, what
    assert len(engine.pipelines) == before  # refused before loading


@pytest.mark.parametrize("kind", ["kontext", "qwen-edit"])
def test_cli_edit_lands_in_the_project_with_its_request_and_use_settings_reproduces(
        edit_root, tmp_path, monkeypatch, capsys, kind):
    from PIL import Image

    from studio.cli.main import main
    from studio.core.formats.metadata import read_settings
    from studio.core.project.store import ProjectStore
    from studio.engine.engine import Engine

    kontext = edit_root / kind  # (the Kontext folder, or Qwen-Image-Edit's)
    family = {"kontext": "flux-kontext", "qwen-edit": "qwen-image-edit"}[kind]
    monkeypatch.setenv("STUDIO_CONFIG_DIR", str(tmp_path / "config"))
    photo = tmp_path / "photo.png"
    Image.fromarray(_photo().to_array()).save(photo)
    out, project = tmp_path / "edited.png", tmp_path / "p.studio"
    rc = main(["generate", INSTRUCTION, "--model", str(kontext), "--init-image", str(photo),
               "--steps", "2", "--seed", "11", "--device", "cpu", "--dtype", "float32",
               "--project", str(project), "-o", str(out), "--no-hf-cache"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "edit" in err.lower() and "strength" in err.lower()  # said what the mode does
    edited = np.asarray(Image.open(out).convert("RGB"))
    assert edited.shape == (SIZE, SIZE, 3)

    # The project: a new layer and the request in its history.
    loaded = ProjectStore.load(project)
    (record,) = loaded.document.log.records
    assert record.request.prompt == INSTRUCTION and record.request.task == "img2img"
    assert record.request.family == family and record.task == "edit"
    assert np.array_equal(record.request.init_image.to_array(), _photo().to_array())
    assert len(loaded.document.layers) == 1
    assert np.array_equal(loaded.document.layers[0].pixels[..., :3], edited)

    # Metadata read back, and "Use settings": the same request again, the same pixels.
    # Named an edit (even without the image at hand), with no strength: none was used.
    bare = read_settings(out)
    assert (bare.task, bare.strength, bare.prompt) == ("edit", None, INSTRUCTION)
    assert bare.changes()["strength"] < 1  # restored, the window's edit mode is on
    parameters = Image.open(out).text["parameters"]
    assert "Task: edit" in parameters and "Denoising strength" not in parameters
    assert main(["info", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "Task:            edit" in shown and "Strength" not in shown
    photo_px = _photo()
    settings = read_settings(out, images={photo_px.sha256: photo_px})  # as the window does
    assert settings is not None and settings.request is not None
    back = settings.request
    assert (back.prompt, back.task, back.seed, back.family) == (
        INSTRUCTION, "img2img", 11, family)
    assert back.is_edit and settings.task == "edit" and settings.strength is None
    assert np.array_equal(back.init_image.to_array(), photo_px.to_array())
    again = back.replace(model=str(kontext), device="", dtype="", model_hash="")
    engine = Engine(device="cpu", dtype="float32", model_dirs=[kontext.parent],
                    embedded_dir=tmp_path / "none", hf_cache=False)
    assert np.array_equal(engine.generate(again).images[0], edited)


def test_a_klein_edit_on_a_comfyui_server_is_refused_in_one_line_kontext_and_qwen_go():
    """On a server the family is read from the file name: a Kontext file edits there
    (studio.remote.workflow.edits); a Flux 2 Klein file, whose workflow is not built, is
    refused before anything is sent."""
    from studio.cli.generate import check_edit_on_server
    from studio.core.models import ModelInfo
    from studio.remote.engine import guess_family

    def on_server(name: str) -> ModelInfo:
        return ModelInfo(id=f"{name}.safetensors", name=name, kind="diffusion",
                         family=guess_family(f"{name}.safetensors"), source="comfyui",
                         path=f"http://gpu:8188 · diffusion_models/{name}.safetensors")

    request = _req(Path("/models/kontext"))
    klein = on_server("flux-2-klein-4b")
    with pytest.raises(InvalidRequestError) as err:
        check_edit_on_server(klein, request, on_server=True)
    assert "\n" not in err.value.message and "Klein" in err.value.message
    check_edit_on_server(klein, request.replace(task="txt2img", init_image=None), True)
    check_edit_on_server(klein, request, on_server=False)  # the local engine edits
    check_edit_on_server(on_server("flux1-kontext-dev"), request, True)  # built there
    for name in ("qwen_image_edit_fp8_e4m3fn", "Qwen-Image-Edit-2509-Q4_K_M"):
        qwen = on_server(name)  # built there too (tests/remote/test_remote_edit.py)
        assert qwen.family == "qwen-image-edit"
        check_edit_on_server(qwen, request, on_server=True)


def test_a_qwen_gguf_edits_with_the_qwen_edit_folder_beside_it(engine, edit_root, tmp_path):
    """A Qwen-Image(-Edit) transformer in a GGUF file (as QuantStack's and city96's files are
    shared) loads with the diffusers folder beside it; the folder says what it is: beside
    the Qwen-Image-Edit folder it edits, giving the folder's own pixels for F32 tensors;
    beside a Qwen-Image folder it draws from words."""
    gguf = pytest.importorskip("gguf", reason="the gguf extra is not installed "
                                              "(pip install 'latent-studio[gguf]')")
    import shutil

    from diffusers import QwenImageTransformer2DModel

    from studio.engine.engine import Engine

    models = tmp_path / "models"
    for name in ("qwen-edit", "qwen-image"):
        shutil.copytree(edit_root / name, models / name)
    state = QwenImageTransformer2DModel.from_pretrained(
        edit_root / "qwen-edit" / "transformer").state_dict()
    for stem in ("qwen-edit-F32", "qwen-image-F32"):
        writer = gguf.GGUFWriter(str(models / f"{stem}.gguf"), "qwen_image")
        for key, tensor in state.items():
            writer.add_tensor(key, tensor.float().numpy())
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    local = Engine(device="cpu", dtype="float32", model_dirs=[models],
                   embedded_dir=tmp_path / "none", hf_cache=False)
    found = {m.name: m for m in local.list_models("diffusion")}
    assert found["qwen-edit-F32"].family == "qwen-image-edit"
    assert found["qwen-edit-F32"].recommended_value("edit")  # the window's edit mode
    assert found["qwen-image-F32"].family == "qwenimage"
    quantized = local.generate(_req(models / "qwen-edit-F32.gguf"))
    assert quantized.request.family == "qwen-image-edit"
    assert np.array_equal(quantized.images[0],
                          engine.generate(_req(edit_root / "qwen-edit")).images[0])
    words = local.generate(_req(models / "qwen-image-F32.gguf", task="txt2img",
                                init_image=None))
    assert words.request.family == "qwenimage" and words.images[0].shape == (SIZE, SIZE, 3)


@pytest.mark.parametrize("kind", ["kontext", "klein", "qwen-edit"])
def test_an_edit_takes_a_lora_through_its_own_loader_and_unloads_it_exactly(
        engine, edit_root, tmp_path, kind):
    """A LoRA in diffusers' layout on the transformer's attention (as Lightning's 4-step
    LoRAs for Qwen-Image-Edit are) changes the edit, and weight 0 gives it back bit for
    bit (the studio's hooks; the file read by the pipeline's own diffusers loader)."""
    import re

    from safetensors.torch import save_file

    from studio.core.jobs.request import LoraWeight

    loaded = engine.load(str(edit_root / kind))
    g = torch.Generator().manual_seed(0)
    state = {}
    for name, m in loaded.pipe.transformer.named_modules():
        if isinstance(m, torch.nn.Linear) and re.search(r"attn\.to_[qkv]$", name):
            state[f"transformer.{name}.lora_A.weight"] = torch.randn(4, m.in_features,
                                                                     generator=g)
            state[f"transformer.{name}.lora_B.weight"] = torch.randn(m.out_features, 4,
                                                                     generator=g)
    assert state
    lora = tmp_path / f"{kind}-lora.safetensors"
    save_file(state, str(lora))
    base = engine.generate(_req(edit_root / kind)).images[0]
    on = engine.generate(_req(edit_root / kind, loras=(
        LoraWeight(path=str(lora), weight=1.0, name=lora.stem),))).images[0]
    assert not np.array_equal(on, base)
    off = engine.generate(_req(edit_root / kind, loras=(
        LoraWeight(path=str(lora), weight=0.0, name=lora.stem),))).images[0]
    assert np.array_equal(off, base)
