"""The DiT trainer's shortcut: one zero "T5" token weighted by log(256) computes what
``StableDiffusion3Pipeline`` computes with its 256 zero tokens (so the model trained on it is
the model users run)."""

from __future__ import annotations

import torch


def test_collapsed_zero_tokens_give_the_transformer_output_of_the_pipelines_256() -> None:
    from diffusers import SD3Transformer2DModel
    from diffusers.models.attention_processor import JointAttnProcessor2_0

    from studio.engine.joint_context import CollapsedJointProcessor

    torch.manual_seed(0)
    model = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
        attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
        caption_projection_dim=16, pooled_projection_dim=16, pos_embed_max_size=16).eval()
    with torch.no_grad():  # diffusers zero-initialises the output layers: give them weight
        for p in model.parameters():
            p.normal_(0, 0.2)
    clip = torch.randn(2, 7, 16)  # the CLIP tokens, then the pipeline's zeros for T5
    pooled, x = torch.randn(2, 16), torch.randn(2, 4, 8, 8)
    t = torch.tensor([250.0, 900.0])
    with torch.no_grad():
        model.set_attn_processor(JointAttnProcessor2_0())
        full = model(hidden_states=x, encoder_hidden_states=torch.cat(
            [clip, torch.zeros(2, 256, 16)], 1), pooled_projections=pooled, timestep=t).sample
        model.set_attn_processor(CollapsedJointProcessor(256))
        short = model(hidden_states=x, encoder_hidden_states=torch.cat(
            [clip, torch.zeros(2, 1, 16)], 1), pooled_projections=pooled, timestep=t).sample
        # without the weight, one zero token is another model: the test can tell them apart
        model.set_attn_processor(JointAttnProcessor2_0())
        unweighted = model(hidden_states=x, encoder_hidden_states=torch.cat(
            [clip, torch.zeros(2, 1, 16)], 1), pooled_projections=pooled, timestep=t).sample
    assert torch.allclose(full, short, atol=1e-4), (full - short).abs().max()
    assert (full - unweighted).abs().max() > 1e-2
