"""Hardware settings shared by train and sample: device choice, CPU threads, and how the nets run.

On CUDA, cuDNN benchmarks the convolution algorithms for each new input shape once and keeps the
fastest (torch.backends.cudnn.benchmark): every training step has the same shapes, so this costs
a few steps and then nothing. It makes GPU runs non-deterministic; CPU runs stay exact.
hardware.compile=true compiles each trainable net with torch.compile (in place, so checkpoints keep
their keys); see the README's performance notes for when it pays.
"""

from __future__ import annotations

import torch


def device_name(hardware: dict) -> str:
    """hardware.device with 'auto' resolved: 'cuda' when a GPU is visible, else 'cpu'."""
    name = hardware["device"]
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return name


def setup_device(hardware: dict) -> torch.device:
    """The torch device named by hardware.device ('auto' = the GPU when there is one). Under
    hardware=ddp it starts the process group first, and on CUDA picks the local rank's GPU."""
    if hardware["threads"]:
        torch.set_num_threads(hardware["threads"])
    name = device_name(hardware)
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"hardware.device={hardware['device']} but no CUDA GPU is visible; use hardware=cpu")
    if name.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    if hardware["distributed"]:
        from genlab.distributed import init

        world = init(torch.device(name).type)
        if name.startswith("cuda"):  # one GPU per process
            name = f"cuda:{world.local_rank}"
    return torch.device(name)


def prepare_nets(model, hardware: dict, device: torch.device) -> None:
    """Compile the model's trainable nets (hardware.compile) and, under hardware=ddp, wrap them in
    DistributedDataParallel (after setup_device started the process group)."""
    if hardware["compile"]:
        for name in model.nets:
            getattr(model, name).compile()
    if hardware["distributed"]:
        from genlab.distributed import wrap_nets

        wrap_nets(model, device)
