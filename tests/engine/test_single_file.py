"""Single-file checkpoints: family detection, offline loading with the bundled configs, and
saving in the original (LDM/A1111) layout, checked against diffusers' own converters."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import socket
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from studio.core.errors import (  # noqa: E402
    CorruptModelError,
    UnsafeModelFileError,
    WrongModelKindError,
)
from studio.engine.models import checkpoint_keys as ck  # noqa: E402
from studio.engine.models.single_file import (  # noqa: E402
    bundled_config_dir,
    detect_checkpoint_family,
    load_single_file,
    save_single_file,
)
from studio.engine.models.tiny import build_tiny_pipeline  # noqa: E402

ASTRONAUT_IDS = [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 49407]


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access during a single-file load")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _generate(pipe) -> np.ndarray:
    out = pipe("a photo of a cat", num_inference_steps=2, height=64, width=64,
               generator=torch.Generator().manual_seed(0), output_type="np")
    return out.images


def _keys(path: Path) -> list[str]:
    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())


def _fake_checkpoint(path: Path, keys: dict[str, tuple[int, ...]]) -> Path:
    save_file({k: torch.zeros(shape) for k, shape in keys.items()}, str(path))
    return path


# ----------------------------------------------------------------------------- round trips


@pytest.fixture(scope="module")
def tiny_sd1(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-sd1")
    pipe = build_tiny_pipeline("sd1", out_dir=folder / "pipe", work_dir=folder / "work")
    return pipe, folder / "pipe"


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-sdxl")
    pipe = build_tiny_pipeline("sdxl", out_dir=folder / "pipe", work_dir=folder / "work")
    return pipe, folder / "pipe"


def test_sd1_round_trip_gives_identical_pixels(tiny_sd1, tmp_path, no_network):
    pipe, folder = tiny_sd1
    path = save_single_file(pipe, tmp_path / "tiny-sd1.safetensors")

    keys = _keys(path)
    assert "model.diffusion_model.input_blocks.0.0.weight" in keys
    assert "model.diffusion_model.input_blocks.1.0.in_layers.0.weight" in keys
    assert "model.diffusion_model.out.2.weight" in keys
    assert "first_stage_model.decoder.up.0.block.0.conv1.weight" in keys
    assert "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight" in keys
    assert not any(k.startswith(("unet.", "vae.", "down_blocks.", "text_encoder.")) for k in keys)
    with safe_open(str(path), framework="pt") as f:
        # LDM keeps the VAE's mid-block attention projections as 1x1 convolutions.
        assert len(f.get_slice("first_stage_model.encoder.mid.attn_1.q.weight").get_shape()) == 4
    assert detect_checkpoint_family(path) == "sd1"

    loaded = load_single_file(path, config_dir=folder)
    assert type(loaded).__name__ == "StableDiffusionPipeline"
    assert np.array_equal(_generate(pipe), _generate(loaded))


def test_an_fp16_file_loaded_in_bf16_has_diffusers_own_weights(tiny_sd1, tmp_path, no_network):
    # How most checkpoints are shared (fp16) and how the CPU policy runs them (bf16): the
    # studio reads the file tensor by tensor and converts as it reads; diffusers'
    # from_single_file gives the very same weights.
    from diffusers import StableDiffusionPipeline

    pipe, folder = tiny_sd1
    path = save_single_file(pipe, tmp_path / "tiny-sd1-fp16.safetensors", dtype=torch.float16)
    ours = load_single_file(path, config_dir=folder, torch_dtype=torch.bfloat16)
    theirs = StableDiffusionPipeline.from_single_file(
        str(path), config=str(folder), torch_dtype=torch.bfloat16, local_files_only=True)
    for name in ("unet", "vae", "text_encoder"):
        mine, bare = getattr(ours, name).state_dict(), getattr(theirs, name).state_dict()
        assert mine.keys() == bare.keys(), name
        for key in bare:
            assert mine[key].dtype == bare[key].dtype, key
            assert torch.equal(mine[key], bare[key]), key


def test_sdxl_round_trip_gives_identical_pixels(tiny_sdxl, tmp_path, no_network):
    pipe, folder = tiny_sdxl
    path = save_single_file(pipe, tmp_path / "tiny-sdxl.safetensors")

    keys = _keys(path)
    assert "model.diffusion_model.label_emb.0.0.weight" in keys
    assert ("conditioner.embedders.0.transformer.text_model.final_layer_norm.weight" in keys)
    assert "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight" in keys
    assert "conditioner.embedders.1.model.text_projection" in keys
    assert "conditioner.embedders.1.model.positional_embedding" in keys
    assert detect_checkpoint_family(path) == "sdxl"

    loaded = load_single_file(path, config_dir=folder)
    assert type(loaded).__name__ == "StableDiffusionXLPipeline"
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        before, after = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert before.keys() == after.keys()
        assert all(torch.equal(before[k], after[k]) for k in before), name
    assert np.array_equal(_generate(pipe), _generate(loaded))


def test_sd2_layout_round_trip(tiny_sd1, tmp_path, no_network):
    # The tiny SD1 parts saved with SD2's OpenCLIP text-encoder layout.
    pipe, folder = tiny_sd1
    path = save_single_file(pipe, tmp_path / "tiny-sd2.safetensors", family="sd2")
    keys = _keys(path)
    assert "cond_stage_model.model.transformer.resblocks.1.attn.in_proj_weight" in keys
    assert "cond_stage_model.model.ln_final.weight" in keys
    assert detect_checkpoint_family(path) == "sd2"

    loaded = load_single_file(path, family="sd2-512", config_dir=folder)
    before, after = pipe.text_encoder.state_dict(), loaded.text_encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert np.array_equal(_generate(pipe), _generate(loaded))


def test_loading_as_the_wrong_family_is_refused(tiny_sd1, tmp_path):
    pipe, folder = tiny_sd1
    path = save_single_file(pipe, tmp_path / "tiny.safetensors")
    with pytest.raises(WrongModelKindError, match="sd1 checkpoint, not sdxl"):
        load_single_file(path, family="sdxl", config_dir=folder)


def test_save_is_atomic_and_records_prediction_type(tiny_sd1, tmp_path):
    pipe, _ = tiny_sd1
    path = save_single_file(pipe, tmp_path / "out" / "model.safetensors")
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.safetensors"]
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["modelspec.prediction_type"] == "epsilon"
    assert meta["modelspec.architecture"] == "stable-diffusion-v1"


# ----------------------------------------------------------------------------- key layout


@pytest.mark.parametrize("name, unet_keys", [("sd15", 686), ("sd2-768-v", 686),
                                             ("sdxl-base", 1680)])
def test_full_size_key_layout_matches_diffusers_converter(name, unet_keys):
    """Our diffusers->LDM names, read back by diffusers' converters, give every key back."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders import single_file_utils as sfu

    config = bundled_config_dir(name)
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(config / "vae"))
    state = unet.state_dict()
    table = ck.unet_key_map(unet.config, state)
    assert len(set(table.values())) == len(table) == unet_keys
    ldm = {ck.UNET_PREFIX + table[k]: v for k, v in state.items()}
    assert "model.diffusion_model.input_blocks.3.0.op.weight" in ldm
    assert "model.diffusion_model.middle_block.1.proj_out.weight" in ldm
    back = sfu.convert_ldm_unet_checkpoint(ldm, dict(unet.config))
    assert back.keys() == state.keys() and all(back[k] is state[k] for k in state)
    assert ck.invert(table)[table["conv_in.weight"]] == "conv_in.weight"

    vae_state = vae.state_dict()
    vae_table = ck.vae_key_map(vae.config, vae_state)
    vae_ldm = {ck.VAE_PREFIX + v: vae_state[k] for k, v in vae_table.items()}
    assert len(vae_ldm) == 248
    assert "first_stage_model.decoder.up.3.upsample.conv.weight" in vae_ldm
    assert "first_stage_model.encoder.down.0.downsample.conv.weight" in vae_ldm
    vae_back = sfu.convert_ldm_vae_checkpoint(vae_ldm, dict(vae.config))
    assert vae_back.keys() == vae_state.keys()


