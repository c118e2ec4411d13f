"""inception_fid's noise floor (genlab/metrics/inception.py): the FID between the even- and
odd-indexed halves of the real images, from sums cached with the whole set's. A stand-in feature
network (the pixels) keeps it fast and needs no Inception weights."""

import pytest
import torch

from genlab.metrics.frechet import fid
from genlab.metrics.inception import inception_fid, noise_floor

torchmetrics_fid = pytest.importorskip("torchmetrics.image.fid")


class Pixels(torch.nn.Module):
    """A feature 'network' for torchmetrics: the image's pixels (3 × 3 × 3)."""

    num_features = 27

    def forward(self, x):
        return x.flatten(1).double()


def test_noise_floor_is_the_fid_between_even_and_odd_images_and_is_cached(tmp_path):
    generator = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (40, 1, 3, 3), dtype=torch.uint8, generator=generator)
    fake = torch.randint(0, 128, (40, 1, 3, 3), dtype=torch.uint8, generator=generator)
    features = lambda images: images.expand(-1, 3, -1, -1).flatten(1).double()  # noqa: E731  grey tiled to RGB
    stats, seen = tmp_path / "real.pt", []
    batches = lambda: real.split([7, 10, 3, 20])  # noqa: E731  odd sizes: the split follows the index in the whole set

    metric = torchmetrics_fid.FrechetInceptionDistance(feature=Pixels())
    value, cached = inception_fid(metric, batches, lambda: [fake], stats, seen.append)
    assert not cached and seen == [7, 10, 3, 20, 40]
    assert value == pytest.approx(fid(features(real), features(fake)), rel=1e-6)  # the whole set (torchmetrics: eigvals)
    floor = noise_floor(stats)
    assert floor == pytest.approx(fid(features(real[0::2]), features(real[1::2])), rel=1e-6)  # sums vs centred
    assert floor > 0 and floor != pytest.approx(fid(features(real[:20]), features(real[20:])), rel=1e-3)

    metric = torchmetrics_fid.FrechetInceptionDistance(feature=Pixels())
    again, cached = inception_fid(metric, lambda: pytest.fail("real images embedded again"), lambda: [fake], stats,
                                  seen.append)
    assert cached and again == pytest.approx(value, rel=1e-12) and noise_floor(stats) == floor


def test_no_noise_floor_below_two_images_a_half(tmp_path):
    real = torch.zeros(3, 1, 3, 3, dtype=torch.uint8)
    inception_fid(torchmetrics_fid.FrechetInceptionDistance(feature=Pixels()), lambda: [real], lambda: [real],
                  tmp_path / "real.pt", lambda n: None)
    assert noise_floor(tmp_path / "real.pt") is None
