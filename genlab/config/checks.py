"""One-line checks of config values, shared by genlab/config/validate.py and each model family's `validate`,
and the one feasibility rule for the sizes a user types (`require_fits`)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf

from genlab.errors import UserError


class ConfigError(UserError):
    """A bad config value; the message is one line that names the key, the value and the fix."""


def is_number(value) -> bool:
    """An int or a finite float (nan and ±inf are not numbers a config may hold)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def require(cfg: DictConfig, key: str, kind: str, *, low=None, high=None, choices=None, low_open=False):
    """The value at `key`; ConfigError unless it is one of `choices`, or an int / finite number
    (kind "int" / "number") within [low, high] (low excluded with low_open)."""
    value = OmegaConf.select(cfg, key, throw_on_missing=False)
    if choices is not None:
        if value not in choices:
            raise ConfigError(f"{key}={value!r} is not allowed: choose one of {', '.join(map(str, choices))}")
        return value
    nonfinite = isinstance(value, float) and not math.isfinite(value)
    wanted = "an integer" if kind == "int" else "a finite number" if nonfinite else "a number"
    ok_type = isinstance(value, int) and not isinstance(value, bool) if kind == "int" else is_number(value)
    bound = " ".join(filter(None, [
        f"{'>' if low_open else '>='} {low}" if low is not None else "",
        "and" if low is not None and high is not None else "",
        f"<= {high}" if high is not None else "",
    ]))
    if not ok_type or (low is not None and (value <= low if low_open else value < low)) or (high is not None and value > high):
        raise ConfigError(f"{key}={value!r} is not allowed: expected {wanted}{' ' + bound if bound else ''}")
    return value


def device_memory_bytes(device: str = "cpu") -> int:
    """Total memory of a device: the GPU's, or the machine's RAM."""
    import torch

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        index = int(device.partition(":")[2] or 0)
        return torch.cuda.get_device_properties(index).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_budget(device: str = "cpu") -> tuple[int, str]:
    """(bytes, the words for them) of a device's memory, for `require_fits`."""
    have = device_memory_bytes(device)
    return have, f"the {have / 2**30:,.1f} GiB of {device if device not in ('auto', 'cpu') else 'this machine'}"


def require_fits(subject: str, sizes: dict[str, int], need: Callable[[dict[str, int]], float],
                 budget: tuple[float, str], unit: str = "bytes", prefix: str = "") -> None:
    """The feasibility rule for sizes a user types: ConfigError unless `need(sizes)` (bytes, or
    another unit of work) is within the budget's amount. The one line names the sizes (at `prefix`
    in the config, e.g. "eval."), the need, the budget and, for each size, the largest value that
    fits with the others as they are (found by bisection: `need` must not fall as a size grows), so
    that a run that cannot finish is refused before it starts rather than when it runs out."""
    amount, words = budget
    total = need(sizes)
    if total <= amount:
        return
    fits = []
    for key, value in sizes.items():
        low, high = 0, value  # need(sizes with key=low) fits (0: nothing to hold), key=high does not
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if need({**sizes, key: middle}) <= amount else (low, middle)
        if low:
            fits.append(f"{prefix}{key}<={low}")
    shown = f"{total / 2**30:,.1f} GiB" if unit == "bytes" else f"{total:.3g} {unit}"
    at = ", ".join(f"{prefix}{key}={value}" for key, value in sizes.items())
    raise ConfigError(f"{subject} at {at} needs at least {shown}, more than {words}: "
                      + (f"pass {' or '.join(fits)}" if fits else "use smaller sizes"))
