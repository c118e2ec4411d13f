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
and logs train/nonfinite_steps per window. Under fp16, a step whose update the loss scaler skipped
(its gradients overflowed the scale, see genlab/models/optim.py) is not a non-finite step for
either setting: its scalars are left out and counted in train/loss_scale_skipped_steps.

Resume. A checkpoint holds the step, the model (nets, optimizers, EMA), the batch order's position
(`batches.state_dict()`), every torch RNG stream (CPU and each CUDA device), the open scalar
window and the fp16 loss scales: restoring them all makes the continuation bit-identical to an
uninterrupted run on CPU.

Per step the loop adds no host sync and a handful of small ops (the batch gather, one stack of the
scalars); logs, grids and checkpoints happen on their cadence. Several processes (hardware=ddp):
see genlab/training/distributed.py for what is shared between ranks and who writes.
"""

from __future__ import annotations

import contextlib
import signal
import time
from dataclasses import dataclass

import torch

from genlab.training import distributed
from genlab.data.batches import Batches, ImageData, to_batch
from genlab.errors import UserError
from genlab.models import load_model_state, optim
from genlab.training.checkpoint import RunCheckpoints
from genlab.training.logging import RunLogger
from genlab.training.signals import Interrupted, StopSignals


@dataclass
class LoopSettings:
    """The `trainer` config section: how long `fit` trains and how often it logs and saves."""

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
    """The scalars of the steps since the last log, kept on the device.

    A step appends one row: its scalars and a flag for "the loss scaler skipped this update" (fp16;
    that step's Inf/NaN values are the scaler's business, not a divergence, and its scalars are
    left out), stacked in one small op (under hardware=ddp averaged over the ranks first). Every
    FOLD rows are summed into the window's totals. Reading the totals (a log, a checkpoint) sums
    the pending rows on the side without folding them, so the order of every float sum depends
    only on the steps, not on when anything was read, and a checkpoint stores the pending rows: a
    resumed run logs bit-identical means.
    """

    FOLD = 64  # rows summed at a time: bounds memory, one reduction per FOLD steps
    NO_STEP = 2**62  # larger than any step
    FIELDS = ("sums", "finite", "nonfinite_steps", "first_nonfinite", "skipped_steps")

    def __init__(self):
        self.steps, self.names, self.rows, self.rows_from = 0, [], [], 0
        self.sums = self.finite = self.nonfinite_steps = self.first_nonfinite = self.skipped_steps = None
        self._no_skip = None

    def add(self, step: int, metrics: dict[str, torch.Tensor], skipped: torch.Tensor | None = None) -> None:
        """Step `step`'s scalars; `skipped`: whether the loss scaler skipped its update (optim.skipped_update)."""
        values = [v.float() for v in metrics.values()]
        if self.sums is None:
            self.names = list(metrics)
            device = values[0].device
            self.sums, self.finite = torch.zeros(len(values), device=device), torch.zeros(len(values), dtype=torch.long, device=device)
            self.nonfinite_steps, self.skipped_steps = (torch.zeros((), dtype=torch.long, device=device) for _ in range(2))
            self.first_nonfinite = torch.full((), -1, dtype=torch.long, device=device)
        elif list(metrics) != self.names:
            raise RuntimeError(f"train_step returned {list(metrics)} at step {step}, {self.names} before: every step must return the same scalars")
        if skipped is None:
            if self._no_skip is None:
                self._no_skip = torch.zeros((), device=self.sums.device)
            skipped = self._no_skip
        if not self.rows:
            self.rows_from = step
        self.rows.append(distributed.mean_over_ranks(torch.stack([*values, skipped.float()])))
        self.steps += 1
        if len(self.rows) == self.FOLD:
            for name, total in zip(self.FIELDS, self._totals()):
                setattr(self, name, total)
            self.rows = []

    def _totals(self) -> tuple[torch.Tensor, ...]:
        """Per scalar the sum and count of its counted (finite, not skipped) values; the steps with
        a non-finite scalar (not skipped), the first such step (or −1), and the skipped steps."""
        if not self.rows:
            return tuple(getattr(self, name) for name in self.FIELDS)
        block = torch.stack(self.rows)
        values, skipped = block[:, :-1], block[:, -1] > 0  # under ddp: skipped on any rank
        finite = values.isfinite()
        ok = finite & ~skipped[:, None]
        bad = ~finite.all(1) & ~skipped
        steps = torch.arange(self.rows_from, self.rows_from + len(self.rows), device=block.device)
        first_here = torch.where(bad, steps, self.NO_STEP).min()
        first = torch.where(self.first_nonfinite >= 0, self.first_nonfinite,
                            torch.where(first_here < self.NO_STEP, first_here, -1))
        return (self.sums + torch.where(ok, values, 0).sum(0), self.finite + ok.sum(0),
                self.nonfinite_steps + bad.sum(), first, self.skipped_steps + skipped.sum())

    def first_bad_step(self) -> int | None:
        """The first step of the window with a non-finite scalar (a host sync)."""
        first = -1 if self.sums is None else int(self._totals()[3])
        return first if first >= 0 else None

    def nonfinite_names(self) -> list[str]:
        _, finite, _, _, skipped = self._totals()
        counted = self.steps - int(skipped)
        return [name for name, n in zip(self.names, finite.tolist()) if n < counted]

    def nonfinite_step_count(self) -> int:
        return int(self._totals()[2])

    def skipped_step_count(self) -> int:
        return 0 if self.sums is None else int(self._totals()[4])

    def means(self) -> dict[str, float]:
        """Per scalar, the mean of its counted values (scalars with none are left out)."""
        sums, finite = self._totals()[:2]
        counts = finite.tolist()
        means = (sums / finite.clamp(min=1)).tolist()
        return {name: mean for name, mean, n in zip(self.names, means, counts) if n}

    def state_dict(self) -> dict:
        state = {k: getattr(self, k) for k in ("steps", "names", "rows_from", *self.FIELDS)}
        return {**state, "rows": torch.stack(self.rows) if self.rows else None}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        for key, value in state.items():
            setattr(self, key, value.to(device) if isinstance(value, torch.Tensor) else value)
        self.rows = [] if state.get("rows") is None else list(self.rows.unbind(0))
        if self.sums is not None and "skipped_steps" not in state:  # a checkpoint from before fp16 loss scaling
            self.skipped_steps = torch.zeros((), dtype=torch.long, device=device)


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


