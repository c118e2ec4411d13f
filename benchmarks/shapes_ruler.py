"""Calibrate genlab eval's shapes ruler: what `metrics=[shapes]` says of real shapes images perturbed the
way a generator's images differ from real ones (issue 31, item 1).

For each image size, shape and scale (dSprites' six), `--per-cell` real images with random
orientation and position (seeded) are perturbed (genlab/metrics/shapes.py's `perturb`: sub-pixel
shift, Gaussian blur, grey noise, always 8-bit rounding) and scored by the ruler exactly as genlab
eval scores a cgan's samples: the share whose shape the ruler reads as their own. The other
direction too: round blobs, disks of each image's area at its position (sharp, and blurred by 1 px),
and the share of them the ruler reads as that image's shape (a person sees no corners and no notch:
0 is right). Prints one table per size (rows: perturbation × shape, columns: the six scales and all)
and writes them as JSON.

    PYTHONPATH=. python benchmarks/shapes_ruler.py --sizes 32 64 --per-cell 25 --out ruler.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import math

from genlab.data.shapes import FACTOR_SIZES, NATIVE_SIZE, SHAPE_NAMES, factor_classes, render
from genlab.metrics.shapes import gaussian_blur, perturb, read_shapes

PERTURBATIONS = {  # name → perturb()'s keywords
    "none (8-bit)": {},
    "shift ≤ 0.5 px": {"shift_px": 0.5},
    "blur σ 0.5 px": {"blur": 0.5},
    "blur σ 1 px": {"blur": 1.0},
    "noise σ 0.05": {"noise": 0.05},
    "shift + blur 1 + noise": {"shift_px": 0.5, "blur": 1.0, "noise": 0.05},
}


def cell_indices(shape: int, scale: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """Dataset indices of `count` images of one shape and scale, orientation and position uniform."""
    orient, x, y = (torch.randint(k, (count,), generator=generator) for k in FACTOR_SIZES[2:])
    return (((shape * FACTOR_SIZES[1] + scale) * FACTOR_SIZES[2] + orient) * FACTOR_SIZES[3] + x) * FACTOR_SIZES[4] + y


def disks_like(index: torch.Tensor, size: int) -> torch.Tensor:
    """A disk of each image's area (at 64 px) centred where its shape is, drawn at 64 px, area-pooled to size."""
    area = render(index, NATIVE_SIZE).float().sum((1, 2, 3)) / 255
    centre = factor_classes(index)[:, 3:].float() + 16  # (x, y) pixel corner
    pixels = torch.arange(NATIVE_SIZE, dtype=torch.float32) + 0.5
    r2 = (pixels[None, None, :] - centre[:, 0, None, None]).square() + (pixels[None, :, None] - centre[:, 1, None, None]).square()
    disks = (r2 <= (area / math.pi)[:, None, None]).float()[:, None]
    factor = NATIVE_SIZE // size
    return disks if factor == 1 else torch.nn.functional.avg_pool2d(disks, factor)


def calibrate(size: int, per_cell: int, seed: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(seed)
    cells = [(k, s) for k in range(len(SHAPE_NAMES)) for s in range(FACTOR_SIZES[1])]
    index = torch.cat([cell_indices(k, s, per_cell, g) for k, s in cells])
    real = render(index, size).float() / 255
    batches = {name: perturb(real, g, **kw) for name, kw in PERTURBATIONS.items()}
    disks = disks_like(index, size)
    batches |= {"disk of its area (blob)": perturb(disks, g), "disk, blur σ 1 px": perturb(gaussian_blur(disks, 1.0), g)}
    read = read_shapes(torch.cat(list(batches.values())).to(device)).view(len(batches), len(cells), per_cell)
    table = {}
    for p, name in enumerate(batches):
        for k, shape in enumerate(SHAPE_NAMES):
            own = [(read[p, k * FACTOR_SIZES[1] + s] == k).float().mean().item() for s in range(FACTOR_SIZES[1])]
            table[f"{name} | {shape}"] = {"by_scale": own, "all": sum(own) / len(own)}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--per-cell", type=int, default=25, help="images per (shape, scale) and perturbation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = {}
    for size in args.sizes:
        start = time.perf_counter()
        table = calibrate(size, args.per_cell, args.seed, torch.device(args.device))
        results[size] = table
        scales = "  ".join(f"{0.5 + 0.1 * s:4.1f}" for s in range(FACTOR_SIZES[1]))
        print(f"\n{size} px, {args.per_cell} images per cell ({time.perf_counter() - start:.0f} s)")
        print(f"{'perturbation | shape':36s} scale {scales}    all")
        for row, cell in table.items():
            print(f"{row:36s}       " + "  ".join(f"{v:4.2f}" for v in cell["by_scale"]) + f"   {cell['all']:.2f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
