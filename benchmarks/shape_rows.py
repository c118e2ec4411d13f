"""Whether each row of a shapes cgan's class grid draws its shape, judged in pixel space.

genlab eval's cgan accuracy asks a trained classifier, and a generator can satisfy a classifier
without drawing the shape: after 12,000 steps the default cgan scored 0.97 while its square and
heart rows were round blobs (see genlab/models/gan.py). This script asks a stricter question. For
each sample x̃ of row k (class k, the same noise down each column, as in the class grid), it finds
the real image nearest in pixel space, over all 737,280 images of the shapes dataset at the
checkpoint's image size,

    nn(x̃) = argmin_i ‖x̃ − x_i‖²     (pixels in [0, 1])

and reports, per row, the share of samples whose nearest real image has the row's shape, and the
mean of min_i ‖x̃ − x_i‖². A real image scores 1 and distance 0. A round blob's nearest real image is
mostly a heart (small hearts are nearly round at 32 px), so the square row separates squares from
blobs, and the heart row does not.

Not a test: one pass over the dataset serves every checkpoint given; two checkpoints of 300 samples
each took about a minute at 32 px on 2 cores.

    PYTHONPATH=. python benchmarks/shape_rows.py outputs/<run>/checkpoints/last.pt [more.pt ...] --n 100
    (add --device cuda to run the generators and the search on a GPU)
"""

from __future__ import annotations

import argparse

import torch

from genlab.data.shapes import NUM_IMAGES, SHAPE_NAMES, factor_classes, render
from genlab.errors import UserError
from genlab.models import model_from_checkpoint
from genlab.training.checkpoint import load_checkpoint

CHUNK_IMAGES = 32768  # real images compared at once (128 MiB of float32 at 32 px)


def nearest_real(images: torch.Tensor, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For images (N, 1, S, S) in [0, 1]: the index of the nearest shapes image and the squared distance.

    The search runs on the images' device and returns CPU tensors.
    """
    flat, device = images.flatten(1).float(), images.device
    best_sq = torch.full((len(flat),), float("inf"), device=device)
    best_index = torch.zeros(len(flat), dtype=torch.long, device=device)
    for start in range(0, NUM_IMAGES, CHUNK_IMAGES):
        index = torch.arange(start, min(start + CHUNK_IMAGES, NUM_IMAGES), device=device)
        real = render(index, image_size).flatten(1).float() / 255
        dist_sq = torch.cdist(flat, real).square()
        chunk_sq, chunk_arg = dist_sq.min(1)
        closer = chunk_sq < best_sq
        best_sq[closer], best_index[closer] = chunk_sq[closer], index[chunk_arg[closer]]
    return best_index.cpu(), best_sq.cpu()


def class_rows(ckpt: str, n: int, seed: int, device: torch.device) -> tuple[int, torch.Tensor, torch.Tensor]:
    """(step, images, labels) of a class grid with n columns from a shapes cgan checkpoint."""
    state = load_checkpoint(ckpt)
    config = state["config"]
    if config["model"]["name"] != "cgan" or config["dataset"]["name"] != "shapes":
        found = f"{config['model']['name']} on {config['dataset']['name']}"
        raise UserError(f"{ckpt} is a {found}: pass a cgan trained on shapes")
    model = model_from_checkpoint(state, device)
    z, labels = model.class_grid_latents(n, torch.Generator().manual_seed(seed))
    return state["step"], model.decode(z, labels), labels


def report(ckpt: str, step: int, labels: torch.Tensor, index: torch.Tensor, dist_sq: torch.Tensor) -> str:
    nearest_shape = factor_classes(index)[:, 0]
    rows = []
    for k, name in enumerate(SHAPE_NAMES):
        row = labels == k
        counts = torch.bincount(nearest_shape[row], minlength=len(SHAPE_NAMES)).tolist()
        rows.append(f"{name} {(nearest_shape[row] == k).float().mean():.2f} "
                    f"(nearest {'/'.join(map(str, counts))}, dist² {dist_sq[row].mean():.1f})")
    return f"{ckpt} step {step}: " + "; ".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", nargs="+", help="cgan checkpoints trained on shapes, all of one image size")
    parser.add_argument("--n", type=int, default=100, help="samples per row (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the generators and the search run")
    args = parser.parse_args()
    if args.n < 1 or args.threads < 1:
        parser.error("--n and --threads must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is visible; use --device cpu")
    torch.set_num_threads(args.threads)
    try:
        grids = [class_rows(ckpt, args.n, args.seed, torch.device(args.device)) for ckpt in args.ckpt]
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    sizes = {images.shape[-1] for _, images, _ in grids}
    if len(sizes) > 1:
        raise SystemExit(f"error: the checkpoints have image sizes {sorted(sizes)}: pass checkpoints of one size per call")
    # One pass over the dataset for every checkpoint's samples together.
    index, dist_sq = nearest_real(torch.cat([images for _, images, _ in grids]), sizes.pop())
    lengths = [len(labels) for _, _, labels in grids]
    for ckpt, (step, _, labels), part_index, part_sq in zip(args.ckpt, grids, index.split(lengths), dist_sq.split(lengths)):
        print(report(ckpt, step, labels, part_index, part_sq))


if __name__ == "__main__":
    main()
