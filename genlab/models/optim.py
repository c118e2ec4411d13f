"""Optimizers from the plain `optimizer` config section."""

from __future__ import annotations

import torch


def make_optimizer(params, cfg: dict) -> torch.optim.Optimizer:
    """Adam / AdamW / SGD with the section's lr, betas or momentum, and weight decay."""
    name, lr, decay = cfg["name"], cfg["lr"], cfg["weight_decay"]
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(cfg["betas"]), weight_decay=decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=tuple(cfg["betas"]), weight_decay=decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg["momentum"], weight_decay=decay)
    raise ValueError(f"unknown optimizer {name!r}")
