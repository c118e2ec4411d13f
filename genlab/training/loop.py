"""The training loop: it owns time (steps, logging, grids, checkpoints); the model owns its update.

Scalars. Every scalar a model returns is a per-image mean for the step. Every `log_every` steps the
loop logs, per scalar, the mean over the steps since the last log, Σ v_t / n, summed on the device
and read from it only then (no host sync per step). The open window is part of every checkpoint,
so a run resumed from a checkpoint taken mid-window (a signal, ckpt_every off the log cadence)
logs the same means as a run that never stopped. The last step (max_steps) always logs, on the
cadence or not; an off-cadence final log leaves the window open, so a continuation with a larger
max_steps averages the same steps at its next log as the uninterrupted run (its only extra point
is that final one). perf/img_per_s counts training images per wall-clock second of this process.

Non-finite values. Each step records on the device which scalars were finite and the first step
that had a NaN or ±Inf. trainer.on_nonfinite=stop reads that at every log and before every
checkpoint (host syncs that happen anyway) and stops naming the step; weights are checked before
each write too, so the newest checkpoint is never overwritten with non-finite values. skip drops
the update of a step whose gradients are not finite (an optimizer pre-hook sets every .grad to
None, and torch optimizers leave parameters without a gradient untouched; this costs one host
sync per optimizer step), leaves non-finite values out of the logged means (n counts finite ones)
and logs train/nonfinite_steps per window.

Resume. A checkpoint holds the step, the model (nets, optimizers, EMA), the batch order's position
(`batches.state_dict()`), every torch RNG stream (CPU and each CUDA device) and the open scalar
window: restoring them all makes the continuation bit-identical to an uninterrupted run on CPU.
"""

from __future__ import annotations

import contextlib
import signal
import time
from dataclasses import dataclass

import torch

from genlab.data.batches import Batches, ImageData, to_batch
from genlab.errors import UserError
from genlab.training.checkpoint import RunCheckpoints
from genlab.training.logging import RunLogger
from genlab.training.signals import Interrupted, StopSignals


@dataclass
class Trainer:
    max_steps: int
    batch_size: int
    log_every: int
    sample_every: int
    ckpt_every: int
    grid_size: int
    keep_last: int
    on_nonfinite: str


class NonFiniteError(UserError):
    """A loss or the weights became NaN or ±Inf; nothing non-finite was saved."""


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


class ScalarWindow:
    """The scalars of the steps since the last log, accumulated on the device."""

    def __init__(self):
        self.steps, self.names = 0, []
        self.sums = self.finite = self.nonfinite_steps = self.first_nonfinite = None

    def add(self, step: int, metrics: dict[str, torch.Tensor]) -> None:
        values = torch.stack([v.float() for v in metrics.values()])
        if self.sums is None:
            self.names = list(metrics)
            self.sums, self.finite = torch.zeros_like(values), torch.zeros_like(values, dtype=torch.long)
            self.nonfinite_steps = torch.zeros((), dtype=torch.long, device=values.device)
            self.first_nonfinite = torch.full((), -1, dtype=torch.long, device=values.device)
        elif list(metrics) != self.names:
            raise RuntimeError(f"train_step returned {list(metrics)} at step {step}, {self.names} before: every step must return the same scalars")
        ok = values.isfinite()
        self.sums += torch.where(ok, values, 0)
        self.finite += ok
        bad = ~ok.all()
        self.nonfinite_steps += bad
        self.first_nonfinite = torch.where(bad & (self.first_nonfinite < 0), step, self.first_nonfinite)
        self.steps += 1

    def first_bad_step(self) -> int | None:
        """The first step of the window with a non-finite scalar (a host sync)."""
        first = -1 if self.first_nonfinite is None else int(self.first_nonfinite)
        return first if first >= 0 else None

    def nonfinite_names(self) -> list[str]:
        return [name for name, n in zip(self.names, self.finite.tolist()) if n < self.steps]

    def means(self) -> dict[str, float]:
        """Per scalar, the mean of its finite values (scalars with none are left out)."""
        counts = self.finite.tolist()
        means = (self.sums / self.finite.clamp(min=1)).tolist()
        return {name: mean for name, mean, n in zip(self.names, means, counts) if n}

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("steps", "names", "sums", "finite", "nonfinite_steps", "first_nonfinite")}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        for key, value in state.items():
            setattr(self, key, value.to(device) if isinstance(value, torch.Tensor) else value)


