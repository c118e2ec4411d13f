"""The training loop: it owns time (steps, logging, grids, checkpoints); the model owns its update.

Every scalar a model returns is a per-image mean for the step; the loop averages them over the
`log_every` steps since the last log, and reads them from the device only then (no host sync per
step). images/s counts training images per wall-clock second over that window.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from genlab.data.batches import Batches, ImageData, to_batch
from genlab.training.checkpoint import save_checkpoint
from genlab.training.logging import RunLogger


@dataclass
class Trainer:
    max_steps: int
    batch_size: int
    log_every: int
    sample_every: int
    ckpt_every: int
    grid_size: int


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[precision])


def fit(model, data: ImageData, batches: Batches, trainer: Trainer, *, run_dir: Path,
        logger: RunLogger, device: torch.device, precision: str, seed: int, step: int,
        checkpoint_meta: dict) -> int:
    """Train from `step` to trainer.max_steps; returns the final step."""
    real = to_batch(data, torch.linspace(0, data.num_images - 1, trainer.grid_size).long(), device).images

    def checkpoint() -> None:
        state = {"step": step, "model": model.state_dict(), "batches": batches.state_dict(),
                 "rng": rng_state(), **checkpoint_meta}
        save_checkpoint(state, run_dir / "checkpoints" / "last.pt")

    sums: dict[str, torch.Tensor] = {}
    window_steps, window_start = 0, time.perf_counter()
    while step < trainer.max_steps:
        batch = next(batches)
        with autocast(device, precision):
            metrics = model.train_step(batch)
        step += 1
        window_steps += 1
        for name, value in metrics.items():
            sums[name] = sums[name] + value if name in sums else value.clone()
        final = step == trainer.max_steps
        if step % trainer.log_every == 0 or final:
            means = {name: (total / window_steps).item() for name, total in sums.items()}
            img_per_s = window_steps * trainer.batch_size / (time.perf_counter() - window_start)
            scalars = {f"train/{k}": v for k, v in means.items()}
            scalars.update({f"lr/{name}": opt.param_groups[0]["lr"] for name, opt in model.optimizers().items()})
            scalars["perf/img_per_s"] = img_per_s
            logger.scalars(step, scalars)
            logger.status(step, means, img_per_s)
            sums, window_steps, window_start = {}, 0, time.perf_counter()
        if step % trainer.sample_every == 0 or final:
            logger.images(step, model.image_grids(real, torch.Generator().manual_seed(seed)))
        if step % trainer.ckpt_every == 0 or final:
            checkpoint()
    return step
