"""Training throughput: genlab's own path against a hand-written loop and the typical DataLoader loop.

For each model (vae, gan, cgan) on MNIST (28 px) and on shapes at 64 px, three ways to train the
same networks with the same optimizers, in one process, on the CPU:

(a) genlab   `genlab.training.loop.fit` on the objects `genlab.commands.train.train` builds from the
             composed config (dataset, model, Batches, LoopSettings; a RunLogger writing TensorBoard
             events and RunCheckpoints into a temporary run directory). A round is one fit() call
             of --steps steps that continues the same model and batch stream; its clock stops at
             the round's last log, before the grid and checkpoint every run writes when it ends.
(b) hand     the same nets (genlab.models: ConvEncoder/ConvDecoder, Generator/Discriminator) and
             optimizers (genlab.models.optim.make_optimizer); the loss and update written out below;
             the training images preloaded as one float tensor, batches from a random permutation
             per epoch. The compute limit.
(c) loader   the update of (b), fed the usual way: torchvision.datasets.MNIST(transform=ToTensor())
             through DataLoader(shuffle=True, num_workers=0); for shapes, a Dataset that returns
             ToTensor(PIL image) of pre-rendered images, item by item, as torchvision's MNIST does.

The three alternate within each round (in a rotating order), after one warm-up round that is not
counted. Reported: the median over rounds of images per wall-clock second and per CPU second of
this process (all threads; on a shared machine wall time also counts other jobs' time slices),
the median over rounds of the per-round ratios genlab/hand and genlab/loader, and the FLOPs of one
training image (torch.utils.flop_counter's formulas over one genlab train_step: every forward and
backward, the R1 double-backward included; convolutions and matrix products only).

Not a test: the numbers depend on the machine and on what else runs on it. Examples:

    PYTHONPATH=. python benchmarks/throughput.py --root <folder with MNIST/raw> --quick
    PYTHONPATH=. python benchmarks/throughput.py --root <folder with MNIST/raw> --threads 2 --sample 10000
    PYTHONPATH=. python benchmarks/throughput.py --root … --quick --genlab hardware.compile=true

MNIST/raw is copied to a temporary folder (torchvision unpacks the archives next to them).
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

REPO = Path(__file__).resolve().parents[1]
PATHS = ("genlab", "hand", "loader")
SHAPES_PRELOADED = 8192  # shapes images rendered for (b) and (c); genlab renders its 737,280 on the fly


class Clock:
    """Wall-clock and process CPU seconds since creation."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


class FlopCount(TorchDispatchMode):
    """FLOPs of the convolutions and matrix products run inside it, by torch.utils.flop_counter's
    formulas (FlopCounterMode itself tracks modules with hooks that torch.autograd.grad, R1's, refuses)."""

    flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            self.flops += count(*args, **kwargs, out_val=out)
        return out


# --------------------------------------------------------------------------- (a) genlab


class GenlabPath:
    """fit() rounds on the objects genlab.commands.train.train builds, timed up to each round's last log."""

    def __init__(self, plain: dict, run_dir: Path):
        from genlab.data import build_dataset
        from genlab.data.batches import Batches, on_device
        from genlab.models import build_model
        from genlab.training.resume import run_config
        from genlab.training.runtime import device_name, prepare_nets, resolve_precision, setup_device

        self.plain, self.run_dir = plain, run_dir
        self.device = setup_device(plain["hardware"])
        torch.manual_seed(plain["seed"])
        self.data = on_device(build_dataset(plain["dataset"], plain["seed"]), self.device)
        self.model = build_model(plain["model"], plain["optimizer"], self.data.image_shape, self.data.num_classes,
                                 self.device)
        prepare_nets(self.model, plain["hardware"], self.device)
        self.precision = resolve_precision(plain["hardware"], self.device)
        self.batches = Batches(self.data, plain["trainer"]["batch_size"], plain["seed"], self.device,
                               dynamic_binarize=plain["dataset"]["binarize"] == "dynamic")
        self.meta = {"config": run_config(plain), "overrides": [], "device": device_name(plain["hardware"]),
                     "processes": 1, "data": {"image_shape": list(self.data.image_shape),
                                              "num_classes": self.data.num_classes,
                                              "class_names": list(self.data.class_names)}}

    def flops_per_image(self) -> float:
        batch = next(self.batches)
        with FlopCount() as counter:
            self.model.train_step(batch)
        return counter.flops / batch.images.shape[0]

    def run(self, steps: int) -> tuple[float, float]:
        from genlab.training.checkpoint import RunCheckpoints
        from genlab.training.logging import RunLogger
        from genlab.training.loop import LoopSettings, fit

        trainer = LoopSettings(**{**{k: self.plain["trainer"][k] for k in LoopSettings.__dataclass_fields__}, "max_steps": steps,
                             "log_every": min(steps, self.plain["trainer"]["log_every"])})
        clock, elapsed = Clock(), []

        class StopwatchLogger(RunLogger):
            def scalars(self, step, values):
                if step == steps:
                    elapsed.append(clock.read())
                super().scalars(step, values)

        logger = StopwatchLogger(self.run_dir, 0, steps, interactive=False)
        try:
            fit(self.model, self.data, self.batches, trainer, checkpoints=RunCheckpoints(self.run_dir / "checkpoints", 0),
                logger=logger, device=self.device, precision=self.precision,
                seed=self.plain["seed"], checkpoint_meta=self.meta)
        finally:
            logger.close()
        return elapsed[0]