def test_openclip_bigg_layout_matches_diffusers_converter():
    from diffusers.loaders import single_file_utils as sfu
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    config = CLIPTextConfig.from_pretrained(bundled_config_dir("sdxl-base") / "text_encoder_2")
    with torch.device("meta"):
        model = CLIPTextModelWithProjection(config)
    state = model.state_dict()
    ldm = {ck.SDXL_OPENCLIP_PREFIX + k: v for k, v in ck.to_openclip(state).items()}
    assert len(ldm) == 32 * 12 + 5
    assert ldm["conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight"].shape \
        == (3 * 1280, 1280)
    back = sfu.convert_open_clip_checkpoint(model, ldm, prefix=ck.SDXL_OPENCLIP_PREFIX)
    assert back.keys() == state.keys()
    assert all(back[k].shape == state[k].shape for k in state)
    ours = ck.from_openclip(ldm, ck.SDXL_OPENCLIP_PREFIX, wrapped=True)
    assert ours.keys() == state.keys()


# ----------------------------------------------------------------------------- bundled configs


def test_bundled_tokenizer_is_the_real_clip_tokenizer():
    from transformers import CLIPTokenizer

    sd15 = CLIPTokenizer.from_pretrained(bundled_config_dir("sd15") / "tokenizer")
    assert sd15("a photo of an astronaut riding a horse").input_ids == ASTRONAUT_IDS
    assert len(sd15) == 49408 and sd15.pad_token == "<|endoftext|>"
    xl = bundled_config_dir("sdxl-base")
    open_clip = CLIPTokenizer.from_pretrained(xl / "tokenizer_2")
    assert open_clip.pad_token == "!" and open_clip.pad_token_id == 0
    assert open_clip("a photo of an astronaut riding a horse").input_ids == ASTRONAUT_IDS
    # The vocabulary is stored once in resources and copied into each composed folder.
    from studio.paths import bundled_configs_dir

    assert not (bundled_configs_dir() / "sdxl-base" / "tokenizer" / "vocab.json").exists()
    total = sum(p.stat().st_size for p in bundled_configs_dir().rglob("*") if p.is_file())
    assert total < 3_000_000


