"""Which shape a generated image draws, judged in pixel space against every real shapes image.

A classifier can be satisfied without the shape being drawn: a cgan's round blobs scored 0.97
class accuracy on shapes while its square and heart rows showed no corners and no notch
(docs/gan-shapes.md). This metric asks a stricter question. For each generated image x̃ it finds
the real image nearest in pixel space, over all 737,280 images of the shapes dataset (Matthey et
al. 2017's dSprites factors) at the checkpoint's image size,

    nn(x̃) = argmin_i ‖x̃ − x_i‖²      (8-bit pixels scaled to [0, 1], as a PNG of x̃ holds them)

and reports the shape of nn(x̃). A real image scores itself, at distance 0. A round blob's nearest
real image is mostly a heart (small hearts are nearly round at 32 px), so the square share
separates squares from blobs.

    conditional model:    per class k, the share of n // K samples of class k whose nearest real
                          image has shape k (1 for a perfect model; each class's own row)
    unconditional model:  the share of n samples whose nearest real image has each shape (the data
                          hold one third of each)

Both with the mean of min_i ‖x̃ − x_i‖² (mean_dist_sq). One pass over the dataset renders it in
chunks, so memory stays at one chunk; the cost is n × 737,280 distances of H·W pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from genlab.data.shapes import NUM_IMAGES, SHAPE_NAMES, factor_classes, render

CHUNK_IMAGES = 32768  # real images compared at once (128 MiB of float32 at 32 px)


def nearest_real(images: torch.Tensor, image_size: int, candidates: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """For images (N, 1, S, S) in [0, 1]: the index of the nearest shapes image among `candidates`
    (dataset indices; default all) and the squared distance to it, on the CPU (the search runs on
    the images' device)."""
    flat, device = images.flatten(1).float(), images.device
    candidates = torch.arange(NUM_IMAGES) if candidates is None else candidates
    best_sq = torch.full((len(flat),), float("inf"), device=device)
    best_index = torch.zeros(len(flat), dtype=torch.long, device=device)
    for index in candidates.to(device).split(CHUNK_IMAGES):
        real = render(index, image_size).flatten(1).float() / 255
        chunk_sq, chunk_arg = torch.cdist(flat, real).square().min(1)
        closer = chunk_sq < best_sq
        best_sq[closer], best_index[closer] = chunk_sq[closer], index[chunk_arg[closer]]
    return best_index.cpu(), best_sq.cpu()


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Images (N, C, S, S) blurred by a Gaussian of std `sigma` px (separable, radius ⌈3σ⌉, zero padding;
    sampled at whole pixels, so σ = 0.5's kernel has variance 0.215 px², not 0.25)."""
    if sigma <= 0:
        return images
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-x.square() / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    out = F.conv2d(images, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), padding=(0, radius), groups=channels)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), padding=(radius, 0), groups=channels)


def shift(images: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Images (N, C, S, S) moved by offsets (N, 2) = (dx, dy) px, bilinear, zeros coming in."""
    n, _, size, _ = images.shape
    theta = torch.zeros(n, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, :, 2] = -2 * offsets.to(images) / size  # the grid samples from x − d
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def perturb(images: torch.Tensor, generator: torch.Generator, *, shift_px: float = 0.0, blur: float = 0.0,
            noise: float = 0.0) -> torch.Tensor:
    """Real images (N, C, S, S) in [0, 1] changed the way a generator's images differ from real ones:
    a shift uniform in [−shift_px, shift_px] along each axis, a Gaussian blur of std `blur` px,
    additive grey noise of std `noise` (clipped to [0, 1]), then rounded to 8 bits as a PNG holds them."""
    n = images.shape[0]
    if shift_px:
        offsets = (torch.rand(n, 2, generator=generator) * 2 - 1) * shift_px
        images = shift(images, offsets)
    images = gaussian_blur(images, blur)
    if noise:
        images = (images + noise * torch.randn(images.shape, generator=generator).to(images)).clamp(0, 1)
    return images.mul(255).round().div(255)


def read_shapes(images: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
    """The shape the ruler reads in each image (N, 1, S, S) in [0, 1]: an index into SHAPE_NAMES."""
    return factor_classes(nearest_real(images, images.shape[-1], candidates)[0])[:, 0]


def shape_shares(images: torch.Tensor, labels: torch.Tensor | None, candidates: torch.Tensor | None = None) -> dict:
    """The metric's section of eval.json for generated images (N, 1, S, S) in [0, 1], with the
    class each was asked for (None: an unconditional model), searched among `candidates`."""
    index, dist_sq = nearest_real(images, images.shape[-1], candidates)
    nearest = factor_classes(index)[:, 0]
    if labels is None:
        shares = torch.bincount(nearest, minlength=len(SHAPE_NAMES)).float() / len(nearest)
        return {"share": dict(zip(SHAPE_NAMES, shares.tolist())), "min_share": float(shares.min()),
                "mean_dist_sq": float(dist_sq.mean())}
    labels = labels.cpu()
    own = [float((nearest[labels == k] == k).float().mean()) for k in range(len(SHAPE_NAMES))]
    return {"own_shape": dict(zip(SHAPE_NAMES, own)), "min_own_shape": min(own), "mean_dist_sq": float(dist_sq.mean())}
