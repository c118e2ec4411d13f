"""genlab train: compose a run from config groups, then build → fit → files in the run directory.

Nothing below this module reads Hydra state: `train(cfg, run_dir)` takes a composed config and a
directory, so it is usable from Python and tests without Hydra's app machinery. With
cfg.resume set it continues that checkpoint in `run_dir` (see genlab/training/resume.py for the rules).

Every run leaves a result record (genlab/sweep/records.py). In a sweep (-m) a failing job is recorded as
failed and the sweep goes on to the next job; a re-run of the sweep skips finished jobs and resumes
unfinished ones from their last checkpoint. The sweep's summary and exit status come from
`genlab.sweep.callback.SweepSummary` when it ends.

One process writes a run directory: `genlab train` (a resume too) locks it before anything is
written there, and a second process with the same directory stops in one line naming the first's
pid (genlab/training/locks.py; under hardware=ddp rank 0, the one that writes, holds it).

Exit status of `genlab train`: 0 done; 1 a bad input, a NaN/Inf loss, a failed checkpoint write or
a run directory another process writes (one line on stderr); 128 + N after signal N (130 Ctrl-C,
143 SIGTERM, 129 SIGHUP: the terminal hung up), with a checkpoint written.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import signal
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from genlab.training import locks
from genlab.commands.wrapper import run_command
from genlab.config.compose import compose_command, config_dir
from genlab.config.validate import ConfigError, validate_train
from genlab.errors import UserError, fail
from genlab.sweep.jobs import (JobRecord, clear_attempt, device_gpus, dirname_overrides, error_line, job_dirname,
                               job_overrides, job_threads, resume_point)
from genlab.sweep.locks import claim_sweep_dir, job_lock
from genlab.sweep.records import RECORD_NAME, is_finished

log = logging.getLogger("genlab")

# A sweep job's directory is named by its swept overrides ("beta=4,noise_dim=16").
if not OmegaConf.has_resolver("genlab_job_dirname"):
    OmegaConf.register_new_resolver("genlab_job_dirname", job_dirname)
# GPUs the Slurm launcher asks for (configs/hydra/launcher/slurm.yaml).
if not OmegaConf.has_resolver("genlab_gpus"):
    OmegaConf.register_new_resolver("genlab_gpus", device_gpus)


def _record_resume(run_dir: Path, logger, step: int, source: Path, changes: dict, forced: bool) -> None:
    """Note a continuation in the run: TensorBoard text `resume` and an entry in resumes.yaml."""
    from genlab.training.resume import describe

    entry = {"step": step, "from": str(source), "time": datetime.datetime.now().isoformat(timespec="seconds"),
             "forced": forced, "changes": {k: list(v) for k, v in changes.items()}}
    with open(run_dir / "resumes.yaml", "a") as f:
        f.write(OmegaConf.to_yaml([entry]))
    logger.text("resume", f"resumed from `{source}` at step {step}; config changes: {describe(changes) or 'none'}"
                          + (" (force_resume=true)" if forced else ""), step)
    if changes:
        log.warning(f"resumed with config changes: {describe(changes)}")


def train(cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None) -> dict:
    """Train the run `cfg` describes into `run_dir` (continuing cfg.resume when set); returns the
    final step, the checkpoint path and the final metrics (the last log window's means and the
    model's `final_metrics`). `cfg` has passed `validate_train` (`genlab train` checks every job
    before Hydra starts). `overrides` (the command line's) are stored in checkpoints so that
    `genlab train resume=…` can compose the same run again."""
    import torch

    from genlab.data import build_dataset
    from genlab.data.batches import Batches, on_device, to_batch
    from genlab.files import remove_stale_temporaries
    from genlab.training.distributed import world
    from genlab.models import build_model
    from genlab.training.resume import check_resume, run_config, stored_overrides
    from genlab.training.runtime import device_name, hardware_note, prepare_nets, resolve_precision, setup_device
    from genlab.training.checkpoint import RunCheckpoints, load_checkpoint, refuse_overwrite, resolve
    from genlab.training.logging import RunLogger
    from genlab.training.loop import LoopSettings, fit

    plain = OmegaConf.to_container(cfg, resolve=True)
    checkpoints_dir = run_dir / "checkpoints"
    resume, newest = None, None
    if cfg.resume is not None:
        source = resolve(cfg.resume)
        resume = load_checkpoint(source)
        changes = check_resume(resume, source, plain)
        newest = (resume["step"], source)
    else:
        refuse_overwrite(run_dir, "train into another directory")
    device = setup_device(plain["hardware"])  # under hardware=ddp: once every process has started
    ranks = world()
    torch.manual_seed(cfg.seed)
    data = on_device(build_dataset(plain["dataset"], cfg.seed), device)
    try:
        model = build_model(plain["model"], plain["optimizer"], data.image_shape, data.num_classes, device)
    except RuntimeError as e:  # torch.OutOfMemoryError included: a size check_memory's lower bound let through
        if "alloc" not in str(e).lower() and not isinstance(e, torch.OutOfMemoryError):
            raise
        raise UserError(f"building model={cfg.model.name} ran out of memory on {device} "
                        f"({str(e).splitlines()[0][:120]}): use smaller sizes (model.width, trainer.batch_size)") from None
    layout = prepare_nets(model, plain["hardware"], device)
    precision = resolve_precision(plain["hardware"], device, resume)
    trainer = LoopSettings(**{k: plain["trainer"][k] for k in LoopSettings.__dataclass_fields__})
    batches = Batches(data, trainer.batch_size, cfg.seed, device, dynamic_binarize=cfg.dataset.binarize == "dynamic",
                      shard=ranks)
    start = resume["step"] if resume else 0
    logger = RunLogger(run_dir, start, trainer.max_steps) if ranks.main else None  # only rank 0 writes
    if ranks.main:  # a record write killed with the run left its temporary file; the lock says none is in flight
        remove_stale_temporaries(run_dir, RECORD_NAME)
    if logger and resume:
        _record_resume(run_dir, logger, start, source, changes, forced=cfg.force_resume)
    elif logger:
        logger.text("config", "```yaml\n" + OmegaConf.to_yaml(cfg, resolve=True) + "```")
    dataset = "/".join(filter(None, (cfg.dataset.name, cfg.dataset.get("split"))))
    log.info(f"{cfg.model.name} on {dataset} {data.image_shape}, {data.num_images:,} images, {data.num_classes} classes, "
             f"binarize {cfg.dataset.binarize}, device {device}" + (f", {ranks.size} processes" if ranks.size > 1 else "")
             + (f", from step {start}" if start else "") + f", {hardware_note(plain['hardware'], layout, precision, resume is not None)}")
    meta = {"config": run_config(plain), "overrides": stored_overrides(overrides or []),
            "device": device_name(plain["hardware"]), "processes": ranks.size, "layout": layout,
            "precision": precision,
            "data": {"image_shape": list(data.image_shape), "num_classes": data.num_classes,
                     "class_names": list(data.class_names)}}
    checkpoints = RunCheckpoints(checkpoints_dir, trainer.keep_last, newest)
    try:
        step, metrics = fit(model, data, batches, trainer, checkpoints=checkpoints, logger=logger, device=device,
                            precision=precision, seed=cfg.seed, checkpoint_meta=meta,
                            resume=resume)
    finally:
        if logger:
            logger.close()
    if ranks.main:
        # The same evenly spaced data images for every run, so runs compare on the same images.
        index = torch.linspace(0, data.num_images - 1, min(cfg.trainer.final_images, data.num_images)).long()
        metrics.update(model.final_metrics(to_batch(data, index, device).images))
    log.info(f"done: {step} steps; checkpoint {checkpoints.last}")
    log.info(f"sample from it: genlab sample ckpt={checkpoints.last}")
    metrics.update(_evaluate_at_end(checkpoints.last, plain["eval"], device, plain["hardware"]["compile"]))
    return {"step": step, "ckpt": checkpoints.last, "metrics": metrics}


def _evaluate_at_end(ckpt: Path, settings: dict, device, compile_nets: bool) -> dict[str, float]:
    """eval.at_end: those metrics of the final checkpoint (eval.json beside it), as eval/<name>
    final metrics (so a sweep's summary lists them beside the training scalars)."""
    if not settings["at_end"]:
        return {}
    from genlab.metrics.evaluation import evaluate

    result = evaluate(ckpt, settings, settings["at_end"], device, compile_nets)
    log.info("eval: " + ", ".join(f"{name} {value:.4g}" for name, value in result["summary"].items()) + f" ({result['path']})")
    return {f"eval/{name}": value for name, value in result["summary"].items()}


@hydra.main(config_path=config_dir(), config_name="train", version_base="1.3")
def _app(cfg: DictConfig) -> None:
    import torch  # noqa: F401  (first, so that a job's wall_s does not count the import)
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from genlab.training.distributed import planned_rank

    main = planned_rank(cfg.hardware) == 0  # under hardware=ddp rank 0 writes the record and the log
    if not main:
        logging.getLogger().setLevel(logging.WARNING)
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    task_overrides = list(hydra_cfg.overrides.task)
    if main and not multirun and not locks.holds(run_dir):  # named by values only Hydra knew: locked now
        try:
            locks.hold_run_dir(run_dir, from_clock=False)
        except UserError as e:
            fail("train", e)
    with job_lock(run_dir) if multirun and main else contextlib.nullcontext():
        _job(cfg, run_dir, main, multirun, task_overrides, hydra_cfg)


def _job(cfg: DictConfig, run_dir: Path, main: bool, multirun: bool, task_overrides: list[str], hydra_cfg) -> None:
    from genlab.training.signals import Interrupted, StopSignals

    overrides = job_overrides(task_overrides)
    if multirun:
        if is_finished(run_dir, overrides):
            log.info(f"skipped: {run_dir.name} finished in an earlier run of this sweep ({RECORD_NAME} says ok)")
            return
        unfinished = resume_point(run_dir, cfg.trainer.max_steps)
        if unfinished is not None:
            log.info(f"resuming {run_dir.name} from {unfinished}")
            cfg.resume = str(unfinished)
        elif main:
            clear_attempt(run_dir)
        if cfg.hardware.threads is None:
            cfg.hardware.threads = job_threads(OmegaConf.to_container(hydra_cfg.launcher))
    record = JobRecord(run_dir, overrides, OmegaConf.to_container(cfg, resolve=True)) if main else None
    try:
        # A family found through hydra.searchpath is found again when the run is resumed.
        searchpath = [o for o in hydra_cfg.overrides.hydra if o.startswith("hydra.searchpath=")]
        result = train(cfg, run_dir, task_overrides + searchpath)
    except Interrupted as e:
        print(f"genlab train: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except Exception as e:
        if record:
            record.fail(e)
        if multirun:  # the sweep goes on; SweepSummary reports the failure when it ends
            log.error(f"job failed: {error_line(e)}", exc_info=not isinstance(e, UserError))
            return
        if isinstance(e, UserError):
            fail("train", e)
        raise
    if record:
        record.finish(result["step"], result["metrics"])
    if multirun and StopSignals.caught is not None:  # it came in the job's final step: the job finished
        print(f"genlab train: stopped by {signal.Signals(StopSignals.caught).name} after job {run_dir.name} finished; "
              "re-run the same command to run the other jobs", file=sys.stderr)
        sys.exit(128 + StopSignals.caught)


def _prepare(parsed) -> list[str]:
    """Check every job of the command line before Hydra creates a directory; then lock the run's
    or the sweep's directory, and return the overrides that a resume adds (the stored ones, and the
    run's own directory) and those that pin the directory."""
    from genlab.training.distributed import planned_rank
    from genlab.training.resume import check_resume, continued_overrides, resume_target
    from genlab.training.checkpoint import check_output_dir, load_checkpoint, resolve, run_dir_of

    config_name, overrides = parsed.config_name or "train", list(parsed.overrides)
    target = resume_target(overrides)
    added, resume = [], None
    if target is not None:
        if parsed.multirun:
            raise ConfigError("resume= continues one run and cannot be combined with -m; resume each run on its own")
        source = resolve(target)
        resume = load_checkpoint(source)
        added = continued_overrides(resume.get("overrides", []), overrides, run_dir_of(source))
    command = compose_command(config_name, overrides + added, parsed.multirun, parsed.config_dir)
    writer = not parsed.multirun and planned_rank(command.jobs[0].hardware) == 0  # under DDP rank 0 locks (_claim_run_dir)
    if writer and command.output_dir:
        locks.refuse_if_held(command.output_dir)  # another process writes it: say so before what it holds
    check_output_dir(command.output_dir, parsed.multirun, fresh=resume is None)
    for cfg in command.jobs:
        validate_train(cfg)
        if resume is not None:
            check_resume(resume, source, OmegaConf.to_container(cfg, resolve=True))
    _processes(command.jobs, parsed.multirun)
    if parsed.multirun:
        return added + claim_sweep_dir(command.output_dir, command.output_dir_from_clock)
    return added + _claim_run_dir(command)


def _processes(jobs: list[DictConfig], multirun: bool) -> None:
    """Under torchrun: start the process group. Refuse hardware=ddp without torchrun, and
    torchrun without hardware=ddp or with -m."""
    import os

    from genlab.training import distributed

    wanted = any(cfg.hardware.distributed for cfg in jobs)
    if not distributed.launched_by_torchrun():
        if wanted and not multirun:
            raise ConfigError("hardware=ddp runs in the processes torchrun starts: "
                              "torchrun --nproc_per_node=N -m genlab.cli train hardware=ddp …")
        return
    if multirun:
        raise ConfigError("under torchrun genlab trains one run: drop -m (sweeps of multi-process jobs: "
                          "hydra/launcher=slurm with hydra.launcher.tasks_per_node, see the README)")
    if not wanted:
        if int(os.environ["WORLD_SIZE"]) > 1:
            raise ConfigError(f"torchrun started {os.environ['WORLD_SIZE']} processes but hardware.distributed=false: "
                              "add hardware=ddp")
        return
    from genlab.training.runtime import device_name

    hardware = OmegaConf.to_container(jobs[0].hardware, resolve=True)
    distributed.init(device_name(hardware).partition(":")[0])


def _claim_run_dir(command) -> list[str]:
    """Lock the run directory (genlab/training/locks.py) before Hydra creates it and writes .hydra/; return
    the overrides that pin it (one named by the clock would be named again when Hydra starts).
    Under hardware=ddp rank 0, the one that writes, holds it, and every rank trains in rank 0's
    directory; the other ranks do not write .hydra/."""
    from genlab.training import distributed
    from genlab.config.overrides import hydra_value

    ranks = distributed.world()
    run_dir, pin = command.output_dir, command.output_dir_from_clock
    if ranks.main and run_dir is not None:
        run_dir = locks.hold_run_dir(run_dir, command.output_dir_from_clock)
    if ranks.size > 1:
        run_dir, pin = distributed.broadcast(run_dir if ranks.main else None), True
    added = [f"hydra.run.dir={hydra_value(str(run_dir))}"] if pin and run_dir is not None else []
    return added + ([] if ranks.main else ["hydra.output_subdir=null"])


def _prepare_args(parsed) -> list[str]:
    """The overrides `_prepare` returns, and a sweep's directory-name ones."""
    added = _prepare(parsed)
    return [*added, *dirname_overrides(parsed.overrides)] if parsed.multirun else added


def run(args: list[str]) -> None:
    """`genlab train ARGS`: check every job's config first, then hand ARGS to the Hydra app."""
    try:
        run_command("train", _app, args, _prepare_args)
    finally:  # the command is over: a process that goes on (a notebook, tests/ddp_worker.py) holds no directory
        locks.release_all()
