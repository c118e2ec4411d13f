"""Checking a composed config before any work: one-line errors that name the key, value and fix.

The commands compose their jobs with genlab.config.compose and check them here before Hydra creates a run
directory. The model family checks its own keys (its `validate`, genlab/models/base.py).
"""

from __future__ import annotations

import re

from omegaconf import DictConfig, OmegaConf

from genlab.config.checks import ConfigError, is_number, memory_budget, require, require_fits


def validate_train(cfg: DictConfig) -> None:
    """Raise ConfigError for the first bad value of a composed `train` config."""
    require(cfg, "seed", "int", low=0)
    for key in ("max_steps", "batch_size", "log_every", "sample_every", "ckpt_every", "grid_size"):
        require(cfg, f"trainer.{key}", "int", low=1)
    require(cfg, "trainer.final_images", "int", low=2)  # a variance over images needs two
    require(cfg, "trainer.keep_last", "int", low=0)
    require(cfg, "trainer.on_nonfinite", "str", choices=("stop", "skip"))
    if cfg.resume is not None and not (isinstance(cfg.resume, str) and cfg.resume):
        raise ConfigError(f"resume={cfg.resume!r} is not allowed: pass a run directory or a checkpoint file")
    if not isinstance(cfg.force_resume, bool):
        raise ConfigError(f"force_resume={cfg.force_resume!r} is not allowed: expected true or false")
    if cfg.force_resume and cfg.resume is None:
        raise ConfigError("force_resume=true needs resume=<run dir or checkpoint>: it accepts config changes when resuming")
    validate_hardware(cfg)
    validate_summary_plot(cfg)
    from genlab.data import validate_dataset

    validate_dataset(cfg)
    from genlab.models import model_class

    family = model_class(OmegaConf.to_container(cfg.model))
    from genlab.data import image_shape as data_shape

    clips = len(data_shape(OmegaConf.to_container(cfg.dataset, resolve=True))) == 4
    if clips != family.clips:  # a time axis on one side only (genlab/models/base.py, `clips`)
        what = ("clips", "still images") if family.clips else ("still images", "clips")
        raise ConfigError(f"model={cfg.model.name} is not allowed with dataset={cfg.dataset.name}: the model generates "
                          f"{what[0]} and the dataset holds {what[1]}; pick a model and a dataset of the same kind")
    for key in family.required_keys:  # before anything reads them (the optimizer group interpolates lr, betas)
        if key not in cfg.model:
            raise ConfigError(f"model.{key} is missing: model._target_={cfg.model._target_} needs it "
                              f"(genlab/models/base.py, required_keys); add `{key}: …` under `model:` in its YAML")
    family.validate(cfg)  # its own keys, before those that read them
    require(cfg, "optimizer.lr", "number", low=0, low_open=True)
    require(cfg, "optimizer.weight_decay", "number", low=0)
    if "betas" in cfg.optimizer:
        betas = cfg.optimizer.betas
        if not OmegaConf.is_list(betas) or len(betas) != 2 or not all(is_number(b) and 0 <= b < 1 for b in betas):
            raise ConfigError(f"optimizer.betas={OmegaConf.to_container(betas) if OmegaConf.is_list(betas) else betas!r} is not allowed: expected two numbers in [0, 1), e.g. [0.9,0.999]")
    if "momentum" in cfg.optimizer:
        require(cfg, "optimizer.momentum", "number", low=0, high=1)
    validate_eval(cfg, "eval.", "eval.at_end")
    check_memory(cfg)
    from genlab.data import image_shape
    from genlab.metrics.evaluation import applicable, check_sizes

    # eval.at_end runs after training: its sizes are checked now, not hours later. Before a model
    # exists, auto is read from the family's class (a family conditional by its config adds accuracy
    # at the end, a classifier metric whose sizes fid's check already covers).
    at_end = OmegaConf.to_container(cfg.eval.at_end) if OmegaConf.is_list(cfg.eval.at_end) else cfg.eval.at_end
    names = applicable(family, OmegaConf.to_container(cfg.dataset)) if at_end == "auto" else at_end
    check_sizes(names, OmegaConf.to_container(cfg.eval, resolve=True), image_shape(cfg.dataset), "eval.")


# A training step holds at least the weights, their gradients and Adam's two moments (4 values per
# parameter), one value per parameter of each weight-average copy, and the largest activation with
# its gradient, of a training batch or of the logged grid (decoded at once); float32, 4 bytes a value. A run whose lower bound exceeds the device's
# memory cannot run, so it is refused before any work.
BYTES_PER_VALUE = 4
VALUES_PER_PARAMETER = 4
VALUES_PER_ACTIVATION = 2
MEMORY_SIZES = ("model.width", "model.latent_dim", "trainer.batch_size", "trainer.grid_size")


