"""The shapes ruler's calibration (issue 31): the perturbations of genlab/metrics/shapes.py against
their definitions, and the ruler reading perturbed real images at 64 px as their own shape.

The full calibration (every shape and scale, 32 and 64 px, all 737,280 candidates) is
benchmarks/shapes_ruler.py, with its table in docs/gan-shapes.md. Here the search runs over every
shape, scale and orientation at the positions within 2 px of each image's own (a shape further
away overlaps it less than the same shape nearby, so the full search finds the same answer; the
benchmark's table, from the full search, agrees)."""

from __future__ import annotations

import pytest
import torch

from genlab.data.shapes import FACTOR_SIZES, factor_classes, render
from genlab.metrics.shapes import BLOB, gaussian_blur, perturb, read_shapes, shape_shares, shift

torch.set_num_threads(1)


def centre(images: torch.Tensor) -> torch.Tensor:
    """Intensity centroid (x, y) of each image (N, 1, S, S), in pixels."""
    size = images.shape[-1]
    grid = torch.arange(size, dtype=images.dtype)
    mass = images.sum((1, 2, 3))
    return torch.stack([(images.sum((1, 2)) * grid).sum(1) / mass, (images.sum((1, 3)) * grid).sum(1) / mass], 1)


def test_shift_moves_the_centroid_by_the_offset():
    images = render(torch.tensor([0, 300_000, 600_000]) + 15 * 32 + 15, 64).float() / 255  # shapes near the centre
    offsets = torch.tensor([[0.5, 0.0], [-0.3, 0.4], [1.0, -1.0]])
    moved = shift(images, offsets)
    torch.testing.assert_close(centre(moved) - centre(images), offsets, atol=1e-3, rtol=0)
    torch.testing.assert_close(moved.sum((1, 2, 3)), images.sum((1, 2, 3)), rtol=1e-4, atol=0)


# Sampled at whole pixels, σ = 0.5's kernel is narrower than the continuous Gaussian (variance
# 0.215 px² instead of 0.25); from σ = 1 on the two agree within 1 %.
@pytest.mark.parametrize("sigma,tolerance", [(0.5, 0.15), (1.0, 0.02), (2.0, 0.02)])
def test_blur_is_a_normalised_gaussian_of_its_sigma(sigma, tolerance):
    point = torch.zeros(1, 1, 21, 21)
    point[0, 0, 10, 10] = 1
    spread = gaussian_blur(point, sigma)
    assert float(spread.sum()) == pytest.approx(1, abs=1e-5)
    offsets = torch.arange(21.0) - 10
    variance = float((spread[0, 0].sum(0) * offsets.square()).sum())
    assert variance == pytest.approx(sigma**2, rel=tolerance)


def test_noise_and_rounding():
    g = torch.Generator().manual_seed(0)
    grey = torch.full((4, 1, 64, 64), 0.5)
    noisy = perturb(grey, g, noise=0.05)
    assert float((noisy - 0.5).std()) == pytest.approx(0.05, rel=0.05)
    assert torch.equal(noisy * 255, (noisy * 255).round())  # 8-bit levels
    assert torch.equal(perturb(grey, g), grey.mul(255).round().div(255))


def nearby(index: torch.Tensor, reach: int = 2) -> torch.Tensor:
    """Every (shape, scale, orientation) at the positions within `reach` px of each index's own."""
    factors = factor_classes(index)
    sprites = torch.arange(FACTOR_SIZES[0] * FACTOR_SIZES[1] * FACTOR_SIZES[2])
    out = []
    for x, y in factors[:, 3:].tolist():
        for dx in range(-reach, reach + 1):
            for dy in range(-reach, reach + 1):
                if 0 <= x + dx < 32 and 0 <= y + dy < 32:
                    out.append(sprites * 1024 + (x + dx) * 32 + (y + dy))
    return torch.cat(out).unique()


@pytest.mark.parametrize("kind", ["blur σ 1 px", "shift + blur 1 + noise"])
def test_the_ruler_reads_perturbed_small_hearts_and_squares_at_64_px(kind):
    """The hard cells of the 32 px table (small hearts under σ = 1 px blur) hold at 64 px."""
    g = torch.Generator().manual_seed(1)
    orientation, x, y = (torch.randint(k, (6,), generator=g) for k in FACTOR_SIZES[2:])
    shape = torch.tensor([2, 2, 2, 2, 0, 0])  # hearts and squares of the smallest scale
    index = (((shape * 6 + 0) * 40 + orientation) * 32 + x) * 32 + y
    options = {"blur": 1.0} if kind == "blur σ 1 px" else {"shift_px": 0.5, "blur": 1.0, "noise": 0.05}
    images = perturb(render(index, 64).float() / 255, g, **options)
    assert torch.equal(read_shapes(images, nearby(index)), shape)


def disks_like(index: torch.Tensor) -> torch.Tensor:
    """A disk of each image's area centred where its shape is, at 64 px (its radius is, in general,
    none of the ruler's BLOB_RADII_PX)."""
    area = render(index, 64).float().sum((1, 2, 3)) / 255
    centre = factor_classes(index)[:, 3:].float() + 16
    pixels = torch.arange(64.0) + 0.5
    r2 = (pixels[None, None, :] - centre[:, 0, None, None]).square() + (pixels[None, :, None] - centre[:, 1, None, None]).square()
    return (r2 <= (area / torch.pi)[:, None, None]).float()[:, None]


@pytest.mark.parametrize("blur", [0.0, 1.0])
def test_round_blobs_read_as_blobs_not_as_squares_or_hearts(blur):
    """A disk of a square's or a heart's area, sharp or blurred by 1 px, read as that shape before
    the ruler held disks (a square at most scales when blurred); a person sees no corners and no notch."""
    g = torch.Generator().manual_seed(2)
    orientation, x, y = (torch.randint(k, (6,), generator=g) for k in FACTOR_SIZES[2:])
    shape, scale = torch.tensor([0, 0, 0, 2, 2, 2]), torch.tensor([0, 2, 5, 0, 2, 5])
    index = (((shape * 6 + scale) * 40 + orientation) * 32 + x) * 32 + y
    images = perturb(gaussian_blur(disks_like(index), blur), g)
    reading = read_shapes(images, nearby(index))
    assert torch.equal(reading, torch.full_like(reading, BLOB))
    result = shape_shares(images, shape, nearby(index))
    assert result["own_shape"]["square"] == result["own_shape"]["heart"] == 0 and result["blob_share"] == 1