def fit(model, data: ImageData, batches: Batches, trainer: LoopSettings, *, checkpoints: RunCheckpoints,
        logger: RunLogger | None, device: torch.device, precision: str, seed: int, checkpoint_meta: dict,
        resume: dict | None = None) -> tuple[int, dict[str, float]]:
    """Train to trainer.max_steps from the start, or from the loaded checkpoint `resume`; returns
    the final step and the metric means of the last log window (empty when nothing was left to
    train). Raises Interrupted after checkpointing on SIGINT/SIGTERM/SIGHUP, NonFiniteError on a
    NaN/Inf under on_nonfinite=stop, CheckpointError when a checkpoint cannot be written.
    Under hardware=ddp every rank calls it; only rank 0 logs (`logger`, None elsewhere) and writes."""
    real = to_batch(data, torch.linspace(0, data.num_images - 1, trainer.grid_size).long(), device).images
    step, window, main = 0, ScalarWindow(), distributed.world().main
    if resume is not None:
        load_model_state(model, resume)
        optim.load_scaler_states(model.optimizers(), resume.get("scalers", {}))
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
        state = {"step": step, "model": model.state_dict(), "batches": batches.state_dict(), "rng": rng_state(),
                 "window": window.state_dict(), "scalers": optim.scaler_states(model.optimizers()), **checkpoint_meta}
        if not distributed.all_true(_all_finite(state["model"])):
            raise nonfinite("the model's weights or optimizer state", step)
        if main:
            checkpoints.save(state, step)
        else:  # rank 0 wrote it
            checkpoints.newest = (step, checkpoints.last)

    hooks = [opt.register_step_pre_hook(_skip_nonfinite_update) for opt in model.optimizers().values()] if skip else []
    means: dict[str, float] = {}
    timed_steps, timer_start = 0, time.perf_counter()
    vote = distributed.StopVote()
    try:
        with StopSignals() as stop:
            while step < trainer.max_steps:
                batch = next(batches)
                with autocast(device, precision):
                    metrics = model.train_step(batch)
                step += 1
                timed_steps += 1
                window.add(step, metrics, optim.skipped_update(model.optimizers()))
                final = step == trainer.max_steps
                on_cadence = step % trainer.log_every == 0
                if on_cadence or final:
                    check_scalars()
                    means = window.means()
                    img_per_s = timed_steps * trainer.batch_size / (time.perf_counter() - timer_start)
                    scalars = {f"train/{k}": v for k, v in means.items()}
                    if skip:
                        scalars["train/nonfinite_steps"] = window.nonfinite_step_count()
                    if precision == "fp16":
                        scalars["train/loss_scale_skipped_steps"] = window.skipped_step_count()
                    scalars.update({f"lr/{name}": opt.param_groups[0]["lr"] for name, opt in model.optimizers().items()})
                    scalars["perf/img_per_s"] = img_per_s
                    if main:
                        logger.scalars(step, scalars)
                        logger.status(step, means, img_per_s)
                    if on_cadence:
                        window = ScalarWindow()
                    timed_steps, timer_start = 0, time.perf_counter()
                if main and (step % trainer.sample_every == 0 or final):
                    logger.images(step, model.image_grids(real, torch.Generator().manual_seed(seed)))
                if step % trainer.ckpt_every == 0 or final:
                    checkpoint()
                if vote(stop.received is not None) and not final:
                    if checkpoints.newest is None or checkpoints.newest[0] != step:
                        checkpoint()
                    signum = stop.received or signal.SIGTERM  # another rank's signal: torchrun sends SIGTERM
                    raise Interrupted(signum, f"stopped by {signal.Signals(signum).name} after step {step}; "
                                              f"{checkpoints.describe_newest()}")
    finally:
        vote.close()
        for hook in hooks:
            hook.remove()
    return step, means
