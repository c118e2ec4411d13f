"""Continuing a run: the config it continues with, and which changes a resume accepts.

`genlab train resume=PATH [overrides]` composes the run again from the overrides stored in its
checkpoint followed by the new ones (a key given again replaces the stored one), and continues in
the run's own directory. The result is compared with the checkpoint's resolved config, key by key.
A change that can alter the trained weights (model, dataset, optimizer, β, batch size, seed,
device, precision, the number of hardware=ddp processes, …) is refused with every such key and
both of its values, unless force_resume=true: the run then continues and records each change
(TensorBoard text `resume` at the resume step, and resumes.yaml in the run directory). Precision is
compared as the run trained (hardware.precision=auto resolved where it started), and auto continues
with it on any machine. The keys in FREE may change on any resume:
they set how long the run goes and what it writes, not the weights it computes (a different
hardware.threads or hardware.compile may still change the order of float sums, so that
continuation is close to, not bit-identical with, an uninterrupted run), and so may every key of
FREE_SECTIONS. So may where the dataset's files lie and whether to fetch them (dataset.root,
dataset.download, dataset.cache_dir: a run moved to another machine, or GENLAB_DATA_ROOT set
differently, finds the same images elsewhere; they are resolved paths in the checkpoint). Every
change is recorded the same way.
"""

from __future__ import annotations

from pathlib import Path

from genlab.config.checks import ConfigError
from genlab.config.overrides import hydra_value, parse_overrides

# The config keys that only say where to continue from; a checkpoint does not store them.
RESUME_KEYS = ("resume", "force_resume")
FREE = ("trainer.max_steps", "trainer.log_every", "trainer.sample_every", "trainer.ckpt_every",
        "trainer.keep_last", "trainer.grid_size", "trainer.on_nonfinite", "hardware.threads", "hardware.compile",
        "dataset.root", "dataset.download", "dataset.cache_dir")
# Sections whose keys may all change: eval.* says what to measure at the end, summary_plot.* what a
# sweep's summary draws (genlab/sweep/plots.py; absent from checkpoints that predate it), not how to train.
FREE_SECTIONS = ("eval.", "summary_plot.")
ABSENT = "(absent)"  # the value shown for a key one of the two configs lacks
DEVICE_IN_USE = "device in use"  # hardware.device resolved (auto → cuda or cpu) on this machine
PROCESSES = "processes"  # ranks of a hardware=ddp run (1 otherwise): a GAN's BatchNorm sees B / ranks images


def resume_target(overrides: list[str]) -> str | None:
    """The value of a `resume=` override, if the command line has one."""
    given = [o for o in parse_overrides(overrides) if o.key_or_group == "resume"]
    if not given or given[-1].value() is None:
        return None
    if given[-1].is_sweep_override():
        raise ConfigError(f"{given[-1].input_line} reads as a list of values (the path has a comma): quote it, e.g. \"resume='<path>'\"")
    return str(given[-1].value())


def continued_overrides(stored: list[str], new: list[str], run_dir: Path) -> list[str]:
    """The stored overrides a resume keeps (those the command line does not set again), and the
    run's own directory unless the command line names another."""
    given = {o.key_or_group for o in parse_overrides(new)}
    kept = [o.input_line for o in parse_overrides(stored) if o.key_or_group not in given]
    if "hydra.run.dir" not in given:
        kept.append(f"hydra.run.dir={hydra_value(str(run_dir))}")
    return kept


def stored_overrides(overrides: list[str]) -> list[str]:
    """The overrides a checkpoint keeps: those of the task, without where it resumed from."""
    return [o.input_line for o in parse_overrides(overrides) if o.key_or_group not in RESUME_KEYS]


def run_config(plain: dict) -> dict:
    """The resolved config a checkpoint stores."""
    return {k: v for k, v in plain.items() if k not in RESUME_KEYS}


def _flat(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(saved: dict, current: dict) -> dict[str, tuple]:
    """Every dotted key whose value differs: key → (saved value, current value), ABSENT where a
    config lacks the key."""
    before, after = _flat(saved), _flat(run_config(current))
    changes = {k: (before.get(k, ABSENT), after.get(k, ABSENT)) for k in sorted(before.keys() | after.keys())}
    return {k: (old, new) for k, (old, new) in changes.items() if old != new}


def describe(changes: dict[str, tuple]) -> str:
    return ", ".join(f"{key} {old} → {new}" for key, (old, new) in changes.items())


def check_resume(state: dict, path: Path, current: dict) -> dict[str, tuple]:
    """The config changes of continuing checkpoint `state` (from `path`) with the plain config
    `current`; raise ConfigError when one would alter training without force_resume, or when
    trainer.max_steps leaves nothing to do."""
    from genlab.training.distributed import planned_size
    from genlab.training.runtime import device_name, trained_precision

    changes = config_changes(state["config"], current)
    # hardware.device=auto names different devices on different machines.
    device = device_name(current["hardware"])
    if state.get("device", device) != device:
        changes[DEVICE_IN_USE] = (state["device"], device)
    # Precision is compared as trained (hardware.precision=auto resolved where the run started), and
    # auto continues with it (runtime.resolve_precision).
    trained, precision = trained_precision(state), current["hardware"]["precision"]
    changes.pop("hardware.precision", None)
    if precision not in ("auto", trained):
        changes["hardware.precision"] = (trained, precision)
    processes = planned_size(current["hardware"])
    if state.get("processes", 1) != processes:
        changes[PROCESSES] = (state.get("processes", 1), processes)
    refused = {k: v for k, v in changes.items() if k not in FREE and not k.startswith(FREE_SECTIONS)}
    if refused and not current["force_resume"]:
        raise ConfigError(f"resuming {path} would change how it trains: {describe(refused)}; drop those overrides, "
                          "or add force_resume=true to continue with them (the change is recorded in the run)")
    max_steps, step = current["trainer"]["max_steps"], state["step"]
    if max_steps <= step:
        raise ConfigError(f"{path} is at step {step} and trainer.max_steps={max_steps}: nothing to resume; "
                          f"pass trainer.max_steps=N with N > {step} to train longer")
    return changes
