"""Latent sliders: slider specs, the direction builder and curved latent paths (numpy)."""
