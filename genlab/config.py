"""Checking a composed config before any work: one-line errors that name the key, value and fix.

`check_overrides` composes the run(s) a command line asks for with Hydra's compose API (every job
of a sweep), so an unknown key, an unknown group option or a bad value stops the command before
Hydra creates a run directory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from genlab.errors import UserError
from genlab.training.checkpoint import refuse_overwrite


class ConfigError(UserError):
    """A bad config value; the message is one line that names the key, the value and the fix."""


def config_dir() -> str:
    """configs/ inside the installed package, or the repository's top-level configs/."""
    packaged = Path(__file__).parent / "configs"
    return str(packaged if packaged.is_dir() else Path(__file__).parent.parent / "configs")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _require(cfg: DictConfig, key: str, kind: str, *, low=None, high=None, choices=None, low_open=False):
    value = OmegaConf.select(cfg, key, throw_on_missing=False)
    if choices is not None:
        if value not in choices:
            raise ConfigError(f"{key}={value!r} is not allowed: choose one of {', '.join(map(str, choices))}")
        return value
    wanted = "an integer" if kind == "int" else "a number"
    ok_type = isinstance(value, int) and not isinstance(value, bool) if kind == "int" else _is_number(value)
    bound = " ".join(filter(None, [
        f"{'>' if low_open else '>='} {low}" if low is not None else "",
        "and" if low is not None and high is not None else "",
        f"<= {high}" if high is not None else "",
    ]))
    if not ok_type or (low is not None and (value <= low if low_open else value < low)) or (high is not None and value > high):
        raise ConfigError(f"{key}={value!r} is not allowed: expected {wanted}{' ' + bound if bound else ''}")
    return value


def validate_train(cfg: DictConfig) -> None:
    """Raise ConfigError for the first bad value of a composed `train` config."""
    _require(cfg, "seed", "int", low=0)
    _require(cfg, "beta", "number", low=0)
    _require(cfg, "noise_dim", "int", low=1)
    for key in ("max_steps", "batch_size", "log_every", "sample_every", "ckpt_every", "grid_size"):
        _require(cfg, f"trainer.{key}", "int", low=1)
    _require(cfg, "trainer.final_images", "int", low=2)  # a variance over images needs two
    _require(cfg, "trainer.keep_last", "int", low=0)
    _require(cfg, "trainer.on_nonfinite", "str", choices=("stop", "skip"))
    if cfg.resume is not None and not (isinstance(cfg.resume, str) and cfg.resume):
        raise ConfigError(f"resume={cfg.resume!r} is not allowed: pass a run directory or a checkpoint file")
    if not isinstance(cfg.force_resume, bool):
        raise ConfigError(f"force_resume={cfg.force_resume!r} is not allowed: expected true or false")
    if cfg.force_resume and cfg.resume is None:
        raise ConfigError("force_resume=true needs resume=<run dir or checkpoint>: it accepts config changes when resuming")
    _require(cfg, "model.width", "int", low=1)
    _require(cfg, "model.lr", "number", low=0, low_open=True)
    if cfg.model.name == "vae":
        _require(cfg, "model.likelihood", "str", choices=("bernoulli", "gaussian"))
        _require(cfg, "model.gaussian_std", "number", low=0, low_open=True)
    if cfg.model.name in ("gan", "cgan"):
        _require(cfg, "model.loss", "str", choices=("nonsaturating", "hinge"))
        _require(cfg, "model.d_steps", "int", low=1)
        _require(cfg, "model.r1_gamma", "number", low=0)
        _require(cfg, "model.mode_seeking", "number", low=0)
        _require(cfg, "trainer.batch_size", "int", low=2)  # the generator's batch is drawn in pairs
        if _require(cfg, "model.ema_decay", "number", low=0, high=1) == 1:
            raise ConfigError("model.ema_decay=1 is not allowed: expected a number >= 0 and < 1 "
                              "(1 would freeze the EMA generator at its initial weights; 0 turns the EMA off)")
    if cfg.model.name == "cgan":
        _require(cfg, "model.embed_dim", "int", low=1)
        _require(cfg, "model.class_loss", "number", low=0)
    _require(cfg, "optimizer.lr", "number", low=0, low_open=True)
    _require(cfg, "optimizer.weight_decay", "number", low=0)
    if "betas" in cfg.optimizer:
        betas = cfg.optimizer.betas
        if not OmegaConf.is_list(betas) or len(betas) != 2 or not all(_is_number(b) and 0 <= b < 1 for b in betas):
            raise ConfigError(f"optimizer.betas={OmegaConf.to_container(betas) if OmegaConf.is_list(betas) else betas!r} is not allowed: expected two numbers in [0, 1), e.g. [0.9,0.999]")
    if "momentum" in cfg.optimizer:
        _require(cfg, "optimizer.momentum", "number", low=0, high=1)
    validate_hardware(cfg)
    if cfg.hardware.precision == "fp16" and cfg.model.name in ("gan", "cgan") and cfg.model.r1_gamma > 0:
        raise ConfigError(f"hardware.precision=fp16 is not allowed with model.r1_gamma={cfg.model.r1_gamma}: R1's double "
                          "backward through BatchNorm overflows fp16 (NaN gradients at every step); use "
                          "hardware.precision=bf16 or fp32, or model.r1_gamma=0")
    validate_eval(cfg, "eval.", "eval.at_end")
    _validate_dataset(cfg)
    if cfg.model.name == "cgan":
        from genlab.data import num_classes

        classes = num_classes(cfg.dataset)
        if classes < 2:
            raise ConfigError(f"model=cgan needs a dataset with at least 2 classes, but dataset={cfg.dataset.name} "
                              f"has {classes}: use model=gan")


