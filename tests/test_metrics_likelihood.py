"""Likelihood bounds: the closed-form marginal of a linear-Gaussian model, and a trained tiny VAE."""

import math

import pytest
import torch

from genlab.data.batches import Batch
from genlab.data.shapes import render
from genlab.metrics.likelihood import bounds, log_importance_weights, nll_bounds
from genlab.models import build_model
from genlab.models.base import GenerativeModel
from genlab.models.vae import gaussian_kl

torch.set_num_threads(1)  # the test machine's cores are shared; more threads only contend

ADAM = {"name": "adam", "lr": 2e-3, "betas": [0.9, 0.999], "weight_decay": 0.0}


class LinearGaussian:
    """p(z) = N(0, I), p(x|z) = N(Wz + b, s²I), so p(x) = N(b, WWᵀ + s²I) exactly.

    Its exact posterior is N(Σ Wᵀ(x − b)/s², Σ), Σ = (I + WᵀW/s²)⁻¹; `posterior` returns that mean and
    Σ's diagonal, scaled by `std_scale` and shifted by `mean_shift` to make q deliberately wrong.
    """

    def __init__(self, w, b, s, std_scale=1.0, mean_shift=0.0):
        self.w, self.b, self.s = w.double(), b.double(), s
        self.posterior_cov = torch.linalg.inv(torch.eye(w.shape[1], dtype=torch.float64) + self.w.T @ self.w / s**2)
        self.std_scale, self.mean_shift = std_scale, mean_shift

    def posterior_mean(self, x):
        return (x.double() - self.b) @ self.w @ self.posterior_cov / self.s**2

    def posterior(self, x):
        var = self.posterior_cov.diagonal() * self.std_scale**2
        return self.posterior_mean(x) + self.mean_shift, var.log().expand(x.shape[0], -1)

    def logits(self, z):
        return z.double() @ self.w.T + self.b

    def recon_nats(self, mean, x):
        return -torch.distributions.Normal(mean.double(), self.s).log_prob(x.double()).sum(1)

    def log_likelihood(self, z, x):  # the likelihood interface genlab's nll asks (genlab/models/base.py)
        return -self.recon_nats(self.logits(z).float(), x)

    log_prior = GenerativeModel.log_prior  # p(z) = N(0, I), the contract's default

    def log_marginal(self, x):
        cov = self.w @ self.w.T + self.s**2 * torch.eye(len(self.b), dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x.double())


def test_exact_posterior_makes_elbo_and_iwae_equal_the_marginal_likelihood():
    # Orthogonal columns of W: the exact posterior is diagonal, so q = p(z|x) and every weight is p(x).
    w = torch.linalg.qr(torch.randn(6, 3, generator=torch.Generator().manual_seed(0)))[0] * torch.tensor([2.0, 1.0, 0.5])
    model = LinearGaussian(w, torch.linspace(-1, 1, 6), 0.3)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    log_w = log_importance_weights(model, x, 7, torch.Generator().manual_seed(2), max_batch=3)
    neg_elbo, iwae_nll = bounds(log_w)
    assert torch.allclose(-neg_elbo, model.log_marginal(x), atol=1e-9)
    assert torch.allclose(-iwae_nll, model.log_marginal(x), atol=1e-9)


def test_iwae_converges_to_the_marginal_likelihood_and_elbo_falls_short_by_the_kl():
    generator = torch.Generator().manual_seed(3)
    w, b = torch.randn(8, 3, generator=generator), torch.randn(8, generator=generator)
    model = LinearGaussian(w, b, 0.5, std_scale=1.3, mean_shift=0.2)
    x = model.logits(torch.randn(4, 3, generator=generator)) + 0.5 * torch.randn(4, 8, generator=generator)
    neg_elbo, iwae_nll = bounds(log_importance_weights(model, x, 20_000, generator, max_batch=5000))
    exact = -model.log_marginal(x)
    assert torch.all(iwae_nll >= exact - 0.01) and torch.allclose(iwae_nll, exact, atol=0.02)
    # ELBO = log p(x) − KL(q ‖ p(z|x)); the KL between Gaussians in closed form.
    mu, logvar = model.posterior(x)
    q = torch.distributions.MultivariateNormal(mu, torch.diag_embed(logvar.exp()))
    posterior = torch.distributions.MultivariateNormal(model.posterior_mean(x), model.posterior_cov)
    gap = torch.distributions.kl_divergence(q, posterior)
    assert torch.all(gap > 0.1)
    assert torch.allclose(neg_elbo - exact, gap, rtol=0.05)


@pytest.fixture(scope="module")
def trained_vae():
    torch.manual_seed(0)
    vae = build_model({"_target_": "genlab.models.vae.VAE", "name": "vae", "beta": 1.0, "latent_dim": 4, "likelihood": "bernoulli", "gaussian_std": 0.1,
                       "width": 8, "ema_decay": 0.0}, ADAM, (1, 16, 16), 3, torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        x = render(torch.randint(0, 737_280, (32,), generator=generator), 16).float().div(255)
        vae.train_step(Batch(x, torch.zeros(32, dtype=torch.long)))
    vae.train(False)
    return vae


def test_iwae_is_never_looser_than_the_elbo_on_a_trained_vae(trained_vae):
    x = (render(torch.arange(0, 737_280, 23_040), 16).float() / 255 > 0.5).float()  # 32 binary test images
    neg_elbo, iwae_nll = bounds(log_importance_weights(trained_vae, x, 200, torch.Generator().manual_seed(0), 1000))
    assert torch.all(iwae_nll <= neg_elbo)
    assert (neg_elbo - iwae_nll).mean() > 0.1
    # The k-draw ELBO estimate agrees with the training loss's analytic-KL ELBO (within MC error).
    with torch.no_grad():
        mu, logvar = trained_vae.posterior(x)
        draws = [trained_vae.recon_nats(trained_vae.logits(mu + (0.5 * logvar).exp() * torch.randn_like(mu)), x)
                 for _ in range(100)]
        analytic = torch.stack(draws).mean(0) + gaussian_kl(mu, logvar)
    assert neg_elbo.mean().item() == pytest.approx(analytic.mean().item(), abs=0.5)
    # An untrained model is far worse: ~log 2 nats per pixel.
    assert neg_elbo.mean() < 0.5 * 256 * math.log(2)


def test_nll_bounds_are_deterministic_for_a_seed_and_batching(trained_vae):
    x = (render(torch.arange(0, 737_280, 46_080), 16).float() / 255 > 0.5).float()
    one = nll_bounds(trained_vae, x, 50, torch.Generator().manual_seed(1), max_batch=1000)
    again = nll_bounds(trained_vae, x, 50, torch.Generator().manual_seed(1), max_batch=1000)
    assert one == again
    assert one["iwae_nll_nats"] <= one["neg_elbo_nats"]
    assert one["iwae_gain_nats"] == pytest.approx(one["neg_elbo_nats"] - one["iwae_nll_nats"])