def check_memory(cfg: DictConfig) -> None:
    """ConfigError when the run's networks cannot fit in the device's memory, or cannot be built at
    the configured sizes at all (shapes that overflow)."""
    from genlab.data import image_shape, num_classes
    from genlab.models import size_estimate

    sizes = {key: OmegaConf.select(cfg, key) for key in MEMORY_SIZES if OmegaConf.select(cfg, key) is not None}

    def need(sized: dict[str, int]) -> int:
        run = OmegaConf.to_container(cfg, resolve=True)
        for key, value in sized.items():
            group, name = key.split(".")
            run[group][name] = value
        trainer = run["trainer"]
        parameters, copies, activation = size_estimate(run["model"], run["optimizer"], image_shape(run["dataset"]),
                                                       num_classes(run["dataset"]), max(trainer["batch_size"], trainer["grid_size"]))
        return BYTES_PER_VALUE * (VALUES_PER_PARAMETER * parameters + copies + VALUES_PER_ACTIVATION * activation)

    subject = f"model={cfg.model.name} on dataset.image_size={cfg.dataset.image_size} images"
    try:
        require_fits(subject, sizes, need, memory_budget(cfg.hardware.device))
    except (RuntimeError, ValueError, OverflowError) as e:
        at = ", ".join(f"{key}={value}" for key, value in sizes.items())
        raise ConfigError(f"the networks of model={cfg.model.name} cannot be built at {at} "
                          f"({str(e).splitlines()[0][:120]}): use smaller sizes") from None


def validate_hardware(cfg: DictConfig) -> None:
    device = cfg.hardware.device
    if not (isinstance(device, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", device)):
        raise ConfigError(f"hardware.device={device!r} is not allowed: choose auto, cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        import torch

        visible = torch.cuda.device_count()
        if int(device.partition(":")[2] or 0) >= visible:
            raise ConfigError(f"hardware.device={device} is not available: {visible} CUDA GPUs are visible; use hardware=cpu or hardware=auto")
    require(cfg, "hardware.precision", "str", choices=("auto", "fp32", "bf16", "fp16"))
    require(cfg, "hardware.layout", "str", choices=("auto", "contiguous", "channels_last"))
    if cfg.hardware.threads is not None:
        require(cfg, "hardware.threads", "int", low=1)
    for key in ("compile", "distributed"):
        if not isinstance(cfg.hardware[key], bool):
            raise ConfigError(f"hardware.{key}={cfg.hardware[key]!r} is not allowed: expected true or false")
    if cfg.hardware.distributed and ":" in device:
        raise ConfigError(f"hardware.device={device} is not allowed with hardware.distributed=true: each process "
                          "takes the GPU of its local rank; use hardware.device=cuda (or auto)")


def validate_summary_plot(cfg: DictConfig) -> None:
    """A family's declared sweep plot (genlab/sweep/plots.py): its name (a file name) and the two
    metrics it draws, checked now rather than when the sweep ends."""
    if OmegaConf.select(cfg, "summary_plot") is None:
        return
    for key in ("name", "x", "y"):
        value = OmegaConf.select(cfg, f"summary_plot.{key}")
        if not (isinstance(value, str) and re.fullmatch(r"[\w.-]+", value)):
            raise ConfigError(f"summary_plot.{key}={value!r} is not allowed: expected a name of letters, digits, "
                              "'_', '.' or '-' (name: the plot's file, x and y: metrics the model reports)")


def validate_eval(cfg: DictConfig, prefix: str, metrics_key: str) -> None:
    """Raise ConfigError for the first bad evaluation setting: the keys of configs/evaluation/ at
    `prefix` ("" in `genlab eval`, "eval." in `genlab train`) and the metric list at `metrics_key`."""
    from genlab.metrics.registry import NAMES as METRICS

    metrics = OmegaConf.select(cfg, metrics_key)
    names = OmegaConf.to_container(metrics) if OmegaConf.is_list(metrics) else metrics
    if names != "auto":
        empty_ok = metrics_key != "metrics"  # eval.at_end=[] turns the end-of-training evaluation off
        if not isinstance(names, list) or any(m not in METRICS for m in names) or len(set(names)) != len(names) \
                or not (names or empty_ok):
            raise ConfigError(f"{metrics_key}={names!r} is not allowed: expected auto or a list of different metrics "
                              f"from {', '.join(METRICS)}, e.g. {metrics_key}=[fid,kid]")
    require(cfg, f"{prefix}n", "int", low=10)
    for key in ("k", "batch_size", "kid_subsets", "classifier.width", "classifier.features", "classifier.steps",
                "classifier.batch_size", "inception.batch_size"):
        require(cfg, f"{prefix}{key}", "int", low=1)
    for key in ("seed", "classifier.seed"):
        require(cfg, f"{prefix}{key}", "int", low=0)
    require(cfg, f"{prefix}kid_subset_size", "int", low=2)
    require(cfg, f"{prefix}classifier.lr", "number", low=0, low_open=True)
    dropout = require(cfg, f"{prefix}classifier.dropout", "number", low=0, high=1)
    if dropout == 1:
        raise ConfigError(f"{prefix}classifier.dropout=1 is not allowed: expected a number in [0, 1)")
    data_root = OmegaConf.select(cfg, f"{prefix}data_root")
    if data_root is not None and not (isinstance(data_root, str) and data_root.strip()):
        raise ConfigError(f"{prefix}data_root={data_root!r} is not allowed: expected null or a folder path")
    cache_dir = OmegaConf.select(cfg, f"{prefix}cache_dir")
    if not (isinstance(cache_dir, str) and cache_dir.strip()):
        raise ConfigError(f"{prefix}cache_dir={cache_dir!r} is not allowed: expected a folder path")
    weights = OmegaConf.select(cfg, f"{prefix}inception.weights")
    if weights is not None and not (isinstance(weights, str) and weights.strip()):
        raise ConfigError(f"{prefix}inception.weights={weights!r} is not allowed: expected null or a file path")
