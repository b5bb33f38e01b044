"""Latent Studio: a desktop studio for local generative image models."""

__version__ = "0.1.0"