def _all_finite(tree) -> bool:
    """Whether every floating-point tensor in a nest of dicts and lists is finite (a host sync)."""
    def tensors(node):
        if isinstance(node, torch.Tensor):
            yield node
        elif isinstance(node, dict):
            for value in node.values():
                yield from tensors(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                yield from tensors(value)

    checks = [t.isfinite().all() for t in tensors(tree) if t.is_floating_point()]
    return not checks or bool(torch.stack(checks).all())


def _skip_nonfinite_update(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    """Optimizer step pre-hook: drop every gradient when one is not finite, so the step is a no-op."""
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if params and not bool(torch.stack([p.grad.isfinite().all() for p in params]).all()):
        for p in params:
            p.grad = None


def fit(model, data: ImageData, batches: Batches, trainer: Trainer, *, checkpoints: RunCheckpoints,
        logger: RunLogger, device: torch.device, precision: str, seed: int, checkpoint_meta: dict,
        resume: dict | None = None) -> tuple[int, dict[str, float]]:
    """Train to trainer.max_steps from the start, or from the loaded checkpoint `resume`; returns
    the final step and the metric means of the last log window (empty when nothing was left to
    train). Raises Interrupted after checkpointing on SIGINT/SIGTERM, NonFiniteError on a
    NaN/Inf under on_nonfinite=stop, CheckpointError when a checkpoint cannot be written."""
    real = to_batch(data, torch.linspace(0, data.num_images - 1, trainer.grid_size).long(), device).images
    step, window = 0, ScalarWindow()
    if resume is not None:
        model.load_state_dict(resume["model"])
        batches.load_state_dict(resume["batches"])
        window.load_state_dict(resume["window"], device)
        step = resume["step"]
        set_rng_state(resume["rng"])  # last: building the model drew from the same streams
    skip = trainer.on_nonfinite == "skip"
    resume_hint = () if skip else ("trainer.on_nonfinite=skip",)

    def nonfinite(what: str, at_step: int) -> NonFiniteError:
        return NonFiniteError(f"{what} became NaN or Inf at step {at_step}, so the run stopped and saved nothing after it; "
                              f"{checkpoints.describe_newest(*resume_hint)} (or lower the learning rate)")

    def check_scalars() -> None:
        bad_step = None if skip else window.first_bad_step()
        if bad_step is not None:
            raise nonfinite(", ".join(f"train/{name}" for name in window.nonfinite_names()), bad_step)

    def checkpoint() -> None:
        check_scalars()
        state = {"step": step, "model": model.state_dict(), "batches": batches.state_dict(),
                 "rng": rng_state(), "window": window.state_dict(), **checkpoint_meta}
        if not _all_finite(state["model"]):
            raise nonfinite("the model's weights or optimizer state", step)
        checkpoints.save(state, step)

    hooks = [opt.register_step_pre_hook(_skip_nonfinite_update) for opt in model.optimizers().values()] if skip else []
    means: dict[str, float] = {}
    timed_steps, timer_start = 0, time.perf_counter()
    try:
        with StopSignals() as stop:
            while step < trainer.max_steps:
                batch = next(batches)
                with autocast(device, precision):
                    metrics = model.train_step(batch)
                step += 1
                timed_steps += 1
                window.add(step, metrics)
                final = step == trainer.max_steps
                on_cadence = step % trainer.log_every == 0
                if on_cadence or final:
                    check_scalars()
                    means = window.means()
                    img_per_s = timed_steps * trainer.batch_size / (time.perf_counter() - timer_start)
                    scalars = {f"train/{k}": v for k, v in means.items()}
                    if skip:
                        scalars["train/nonfinite_steps"] = int(window.nonfinite_steps)
                    scalars.update({f"lr/{name}": opt.param_groups[0]["lr"] for name, opt in model.optimizers().items()})
                    scalars["perf/img_per_s"] = img_per_s
                    logger.scalars(step, scalars)
                    logger.status(step, means, img_per_s)
                    if on_cadence:
                        window = ScalarWindow()
                    timed_steps, timer_start = 0, time.perf_counter()
                if step % trainer.sample_every == 0 or final:
                    logger.images(step, model.image_grids(real, torch.Generator().manual_seed(seed)))
                if step % trainer.ckpt_every == 0 or final:
                    checkpoint()
                if stop.received and not final:
                    if checkpoints.newest is None or checkpoints.newest[0] != step:
                        checkpoint()
                    raise Interrupted(stop.received, f"stopped by {signal.Signals(stop.received).name} after step {step}; "
                                                     f"{checkpoints.describe_newest()}")
    finally:
        for hook in hooks:
            hook.remove()
    return step, means
