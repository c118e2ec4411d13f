"""Time to a result: each preset's training images/s and its evaluation's images/s, before (a git
revision) and after (this working tree), on this machine, in one run (issue 29).

    PYTHONPATH=. python benchmarks/time_to_result.py --before main
    PYTHONPATH=. python benchmarks/time_to_result.py --before e383fc6 --presets vae_mnist --rounds 5 --quiet

"before" runs from a temporary `git worktree` of the revision, "after" from this tree; every
measurement is a fresh worker process (this file with --worker, genlab imported from that side's
tree) and the two sides alternate, A B B A A B … over --rounds rounds, so that other jobs on a
shared machine slow both alike. Reported per measurement: the median over rounds of each side's
rate and the median of the per-round ratios after/before.

  train  `genlab.commands.train.train` of the preset (the command its header names, `hardware.threads`
         set) for 3 log windows of --train-steps steps each; the rate is the mean of the last two
         windows' perf/img_per_s (the first warms up). Each side takes its own hardware defaults:
         after, hardware.layout=auto (genlab/training/runtime.py).
  eval   `genlab.metrics.evaluation.evaluate` of that worker's checkpoint with the preset's
         heavy metric: nll (images·k per second: n·k decoder passes; k from the header) or
         inception_fid (with --inception-eval: images embedded per second, n generated + n real, a
         fresh cache, so both sets; at small n the FID's fixed costs dominate). The same network on images of the same shape costs the same for every preset, so
         one measurement per (metric, image shape) stands for all presets that share it.
  features  Inception-v3 features alone of the same 2·n uint8 images, handed over 50 at a time: genlab's
         FID metric before and after, after held to fp32, torchmetrics'
         FrechetInceptionDistance(feature=2048) (torch-fidelity's network) and pytorch-fid's
         InceptionV3, where installed (--skip peers leaves this out). Their weights download on first use; where that fails (no
         network) they run with random weights of the same architecture: the same arithmetic, so
         the same images/s, but no FID to compare.

Output: one table (markdown with --markdown PATH), with the CPU model and its flags that matter.
Not a test: the numbers depend on the machine and what else runs on it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY_METRICS = ("nll", "inception_fid")
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")


def header(preset: str) -> dict[str, str]:
    fields = {}
    for line in (REPO / "configs" / "experiment" / f"{preset}.yaml").read_text().splitlines():
        if line.startswith("# ") and ":" in line:
            key, value = line[2:].split(":", 1)
            fields.setdefault(key.strip(), value.strip())
    return fields


def eval_plan(preset: str) -> tuple[str, dict[str, str]] | None:
    """The preset's heavy eval metric and its header's key=value settings, or None."""
    words = header(preset).get("eval", "").split()
    settings = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("ckpt="))
    metrics = settings.pop("metrics", "").strip("[]").split(",")
    heavy = [m for m in metrics if m in HEAVY_METRICS]
    return (heavy[0], settings) if heavy else None


# -- workers: run in a fresh process with one side's genlab on PYTHONPATH --------------------------

def _genlab_function(module: str, old_module: str, name: str):
    """genlab.<module>.<name>, or genlab.<old_module>.<name> in revisions before the package's
    split into config/ and commands/ (e.g. e383fc6, the revision issue 29 measures against)."""
    import importlib

    try:
        return getattr(importlib.import_module(f"genlab.{module}"), name)
    except ModuleNotFoundError:
        return getattr(importlib.import_module(f"genlab.{old_module}"), name)


def worker_train(args) -> dict:
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    compose_jobs = _genlab_function("config.compose", "compose", "compose_jobs")
    train = _genlab_function("commands.train", "train", "train")

    steps = args.train_steps
    overrides = [f"+experiment={args.preset}", f"trainer.max_steps={3 * steps}", f"trainer.log_every={steps}",
                 f"trainer.sample_every={10**9}", f"trainer.ckpt_every={10**9}", f"hardware.threads={args.threads}",
                 "eval.at_end=[]"]
    if args.data_root:
        overrides.append(f"dataset.root={args.data_root}")
    cfg = compose_jobs("train", overrides, multirun=False)[0]
    run_dir = Path(args.out)
    with contextlib.redirect_stdout(sys.stderr):
        result = train(cfg, run_dir)
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    rates = [e.value for e in events.Scalars("perf/img_per_s")]
    return {"rate": statistics.mean(rates[1:]), "windows": rates, "ckpt": str(result["ckpt"]),
            "threads": torch.get_num_threads()}


def worker_eval(args) -> dict:
    import torch
    from omegaconf import OmegaConf

    from genlab.metrics.evaluation import evaluate

    compose_jobs = _genlab_function("config.compose", "compose", "compose_jobs")

    torch.set_num_threads(args.threads)
    settings = json.loads(args.settings)
    overrides = ["ckpt=x", f"n={args.n}", f"cache_dir={args.out}/cache"] + [f"{k}={v}" for k, v in settings.items()
                                                                          if k not in ("n",)]
    if args.data_root:
        overrides.append(f"data_root={args.data_root}")
    plain = OmegaConf.to_container(compose_jobs("eval", overrides, multirun=False)[0], resolve=True)
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        result = evaluate(Path(args.ckpt), plain, [args.metric], torch.device("cpu"))
    seconds = time.perf_counter() - start
    work = args.n * plain["k"] if args.metric == "nll" else 2 * args.n
    return {"rate": work / seconds, "seconds": seconds, "summary": result.get("summary", {})}


def _random_weights_unless_downloadable(build):
    """build() with the network's weight download replaced by its own random initialisation when
    the download fails; returns (net, whether the real weights were used)."""
    import torch

    try:
        return build(), True
    except Exception:
        pass
    original = torch.nn.Module.load_state_dict
    torch.nn.Module.load_state_dict = lambda self, *a, **k: None
    import torch.hub
    fetch = torch.hub.load_state_dict_from_url
    torch.hub.load_state_dict_from_url = lambda *a, **k: {}
    try:
        import pytorch_fid.inception as pf
        pf.load_state_dict_from_url = lambda *a, **k: {}
    except ImportError:
        pass
    try:
        import torch_fidelity.feature_extractor_inceptionv3 as tf
        tf.load_state_dict_from_url = lambda *a, **k: {}
    except ImportError:
        pass
    try:
        return build(), False
    finally:
        torch.nn.Module.load_state_dict = original
        torch.hub.load_state_dict_from_url = fetch


def worker_peer(args) -> dict:
    """Inception features of 2·n random uint8 28 px images, handed over 50 at a time, through
    genlab's FID metric (this side's genlab) or a peer's network, after three untimed calls."""
    import torch

    torch.set_num_threads(args.threads)
    images = torch.randint(0, 256, (2 * args.n, 3, 28, 28), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    real_weights = True
    if args.metric == "genlab":
        from genlab.metrics.inception import find_weights, make_metric

        metric = make_metric(find_weights(None))
        run = lambda batch: metric.update(batch, real=False)  # noqa: E731
    elif args.metric == "torchmetrics":
        from torchmetrics.image.fid import FrechetInceptionDistance

        metric, real_weights = _random_weights_unless_downloadable(lambda: FrechetInceptionDistance(feature=2048,
                                                                                                    antialias=False))
        run = lambda batch: metric.update(batch, real=False)  # noqa: E731
    else:
        from pytorch_fid.inception import InceptionV3

        net, real_weights = _random_weights_unless_downloadable(lambda: InceptionV3([3]))
        net.eval()

        def run(batch):  # pytorch-fid resizes to 299 itself (resize_input) and scales [0, 1] to [−1, 1]
            with torch.no_grad():
                net(batch.float() / 255)

    for _ in range(3):  # untimed: oneDNN builds kernels per shape on a first call, TorchScript profiles its first two
        run(images[:50])
    start = time.perf_counter()
    for batch in images.split(50):
        run(batch)
    seconds = time.perf_counter() - start
    return {"rate": 2 * args.n / seconds, "seconds": seconds, "real_weights": real_weights}


def worker(args) -> None:
    result = {"train": worker_train, "eval": worker_eval, "peer": worker_peer}[args.worker](args)
    print("RESULT " + json.dumps(result))


# -- the driver ------------------------------------------------------------------------------------

def run_worker(tree: Path, argv: list[str], quiet: bool, env_extra: dict | None = None, side: str = "after") -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), **(env_extra or {})}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv], cwd=tree, env=env,
                          capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"worker {' '.join(argv)} in {tree} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    if not quiet:
        print(f"  {side:>6} {' '.join(argv[1:6])}: {lines[-1][7:][:160]}", file=sys.stderr, flush=True)
    return json.loads(lines[-1][7:])


