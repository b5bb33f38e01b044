"""Tiny real IP-Adapters and CLIP vision encoders for the reference-image tests: built from
configs with random weights, saved in the layouts users keep them in (diffusers' and
ComfyUI's), and read back by diffusers' own loader."""

from __future__ import annotations

from pathlib import Path


def tiny_encoder(seed: int = 0, hidden: int = 32, projection: int = 24, heads: int = 4):
    """A tiny ``CLIPVisionModelWithProjection`` (32x32 images, 8x8 patches)."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    config = CLIPVisionConfig(hidden_size=hidden, intermediate_size=hidden * 2,
                              projection_dim=projection, num_hidden_layers=2,
                              num_attention_heads=heads, image_size=32, patch_size=8,
                              hidden_act="gelu", layer_norm_eps=1e-5)
    return CLIPVisionModelWithProjection(config).eval()


def ip_adapter_state(unet, embed_dim: int, seed: int = 1, tokens: int = 4,
                     scale: float = 0.3) -> dict[str, object]:
    """A plain IP-Adapter's weights for ``unet`` in the file layout (``image_proj.*``,
    ``ip_adapter.N.to_k_ip/to_v_ip``: one pair per cross-attention layer, N = 1, 3, 5 ...
    in the order of the UNet's attention processors)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim

    def rand(*shape):
        return (torch.randn(shape, generator=gen) * scale).contiguous()

    state = {"image_proj.proj.weight": rand(cross * tokens, embed_dim),
             "image_proj.proj.bias": rand(cross * tokens),
             "image_proj.norm.weight": 1.0 + rand(cross),
             "image_proj.norm.bias": rand(cross)}
    key = 1
    for name in unet.attn_processors:
        if not name.endswith("attn2.processor"):
            continue
        attn = unet.get_submodule(name.rsplit(".processor", 1)[0])
        hidden = attn.to_out[0].out_features
        state[f"ip_adapter.{key}.to_k_ip.weight"] = rand(hidden, cross)
        state[f"ip_adapter.{key}.to_v_ip.weight"] = rand(hidden, cross)
        key += 2
    return state


def save_ip_adapter(unet, path: Path, embed_dim: int, seed: int = 1) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(ip_adapter_state(unet, embed_dim, seed), str(path))
    return path


def build_reference_root(root: Path, sd1_dir: Path, sdxl_dir: Path) -> Path:
    """A user's folder with, for the tiny SD 1.x model, an IP-Adapter in the diffusers
    layout (``IP-Adapter/models/ip-adapter_tiny.safetensors`` beside ``image_encoder/``)
    and, for the tiny SDXL one, an adapter in ComfyUI's ``models/ipadapter`` with its
    encoder as one file in ``models/clip_vision``. Returns ``root``."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    unet1 = UNet2DConditionModel.from_pretrained(sd1_dir / "unet")
    unetxl = UNet2DConditionModel.from_pretrained(sdxl_dir / "unet")
    h94 = root / "ipadapter" / "IP-Adapter" / "models"
    tiny_encoder(0).save_pretrained(h94 / "image_encoder", safe_serialization=True)
    save_ip_adapter(unet1, h94 / "ip-adapter_tiny-sd1.safetensors", 24, seed=1)
    save_ip_adapter(unet1, h94 / "ip-adapter_tiny-sd1-b.safetensors", 24, seed=3)
    save_file(ip_adapter_plus_state(unet1, 32), str(h94 / "ip-adapter-plus_tiny-sd1.safetensors"))
    comfy = root / "models"
    enc = tiny_encoder(1, hidden=64, projection=40, heads=1)  # heads as read from a file
    (comfy / "clip_vision").mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in enc.state_dict().items()},
              str(comfy / "clip_vision" / "tiny-vit.safetensors"))
    save_ip_adapter(unetxl, comfy / "ipadapter" / "ip-adapter_tiny-sdxl.safetensors", 40,
                    seed=2)
    return root


def ip_adapter_plus_state(unet, embed_dim: int, seed: int = 4, hidden: int = 64,
                          tokens: int = 4, scale: float = 0.2) -> dict[str, object]:
    """An IP-Adapter Plus's weights (its Resampler reads the encoder's hidden states) in
    the original file layout: ``image_proj.latents``, ``proj_in``, four ``layers.N.0``
    (norm1, norm2, to_q, to_kv, to_out) and ``layers.N.1`` (LayerNorm, Linear, Linear)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim

    def rand(*shape):
        return (torch.randn(shape, generator=gen) * scale).contiguous()

    state = {"image_proj.latents": rand(1, tokens, hidden),
             "image_proj.proj_in.weight": rand(hidden, embed_dim),
             "image_proj.proj_in.bias": rand(hidden),
             "image_proj.proj_out.weight": rand(cross, hidden),
             "image_proj.proj_out.bias": rand(cross),
             "image_proj.norm_out.weight": 1.0 + rand(cross),
             "image_proj.norm_out.bias": rand(cross)}
    for i in range(4):
        p = f"image_proj.layers.{i}"
        state.update({f"{p}.0.norm1.weight": 1.0 + rand(hidden), f"{p}.0.norm1.bias": rand(hidden),
                      f"{p}.0.norm2.weight": 1.0 + rand(hidden), f"{p}.0.norm2.bias": rand(hidden),
                      f"{p}.0.to_q.weight": rand(hidden, hidden),
                      f"{p}.0.to_kv.weight": rand(2 * hidden, hidden),
                      f"{p}.0.to_out.weight": rand(hidden, hidden),
                      f"{p}.1.0.weight": 1.0 + rand(hidden), f"{p}.1.0.bias": rand(hidden),
                      f"{p}.1.1.weight": rand(4 * hidden, hidden),
                      f"{p}.1.3.weight": rand(hidden, 4 * hidden)})
    plain = ip_adapter_state(unet, 8, seed + 1, tokens, scale=0.3)
    state.update({k: v for k, v in plain.items() if k.startswith("ip_adapter.")})
    return state
