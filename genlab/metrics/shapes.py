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

import torch

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
