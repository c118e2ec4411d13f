"""FID against solver steps: `genlab eval`'s figure for one checkpoint of a model decoded by an
iterative solve (diffusion) at each of several `sample_steps`, as a Markdown table.

For each K in `--steps` (default 4, 8, 18, 35: EDM's Heun sampler costs 2K − 1 network evaluations,
so 7, 15, 35, 69 NFE) it runs genlab's own evaluation (genlab/metrics/evaluation.py, the code
behind `genlab eval … sample_steps=K`) with `--metric` (inception_fid, Lucic et al. 2018's protocol,
or fid, the domain classifier's) on `--n` generated images against the first n test images, and
prints one row: sample_steps, NFE, the FID and its noise floor (real images only: the same in every
row), ms per generated image (the decode's wall time over the n images, in eval batches; the
first row also carries the process's warm-up, which a large n amortizes) and the device. Every K is checked before the first is measured. Further arguments are `genlab eval`
overrides (hardware=cpu, hardware.compile=true, batch_size=…, cache_dir=…, classifier.steps=…). Like `genlab eval`, each
row writes eval.json beside the checkpoint, which ends holding the last row's figure, marked with its
sample_steps; `--out` also writes the table.

    PYTHONPATH=. python benchmarks/diffusion_steps.py outputs/<run>/checkpoints/last.pt --n 10000 \\
        --out steps.md hardware=auto
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omegaconf import OmegaConf

from genlab.commands.eval import check
from genlab.config.compose import compose_jobs
from genlab.errors import UserError

METRICS = ("inception_fid", "fid")  # the FIDs, whose sections record the generation's cost


def settings(ckpt: str, steps: list[int], metric: str, n: int, overrides: list[str]) -> list[dict]:
    """The composed and checked `genlab eval` settings of each row (a ConfigError before any work)."""
    rows = []
    for k in steps:
        (cfg,) = compose_jobs("eval", [f"ckpt={ckpt}", f"metrics=[{metric}]", f"n={n}", f"sample_steps={k}", *overrides],
                              False)
        check(cfg)
        rows.append(OmegaConf.to_container(cfg, resolve=True))
    return rows


def measure(rows: list[dict]) -> tuple[dict, list[dict]]:
    """genlab's evaluation at each row's settings: (the checkpoint's eval.json head, each row's section)."""
    from genlab.metrics.evaluation import evaluate
    from genlab.training.runtime import setup_device

    device = setup_device(rows[0]["hardware"])
    results = [evaluate(row["ckpt"], row, row["metrics"], device, row["hardware"]["compile"]) for row in rows]
    return results[-1], [result["metrics"][row["metrics"][0]] for row, result in zip(rows, results)]


def table(head: dict, metric: str, sections: list[dict]) -> str:
    """The Markdown table of the rows, under a line naming the checkpoint and the protocol."""
    first = sections[0]
    lines = [f"{head['model']} on {head['dataset']}, step {head['step']} ({head['ckpt']}); metric {metric}, "
             f"n = {first['n']} generated vs the first n test images, seed {first['seed']}, "
             f"eval batches of {first['generation_batch_size']}",
             "",
             "| sample_steps | NFE | FID | noise floor | ms per image | device |",
             "|---:|---:|---:|---:|---:|---|"]
    for s in sections:
        lines.append(f"| {s['sample_steps']} | {s['nfe']} | {s[metric]:.3f} | {s['noise_floor']:.3f} | "
                     f"{s['ms_per_image']:.3g} | {s['generation_device']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", help="a checkpoint (or its run directory) of a model with sample_steps")
    parser.add_argument("overrides", nargs="*", help="genlab eval overrides, e.g. hardware=cpu batch_size=250")
    parser.add_argument("--steps", default="4,8,18,35", help="comma-separated sample_steps, one row each")
    parser.add_argument("--metric", default="inception_fid", choices=METRICS)
    parser.add_argument("--n", type=int, default=10000, help="generated images per row (and test images)")
    parser.add_argument("--out", type=Path, help="also write the table here (Markdown)")
    args = parser.parse_intermixed_args()
    try:
        steps = [int(k) for k in args.steps.split(",")]
    except ValueError:
        parser.error(f"--steps {args.steps!r}: expected comma-separated integers, e.g. 4,8,18,35")
    try:
        head, sections = measure(settings(args.ckpt, steps, args.metric, args.n, args.overrides))
    except UserError as e:
        sys.exit(f"diffusion_steps: error: {e}")
    text = table(head, args.metric, sections)
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
