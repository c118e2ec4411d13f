"""One sweep directory, one launcher; one job, one process.

The launcher holds an exclusive lock on <sweep dir>/.genlab-sweep.lock (flock,
genlab/training/locks.py) while it runs, so a second launch of the same sweep stops in one line,
and the kernel releases the lock when the launcher dies, kill -9 included. A sweep directory named
by the time (Hydra's default) is claimed by creating it: two launches in the same second get
`<time>` and `<time>-2`, never one directory. Each job holds its run directory's lock
(<job dir>/.genlab-run.lock, the one `genlab train` holds) while it runs: a job that outlives a
killed launcher (a joblib worker, a Slurm job), or the job resumed by hand
(`genlab train resume=<job dir>`), makes the same job of a re-run wait for it, so no job runs in
two processes at once.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from genlab.errors import UserError
from genlab.training import locks

SWEEP_LOCK = ".genlab-sweep.lock"  # in the sweep directory, held by its launcher


class SweepRunning(UserError):
    """The sweep directory is held by another launcher."""


def _holder(path: Path) -> str:
    """" (pid N)" of the process that wrote its pid into the lock file `path`, when readable."""
    pid = locks.holder(path)
    return f" (pid {pid})" if pid else ""


def claim_sweep_dir(root: Path | None, from_clock: bool) -> list[str]:
    """Lock the sweep directory `root` (None: known only at run time, Hydra reports it) until the
    launcher's command ends; return the overrides that pin it.

    A directory named by the time (`from_clock`: `${now:…}` in hydra.sweep.dir, the default) is
    claimed by creating it (genlab.training.locks.claim), and pinned with a hydra.sweep.dir override. Any
    other directory is the user's to re-run into: SweepRunning when another launcher holds it."""
    from genlab.config.overrides import hydra_value

    if root is None:
        return []
    try:
        claimed = locks.claim(root, from_clock, SWEEP_LOCK)
    except OSError as e:
        raise UserError(f"cannot create the sweep directory {root} ({e.strerror or e}): choose another hydra.sweep.dir") from None
    if claimed is None:
        raise SweepRunning(f"sweep {root} is already running{_holder(root / SWEEP_LOCK)}: wait for it to end, "
                           "or choose another hydra.sweep.dir")
    return [f"hydra.sweep.dir={hydra_value(str(claimed))}"] if from_clock else []


@contextlib.contextmanager
def job_lock(run_dir: Path):
    """Hold the job's run directory lock (genlab.training.locks.RUN_LOCK) while it runs. A job that
    outlived its launcher (a joblib worker, a Slurm job), or a `genlab train resume=<job dir>`,
    still holds it: wait until it has finished or died, then go on as usual (skip the finished job,
    or resume it)."""
    path = run_dir / locks.RUN_LOCK
    fd = locks.lock(path, wait=False)
    if fd is None:
        # stderr, not the log: the other process still writes the job's train.log.
        print(f"genlab train: job {run_dir.name} is still running in another process{_holder(path)}: waiting for it",
              file=sys.stderr, flush=True)
        fd = locks.lock(path, wait=True)
    try:
        yield
    finally:
        os.close(fd)


def sweep_running(root: Path) -> str | None:
    """" (pid N)" (or "") when a launcher holds the sweep directory `root`; None when none does."""
    pid = locks.held_by(root / SWEEP_LOCK)
    return None if pid is None else f" (pid {pid})" if pid else ""