def test_bundled_sd15_config_builds_the_full_size_model_on_meta():
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    config = bundled_config_dir("sd15")
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(config / "vae"))
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(config / "text_encoder"))

    def count(model) -> int:
        return sum(p.numel() for p in model.parameters())

    # The published parameter counts of Stable Diffusion 1.5.
    assert count(unet) == 859_520_964
    assert count(vae) == 83_653_863
    assert count(text) == 123_060_480
    assert unet.config.cross_attention_dim == 768
    scheduler = json.loads((config / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == "epsilon"


@pytest.mark.parametrize("name, unet_params, text_params, prediction", [
    ("sd2-512", 865_910_724, [340_387_840], "epsilon"),
    ("sd2-768-v", 865_910_724, [340_387_840], "v_prediction"),
    ("sdxl-base", 2_567_463_684, [123_060_480, 694_659_840], "epsilon"),
])
def test_bundled_sd2_and_sdxl_configs(name, unet_params, text_params, prediction):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = bundled_config_dir(name)
    counts = []
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config / "unet"))
        for sub in ("text_encoder", "text_encoder_2"):
            if (config / sub).is_dir():
                text_config = CLIPTextConfig.from_pretrained(config / sub)
                cls = (CLIPTextModelWithProjection if sub == "text_encoder_2" else CLIPTextModel)
                counts.append(sum(p.numel() for p in cls(text_config).parameters()))
    assert sum(p.numel() for p in unet.parameters()) == unet_params
    assert counts == text_params
    scheduler = json.loads((config / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == prediction


def test_inpainting_config_has_nine_input_channels():
    config = bundled_config_dir("sd15", in_channels=9)
    assert json.loads((config / "unet" / "config.json").read_text())["in_channels"] == 9
    assert json.loads((bundled_config_dir("sd15") / "unet" / "config.json").read_text())[
        "in_channels"] == 4


# ----------------------------------------------------------------------------- detection

U = "model.diffusion_model."
SD1_KEYS = {U + "input_blocks.0.0.weight": (8, 4, 3, 3),
            U + "input_blocks.1.1.proj_in.weight": (8, 8, 1, 1),
            U + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (8, 6),
            "first_stage_model.encoder.conv_in.weight": (4, 3, 3, 3),
            "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (10, 6)}
SD2_KEYS = {U + "input_blocks.0.0.weight": (8, 4, 3, 3),
            U + "input_blocks.1.1.proj_in.weight": (8, 8),
            "cond_stage_model.model.token_embedding.weight": (10, 6),
            "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight": (18, 6)}
SDXL_KEYS = {U + "input_blocks.0.0.weight": (8, 4, 3, 3),
             U + "label_emb.0.0.weight": (8, 16),
             "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight":
                 (10, 6),
             "conditioner.embedders.1.model.positional_embedding": (77, 6)}
REFINER_KEYS = {U + "input_blocks.0.0.weight": (8, 4, 3, 3),
                U + "label_emb.0.0.weight": (8, 16),
                "conditioner.embedders.0.model.text_projection": (6, 6)}


def _inpaint(keys: dict) -> dict:
    return {**keys, U + "input_blocks.0.0.weight": (8, 9, 3, 3)}


@pytest.mark.parametrize("keys, family", [
    (SD1_KEYS, "sd1"), (SD2_KEYS, "sd2"), (SDXL_KEYS, "sdxl"), (REFINER_KEYS, "sdxl-refiner"),
    (_inpaint(SD1_KEYS), "sd1-inpaint"), (_inpaint(SD2_KEYS), "sd2-inpaint"),
    (_inpaint(SDXL_KEYS), "sdxl-inpaint"),
    # UNet-only files: told apart by the attention context width and projection shape.
    ({U + "input_blocks.0.0.weight": (8, 4, 3, 3),
      U + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (8, 768)}, "sd1"),
    ({U + "input_blocks.0.0.weight": (8, 4, 3, 3),
      U + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (8, 1024)}, "sd2"),
    ({U + "input_blocks.0.0.weight": (8, 4, 3, 3), U + "label_emb.0.0.weight": (8, 2816)},
     "sdxl"),
])
def test_family_detection_from_keys_and_shapes(tmp_path, keys, family):
    path = _fake_checkpoint(tmp_path / "model.safetensors", keys)
    assert detect_checkpoint_family(path) == family


@pytest.mark.parametrize("keys, message", [
    ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 8),
      "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": (8, 4),
      "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": ()}, "LoRA panel"),
    ({"unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": (4, 8),
      "unet.down_blocks.0.attentions.0.proj_in.lora_B.weight": (8, 4)}, "LoRA panel"),
    ({"encoder.conv_in.weight": (4, 3, 3, 3), "decoder.conv_out.weight": (3, 4, 3, 3),
      "encoder.mid.attn_1.q.weight": (4, 4, 1, 1)}, "VAE only"),
    ({"emb_params": (2, 8)}, "embedding"),
    ({"control_model.input_hint_block.0.weight": (4, 3, 3, 3)}, "ControlNet"),
    ({"double_blocks.0.img_attn.norm.key_norm.scale": (8,)}, "Flux"),
    ({"something.else": (2,)}, "not a Stable Diffusion checkpoint"),
])
def test_files_that_are_not_checkpoints_are_refused_clearly(tmp_path, keys, message):
    path = _fake_checkpoint(tmp_path / "thing.safetensors", keys)
    with pytest.raises(WrongModelKindError, match=message):
        detect_checkpoint_family(path)
    with pytest.raises(WrongModelKindError, match=message):
        load_single_file(path)


