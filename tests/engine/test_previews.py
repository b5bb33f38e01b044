"""The latent -> RGB preview map is fitted from the model's own VAE."""

from types import SimpleNamespace

import numpy as np
import torch

from studio.engine.previews import LatentPreviewer, fit_latent_rgb


class LinearVAE(torch.nn.Module):
    """A stand-in VAE whose encoder is a known linear map of the 4x4-pooled colour."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.mix = torch.nn.Parameter(torch.randn(4, 3, generator=g), requires_grad=False)

    def encode(self, x):
        pooled = torch.nn.functional.avg_pool2d(x, 4)
        lat = torch.einsum("kc,nchw->nkhw", self.mix, pooled) + 0.1
        return SimpleNamespace(latent_dist=SimpleNamespace(mean=lat))


def test_fitted_preview_recovers_the_colour_of_a_latent():
    vae = LinearVAE()
    factors = fit_latent_rgb(vae)
    previewer = LatentPreviewer(factors, scaling_factor=0.5)
    colours = {"red": [0.8, -0.8, -0.8], "green": [-0.8, 0.8, -0.8], "blue": [-0.8, -0.8, 0.8]}
    for name, rgb in colours.items():
        img = torch.tensor(rgb).view(1, 3, 1, 1).expand(1, 3, 64, 64)
        latents = vae.encode(img).latent_dist.mean * 0.5  # as a pipeline holds them
        got = previewer(latents).reshape(-1, 3).mean(axis=0)
        want = (np.array(rgb) + 1) * 127.5
        assert np.abs(got - want).max() < 3, name
    assert previewer(latents).shape == (16, 16, 3)
