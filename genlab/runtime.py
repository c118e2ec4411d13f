"""Hardware settings shared by train and sample: device choice and CPU threads."""

from __future__ import annotations

import torch


def device_name(hardware: dict) -> str:
    """hardware.device with 'auto' resolved: 'cuda' when a GPU is visible, else 'cpu'."""
    name = hardware["device"]
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return name


def setup_device(hardware: dict) -> torch.device:
    """The torch device named by hardware.device ('auto' = the GPU when there is one)."""
    if hardware["threads"]:
        torch.set_num_threads(hardware["threads"])
    name = device_name(hardware)
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"hardware.device={hardware['device']} but no CUDA GPU is visible; use hardware=cpu")
    return torch.device(name)
