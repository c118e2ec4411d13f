"""The VAE's active latent units (Burda et al. 2016) against a case with a known answer."""

from __future__ import annotations

import torch
from torch import nn

from genlab.models.vae import ACTIVE_UNIT_THRESHOLD, VAE

MODEL = {"beta": 1.0, "latent_dim": 4, "likelihood": "bernoulli", "gaussian_std": 0.1, "width": 4, "ema_decay": 0.0}
OPTIMIZER = {"name": "adam", "lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 0.0}


class FirstPixelEncoder(nn.Module):
    """μ = w·x₀ (x₀ the first pixel), log σ² = 0: Var_x(μ_d) = w_d²·Var(x₀)."""

    def __init__(self, weights: list[float]):
        super().__init__()
        self.weights = torch.tensor(weights)

    def forward(self, x):
        mu = x[:, 0, 0, 0, None] * self.weights
        return torch.cat([mu, torch.zeros_like(mu)], dim=1)


def test_active_units_count_dimensions_whose_posterior_mean_varies_over_the_data():
    vae = VAE(MODEL, OPTIMIZER, (1, 8, 8), 0, torch.device("cpu"))
    # x₀ alternates 0, 1 over 1,000 images: Var(x₀) = 0.25·1000/999 = 0.25025 (Bessel-corrected),
    # so Var(μ_d) = 0.25025·w_d² = 0.25025, 0.01104, 0.00903, 0: two dimensions above 0.01.
    vae.encoder_ema = FirstPixelEncoder([1.0, 0.21, 0.19, 0.0])  # the weights that are measured
    images = torch.zeros(1000, 1, 8, 8)
    images[1::2, 0, 0, 0] = 1.0
    assert vae.active_units(images) == 2
    assert ACTIVE_UNIT_THRESHOLD == 0.01
    assert vae.final_metrics(images) == {"active_units": 2}


def test_no_unit_is_active_when_every_image_is_the_same():
    vae = VAE(MODEL, OPTIMIZER, (1, 8, 8), 0, torch.device("cpu"))
    assert vae.active_units(torch.full((10, 1, 8, 8), 0.5)) == 0