def test_lora_message_tells_the_user_where_to_go(tmp_path):
    path = _fake_checkpoint(tmp_path / "style.safetensors",
                            {"lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (4, 8)})
    with pytest.raises(WrongModelKindError) as info:
        detect_checkpoint_family(path)
    assert str(info.value) == ("style.safetensors is a LoRA, not a full checkpoint. "
                               "Load it from the LoRA panel.")


def test_unet_only_file_is_refused_at_load(tmp_path):
    path = _fake_checkpoint(tmp_path / "unet.safetensors",
                            {U + "input_blocks.0.0.weight": (8, 4, 3, 3),
                             U + "label_emb.0.0.weight": (8, 2816)})
    with pytest.raises(WrongModelKindError, match="no text encoder"):
        load_single_file(path)


def test_checkpoint_without_vae_is_refused_at_load(tmp_path):
    keys = {k: v for k, v in SD1_KEYS.items() if not k.startswith("first_stage_model.")}
    path = _fake_checkpoint(tmp_path / "novae.safetensors", keys)
    assert detect_checkpoint_family(path) == "sd1"
    with pytest.raises(WrongModelKindError, match="no VAE"):
        load_single_file(path)


def test_weights_that_do_not_fit_the_architecture_are_reported(tmp_path):
    # Right names, wrong shapes: the bundled SD1.5 config cannot take them.
    path = _fake_checkpoint(tmp_path / "odd.safetensors", SD1_KEYS)
    with pytest.raises(CorruptModelError, match="could not be loaded as sd1"):
        load_single_file(path)


def test_pickles_are_refused_unless_allowed(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {k: torch.zeros(s) for k, s in SD1_KEYS.items()}}, path)
    with pytest.raises(UnsafeModelFileError, match="pickle"):
        detect_checkpoint_family(path)
    with pytest.raises(UnsafeModelFileError):
        load_single_file(path)
    # Allowed: read with weights_only=True, nested state_dict unwrapped.
    assert detect_checkpoint_family(path, allow_pickle=True) == "sd1"
    # A pickle renamed to .safetensors is still a pickle.
    disguised = tmp_path / "model.safetensors"
    disguised.write_bytes(path.read_bytes())
    with pytest.raises(UnsafeModelFileError):
        detect_checkpoint_family(disguised)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_with_code_is_refused_even_when_allowed(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Payload()}, path)
    with pytest.raises(UnsafeModelFileError, match="other than tensors"):
        detect_checkpoint_family(path, allow_pickle=True)


