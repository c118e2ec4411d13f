"""inception_fid's noise floor (genlab/metrics/inception.py): the FID between the even- and
odd-indexed halves of the real images, from sums cached with the whole set's. A stand-in feature
network (the pixels) keeps it fast and needs no Inception weights."""

from pathlib import Path

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


class PooledPixels(torch.nn.Module):
    """A feature 'network' for whole images: each channel's mean over a 2 × 2 grid (12 features)."""

    num_features = 12

    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x.double(), 2).flatten(1)


def test_genlab_eval_reports_the_noise_floor_beside_the_inception_fid(tmp_path, monkeypatch):
    from conftest import TINY
    from omegaconf import OmegaConf

    from genlab.config.compose import compose_jobs
    from genlab.metrics import inception
    from genlab.metrics.evaluation import evaluate
    from genlab.commands.train import train

    train(compose_jobs("train", [*TINY, "model=gan", "trainer.max_steps=2"])[0], tmp_path / "run")
    monkeypatch.setattr(inception, "find_weights", lambda configured: tmp_path / "stand-in.pt")
    monkeypatch.setattr(inception, "weights_id", lambda weights: "pooled pixels (a stand-in)")
    monkeypatch.setattr(inception, "make_metric", lambda weights: torchmetrics_fid.FrechetInceptionDistance(feature=PooledPixels()))
    settings = OmegaConf.to_container(compose_jobs("eval", ["ckpt=x", "n=40", f"cache_dir={tmp_path / 'cache'}"])[0], resolve=True)
    result = evaluate(tmp_path / "run" / "checkpoints" / "last.pt", settings, ["inception_fid"], torch.device("cpu"))

    section = result["metrics"]["inception_fid"]
    assert section["noise_floor"] == pytest.approx(noise_floor(Path(section["real_stats"])), rel=1e-12)
    assert section["noise_floor_n"] == 20 and section["noise_floor"] > 0
    assert result["summary"]["inception_fid_noise_floor"] == section["noise_floor"]