# --------------------------------------------------------------------------- (b), (c) the same update by hand


def vae_update(model: dict, optimizer: dict, image_shape, num_classes: int):
    """β-VAE, Bernoulli likelihood: loss = BCE summed over pixels + β·KL, per-image mean."""
    from genlab.models.nets import ConvDecoder, ConvEncoder
    from genlab.models.optim import make_optimizer

    encoder = ConvEncoder(image_shape, model["width"], 2 * model["latent_dim"])
    decoder = ConvDecoder(image_shape, model["width"], model["latent_dim"])
    opt = make_optimizer([*encoder.parameters(), *decoder.parameters()], optimizer)
    beta = model["beta"]

    def step(x, y):
        mu, logvar = encoder(x).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = F.binary_cross_entropy_with_logits(decoder(z), x, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        loss = (recon + beta * kl).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def gan_update(model: dict, optimizer: dict, image_shape, num_classes: int):
    """DCGAN, non-saturating loss + R1 on real images, one D step then one G step with the
    mode-seeking term where model.mode_seeking > 0, EMA generator (the settings of
    configs/model/gan.yaml; cgan: class-conditional nets and D's auxiliary classifier, cgan.yaml)."""
    from genlab.models.gan import Discriminator, Generator
    from genlab.models.optim import make_optimizer

    assert model["loss"] == "nonsaturating" and model["d_steps"] == 1, "the hand loop writes out the default GAN"
    classes = num_classes if model["name"] == "cgan" else 0
    latent, gamma, decay, seeking = model["latent_dim"], model["r1_gamma"], model["ema_decay"], model["mode_seeking"]
    class_weight = model["class_loss"] if classes else 0.0
    generator = Generator(image_shape, model["arch"], model["width"], latent, classes, model["embed_dim"] if classes else 0)
    discriminator = Discriminator(image_shape, model["arch"], model["width"], classes, class_weight > 0)
    ema = copy.deepcopy(generator).eval().requires_grad_(False)
    g_opt, d_opt = make_optimizer(generator.parameters(), optimizer), make_optimizer(discriminator.parameters(), optimizer)
    updates = [0]

    def step(x, y):
        y = y if classes else None
        real = (x * 2 - 1).requires_grad_(True)
        with torch.no_grad():
            fake = generator(torch.randn(len(x), latent), y)
        (real_score, real_logits, _), (fake_score, _, _) = discriminator(real, y), discriminator(fake, y)
        (grad,) = torch.autograd.grad(real_score.sum(), real, create_graph=True)
        d_loss = (F.softplus(-real_score) + F.softplus(fake_score)).mean() + gamma / 2 * grad.pow(2).flatten(1).sum(1).mean()
        if class_weight:
            d_loss = d_loss + class_weight * F.cross_entropy(real_logits, y)
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        discriminator.requires_grad_(False)
        n, half = len(x), len(x) // 2
        y = torch.cat([y[:half], y[: n - half]]) if classes else None  # pairs (i, half + i) share a label
        z = torch.randn(n, latent)
        fake = generator(z, y)
        fake_score, fake_logits, _ = discriminator(fake, y)
        g_loss = F.softplus(-fake_score).mean()
        if class_weight:
            g_loss = g_loss + class_weight * F.cross_entropy(fake_logits, y)
        if seeking:
            ratio = (fake[:half] - fake[half : 2 * half]).abs().mean() / (z[:half] - z[half : 2 * half]).abs().mean()
            g_loss = g_loss + seeking / (ratio + 1e-5)
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
        discriminator.requires_grad_(True)
        with torch.no_grad():
            keep = min(decay, (1 + updates[0]) / (10 + updates[0]))
            for e, p in zip(ema.parameters(), generator.parameters()):
                e.lerp_(p, 1 - keep)
            for e, b in zip(ema.buffers(), generator.buffers()):
                e.lerp_(b, 1 - keep) if e.is_floating_point() else e.copy_(b)
        updates[0] += 1

    return step


UPDATES = {"vae": vae_update, "gan": gan_update, "cgan": gan_update}


class HandPath:
    """(b): random batches of preloaded float images."""

    def __init__(self, update, images: torch.Tensor, labels: torch.Tensor, batch_size: int):
        self.update, self.images, self.labels, self.batch_size = update, images, labels, batch_size
        self.order, self.position = torch.randperm(len(images)), 0

    def run(self, steps: int) -> tuple[float, float]:
        clock = Clock()
        for _ in range(steps):
            if self.position + self.batch_size > len(self.order):
                self.order, self.position = torch.randperm(len(self.images)), 0
            index = self.order[self.position : self.position + self.batch_size]
            self.position += self.batch_size
            self.update(self.images[index], self.labels[index])
        return clock.read()


class LoaderPath:
    """(c): a DataLoader over a per-item dataset."""

    def __init__(self, update, dataset, batch_size: int):
        from torch.utils.data import DataLoader

        self.update = update
        self.loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=0)
        self.stream = iter(self.loader)

    def run(self, steps: int) -> tuple[float, float]:
        clock = Clock()
        for _ in range(steps):
            batch = next(self.stream, None)
            if batch is None:
                self.stream = iter(self.loader)
                batch = next(self.stream)
            self.update(*batch)
        return clock.read()