def cpu_description() -> str:
    from genlab.training.runtime import cpu_flags, cpu_name

    import torch

    flags = cpu_flags()
    return (f"{cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__}, kernels "
            f"{torch.backends.cpu.get_cpu_capability()}; flags: "
            + " ".join(f"{f}{'' if f in flags else ' (no)'}" for f in CPU_FLAGS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="main", help="git revision for 'before' (default: main)")
    parser.add_argument("--presets", default=",".join(sorted(p.stem for p in (REPO / "configs" / "experiment").glob("*.yaml"))))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=100, help="steps per timed log window (3 windows)")
    parser.add_argument("--nll-n", type=int, default=8, help="test images for the nll measurement")
    parser.add_argument("--inception-n", type=int, default=16, help="generated (and as many real) images for inception_fid")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--data-root", default=os.environ.get("GENLAB_DATA_ROOT"))
    parser.add_argument("--inception-eval", action="store_true",
                        help="also time whole inception_fid evals (at small n their fixed costs, e.g. the 2048² matrix "
                             "square root, outweigh the features; the features row measures the network alone)")
    parser.add_argument("--skip", default="", help="comma-separated: train, eval, peers")
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--quiet", action="store_true", help="print only the table")
    parser.add_argument("--worker", choices=("train", "eval", "peer"), help=argparse.SUPPRESS)
    for hidden in ("preset", "out", "ckpt", "metric", "settings"):
        parser.add_argument(f"--{hidden}", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    skip = set(filter(None, args.skip.split(",")))
    presets = [p for p in args.presets.split(",") if p]
    common = ["--threads", str(args.threads)] + (["--data-root", args.data_root] if args.data_root else [])
    with tempfile.TemporaryDirectory(prefix="time_to_result-") as tmp:
        tmp = Path(tmp)
        before = tmp / "before"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(before), args.before], check=True)
        revision = subprocess.run(["git", "-C", str(before), "rev-parse", "--short", "HEAD"], capture_output=True,
                                  text=True, check=True).stdout.strip()
        after = REPO
        try:
            sides = {"before": before, "after": after}
            rates, weights = {}, {}  # rates[(what, name, side)] = [one per round]
            measured_eval = {}
            plan = []
            for preset in presets:
                if "train" not in skip:
                    plan.append(("train", preset, None))
                heavy = eval_plan(preset)
                if heavy and "eval" not in skip and (heavy[0] == "nll" or args.inception_eval):
                    metric, settings = heavy
                    key = (metric, json.dumps(settings.get("k")))
                    if key not in measured_eval:
                        measured_eval[key] = preset
                        plan.append(("eval", preset, (metric, settings)))
            ckpts = {}
            for r in range(args.rounds):
                order = ("before", "after") if r % 2 == 0 else ("after", "before")
                for what, preset, detail in plan:
                    for side in order:
                        tree = sides[side]
                        out = tmp / f"{side}-{what}-{preset}-{r}"
                        if what == "train":
                            res = run_worker(tree, ["--worker", "train", "--preset", preset, "--out", str(out),
                                                    "--train-steps", str(args.train_steps), *common], args.quiet, side=side)
                            ckpts[(side, preset)] = res["ckpt"]
                        else:
                            metric, settings = detail
                            ckpt = ckpts.get((side, preset))
                            if ckpt is None:  # training skipped: a 2-step run gives the checkpoint
                                ckpt = run_worker(tree, ["--worker", "train", "--preset", preset, "--out", str(out) + "-ckpt",
                                                         "--train-steps", "1", *common], True)["ckpt"]
                                ckpts[(side, preset)] = ckpt
                            n = args.nll_n if metric == "nll" else args.inception_n
                            res = run_worker(tree, ["--worker", "eval", "--preset", preset, "--metric", metric,
                                                    "--ckpt", ckpt, "--out", str(out), "--n", str(n),
                                                    "--settings", json.dumps(settings), *common], args.quiet, side=side)
                        rates.setdefault((what, preset, side), []).append(res["rate"])
                if "peers" not in skip:  # Inception features alone, the same images for every network
                    contenders = [("genlab", side, sides[side], {}) for side in order]
                    contenders += [("genlab_fp32", "after", after, {"GENLAB_INCEPTION_PRECISION": "fp32"}),
                                   ("torchmetrics", "after", after, {}), ("pytorch_fid", "after", after, {})]
                    for name, side, tree, env in contenders:
                        metric = "genlab" if name.startswith("genlab") else name
                        try:
                            res = run_worker(tree, ["--worker", "peer", "--metric", metric, "--n", str(args.inception_n),
                                                    *common], args.quiet, env, side)
                        except RuntimeError as e:
                            print(f"{name}: {str(e).splitlines()[0]}", file=sys.stderr)
                            continue
                        rates.setdefault(("features", name, side), []).append(res["rate"])
                        weights.setdefault(name, []).append(res["real_weights"])
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(before)], check=False)

    def med(values):
        return statistics.median(values) if values else float("nan")

    def ratio(what, name):
        b, a = rates.get((what, name, "before"), []), rates.get((what, name, "after"), [])
        return med([y / x for x, y in zip(b, a)]) if b and a else float("nan")

    lines = [f"before: {args.before} ({revision}); after: this tree. {args.rounds} rounds, sides alternating; "
             f"{args.threads} threads; {cpu_description()}", "",
             "| preset | what | unit | before | after | after/before (median of rounds) |", "|---|---|---|---|---|---|"]
    for what, preset, detail in plan:
        unit = "img/s" if what == "train" else ("images·k/s" if detail[0] == "nll" else "images/s")
        label = "training" if what == "train" else f"eval {detail[0]}"
        shared = "" if what == "train" else f" (also stands for {', '.join(p for p in presets if p != preset and eval_plan(p) and eval_plan(p)[0] == detail[0]) or 'no other'})"
        lines.append(f"| {preset} | {label}{shared} | {unit} | {med(rates[(what, preset, 'before')]):,.1f} | "
                     f"{med(rates[(what, preset, 'after')]):,.1f} | {ratio(what, preset):.2f}× |")
    if ("features", "genlab", "before") in rates:
        lines.append(f"| — | Inception features, genlab's FID metric | images/s | {med(rates[('features', 'genlab', 'before')]):,.1f} | "
                     f"{med(rates[('features', 'genlab', 'after')]):,.1f} | {ratio('features', 'genlab'):.2f}× |")
        for name, label in (("genlab_fp32", "genlab held to fp32 (GENLAB_INCEPTION_PRECISION=fp32)"),
                            ("torchmetrics", "torchmetrics FrechetInceptionDistance(feature=2048), torch-fidelity's network"),
                            ("pytorch_fid", "pytorch-fid InceptionV3")):
            if ("features", name, "after") in rates:
                got = "" if all(weights[name]) else ", random weights (no download here: same arithmetic, no FID)"
                after_rate = med(rates[("features", name, "after")])
                lines.append(f"| — | Inception features, {label}{got} | images/s | | {after_rate:,.1f} | genlab after / this: "
                             f"{med(rates[('features', 'genlab', 'after')]) / after_rate:.2f}× |")
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")


if __name__ == "__main__":
    main()
