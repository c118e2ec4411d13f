"""Run an experiment preset end to end (its training, then the eval its header names) and print
its row of the README's results table.

    PYTHONPATH=. python benchmarks/preset.py vae_mnist [--out DIR] [-- OVERRIDE ...]

A preset's header (configs/experiment/<name>.yaml) gives, one per line:
    # run: genlab train …          the command (a sweep: with -m)
    # eval: genlab eval …           the eval, with <run> standing for the run directory (optional)
    # metric: <name>                the eval.json summary key (or, for a sweep, the result.json metric)
    # reference: …                  the published number, its paper and table
Overrides after `--` are added to the training command (e.g. trainer.max_steps=2 to try it out).
Wall times are measured around each command, start-up included. Not a test: a run takes as long
as the preset says.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def header(name: str) -> dict[str, str]:
    """The preset's `# key: value` header lines (the first occurrence of each key)."""
    path = REPO / "configs" / "experiment" / f"{name}.yaml"
    if not path.is_file():
        sys.exit(f"preset.py: no preset {name!r}: choose one of "
                 f"{', '.join(sorted(p.stem for p in path.parent.glob('*.yaml')))}")
    fields: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.startswith("# ") or ":" not in line:
            continue
        key, value = line[2:].split(":", 1)
        if key.strip() and " " not in key.strip():
            fields.setdefault(key.strip(), value.strip())
    for key in ("run", "metric", "reference"):
        if key not in fields:
            sys.exit(f"preset.py: {path} has no '# {key}:' header line")
    return fields


def genlab(command: str, extra: list[str], cwd: Path) -> float:
    """Run a `genlab …` command line (+ extra arguments) from cwd; its wall time in seconds."""
    args = shlex.split(command)
    if args[0] != "genlab":
        sys.exit(f"preset.py: expected a genlab command, got {command!r}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    print("$ " + shlex.join(args + extra), flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "genlab.cli", *args[1:], *extra], cwd=cwd, env=env, check=True)
    return time.perf_counter() - start


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("preset", help="a file name in configs/experiment/, without .yaml")
    parser.add_argument("--out", type=Path, default=None, help="run (or sweep) directory; default outputs/preset/<name>")
    parser.add_argument("--machine", default="2-core CPU, this dev machine", help="the table's machine column")
    parser.add_argument("overrides", nargs="*", help="extra training overrides (after --)")
    args = parser.parse_args()
    fields = header(args.preset)
    out = (args.out or REPO / "outputs" / "preset" / args.preset).absolute()
    sweep = " -m " in f" {fields['run']} "
    target = [f"hydra.sweep.dir={out}" if sweep else f"hydra.run.dir={out}"]
    train_s = genlab(fields["run"], args.overrides + target, REPO)
    if sweep:
        jobs = json.loads((out / "summary.json").read_text())["jobs"]
        steps = ", ".join(sorted({str(job["steps"]) for job in jobs}))
        values = "; ".join(f"{','.join(f'{k}={v}' for k, v in job['overrides'].items() if k != '+experiment')}: "
                           f"{job['metrics'].get(fields['metric'], float('nan')):.3f}" for job in jobs)
        eval_s, metric = None, f"{fields['metric']} {values}"
    else:
        eval_s = genlab(fields["eval"].replace("<run>", str(out)), [], REPO) if "eval" in fields else None
        summary = json.loads((out / "checkpoints" / "eval.json").read_text())["summary"]
        steps = str(json.loads((out / "checkpoints" / "eval.json").read_text()).get("step", "?"))
        metric = f"{fields['metric']} {summary[fields['metric']]:.2f}"
    wall = minutes(train_s) + (f" + eval {minutes(eval_s)}" if eval_s is not None else "")
    command = fields["run"] + (f" (+ `{fields['eval']}`)" if "eval" in fields and not sweep else "")
    print("\n| preset | command | steps | wall time | machine, date | metric | published reference |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {args.preset} | `{command}` | {steps} | {wall} | {args.machine}, {datetime.date.today()} | "
          f"{metric} | {fields['reference']} |")


if __name__ == "__main__":
    main()
