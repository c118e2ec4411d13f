"""One job of a sweep: its directory name, its typed overrides and threads, its result record
(written `running`, then `ok` or `failed`), and what a re-run does with it (skip, resume or start
again, genlab/commands/train.py).

The record's metrics are the model's training scalars averaged over the last `trainer.log_every`
steps (per image, in nats where they are likelihoods), plus what the model's optional
`final_metrics(images)` measures on fixed data images (the VAE: active latent units). A value
that is not finite is stored as null.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path

from genlab.errors import CheckpointError, UserError
from genlab.files import write_text_atomically
from genlab.sweep.hparams import write_job_hparams
from genlab.sweep.records import RECORD_NAME
from genlab.training.checkpoint import load_checkpoint, resolve

# What a job leaves in its run directory besides .hydra/ and its log: cleared before a restart.
ATTEMPT_OUTPUTS = ("checkpoints", "samples", RECORD_NAME, "events.out.tfevents.*")
MAX_DIRNAME_BYTES = 200  # below NAME_MAX (255) with room for a hash suffix


def job_dirname(override_dirname: str) -> str:
    """A sweep job's directory name from Hydra's override_dirname ("beta=4,noise_dim=16").

    A path separator in a value would nest directories, so it becomes "_"; a name too long for
    the file system is cut and ends in a hash of the full name, so it stays unique.
    """
    name = (override_dirname or "default").replace("/", "_").replace("\\", "_")
    if name.startswith("."):
        name = "_" + name[1:]
    if len(name.encode()) > MAX_DIRNAME_BYTES:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = name.encode()[: MAX_DIRNAME_BYTES - 11].decode(errors="ignore") + "-" + digest
    return name


def dirname_overrides(overrides: list[str]) -> list[str]:
    """Hydra overrides that name each job's directory by the swept keys only.

    `genlab train -m beta=1,4 trainer.max_steps=5000` runs jobs `beta=1` and `beta=4`: the keys
    that are the same for every job stay out of the names. Without a swept key every override
    names the one job.
    """
    from genlab.config.overrides import parse_overrides

    parsed = parse_overrides(overrides)
    task = [o for o in parsed if o.key_or_group != "hydra" and not o.key_or_group.startswith(("hydra.", "hydra/"))]
    exclude_key = "hydra.job.config.override_dirname.exclude_keys"
    if not any(o.is_sweep_override() for o in task) or any(o.key_or_group == exclude_key for o in parsed):
        return []
    constant = sorted({o.key_or_group for o in task if not o.is_sweep_override()})
    return [f"{exclude_key}=[{','.join(constant)}]"] if constant else []


def job_overrides(task_overrides: list[str]) -> dict:
    """A job's overrides as typed values: ["beta=4", "model=vae"] → {"beta": 4, "model": "vae"}.
    `resume` and `force_resume` say where a run continued from, not what the job is: left out, so
    that a job resumed by hand (genlab train resume=<job dir> trainer.max_steps=N) keeps its place
    in its sweep's summary."""
    from genlab.config.overrides import parse_overrides
    from genlab.training.resume import RESUME_KEYS

    typed = {}
    for override in parse_overrides(task_overrides):
        if override.key_or_group in RESUME_KEYS:
            continue
        value = override.value()
        plain = value is None or isinstance(value, (bool, int, float, str))
        typed[override.key_or_group] = value if plain else override.get_value_element_as_str()
    return typed


def job_threads(launcher: dict) -> int | None:
    """torch threads for a sweep job that leaves hardware.threads unset.

    A scheduler that gives each job its own CPUs (submitit: cpus_per_task) sets the count; a
    launcher that runs n_jobs side by side on this machine (joblib; negative n_jobs count back
    from the cores, as joblib does) divides the cores between them; otherwise None keeps torch's
    default (all cores, right for jobs that run one after another).
    """
    if launcher.get("cpus_per_task"):
        return int(launcher["cpus_per_task"])
    n_jobs = launcher.get("n_jobs")
    if not n_jobs:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    side_by_side = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
    return max(1, cores // side_by_side)


def device_gpus(device: str) -> int:
    """GPUs a scheduler should give a job with hardware.device=`device`."""
    return 1 if str(device).startswith("cuda") else 0


def resume_point(run_dir: Path, max_steps: int) -> Path | None:
    """The checkpoint an unfinished job continues from: its checkpoints/last.pt when that is
    before step `max_steps`. None (start again) when there is none, or when it is already at
    max_steps: the job was killed after its final checkpoint, and the means of the final log window
    that its record holds are not in the checkpoint, so only a new attempt gives the same record."""
    last = resolve(run_dir)
    if not last.is_file():
        return None
    try:  # mmap: the step without reading the weights
        step = load_checkpoint(last, mmap=True).get("step")
    except CheckpointError:  # unreadable: resuming names the problem in the job's record
        return last
    return last if not isinstance(step, int) or step < max_steps else None


def clear_attempt(run_dir: Path) -> None:
    """Remove what an earlier attempt of a job wrote, so that a restart starts clean."""
    for pattern in ATTEMPT_OUTPUTS:
        for path in run_dir.glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def _finite_or_none(value):
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def error_line(error: BaseException) -> str:
    """An exception as the one line a summary shows."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if not isinstance(error, UserError):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text[:300]


class JobRecord:
    """The result record of one job, in its run directory: `running` from construction on."""

    def __init__(self, run_dir: Path, overrides: dict, config: dict):
        self.run_dir = run_dir
        self.record = {"overrides": overrides, "status": "running", "error": None, "steps": None,
                       "wall_s": None, "metrics": {}, "config": config}
        self._start_s = time.perf_counter()
        self._write()

    def finish(self, steps: int, metrics: dict[str, float]) -> None:
        self.record.update(status="ok", steps=steps, metrics={k: _finite_or_none(v) for k, v in metrics.items()})
        self._end()

    def fail(self, error: BaseException) -> None:
        self.record.update(status="failed", error=error_line(error))
        self._end()

    def _end(self) -> None:
        self.record["wall_s"] = round(time.perf_counter() - self._start_s, 3)
        self._write()
        write_job_hparams(self.run_dir, self.record)

    def _write(self) -> None:
        write_text_atomically(self.run_dir / RECORD_NAME, json.dumps(self.record, indent=2) + "\n")
