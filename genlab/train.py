"""genlab train: compose a run from config groups, then build → fit → files in the run directory.

Nothing below this module reads Hydra state: `train(cfg, run_dir)` takes a composed config and a
directory, so it is usable from Python and tests without Hydra's app machinery.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from genlab.config import ConfigError, compose_jobs, config_dir, validate_train
from genlab.errors import UserError

log = logging.getLogger("genlab")

# A sweep job's directory is named by its overrides ("beta=4,noise_dim=16"); "default" when none.
if not OmegaConf.has_resolver("genlab_job_dirname"):
    OmegaConf.register_new_resolver("genlab_job_dirname", lambda overrides: overrides or "default")


def train(cfg: DictConfig, run_dir: Path) -> dict:
    """Train the run `cfg` describes into `run_dir`; returns the final step and checkpoint path."""
    import torch

    from genlab.data import build_dataset
    from genlab.data.batches import ShuffledBatches
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
        step = fit(model, data, batches, trainer, run_dir=run_dir, logger=logger, device=device,
                   precision=plain["hardware"]["precision"], seed=cfg.seed, step=0, checkpoint_meta=meta)
    finally:
        logger.close()
    ckpt = run_dir / "checkpoints" / "last.pt"
    log.info(f"done: {step} steps; checkpoint {ckpt}")
    log.info(f"sample from it: genlab sample ckpt={ckpt}")
    return {"step": step, "ckpt": ckpt, **_evaluate_at_end(ckpt, plain["eval"], device)}


def _evaluate_at_end(ckpt: Path, settings: dict, device) -> dict:
    """eval.at_end: run those metrics on the final checkpoint (eval.json beside it)."""
    if not settings["at_end"]:
        return {}
    from genlab.metrics.evaluation import evaluate

    result = evaluate(ckpt, settings, settings["at_end"], device)
    log.info("eval: " + ", ".join(f"{name} {value:.4g}" for name, value in result["summary"].items()) + f" ({result['path']})")
    return {"eval": result["summary"]}


@hydra.main(config_path=config_dir(), config_name="train", version_base="1.3")
def _app(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    try:
        train(cfg, Path(HydraConfig.get().runtime.output_dir))
    except UserError as e:
        sys.exit(f"genlab train: error: {e}")


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
    sys.argv = [sys.argv[0], *args]
    _app()
