"""Distances between two sets of image features: Fréchet distance (FID), KID, precision/recall.

Each compares feature vectors (N×D) of real and generated images, embedded by the same network:
genlab's domain classifier (`fid`, `kid`, `pr`) or Inception-v3 (`inception_fid`, which goes
through torchmetrics instead, see genlab/metrics/inception.py). torchmetrics is an optional extra,
not a core dependency, so these versions (torch only) are genlab's own: tested against direct
numpy/scipy computations, and FID and KID against torchmetrics' FrechetInceptionDistance and
KernelInceptionDistance (tests/test_metrics_reference.py). Precision/recall follows the authors'
reference code (NVlabs/precision-recall, TensorFlow), which no maintained PyTorch library ships.

Fréchet distance (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a
Local Nash Equilibrium"), between Gaussians N(μ₁, Σ₁), N(μ₂, Σ₂) fitted to the two sets:

    FD = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁Σ₂)^½,   tr (Σ₁Σ₂)^½ = Σᵢ √λᵢ(Σ₁^½ Σ₂ Σ₁^½)

Σ₁^½ Σ₂ Σ₁^½ is symmetric PSD and similar to Σ₁Σ₂, so its eigenvalues are real and ≥ 0 (clamped at 0
against rounding): no sqrtm of a non-symmetric matrix, whose rounding errors give the imaginary parts
pytorch-fid works around with εI. Covariances are unbiased (N − 1); all in float64.

KID (Bińkowski et al. 2018, "Demystifying MMD GANs"): the unbiased estimator of MMD² with the cubic
polynomial kernel k(x, y) = (xᵀy / D + 1)³, on m points of each set:

    MMD²ᵤ = Σ_{i≠j} k(xᵢ, xⱼ) / (m(m−1)) + Σ_{i≠j} k(yᵢ, yⱼ) / (m(m−1)) − 2 Σ_{i,j} k(xᵢ, yⱼ) / m²

averaged over `subsets` random subsets of m = `subset_size` points drawn without replacement from
each set (their code, and torchmetrics' KernelInceptionDistance: 100 subsets of 1,000), with the
standard deviation over subsets. Unbiased: it can be slightly negative when the sets match.

Precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for Assessing
Generative Models"): a set's manifold is the union of balls around its points, each of radius the
distance to the point's k-th nearest neighbour in the set (k = 3, self excluded, as in their code):

    precision = fraction of generated points inside the real manifold   (fidelity)
    recall    = fraction of real points inside the generated manifold   (coverage)
"""

from __future__ import annotations

import torch

PR_NEIGHBOURS = 3  # k of Kynkäänniemi et al.'s k-NN manifolds, part of the metric's definition


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need features of shape (N >= 2, D), got {tuple(features.shape)}")
    x = features.double()
    mu = x.mean(0)
    centred = x - mu
    return mu, centred.T @ centred / (x.shape[0] - 1)


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """FD between N(mu1, sigma1) and N(mu2, sigma2), see the module docstring."""
    mu1, sigma1, mu2, sigma2 = (t.double() for t in (mu1, sigma1, mu2, sigma2))
    eigval, eigvec = torch.linalg.eigh(sigma1)
    root1 = eigvec @ torch.diag(eigval.clamp(min=0).sqrt()) @ eigvec.T
    middle = root1 @ sigma2 @ root1
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * trace_root)


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N×D each)."""
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))


def _polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD² between samples x and y (m×D each) with the cubic polynomial kernel."""
    m = x.shape[0]
    kxx, kyy, kxy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    within = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(within - 2 * kxy.sum() / m**2)


def kid(real: torch.Tensor, fake: torch.Tensor, subsets: int, subset_size: int,
        generator: torch.Generator) -> tuple[float, float]:
    """KID: mean and standard deviation of MMD²ᵤ over random subsets (see the module docstring)."""
    if not 2 <= subset_size <= min(len(real), len(fake)):
        raise ValueError(f"KID subset size {subset_size} must be in [2, {min(len(real), len(fake))}] (the set sizes)")
    real, fake = real.double(), fake.double()
    values = torch.tensor([
        mmd2_unbiased(real[torch.randperm(len(real), generator=generator)[:subset_size]],
                      fake[torch.randperm(len(fake), generator=generator)[:subset_size]])
        for _ in range(subsets)
    ], dtype=torch.float64)
    return float(values.mean()), float(values.std()) if subsets > 1 else 0.0


def _kth_neighbour_radii(points: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point of the set (N,)."""
    radii = []
    for start in range(0, len(points), chunk):
        distances = torch.cdist(points[start : start + chunk], points)
        # The k + 1 smallest include the point itself (distance 0).
        radii.append(distances.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def _inside_fraction(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int) -> float:
    """Fraction of queries within radius of at least one centre."""
    inside = 0
    for start in range(0, len(queries), chunk):
        distances = torch.cdist(queries[start : start + chunk], centres)
        inside += int((distances <= radii[None]).any(dim=1).sum())
    return inside / len(queries)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = PR_NEIGHBOURS, chunk: int = 1000) -> tuple[float, float]:
    """Improved precision and recall with k-NN manifolds (see the module docstring)."""
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} points in each set")
    real, fake = real.double(), fake.double()
    precision = _inside_fraction(fake, real, _kth_neighbour_radii(real, k, chunk), chunk)
    recall = _inside_fraction(real, fake, _kth_neighbour_radii(fake, k, chunk), chunk)
    return precision, recall
