"""genlab's in-memory batch pipeline against torchvision's DataLoader + ToTensor, on MNIST.

Two measurements, both in one process with the same torch threads:

1. One epoch of batches (every full batch of the 60,000 training images): genlab's `Batches`
   (shuffled index batches gathered from the uint8 tensor, converted to float per batch) against
   `DataLoader(MNIST(transform=ToTensor()), shuffle=True)`, which builds a PIL image per item and
   converts it back to a tensor. Reported: seconds per epoch and images/s of each, and the ratio.
2. A short VAE training through each pipeline: the same genlab VAE (configs/model/vae.yaml at
   28 px) with the same initial weights and the same Adam settings, one copy per pipeline, trained
   in alternating rounds of --steps steps; the first round of each is warm-up and not counted.
   Reported: training images/s of each (median over rounds) and the ratio.

Each figure is given per wall-clock second and per CPU second of this process (time.process_time,
all threads): on a shared machine the wall clock also counts other jobs' time slices, CPU time
counts only the work done (with more than one thread it includes OpenMP spin-waiting).

Not a test: numbers depend on the machine and on what else runs on it. Example:

    PYTHONPATH=. python benchmarks/data_pipeline.py --root <writable folder with MNIST/raw> --threads 2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from omegaconf import OmegaConf


def genlab_epoch(data, batch_size: int, device: torch.device):
    from genlab.data.batches import Batches

    batches = Batches(data, batch_size, seed=0, device=device, dynamic_binarize=False)
    for _ in range(batches.order.batches_per_epoch):
        yield next(batches)


def torchvision_epoch(loader, device: torch.device):
    from genlab.data.batches import Batch

    for images, labels in loader:
        yield Batch(images.to(device), labels.to(device))


def forever(make_epoch):
    while True:
        yield from make_epoch()


class Clock:
    """Wall-clock and process CPU seconds since creation."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def time_epoch(make_epoch) -> tuple[float, float, int]:
    clock, count = Clock(), 0
    for batch in make_epoch():
        count += batch.images.shape[0]
    return (*clock.read(), count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="dataset root holding MNIST/raw (writable the first time)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (genlab's default)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of batches timed per pipeline")
    parser.add_argument("--steps", type=int, default=50, help="training steps per round")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per pipeline, the first one warm-up")
    args = parser.parse_args()

    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from genlab.config.compose import compose_jobs
    from genlab.data import build_dataset
    from genlab.models import build_model

    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    # download=true: from the original .gz files in MNIST/raw torchvision only checks and unpacks them.
    (cfg,) = compose_jobs("train", ["dataset=mnist", f"dataset.root={args.root}", "dataset.download=true"],
                          multirun=False)
    plain = OmegaConf.to_container(cfg, resolve=True)
    data = build_dataset(plain["dataset"], seed=0)
    mnist = datasets.MNIST(args.root, train=True, download=True, transform=transforms.ToTensor())
    loader = DataLoader(mnist, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=args.workers,
                        generator=torch.Generator().manual_seed(0))
    pipelines = {"genlab": lambda: genlab_epoch(data, args.batch_size, device),
                 "torchvision": lambda: torchvision_epoch(loader, device)}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"DataLoader workers {args.workers}")

    epoch_s, images = {name: [] for name in pipelines}, {}
    for _ in range(args.epochs):
        for name, make_epoch in pipelines.items():
            wall, cpu, images[name] = time_epoch(make_epoch)
            epoch_s[name].append((wall, cpu))
    best = {name: (min(w for w, _ in times), min(c for _, c in times)) for name, times in epoch_s.items()}
    for name, (wall, cpu) in best.items():
        print(f"epoch of batches  {name:<12} {wall:7.3f} s wall {images[name] / wall:10,.0f} img/s | "
              f"{cpu:7.3f} s CPU {images[name] / cpu:10,.0f} img/CPU-s  (best of {args.epochs})")
    print(f"epoch ratio: genlab is {best['torchvision'][0] / best['genlab'][0]:.1f}x faster than DataLoader + "
          f"ToTensor by wall clock, {best['torchvision'][1] / best['genlab'][1]:.1f}x by CPU time")

    torch.manual_seed(0)
    first = build_model(plain["model"], plain["optimizer"], data.image_shape, data.num_classes, device)
    models = {"genlab": first, "torchvision": copy.deepcopy(first)}
    streams = {name: forever(make_epoch) for name, make_epoch in pipelines.items()}
    rates = {name: [] for name in pipelines}  # (images per wall second, images per CPU second) per round
    for round_index in range(args.rounds):
        for name in pipelines:
            clock = Clock()
            for _ in range(args.steps):
                models[name].train_step(next(streams[name]))
            if round_index > 0:
                rates[name].append(tuple(args.steps * args.batch_size / t for t in clock.read()))
    median = {name: tuple(statistics.median(r[i] for r in rounds) for i in (0, 1)) for name, rounds in rates.items()}
    for name, rounds in rates.items():
        print(f"VAE training      {name:<12} {median[name][0]:10,.0f} img/s | {median[name][1]:10,.0f} img/CPU-s  "
              f"(median of {len(rounds)} rounds of {args.steps} steps; wall img/s per round: "
              f"{', '.join(f'{r[0]:,.0f}' for r in rounds)})")
    print(f"training ratio: genlab trains {median['genlab'][0] / median['torchvision'][0]:.2f}x as many images per "
          f"wall second, {median['genlab'][1] / median['torchvision'][1]:.2f}x per CPU second")


if __name__ == "__main__":
    main()
