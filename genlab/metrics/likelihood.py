"""Likelihood bounds of a latent-variable model (the VAE) on held-out images, in nats per image.

For an image x and k draws zᵢ = μ(x) + σ(x)·εᵢ, εᵢ ~ N(0, I), from the encoder q(z|x), the log
importance weights are

    log wᵢ = log p(x|zᵢ) + log p(zᵢ) − log q(zᵢ|x)       p(z) = N(0, I) unless the model's
                                                        log_prior says another,  log p(x|z) = −recon_nats

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


def draw_noise(n: int, k: int, latent_dim: int, generator: torch.Generator, max_batch: int,
               per_batch: int | None = None) -> torch.Tensor:
    """ε (n, k, latent_dim) in float64, drawn in genlab's reference order: images in groups of
    `per_batch` (default: all n), each group's k draws in chunks of min(k, max_batch), one
    randn(images, draws, latent_dim) per chunk. How the decoder passes are batched then leaves the
    draws, and so the bound, unchanged."""
    per_batch, per_chunk = per_batch or n, min(k, max_batch)
    eps = torch.empty(n, k, latent_dim, dtype=torch.float64)
    for first in range(0, n, per_batch):
        images = min(per_batch, n - first)
        for start in range(0, k, per_chunk):
            draws = min(per_chunk, k - start)
            eps[first : first + images, start : start + draws] = torch.randn(
                images, draws, latent_dim, generator=generator, dtype=torch.float64)
    return eps


def log_importance_weights(model, x: torch.Tensor, k: int, generator: torch.Generator, max_batch: int,
                           decode_batch: int | None = None, per_batch: int | None = None) -> torch.Tensor:
    """log wᵢ (N, k) in float64 for images x (N, …), with the draws of `draw_noise(…, max_batch, per_batch)`
    and at most `decode_batch` (default: max_batch) decoder passes at a time.

    `model` needs posterior(x) → (μ, log σ²), log_likelihood(z, x) → log p(x|z) per image and
    log_prior(z) → log p(z) per latent (N(0, I) unless the family's prior is another): the
    likelihood interface of genlab.models.base.GenerativeModel.
    """
    mu, logvar = (t.double() for t in model.posterior(x))
    std = (0.5 * logvar).exp()
    n, latent_dim = mu.shape
    log_norm = 0.5 * latent_dim * math.log(2 * math.pi)
    eps = draw_noise(n, k, latent_dim, generator, max_batch, per_batch).to(mu.device)
    z = mu[:, None] + std[:, None] * eps
    log_pz = model.log_prior(z.flatten(0, 1)).double().view(n, k)
    log_qz = -0.5 * eps.square().sum(-1) - 0.5 * logvar.sum(-1, keepdim=True) - log_norm
    z = z.flatten(0, 1).to(x.dtype)  # row i·k + j: image i, draw j
    passes = decode_batch or max_batch
    log_px_z = torch.empty(n * k, dtype=torch.float64, device=mu.device)
    for start in range(0, n * k, passes):
        rows = slice(start, min(start + passes, n * k))
        images = x[torch.arange(rows.start, rows.stop, device=x.device) // k]
        log_px_z[rows] = model.log_likelihood(z[rows], images).double()
    return log_px_z.view(n, k) + log_pz - log_qz


def bounds(log_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image (N,): the negative ELBO −L₁ and the IWAE NLL bound −L_k, from log weights (N, k)."""
    log_weights = log_weights.double()
    k = log_weights.shape[1]
    return -log_weights.mean(1), -(torch.logsumexp(log_weights, 1) - math.log(k))


# Decoder passes per call of the bound's decoder: the throughput plateau of the default MNIST
# decoder on this project's 2-core CPU (docs/performance.md: 500 → 4,096 passes a call).
DECODE_BATCH = 4096


@torch.no_grad()  # not inference_mode: a model may convert its weights inside (VAE.log_likelihood) and train on
def nll_bounds(model, images: torch.Tensor, k: int, generator: torch.Generator, max_batch: int,
               progress=None, decode_batch: int | None = None) -> dict[str, float]:
    """Mean negative ELBO and IWAE NLL bound over `images` (N, C, H, W in [0, 1]), nats per image.

    The draws are those of `draw_noise(…, max_batch, max(1, max_batch // k))`, whatever `decode_batch` is: images go
    through the decoder max(1, decode_batch // k) at a time (at most decode_batch passes a call, as
    many as memory allows; default DECODE_BATCH), `progress(count)` called with the number of images
    in each such group.
    """
    decode_batch = decode_batch or DECODE_BATCH
    per_group = max(1, max(decode_batch, max_batch) // k)
    per_batch = max(1, max_batch // k)
    per_group = max(per_batch, per_group - per_group % per_batch)  # whole reference groups: the same draws
    neg_elbo, iwae_nll = [], []
    for start in range(0, len(images), per_group):
        batch = images[start : start + per_group]
        elbo, iwae = bounds(log_importance_weights(model, batch, k, generator, max_batch, decode_batch, per_batch))
        neg_elbo.append(elbo.cpu())
        iwae_nll.append(iwae.cpu())
        if progress is not None:
            progress(len(batch))
    neg_elbo, iwae_nll = torch.cat(neg_elbo), torch.cat(iwae_nll)
    return {"neg_elbo_nats": float(neg_elbo.mean()), "iwae_nll_nats": float(iwae_nll.mean()),
            "iwae_gain_nats": float((neg_elbo - iwae_nll).mean())}