def test_pickled_checkpoint_loads_when_allowed(tiny_sd1, tmp_path):
    from studio.engine.models.single_file import checkpoint_state_dict

    pipe, folder = tiny_sd1
    path = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": {k: v.clone() for k, v in checkpoint_state_dict(pipe).items()}},
               path)
    loaded = load_single_file(path, config_dir=folder, allow_pickle=True)
    assert np.array_equal(_generate(pipe), _generate(loaded))


@pytest.mark.parametrize("cut", [0.5, 0.999])
def test_truncated_file_is_corrupt(tiny_sd1, tmp_path, cut):
    pipe, _ = tiny_sd1
    path = save_single_file(pipe, tmp_path / "full.safetensors")
    data = path.read_bytes()
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(CorruptModelError, match="damaged or incomplete"):
        detect_checkpoint_family(broken)
    with pytest.raises(CorruptModelError):
        load_single_file(broken)


def test_garbage_file_is_corrupt(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(b"this is not a model " * 200)
    with pytest.raises(CorruptModelError):
        detect_checkpoint_family(path)


def test_safetensors_whose_header_length_looks_like_a_pickle_opcode(tmp_path):
    # The first byte of a safetensors file is the low byte of its header length: 0x80 must not
    # be taken for the pickle PROTO opcode.
    import struct

    path = tmp_path / "model.safetensors"
    for pad in range(0, 400):
        save_file({k: torch.zeros(s) for k, s in SD1_KEYS.items()}, str(path),
                  metadata={"pad": "x" * pad})
        (length,) = struct.unpack("<Q", path.read_bytes()[:8])
        if length & 0xFF == 0x80:
            break
    assert path.read_bytes()[:1] == b"\x80"
    assert detect_checkpoint_family(path) == "sd1"


def _tiny_sdxl_with_distinct_text_widths(folder: Path):
    """Tiny SDXL whose two text encoders differ in width, as in the real model, so diffusers'
    own loader tells them apart (the plain tiny SDXL has equal widths)."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    base = build_tiny_pipeline("sdxl", work_dir=folder / "work")
    torch.manual_seed(1)

    def text_config(hidden: int) -> CLIPTextConfig:
        return CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=hidden,
                              intermediate_size=2 * hidden, num_attention_heads=4,
                              num_hidden_layers=2, vocab_size=len(base.tokenizer),
                              max_position_embeddings=77, projection_dim=hidden,
                              hidden_act="gelu")

    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32 + 48,
        transformer_layers_per_block=(1, 1), attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=48 + 6 * 8, norm_num_groups=32)
    pipe = StableDiffusionXLPipeline(
        vae=base.vae, text_encoder=CLIPTextModel(text_config(32)),
        text_encoder_2=CLIPTextModelWithProjection(text_config(48)), tokenizer=base.tokenizer,
        tokenizer_2=base.tokenizer_2, unet=unet, scheduler=base.scheduler)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(folder / "pipe", safe_serialization=True)
    return pipe


def test_sdxl_round_trip_through_diffusers_text_encoder_loader(tmp_path, no_network):
    pipe = _tiny_sdxl_with_distinct_text_widths(tmp_path)
    path = save_single_file(pipe, tmp_path / "xl.safetensors")
    loaded = load_single_file(path, config_dir=tmp_path / "pipe")
    for name in ("text_encoder", "text_encoder_2", "unet"):
        before, after = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before), name
    assert np.array_equal(_generate(pipe), _generate(loaded))


@pytest.mark.skipif(not os.environ.get("STUDIO_SLOW_TESTS"),
                    reason="full-size SD 1.5 (4 GB); set STUDIO_SLOW_TESTS=1")
def test_full_size_sd15_loads_with_the_bundled_config_offline(tmp_path, no_network):
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    config = bundled_config_dir("sd15")
    torch.manual_seed(0)
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_config(AutoencoderKL.load_config(config / "vae")),
        text_encoder=CLIPTextModel(CLIPTextConfig.from_pretrained(config / "text_encoder")),
        tokenizer=CLIPTokenizer.from_pretrained(config / "tokenizer"),
        unet=UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config / "unet")),
        scheduler=PNDMScheduler.from_config(PNDMScheduler.load_config(config / "scheduler")),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    path = save_single_file(pipe, tmp_path / "sd15.safetensors")
    assert len(_keys(path)) == 686 + 248 + 196
    loaded = load_single_file(path)  # no config_dir: the bundled one
    assert type(loaded.scheduler).__name__ == "PNDMScheduler"
    for name in ("unet", "vae", "text_encoder"):
        before, after = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before), name
    assert np.array_equal(_generate(pipe), _generate(loaded))


@pytest.mark.parametrize("requested, metadata, expected", [
    (None, {}, ("sd2", "sd2-768-v")),  # weights cannot tell: v-prediction 768 by default
    (None, {"modelspec.prediction_type": "epsilon"}, ("sd2", "sd2-512")),
    (None, {"modelspec.prediction_type": "v"}, ("sd2", "sd2-768-v")),
    ("sd2-512", {}, ("sd2", "sd2-512")),
    ("sd2-v", {"modelspec.prediction_type": "epsilon"}, ("sd2", "sd2-768-v")),
])
def test_sd2_variant_choice(requested, metadata, expected):
    from studio.engine.models.single_file import resolve_family

    assert resolve_family(requested, "sd2", metadata, "m.safetensors") == expected


def test_refiner_is_detected_but_not_loaded(tmp_path):
    path = _fake_checkpoint(tmp_path / "refiner.safetensors", REFINER_KEYS)
    assert detect_checkpoint_family(path) == "sdxl-refiner"
    with pytest.raises(WrongModelKindError, match="refiner"):
        load_single_file(path)


def test_inpainting_checkpoint_round_trip(tiny_sd1, tmp_path, no_network):
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel
    from PIL import Image

    base, _ = tiny_sd1
    torch.manual_seed(3)
    unet = UNet2DConditionModel.from_config({**base.unet.config, "in_channels": 9})
    pipe = StableDiffusionInpaintPipeline(
        vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=unet,
        scheduler=base.scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    for part in (pipe.unet, pipe.vae, pipe.text_encoder):
        part.eval()  # as a loaded pipeline is
    pipe.save_pretrained(tmp_path / "pipe", safe_serialization=True)
    path = save_single_file(pipe, tmp_path / "inpaint.safetensors")
    assert detect_checkpoint_family(path) == "sd1-inpaint"

    loaded = load_single_file(path, config_dir=tmp_path / "pipe")
    assert type(loaded).__name__ == "StableDiffusionInpaintPipeline"
    rng = np.random.RandomState(0)
    image = Image.fromarray(rng.randint(0, 256, (64, 64, 3), dtype=np.uint8))
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255

    def inpaint(p) -> np.ndarray:
        return p("a cat", image=image, mask_image=Image.fromarray(mask), num_inference_steps=2,
                 height=64, width=64, generator=torch.Generator().manual_seed(0),
                 output_type="np").images

    assert np.array_equal(inpaint(pipe), inpaint(loaded))
