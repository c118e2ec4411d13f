"""Likelihood bounds of a latent-variable model (the VAE) on held-out images, in nats per image.

For an image x and k draws zᵢ = μ(x) + σ(x)·εᵢ, εᵢ ~ N(0, I), from the encoder q(z|x), the log
importance weights are

    log wᵢ = log p(x|zᵢ) + log p(zᵢ) − log q(zᵢ|x)       p(z) = N(0, I),  log p(x|z) = −recon_nats

    ELBO (Kingma & Welling 2014):              L₁ = (1/k) Σᵢ log wᵢ          (unbiased for the ELBO)
    IWAE bound (Burda, Grosse & Salakhutdinov  L_k = log (1/k) Σᵢ wᵢ = logsumexp(log w) − log k
    2016, "Importance Weighted Autoencoders")

E[L₁] ≤ E[L_k] ≤ log p(x), and E[L_k] rises to log p(x) as k grows (Burda et al., Theorem 1). genlab
reports the NLL bounds neg_elbo = −L₁ and iwae_nll = −L_k, averaged over the images. Both come from
the same k draws, so iwae_nll ≤ neg_elbo holds for every image, not only in expectation: the log of
a mean is at least the mean of the logs (Jensen). The log-densities are summed in float64 and
combined with logsumexp in float64 (a bound of ~100 nats per image must not lose the ~0.1 nat
differences between models to float32 rounding).

p(x|z) is the model's decoder likelihood: a Bernoulli over pixels is a normalised distribution only
over binary images, so the test images are binarized as the model's data were (see eval.py); a
Gaussian likelihood gives a density of images in [0, 1], not comparable with Bernoulli numbers.
"""

from __future__ import annotations

import math

import torch


def log_importance_weights(model, x: torch.Tensor, k: int, generator: torch.Generator, max_batch: int) -> torch.Tensor:
    """log wᵢ (N, k) in float64 for images x (N, …), with at most `max_batch` decoder passes at a time.

    `model` needs posterior(x) → (μ, log σ²) and log_likelihood(z, x) → log p(x|z) per image: the
    likelihood interface of genlab.models.base.GenerativeModel.
    """
    mu, logvar = (t.double() for t in model.posterior(x))
    std = (0.5 * logvar).exp()
    latent_dim = mu.shape[1]
    log_norm = 0.5 * latent_dim * math.log(2 * math.pi)
    per_chunk = min(k, max_batch)
    weights = []
    for start in range(0, k, per_chunk):
        draws = min(per_chunk, k - start)
        eps = torch.randn(x.shape[0], draws, latent_dim, generator=generator, dtype=torch.float64).to(mu.device)
        z = mu[:, None] + std[:, None] * eps
        log_px_z = model.log_likelihood(z.flatten(0, 1).to(x.dtype), x.repeat_interleave(draws, 0))
        log_px_z = log_px_z.double().view(x.shape[0], draws)
        log_pz = -0.5 * z.square().sum(-1) - log_norm
        log_qz = -0.5 * eps.square().sum(-1) - 0.5 * logvar.sum(-1, keepdim=True) - log_norm
        weights.append(log_px_z + log_pz - log_qz)
    return torch.cat(weights, dim=1)


def bounds(log_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image (N,): the negative ELBO −L₁ and the IWAE NLL bound −L_k, from log weights (N, k)."""
    log_weights = log_weights.double()
    k = log_weights.shape[1]
    return -log_weights.mean(1), -(torch.logsumexp(log_weights, 1) - math.log(k))


@torch.no_grad()
def nll_bounds(model, images: torch.Tensor, k: int, generator: torch.Generator, max_batch: int,
               progress=None) -> dict[str, float]:
    """Mean negative ELBO and IWAE NLL bound over `images` (N, C, H, W in [0, 1]), nats per image.

    Images go through the encoder max(1, max_batch // k) at a time; `progress(count)` is called
    with the number of images in each batch once it is done.
    """
    per_batch = max(1, max_batch // k)
    neg_elbo, iwae_nll = [], []
    for start in range(0, len(images), per_batch):
        batch = images[start : start + per_batch]
        elbo, iwae = bounds(log_importance_weights(model, batch, k, generator, max_batch))
        neg_elbo.append(elbo.cpu())
        iwae_nll.append(iwae.cpu())
        if progress is not None:
            progress(len(batch))
    neg_elbo, iwae_nll = torch.cat(neg_elbo), torch.cat(iwae_nll)
    return {"neg_elbo_nats": float(neg_elbo.mean()), "iwae_nll_nats": float(iwae_nll.mean()),
            "iwae_gain_nats": float((neg_elbo - iwae_nll).mean())}