class PreRenderedShapes(torch.utils.data.Dataset):
    """Pre-rendered uint8 shapes images, returned one by one as ToTensor(PIL image), label."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        from torchvision import transforms

        self.images, self.labels, self.to_tensor = images, labels, transforms.ToTensor()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        return self.to_tensor(Image.fromarray(self.images[i, 0].numpy(), mode="L")), int(self.labels[i])


def datasets(name: str, root: Path | None, image_size: int):
    """(float images in [0, 1], labels) preloaded for (b), and the per-item dataset of (c)."""
    if name == "mnist":
        from torchvision import datasets as tv
        from torchvision import transforms

        items = tv.MNIST(str(root), train=True, download=True, transform=transforms.ToTensor())
        return items.data[:, None].float().div_(255), items.targets.clone(), items
    from genlab.data.shapes import NUM_IMAGES, factor_classes, render

    index = torch.randperm(NUM_IMAGES, generator=torch.Generator().manual_seed(0))[:SHAPES_PRELOADED]
    images, labels = render(index, image_size), factor_classes(index)[:, 0]
    return images.float().div_(255), labels, PreRenderedShapes(images, labels)


# --------------------------------------------------------------------------- measuring


def measure(dataset: str, image_size: int, model: str, args, root: Path | None, work: Path) -> dict:
    from genlab.config.compose import compose_jobs

    overrides = [f"model={model}", f"dataset={dataset}", f"dataset.image_size={image_size}", "hardware=cpu",
                 f"trainer.batch_size={args.batch_size}", *args.genlab]
    if args.threads:
        overrides.append(f"hardware.threads={args.threads}")
    if dataset == "mnist":
        overrides += [f"dataset.root={root}", "dataset.download=true"]  # unpacks the archives; nothing to fetch
    (cfg,) = compose_jobs("train", overrides, multirun=False)
    plain = OmegaConf.to_container(cfg, resolve=True)
    run_dir = work / f"{dataset}{image_size}_{model}"
    genlab = GenlabPath(plain, run_dir)
    flops = genlab.flops_per_image()
    images, labels, items = datasets(dataset, root, image_size)
    torch.manual_seed(0)
    update = UPDATES[model](plain["model"], plain["optimizer"], genlab.data.image_shape, genlab.data.num_classes)
    paths = {"genlab": genlab, "hand": HandPath(update, images, labels, args.batch_size),
             "loader": LoaderPath(update, items, args.batch_size)}
    steps = args.steps if dataset == "mnist" else args.steps_64
    times = {name: [] for name in PATHS}
    for round_index in range(args.rounds + 1):  # round 0 warms up
        order = PATHS[round_index % 3:] + PATHS[: round_index % 3]
        for name in order:
            wall, cpu = paths[name].run(steps)
            if round_index:
                times[name].append((steps * args.batch_size / wall, steps * args.batch_size / cpu))
        done = ", ".join(f"{n} {times[n][-1][0]:,.0f}" for n in PATHS) + " img/s" if round_index else "warm-up"
        print(f"  {dataset} {image_size}px {model} round {round_index}: {done}", file=sys.stderr, flush=True)
    return {"dataset": f"{dataset} {image_size}px", "model": model, "flops": flops, "steps": steps, "times": times,
            "ckpt": run_dir / "checkpoints" / "last.pt"}


def ratio(result: dict, a: str, b: str, column: int) -> float:
    return statistics.median(x[column] / y[column] for x, y in zip(result["times"][a], result["times"][b]))


def table(results: list[dict], column: int, unit: str) -> str:
    lines = [f"| dataset | model | MFLOP/img | genlab {unit} | hand {unit} | DataLoader {unit} | genlab/hand | genlab/DataLoader |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        medians = [statistics.median(t[column] for t in r["times"][name]) for name in PATHS]
        lines.append(f"| {r['dataset']} | {r['model']} | {r['flops'] / 1e6:,.1f} | "
                     + " | ".join(f"{m:,.0f}" for m in medians)
                     + f" | {ratio(r, 'genlab', 'hand', column):.2f} | {ratio(r, 'genlab', 'loader', column):.2f} |")
    return "\n".join(lines)


def time_command(command: list[str], repeats: int) -> tuple[list[float], subprocess.CompletedProcess]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    seconds = []
    for _ in range(repeats):
        clock = Clock()
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        seconds.append(clock.read()[0])
        if result.returncode:
            raise SystemExit(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return seconds, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, help="a folder holding MNIST/raw (copied to a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="about 3 minutes on 2 cores: MNIST for every model, "
                                                             "shapes 64 px for the VAE, 3 short rounds")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, all cores)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step (genlab's default)")
    parser.add_argument("--rounds", type=int, help="counted rounds per path (default 3 quick, 7 full)")
    parser.add_argument("--steps", type=int, help="MNIST steps per round (default 20 quick, 50 full)")
    parser.add_argument("--steps-64", type=int, help="64 px steps per round (default 4 quick, 10 full)")
    parser.add_argument("--models", default="vae,gan,cgan")
    parser.add_argument("--datasets", default="mnist,shapes64", help="mnist and/or shapes64")
    parser.add_argument("--genlab", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra overrides for genlab's path only, e.g. hardware.compile=true")
    parser.add_argument("--sample", type=int, metavar="N", help="also time `genlab sample n=N` (and `genlab --help`)")
    args = parser.parse_args()
    args.rounds = args.rounds or (3 if args.quick else 7)
    args.steps = args.steps or (20 if args.quick else 50)
    args.steps_64 = args.steps_64 or (4 if args.quick else 10)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = args.models.split(",")
    runs = [(d, m) for d in args.datasets.split(",") for m in models
            if not (args.quick and d == "shapes64" and m != "vae")]
    if any(d == "mnist" for d, _ in runs) and not (args.root and (args.root / "MNIST" / "raw").is_dir()):
        parser.error("--root must be a folder holding MNIST/raw (or pass --datasets shapes64)")

    load_before = os.getloadavg()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{os.cpu_count()} CPUs, load average {load_before[0]:.1f}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="genlab-bench-") as tmp:
        work = Path(tmp)
        root = None
        if args.root:
            root = work / "data"
            shutil.copytree(args.root / "MNIST" / "raw", root / "MNIST" / "raw")
        results = []
        for dataset, model in runs:
            name, size = ("mnist", 28) if dataset == "mnist" else ("shapes", 64)
            results.append(measure(name, size, model, args, root, work))
        print(f"\nTraining throughput, CPU, torch {torch.__version__}, {torch.get_num_threads()} threads, batch "
              f"{args.batch_size}; median of {args.rounds} rounds of {args.steps} (MNIST) / {args.steps_64} (64 px) "
              f"steps per path; load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after"
              + (f"; genlab overrides: {' '.join(args.genlab)}" if args.genlab else "") + "\n")
        print("Images per wall-clock second:\n")
        print(table(results, 0, "img/s"))
        print("\nImages per CPU second of this process:\n")
        print(table(results, 1, "img/CPU-s"))
        if args.sample:
            command = [sys.executable, "-m", "genlab.cli"]
            help_s, _ = time_command([*command, "--help"], 10)
            print(f"\n`genlab --help`: median {statistics.median(help_s) * 1000:.0f} ms of 10 runs")
            for r in results:
                out = work / f"{r['model']}.npz"
                seconds, result = time_command([*command, "sample", f"ckpt={r['ckpt']}", f"n={args.sample}",
                                                f"out={out}"], 1)
                rate = result.stderr.strip().splitlines()[-1].removeprefix("genlab sample: ")
                print(f"`genlab sample n={args.sample}` {r['dataset']} {r['model']}: {rate}; "
                      f"{seconds[0]:.1f} s for the whole command")


if __name__ == "__main__":
    main()
