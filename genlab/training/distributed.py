"""Data-parallel training over several processes (hardware=ddp): torchrun, or a Slurm job's tasks.

PyTorch's DistributedDataParallel (Li et al. 2020, "PyTorch Distributed: Experiences on
Accelerating Data Parallel Training"), one process ("rank") per GPU, or per CPU process with gloo.

Batches. trainer.batch_size B is the global batch. Every rank builds the same ShuffledBatches order
and takes rows [r·B/W, (r+1)·B/W) of each batch (W ranks, B divisible by W), so together the ranks
see exactly the single-process batch. Each rank's loss is the mean over its B/W images, and DDP
averages the gradients over the ranks during backward: the mean of W shard means is the mean over
all B images, so the update equals the single-process one up to float summation order.

Randomness. Every rank seeds torch with the run seed and, for each batch, draws the noise of the
whole global batch and keeps its own rows (`Batch.noise` in genlab.data.batches; likewise the dynamic binarization of a
batch in genlab.data.batches). Every rank's RNG then stays in step with a single-process run: the
noise of image i is the same as there, and the RNG state a checkpoint stores (rank 0's) is every
rank's, so a resumed run continues exactly on every rank.

Metrics and decisions. The loop averages each step's per-image scalars over the ranks (one
all-reduce of a few numbers, `mean_over_ranks`) before they enter its window: logs show global-batch
means, and every rank sees the same NaN at the same step, so on_nonfinite stops or skips on every
rank alike. A SIGINT/SIGTERM/SIGHUP seen by any rank is shared through a CPU all-reduce that
overlaps the next step (`StopVote`): every rank stops after the same step, and rank 0 writes the
checkpoint.

BatchNorm (the GANs') normalises with the statistics of each rank's B/W images, not of all B, so a
GAN's losses differ from a single-process run's (torch.nn.SyncBatchNorm would share the statistics;
it runs on GPUs only). Running statistics are not synchronised (DDP's broadcast_buffers=False):
they only serve evaluation-mode sampling, and rank 0's are saved.

Only rank 0 writes (TensorBoard events, samples, checkpoints, result records; under torchrun also
Hydra's .hydra/ files, which Slurm tasks each write alike), so only rank 0 holds the run
directory's lock (genlab/training/locks.py); the other ranks log warnings and errors only. Under torchrun,
rank 0 picks the run directory (its clock) for every rank.
"""

from __future__ import annotations

import atexit
import os
from datetime import timedelta

import torch

from genlab.data.batches import World
from genlab.errors import UserError

TIMEOUT = timedelta(minutes=30)  # a collective that waits longer than this means a rank died


_world = World()
_cpu_group = None  # gloo group for host-side collectives (the default group when it is gloo)


def world() -> World:
    return _world


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ


def planned_size(hardware) -> int:
    """The number of ranks of a run with this hardware section (known before the process group starts)."""
    if not hardware["distributed"]:
        return 1
    return int(os.environ.get("WORLD_SIZE") or os.environ.get("SLURM_NTASKS") or 1)


def planned_rank(hardware) -> int:
    """This process's rank in a run with this hardware section (known before the process group starts)."""
    if not hardware["distributed"]:
        return 0
    return int(os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or 0)


def _export_slurm_env() -> None:
    """In a Slurm task started by submitit (hydra/launcher=slurm with tasks_per_node), set torchrun's
    variables from Slurm's."""
    try:
        from submitit.helpers import TorchDistributedEnvironment
    except ImportError:
        raise UserError("hardware=ddp in a Slurm task needs submitit: pip install 'genlab[slurm]'") from None
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def init(device_type: str) -> World:
    """Start (once) the process group of a run with hardware=ddp, from torchrun's environment
    variables (or a Slurm task's); NCCL for device_type "cuda", gloo for "cpu"."""
    global _world, _cpu_group
    import torch.distributed as dist

    if dist.is_initialized():
        return _world
    if not launched_by_torchrun():
        if int(os.environ.get("SLURM_NTASKS", 1)) > 1:
            _export_slurm_env()
        else:
            raise UserError("hardware=ddp runs in the processes torchrun starts: "
                            "torchrun --nproc_per_node=N -m genlab.cli train hardware=ddp …")
    rank, size, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl", timeout=TIMEOUT, device_id=torch.device("cuda", local_rank))
        _cpu_group = dist.new_group(backend="gloo", timeout=TIMEOUT)
    else:
        dist.init_process_group("gloo", timeout=TIMEOUT)
        _cpu_group = dist.group.WORLD
    atexit.register(dist.destroy_process_group)
    _world = World(rank, size, local_rank)
    return _world


def broadcast(value):
    """Rank 0's `value` (any picklable object) on every rank."""
    if _world.size == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0, group=_cpu_group)
    return box[0]


def all_true(flag: bool) -> bool:
    """Whether `flag` holds on every rank (a blocking CPU all-reduce; for rare decisions)."""
    if _world.size == 1:
        return flag
    import torch.distributed as dist

    value = torch.tensor([int(flag)])
    dist.all_reduce(value, op=dist.ReduceOp.MIN, group=_cpu_group)
    return bool(value.item())


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """The mean over ranks of a float tensor on the training device (queued on the device's
    stream under NCCL: no host sync)."""
    if _world.size == 1:
        return values
    import torch.distributed as dist

    dist.all_reduce(values)
    return values.div_(_world.size)


class StopVote:
    """Whether any rank was asked to stop, agreed by all ranks one step after the request.

    Called once per step by every rank with its own `stop.received`; returns the agreement on the
    previous step's requests (a CPU all-reduce started then, finished while this step ran)."""

    def __init__(self):
        self._flag, self._work = torch.zeros(1, dtype=torch.int32), None

    def __call__(self, requested: bool) -> bool:
        if _world.size == 1:
            return requested
        import torch.distributed as dist

        agreed = self.close()
        self._flag.fill_(int(requested))
        self._work = dist.all_reduce(self._flag, op=dist.ReduceOp.MAX, group=_cpu_group, async_op=True)
        return agreed

    def close(self) -> bool:
        """Wait for the vote in flight; its result."""
        if self._work is None:
            return False
        self._work.wait()
        self._work = None
        return bool(self._flag.item())


class _DistributedNet(torch.nn.parallel.DistributedDataParallel):
    """DDP for one of a model's nets, such that the model does not notice it:

    - state_dict / load_state_dict are the wrapped module's, so checkpoints are the same as a
      single-process run's (and resume in either);
    - a forward through which no gradient can flow to the net (grad mode off, or its parameters
      frozen, as a GAN's D during G's update) runs the module itself: DDP would otherwise wait, at
      the next forward, for gradients that never come.
    """

    def forward(self, *args, **kwargs):
        if not torch.is_grad_enabled() or not any(p.requires_grad for p in self.module.parameters()):
            return self.module(*args, **kwargs)
        return super().forward(*args, **kwargs)

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        return self.module.load_state_dict(*args, **kwargs)


def wrap_nets(model, device: torch.device) -> None:
    """Replace each of the model's trainable nets (its `nets` attribute names) by a DDP wrapper;
    DDP's constructor also copies rank 0's weights and buffers to every rank."""
    import inspect

    # Buffers are copied once, at construction, not before every forward (torch renamed the option).
    renamed = "forward_sync_buffers" in inspect.signature(_DistributedNet.__init__).parameters
    options = {"forward_sync_buffers" if renamed else "broadcast_buffers": False}
    for name in model.nets:
        net = getattr(model, name)
        setattr(model, name, _DistributedNet(net, device_ids=[device.index] if device.type == "cuda" else None, **options))
