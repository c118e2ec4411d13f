"""One-line checks of config values, shared by genlab/config.py and each model family's `validate`."""

from __future__ import annotations

import math

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
