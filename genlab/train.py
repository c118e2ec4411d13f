"""genlab train: compose a run from config groups, then build → fit → files in the run directory.

Nothing below this module reads Hydra state: `train(cfg, run_dir)` takes a composed config and a
directory, so it is usable from Python and tests without Hydra's app machinery.

Every run leaves a result record (genlab/sweep.py). In a sweep (-m) a failing job is recorded as
failed and the sweep goes on to the next job; the sweep's summary and exit status come from
`genlab.sweep.SweepSummary` when it ends. A run whose final metrics are not finite has diverged
and fails as well.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from genlab import sweep
from genlab.config import ConfigError, compose_jobs, config_dir, validate_train
from genlab.errors import UserError

log = logging.getLogger("genlab")

# A sweep job's directory is named by its swept overrides ("beta=4,noise_dim=16").
if not OmegaConf.has_resolver("genlab_job_dirname"):
    OmegaConf.register_new_resolver("genlab_job_dirname", sweep.job_dirname)
# GPUs the Slurm launcher asks for (configs/hydra/launcher/slurm.yaml).
if not OmegaConf.has_resolver("genlab_gpus"):
    OmegaConf.register_new_resolver("genlab_gpus", sweep.device_gpus)


class DivergedError(UserError):
    """Training produced a non-finite metric."""


def train(cfg: DictConfig, run_dir: Path) -> dict:
    """Train the run `cfg` describes into `run_dir`; returns the final step, the checkpoint path
    and the final metrics (the last log window's means and the model's `final_metrics`)."""
    import torch

    from genlab.data import build_dataset
    from genlab.data.batches import ShuffledBatches, to_batch
    from genlab.models import build_model
    from genlab.runtime import setup_device
    from genlab.training.logging import RunLogger
    from genlab.training.loop import Trainer, fit

    validate_train(cfg)
    plain = OmegaConf.to_container(cfg, resolve=True)
    device = setup_device(plain["hardware"])
    torch.manual_seed(cfg.seed)
    data = build_dataset(plain["dataset"])
    model = build_model(plain["model"], plain["optimizer"], data.image_shape, data.num_classes, device)
    trainer = Trainer(**{k: plain["trainer"][k] for k in Trainer.__dataclass_fields__})
    batches = ShuffledBatches(data.num_images, trainer.batch_size, cfg.seed)
    logger = RunLogger(run_dir, 0, trainer.max_steps)
    logger.text("config", "```yaml\n" + OmegaConf.to_yaml(cfg, resolve=True) + "```")
    log.info(f"{cfg.model.name} on {cfg.dataset.name} {data.image_shape}, {data.num_images:,} images, device {device}")
    meta = {"config": plain, "data": {"image_shape": list(data.image_shape), "num_classes": data.num_classes,
                                      "class_names": list(data.class_names)}}
    try:
        step, metrics = fit(model, data, batches, trainer, run_dir=run_dir, logger=logger, device=device,
                            precision=plain["hardware"]["precision"], seed=cfg.seed, step=0, checkpoint_meta=meta)
    finally:
        logger.close()
    diverged = {name: value for name, value in metrics.items() if not math.isfinite(value)}
    if diverged:
        name, value = next(iter(diverged.items()))
        raise DivergedError(f"training diverged: {name} is {value} at step {step} (mean of the last "
                            f"{trainer.log_every} steps); try a smaller learning rate (model.lr)")
    if hasattr(model, "final_metrics"):
        # The same evenly spaced data images for every run, so runs compare on the same images.
        index = torch.linspace(0, data.num_images - 1, min(cfg.trainer.final_images, data.num_images)).long()
        metrics.update(model.final_metrics(to_batch(data, index, device).images))
    ckpt = run_dir / "checkpoints" / "last.pt"
    log.info(f"done: {step} steps; checkpoint {ckpt}")
    log.info(f"sample from it: genlab sample ckpt={ckpt}")
    return {"step": step, "ckpt": ckpt, "metrics": metrics}


@hydra.main(config_path=config_dir(), config_name="train", version_base="1.3")
def _app(cfg: DictConfig) -> None:
    import torch  # noqa: F401  (first, so that a job's wall_s does not count the import)
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    overrides = sweep.job_overrides(list(hydra_cfg.overrides.task))
    if multirun:
        if sweep.is_finished(run_dir, overrides):
            log.info(f"skipped: {run_dir.name} finished in an earlier run of this sweep ({sweep.RECORD_NAME} says ok)")
            return
        # An unfinished job (failed, or killed while it ran) starts again from step 0. This is the
        # one place to switch to resuming: keep the attempt and resume from
        # run_dir / "checkpoints" / "last.pt" when it exists.
        sweep.clear_attempt(run_dir)
        if cfg.hardware.threads is None:
            cfg.hardware.threads = sweep.job_threads(OmegaConf.to_container(hydra_cfg.launcher))
    record = sweep.JobRecord(run_dir, overrides, OmegaConf.to_container(cfg, resolve=True))
    try:
        result = train(cfg, run_dir)
    except Exception as e:
        record.fail(e)
        if multirun:  # the sweep goes on; SweepSummary reports the failure when it ends
            log.error(f"job failed: {sweep.error_line(e)}", exc_info=not isinstance(e, UserError))
            return
        if isinstance(e, UserError):
            sys.exit(f"genlab train: error: {e}")
        raise
    record.finish(result["step"], result["metrics"])


def run(args: list[str]) -> None:
    """`genlab train ARGS`: check every job's config first, then hand ARGS to the Hydra app."""
    from hydra._internal.utils import get_args_parser

    parsed = get_args_parser().parse_args(args)
    inspecting = parsed.help or parsed.hydra_help or parsed.cfg or parsed.shell_completion or parsed.info
    if not inspecting:
        try:
            for cfg in compose_jobs(parsed.config_name or "train", parsed.overrides, parsed.multirun):
                validate_train(cfg)
        except ConfigError as e:
            sys.exit(f"genlab train: error: {e}")
        if parsed.multirun:
            args = [*args, *sweep.dirname_overrides(parsed.overrides)]
    sys.argv = [sys.argv[0], *args]
    _app()