def validate_hardware(cfg: DictConfig) -> None:
    device = cfg.hardware.device
    if not (isinstance(device, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", device)):
        raise ConfigError(f"hardware.device={device!r} is not allowed: choose auto, cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        import torch

        visible = torch.cuda.device_count()
        if int(device.partition(":")[2] or 0) >= visible:
            raise ConfigError(f"hardware.device={device} is not available: {visible} CUDA GPUs are visible; use hardware=cpu or hardware=auto")
    _require(cfg, "hardware.precision", "str", choices=("fp32", "bf16", "fp16"))
    if cfg.hardware.threads is not None:
        _require(cfg, "hardware.threads", "int", low=1)
    for key in ("compile", "distributed"):
        if not isinstance(cfg.hardware[key], bool):
            raise ConfigError(f"hardware.{key}={cfg.hardware[key]!r} is not allowed: expected true or false")
    if cfg.hardware.distributed and ":" in device:
        raise ConfigError(f"hardware.device={device} is not allowed with hardware.distributed=true: each process "
                          "takes the GPU of its local rank; use hardware.device=cuda (or auto)")


METRICS = ("nll", "fid", "kid", "pr", "accuracy", "mig", "inception_fid")


def validate_eval(cfg: DictConfig, prefix: str, metrics_key: str) -> None:
    """Raise ConfigError for the first bad evaluation setting: the keys of configs/evaluation/ at
    `prefix` ("" in `genlab eval`, "eval." in `genlab train`) and the metric list at `metrics_key`."""
    metrics = OmegaConf.select(cfg, metrics_key)
    names = OmegaConf.to_container(metrics) if OmegaConf.is_list(metrics) else metrics
    if names != "auto":
        empty_ok = metrics_key != "metrics"  # eval.at_end=[] turns the end-of-training evaluation off
        if not isinstance(names, list) or any(m not in METRICS for m in names) or len(set(names)) != len(names) \
                or not (names or empty_ok):
            raise ConfigError(f"{metrics_key}={names!r} is not allowed: expected auto or a list of different metrics "
                              f"from {', '.join(METRICS)}, e.g. {metrics_key}=[fid,kid]")
    _require(cfg, f"{prefix}n", "int", low=10)
    for key in ("k", "batch_size", "kid_subsets", "classifier.width", "classifier.features", "classifier.steps",
                "classifier.batch_size", "inception.batch_size"):
        _require(cfg, f"{prefix}{key}", "int", low=1)
    for key in ("seed", "classifier.seed"):
        _require(cfg, f"{prefix}{key}", "int", low=0)
    _require(cfg, f"{prefix}kid_subset_size", "int", low=2)
    _require(cfg, f"{prefix}classifier.lr", "number", low=0, low_open=True)
    dropout = _require(cfg, f"{prefix}classifier.dropout", "number", low=0, high=1)
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


GRAYSCALE_DATASETS = ("mnist", "fashion_mnist")
SPLITS = {"mnist": ("train", "test"), "fashion_mnist": ("train", "test"), "celeba": ("train", "valid", "test")}


def _validate_dataset(cfg: DictConfig) -> None:
    name = cfg.dataset.name
    size = _require(cfg, "dataset.image_size", "int", low=1)
    binarize = _require(cfg, "dataset.binarize", "str", choices=("none", "dynamic", "static"))
    if binarize != "none" and name not in GRAYSCALE_DATASETS:
        raise ConfigError(f"dataset.binarize={binarize} is not allowed for {name}: binarization is for the grayscale "
                          f"datasets ({', '.join(GRAYSCALE_DATASETS)}); use dataset.binarize=none")
    if name == "shapes":
        if size not in (8, 16, 32, 64):
            raise ConfigError(f"dataset.image_size={size!r} is not allowed for shapes: choose 8, 16, 32 or 64")
        return
    for key in ("root",) + (("cache_dir",) if name == "celeba" else ()):
        value = cfg.dataset[key]
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"dataset.{key}={value!r} is not allowed: expected a folder path")
    if not isinstance(cfg.dataset.download, bool):
        raise ConfigError(f"dataset.download={cfg.dataset.download!r} is not allowed: expected true or false")
    _require(cfg, "dataset.split", "str", choices=SPLITS[name])
    largest = 64  # for mnist: more would only upsample the 28 px originals
    if name == "celeba":
        from genlab.data.celeba import ATTRIBUTES, NATIVE_WIDTH

        largest = _require(cfg, "dataset.crop", "int", low=8, high=NATIVE_WIDTH)
        attributes = cfg.dataset.attributes
        names = OmegaConf.to_container(attributes) if OmegaConf.is_list(attributes) else attributes
        # 2^8 = 256 classes already leave most classes with few of CelebA's 162,770 training images.
        if not isinstance(names, list) or not all(isinstance(a, str) for a in names) or len(set(names)) != len(names) \
                or len(names) > 8:
            raise ConfigError(f"dataset.attributes={names!r} is not allowed: expected a list of at most 8 "
                              "different CelebA attributes, e.g. [Male,Smiling] (2^k classes)")
        unknown = [a for a in names if a not in ATTRIBUTES]
        if unknown:
            raise ConfigError(f"dataset.attributes has {unknown[0]!r}, not a CelebA attribute: choose from "
                              f"{', '.join(ATTRIBUTES)}")
    if size < 8 or size % 4 or size > largest:
        bound = "at most 64" if name in GRAYSCALE_DATASETS else f"at most dataset.crop={largest}"
        raise ConfigError(f"dataset.image_size={size!r} is not allowed for {name}: expected a multiple of 4, "
                          f"at least 8 and {bound} (the conv nets halve the image at least twice)")


def only_inspects(parsed) -> bool:
    """Whether Hydra's parsed command line only prints something (help, config, completion)."""
    return bool(parsed.help or parsed.hydra_help or parsed.cfg or parsed.shell_completion or parsed.info)


def _one_line(error: Exception, config_name: str) -> str:
    """Hydra's composition errors, cut down to one line with the fix."""
    from hydra.errors import MissingConfigException

    text = str(error)
    if isinstance(error, MissingConfigException) and error.options:
        group = error.missing_cfg_file.rsplit("/", 1)[0] if error.missing_cfg_file else "?"
        wanted = re.search(r"Could not find '([^']+)'", text)
        name = wanted.group(1) if wanted else error.missing_cfg_file
        return f"{name.replace('/', '=', 1)} is not an option: choose {group}= one of {', '.join(error.options)}"
    cause = error.__cause__
    if "is not in struct" in text or (cause is not None and "not in struct" in str(cause)):
        key = re.search(r"override '([^']+)'", text)
        return f"unknown key {key.group(1) if key else ''!r}: check the spelling (see `genlab {config_name} --cfg job` for every key)"
    return " ".join(text.split())


def compose_jobs(config_name: str, overrides: list[str], multirun: bool) -> list[DictConfig]:
    """Compose the config of every job the command line asks for; raise ConfigError on a bad one."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        if multirun:
            parsed = OverridesParser.create().parse_overrides(overrides)
            jobs = [job for chunk in BasicSweeper.split_arguments(parsed, None) for job in chunk]
        else:
            jobs = [overrides]
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return [compose(config_name, overrides=list(job)) for job in jobs]
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(_one_line(e, config_name)) from None


def output_dir(config_name: str, overrides: list[str], multirun: bool) -> Path | None:
    """The run (or sweep) directory Hydra will create for this command line (its time now), or
    None when it depends on values known only at run time."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf.errors import OmegaConfBaseException

    key = "sweep.dir" if multirun else "run.dir"
    # The directory does not depend on a sweep's values: compose one job without them.
    fixed = [o.input_line for o in OverridesParser.create().parse_overrides(overrides) if not o.is_sweep_override()]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        hydra_cfg = compose(config_name, overrides=fixed, return_hydra_config=True).hydra
    try:
        return Path(OmegaConf.select(hydra_cfg, key))
    except OmegaConfBaseException:
        return None


def check_output_dir(config_name: str, overrides: list[str], multirun: bool, *, fresh: bool) -> None:
    """Raise a UserError when Hydra could not create the run (or sweep) directory, or when a fresh
    run would write over a run directory that already holds a checkpoint."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    path = output_dir(config_name, overrides, multirun)
    if path is None:  # set from values known only at run time: Hydra reports those
        return
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{key}={path} cannot be created: {existing} is not a directory; choose another {key}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={path} cannot be written: {existing} is read-only for this user; choose another {key}")
    if fresh and not multirun:
        refuse_overwrite(path, f"choose another {key}")
