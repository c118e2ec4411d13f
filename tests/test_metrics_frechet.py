"""FID, KID and precision/recall against direct numpy/scipy computations and closed forms."""

import numpy as np
import pytest
import scipy.linalg
import torch

from genlab.metrics.frechet import fid, frechet_distance, gaussian_stats, kid, mmd2_unbiased, precision_recall


def random_gaussian(n, d, seed, shift=0.0):
    """n points of one correlated Gaussian in d dimensions (the same for every seed), shifted."""
    mixing = np.random.default_rng(1234).normal(size=(d, d)) / np.sqrt(d)
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, d)) @ mixing + shift)


def test_frechet_distance_matches_scipy_sqrtm():
    a, b = random_gaussian(400, 12, 0), random_gaussian(300, 12, 1, shift=0.3)
    mu1, s1 = np.mean(a.numpy(), 0), np.cov(a.numpy(), rowvar=False)
    mu2, s2 = np.mean(b.numpy(), 0), np.cov(b.numpy(), rowvar=False)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert fid(a, b) == pytest.approx(expected, rel=1e-9)
    mu, sigma = gaussian_stats(a)
    assert np.allclose(mu.numpy(), mu1) and np.allclose(sigma.numpy(), s1)


def test_frechet_distance_closed_forms():
    # 1-D: (μ1 − μ2)² + (σ1 − σ2)²; commuting covariances: Σ (√a − √b)².
    one = frechet_distance(torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([-2.0]), torch.tensor([[9.0]]))
    assert one == pytest.approx(9 + 1)
    a, b = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.0])
    diag = frechet_distance(torch.zeros(3), torch.diag(a), torch.zeros(3), torch.diag(b))
    assert diag == pytest.approx(float(((a.sqrt() - b.sqrt()) ** 2).sum()))
    sigma = gaussian_stats(random_gaussian(50, 20, 2))[1]  # rank-deficient covariances are fine too
    assert abs(frechet_distance(torch.zeros(20), sigma, torch.zeros(20), sigma)) < 1e-9


def test_kid_matches_direct_unbiased_mmd():
    x, y = random_gaussian(40, 5, 3).numpy(), random_gaussian(40, 5, 4, shift=0.5).numpy()
    kernel = lambda a, b: (a @ b / 5 + 1) ** 3  # noqa: E731
    m = len(x)
    xx = sum(kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(kernel(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    assert mmd2_unbiased(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(xx + yy - 2 * xy, rel=1e-9)


def test_kid_is_unbiased_near_zero_for_one_distribution_and_positive_for_two():
    generator = torch.Generator().manual_seed(0)
    same, same_std = kid(random_gaussian(1000, 8, 5), random_gaussian(1000, 8, 6), 20, 100, generator)
    apart, _ = kid(random_gaussian(1000, 8, 5), random_gaussian(1000, 8, 6, shift=0.5), 20, 100, generator)
    standard_error = same_std / np.sqrt(20)
    assert abs(same) < 4 * standard_error
    assert apart > 20 * standard_error
    with pytest.raises(ValueError, match="subset size"):
        kid(random_gaussian(10, 2, 0), random_gaussian(10, 2, 1), 1, 11, generator)


def brute_force_precision_recall(real, fake, k):
    def radii(points):
        d = np.linalg.norm(points[:, None] - points[None], axis=-1)
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    def inside(queries, centres, r):
        d = np.linalg.norm(queries[:, None] - centres[None], axis=-1)
        return float(np.mean((d <= r[None]).any(axis=1)))

    return inside(fake, real, radii(real)), inside(real, fake, radii(fake))


def test_precision_recall_matches_brute_force():
    real, fake = random_gaussian(120, 4, 7), random_gaussian(90, 4, 8, shift=0.8)
    expected = brute_force_precision_recall(real.numpy(), fake.numpy(), 3)
    assert precision_recall(real, fake, chunk=17) == pytest.approx(expected)
    assert 0 < expected[0] < 1 and 0 < expected[1] < 1
    assert precision_recall(real, real) == (1.0, 1.0)
    assert precision_recall(real, fake + 100) == (0.0, 0.0)


def test_precision_and_recall_separate_fidelity_from_coverage():
    # Generated points from a quarter of the real distribution: faithful (high precision), poor coverage.
    real = random_gaussian(2000, 2, 9)
    narrow = real[(real[:, 0] > 0) & (real[:, 1] > 0)]
    precision, recall = precision_recall(real, narrow[torch.randperm(len(narrow))])
    assert precision > 0.95 and recall < 0.5
