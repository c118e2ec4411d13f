"""MIG: mutual information against a direct computation, and the two ends of the scale."""

import math

import numpy as np
import pytest
import torch

from genlab.data.shapes import FACTOR_SIZES, Shapes, factor_classes, factor_values
from genlab.metrics.disentanglement import MIG_POINTS, histogram_discretize, mean_codes, mig, mutual_information


def test_histogram_discretize_matches_numpy_digitize():
    x = torch.randn(500, 3, generator=torch.Generator().manual_seed(0))
    x[:, 2] = 4.0  # a constant latent: numpy puts every value in one bin
    ours = histogram_discretize(x, 20).numpy()
    for j in range(3):
        expected = np.digitize(x[:, j].numpy(), np.histogram(x[:, j].numpy(), 20)[1][:-1])
        assert np.array_equal(ours[:, j], expected)


def test_mutual_information_matches_its_definition():
    generator = torch.Generator().manual_seed(1)
    a = torch.randint(0, 4, (300,), generator=generator)
    b = (a + torch.randint(0, 2, (300,), generator=generator)) % 5
    pa, pb = np.bincount(a, minlength=4) / 300, np.bincount(b, minlength=5) / 300
    pab = np.histogram2d(a.numpy(), b.numpy(), bins=[np.arange(5), np.arange(6)])[0] / 300
    expected = sum(pab[i, j] * math.log(pab[i, j] / (pa[i] * pb[j])) for i in range(4) for j in range(5) if pab[i, j])
    assert mutual_information(a, b) == pytest.approx(expected, rel=1e-12)
    assert mutual_information(a, a) == pytest.approx(-sum(p * math.log(p) for p in pa if p), rel=1e-12)


def test_mig_is_one_for_the_true_factors_and_near_zero_for_a_random_encoder():
    generator = torch.Generator().manual_seed(2)
    factors = torch.stack([torch.randint(0, size, (MIG_POINTS,), generator=generator) for size in (3, 6, 10, 20)], 1)
    true = mig(factors.double() * 0.7 - 1, factors)  # an affine map of each factor: 20 bins keep every class apart
    assert true["mig"] > 0.99 and min(true["per_factor"]) > 0.98
    random = mig(torch.randn(MIG_POINTS, 10, generator=generator), factors)
    assert random["mig"] < 0.02
    # Two latents that share a factor equally leave no gap.
    shared = mig(torch.stack([factors[:, 0], factors[:, 0], factors[:, 1]], 1).double(), factors[:, :2])
    assert shared["per_factor"][0] == pytest.approx(0, abs=1e-12) and shared["per_factor"][1] > 0.99


def test_mig_of_the_shapes_ground_truth_is_high_and_limited_by_the_bins():
    classes = factor_classes(torch.randint(0, Shapes(8).num_images, (MIG_POINTS,), generator=torch.Generator().manual_seed(3)))
    result = mig(factor_values(classes), classes)
    shape, scale, orientation, pos_x, pos_y = result["per_factor"]
    assert min(shape, scale) > 0.99  # 3 and 6 classes: 20 bins separate them
    # 40 orientations in 20 bins: at most log 20 of log 40 nats; 32 positions: a few bins hold two.
    assert orientation == pytest.approx(math.log(20) / math.log(40), abs=0.01)
    assert 0.8 < pos_x < 0.95 and 0.8 < pos_y < 0.95
    assert 0.85 < result["mig"] < 0.95


def test_mean_codes_pairs_each_code_with_its_image_factors():
    shapes = Shapes(8)

    def encode(x):  # the image's mean brightness tracks the shape's scale
        return torch.stack([x.mean((1, 2, 3)), torch.zeros(len(x))], 1)

    codes, factors = mean_codes(encode, shapes, 600, torch.Generator().manual_seed(4), 64, torch.device("cpu"))
    assert codes.shape == (600, 2) and factors.shape == (600, len(FACTOR_SIZES))
    brightness = codes[:, 0]
    assert torch.corrcoef(torch.stack([brightness, factors[:, 1].double()]))[0, 1] > 0.8
