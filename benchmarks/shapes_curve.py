"""The shapes ruler against training steps: `genlab eval metrics=[shapes]`'s figures for every
checkpoint of one or more runs (checkpoints/step_*.pt, kept with trainer.keep_last, and last.pt).

For a conditional model: the own-shape share per class of n // K samples per class; for an
unconditional one: each shape's share of n samples. Samples come from the model's decode (its EMA
generator), rounded to 8 bits as genlab eval does, latents drawn from `--seed`; the ruler is
genlab/metrics/shapes.py's shape_shares, run on `--device` (a GPU makes each checkpoint a few
seconds at 64 px). Prints one row per checkpoint; `--out` also writes the rows as JSON.

    PYTHONPATH=. python benchmarks/shapes_curve.py outputs/<run> [<run> …] --n 900 --device cuda
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch

from genlab.metrics.shapes import shape_shares
from genlab.models import model_from_checkpoint
from genlab.training.checkpoint import load_checkpoint


def checkpoints(run: Path) -> list[Path]:
    folder = run / "checkpoints"
    steps = sorted(folder.glob("step_*.pt"), key=lambda p: int(re.findall(r"\d+", p.stem)[0]))
    return steps + ([folder / "last.pt"] if (folder / "last.pt").is_file() else [])


@torch.no_grad()
def measure(ckpt: Path, n: int, seed: int, device: torch.device) -> dict:
    state = load_checkpoint(ckpt)
    model = model_from_checkpoint(state, device)
    model.train(False)
    g = torch.Generator().manual_seed(seed)
    classes = model.num_classes
    labels = torch.arange(classes).repeat_interleave(n // classes) if classes else None
    count = len(labels) if classes else n
    images = torch.cat([model.decode(z, None if y is None else y)
                        for z, y in zip(model.prior(count, g).split(500),
                                        labels.split(500) if classes else [None] * (1 + (count - 1) // 500))])
    images = images.mul(255).round().div(255)  # the 8-bit pixels genlab eval scores
    return {"run": str(ckpt.parent.parent), "ckpt": ckpt.name, "step": state["step"], "n": count,
            **shape_shares(images.to(device), labels)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--n", type=int, default=900, help="samples (cgan: n // classes per class)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device, rows = torch.device(args.device), []
    for run in args.runs:
        for ckpt in checkpoints(run):
            start = time.perf_counter()
            row = measure(ckpt, args.n, args.seed, device)
            shares = row.get("own_shape") or row["share"]
            print(f"{run.name:24s} {ckpt.name:18s} step {row['step']:7d}  "
                  + "  ".join(f"{k} {v:.3f}" for k, v in shares.items())
                  + f"  mean_dist_sq {row['mean_dist_sq']:.1f}  ({time.perf_counter() - start:.1f} s)", flush=True)
            rows.append(row)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
