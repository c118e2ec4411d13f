"""Which shape a generated image draws, judged in pixel space against every real shapes image.

A classifier can be satisfied without the shape being drawn: a cgan's round blobs scored 0.97
class accuracy on shapes while its square and heart rows showed no corners and no notch
(docs/gan-shapes.md). This metric asks a stricter question. For each generated image x̃ it finds
the real image nearest in pixel space, over all 737,280 images of the shapes dataset (Matthey et
al. 2017's dSprites factors) at the checkpoint's image size,

    nn(x̃) = argmin_i ‖x̃ − x_i‖²      (8-bit pixels scaled to [0, 1], as a PNG of x̃ holds them)

and reports the shape of nn(x̃), unless a round blob is nearer still: the search also holds
disks (BLOB_RADII_PX, 4 to 10.5 px at 64 px, the areas of the smallest ellipse to the largest square,
centred on each of the 32 × 32 positions, drawn at 64 px and area-pooled to the image size like the
data), and an image nearest a disk reads as `blob`, no shape. Without them a round blob read as a
square or a heart: disks of a square's area blurred by 1 px read as squares at most scales at 64 px
(docs/gan-shapes.md), so the square row could score without corners. A real image scores itself,
at distance 0; the calibration of the ruler on perturbed real images is in docs/gan-shapes.md
(benchmarks/shapes_ruler.py).

    conditional model:    per class k, the share of n // K samples of class k read as shape k
                          (1 for a perfect model; each class's own row); blob_share: all samples
                          read as blobs
    unconditional model:  the share of n samples read as each shape and as blobs (the data hold
                          one third of each shape); min_share over the three shapes

Both with the mean of min_i ‖x̃ − x_i‖² over the real images (mean_dist_sq). One pass over the
dataset renders it in chunks, so memory stays at one chunk; the cost is n × (737,280 + 14,336)
distances of H·W pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from genlab.data.shapes import NATIVE_SIZE, NUM_IMAGES, SHAPE_NAMES, factor_classes, render

CHUNK_IMAGES = 32768  # real images compared at once (128 MiB of float32 at 32 px)
BLOB = len(SHAPE_NAMES)  # what read_shapes returns for an image nearest a round blob
READINGS = (*SHAPE_NAMES, "blob")
BLOB_RADII_PX = torch.arange(4.0, 10.51, 0.5)  # at 64 px: the smallest ellipse's area (49 px²) to the largest square's (321)


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


def blobs(image_size: int, device: torch.device, radii: torch.Tensor = BLOB_RADII_PX) -> torch.Tensor:
    """Disks (len(radii)·1024, 1, S, S) in [0, 1]: each radius (px at 64 px) centred on each pixel corner
    (16 + k_x, 16 + k_y) where the shapes sit, drawn at 64 px and area-pooled to S, 8-bit like the data."""
    centres = torch.arange(32, device=device, dtype=torch.float32) + 16
    pixels = torch.arange(NATIVE_SIZE, device=device, dtype=torch.float32) + 0.5
    dy = (pixels[None, :] - centres[:, None]).square()  # (32, 64): row offsets² from each centre
    r2 = dy[None, :, None, :, None] + dy[:, None, None, None, :]  # (x, y, 1, 64, 64)
    disks = torch.cat([(r2 <= r**2).flatten(0, 1).float() for r in radii.tolist()])  # (len·1024, 1, 64, 64)
    factor = NATIVE_SIZE // image_size
    return disks if factor == 1 else F.avg_pool2d(disks, factor).mul(255).round().div(255)


def nearest_blob(images: torch.Tensor) -> torch.Tensor:
    """For images (N, 1, S, S) in [0, 1]: the squared distance to the nearest of `blobs`, on the CPU."""
    flat = images.flatten(1).float()
    best = torch.full((len(flat),), float("inf"), device=images.device)
    for radius in BLOB_RADII_PX.split(4):  # 4·1024 disks at once
        disks = blobs(images.shape[-1], images.device, radius).flatten(1)
        best = torch.minimum(best, torch.cdist(flat, disks).square().min(1).values)
    return best.cpu()


def read(images: torch.Tensor, candidates: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """What the ruler reads in each image (N, 1, S, S) in [0, 1] (an index into READINGS: a shape,
    or BLOB) and the squared distance to the nearest real image."""
    index, dist_sq = nearest_real(images, images.shape[-1], candidates)
    shape = factor_classes(index)[:, 0]
    return torch.where(nearest_blob(images) < dist_sq, BLOB, shape), dist_sq


def read_shapes(images: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
    """read()'s readings alone."""
    return read(images, candidates)[0]


def shape_shares(images: torch.Tensor, labels: torch.Tensor | None, candidates: torch.Tensor | None = None) -> dict:
    """The metric's section of eval.json for generated images (N, 1, S, S) in [0, 1], with the
    class each was asked for (None: an unconditional model), searched among `candidates`."""
    reading, dist_sq = read(images, candidates)
    blob_share = float((reading == BLOB).float().mean())
    if labels is None:
        shares = torch.bincount(reading, minlength=len(READINGS)).float() / len(reading)
        return {"share": dict(zip(READINGS, shares.tolist())), "min_share": float(shares[:BLOB].min()),
                "mean_dist_sq": float(dist_sq.mean())}
    labels = labels.cpu()
    own = [float((reading[labels == k] == k).float().mean()) for k in range(len(SHAPE_NAMES))]
    return {"own_shape": dict(zip(SHAPE_NAMES, own)), "min_own_shape": min(own), "blob_share": blob_share,
            "mean_dist_sq": float(dist_sq.mean())}
