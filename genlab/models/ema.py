"""Exponential moving average (EMA) of a network's weights, for sampling and evaluation.

Polyak & Juditsky 1992 averaging in its exponential form, as used for GAN generators (Karras et al.
2018, "Progressive Growing of GANs"; BigGAN) and for VAEs (Vahdat & Kautz 2020, NVAE). After each
update t = 0, 1, … of the trained network, every parameter and floating buffer (BatchNorm running
statistics) of the average moves

    θ_ema ← β_t·θ_ema + (1 − β_t)·θ,   β_t = min(decay, (1 + t)/(10 + t))

β_t's warm-up is TensorFlow's ExponentialMovingAverage(num_updates): short runs are not dominated by
the initial weights. decay = 0 makes the average a copy of the trained network after every update.
The average is always in eval mode, so each image it makes depends only on its own inputs.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from genlab.config.checks import ConfigError, require


def require_decay(cfg) -> None:
    """model.ema_decay in [0, 1), else a one-line ConfigError (cfg: the whole run's config)."""
    if require(cfg, "model.ema_decay", "number", low=0, high=1) == 1:
        raise ConfigError("model.ema_decay=1 is not allowed: expected a number >= 0 and < 1 "
                          "(1 would freeze the average at the initial weights; 0 turns the average off)")


def average_of(net: nn.Module) -> nn.Module:
    """A frozen copy of `net` (eval mode, no gradients) to hold its moving average."""
    return copy.deepcopy(net).train(False).requires_grad_(False)


@torch.no_grad()
def update_average(average: nn.Module, trained: nn.Module, decay: float, updates: int) -> None:
    """One EMA step of `average` towards `trained`, after `updates` earlier steps (formula above)."""
    keep = min(decay, (1 + updates) / (10 + updates))
    for ema, raw in zip(average.parameters(), trained.parameters()):
        ema.lerp_(raw, 1 - keep)
    for ema, raw in zip(average.buffers(), trained.buffers()):
        if ema.is_floating_point():
            ema.lerp_(raw, 1 - keep)
        else:  # BatchNorm's num_batches_tracked
            ema.copy_(raw)
