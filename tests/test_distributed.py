"""hardware=ddp: two gloo processes on the CPU train as one process does with the same global batch.

One torchrun launch (tests/ddp_worker.py) runs genlab's CLI in 2 ranks: a VAE trained for 3 steps,
then resumed to 6, and a cGAN for 4 steps. The VAE is checked against a single-process run in this
process: each rank trains on half of every global batch of 8 and DDP averages the gradients, with
the single-process run's noise (genlab/training/distributed.py), so the logged losses and the final weights
agree to float tolerance. The cGAN's BatchNorm normalises each rank's 4 images rather than all 8,
so its numbers differ from a single-process run by design; it is checked that every rank ends with
the same weights (gradients all-reduced through R1's double backward and past the frozen D).
Only rank 0 writes: one run directory, every events file from one process, each log line once.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import REPO, TINY
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from genlab.config.compose import compose_jobs
from genlab.errors import UserError
from genlab.commands.train import train
from genlab.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")

SMALL = [o for o in TINY if not o.startswith("hardware")]  # the ranks set hardware=ddp


def scalars(run_dir) -> dict:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]
            if tag.startswith("train/")}


def test_two_processes_train_as_one(tmp_path):
    # TMPDIR: torchrun leaves its torchelastic_* folders there.
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    launch = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             str(REPO / "tests" / "ddp_worker.py"), *SMALL], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert launch.returncode == 0, launch.stderr[-3000:]
    assert "ranks in step: [true, true, true]" in launch.stdout

    (ddp,) = (tmp_path / "outputs").glob("*/*")  # both ranks trained in rank 0's run directory
    single = tmp_path / "single"
    train(compose_jobs("train", [*TINY, "trainer.max_steps=6"], False)[0], single)
    expected, got = scalars(single), scalars(ddp)
    assert got.keys() == expected.keys()
    for tag, points in expected.items():
        assert {step: got[tag][step] for step in points} == pytest.approx(points, rel=1e-5, abs=1e-6), tag
    weights, reference = (load_checkpoint(run)["model"] for run in (ddp, single))
    for net in ("encoder", "decoder"):
        for name, value in reference[net].items():
            torch.testing.assert_close(weights[net][name], value, rtol=1e-4, atol=1e-6)

    for run in (ddp, tmp_path / "cgan"):
        writers = {re.match(r"events\.out\.tfevents\.\d+\.[^.]+\.(\d+)\.", p.name).group(1) for p in run.glob("events.*")}
        assert len(writers) == 1, f"{run}: events files from several processes"
        lines = (run / "train.log").read_text().splitlines()
        steps = [re.search(r"step \d+/\d+", line).group(0) for line in lines if re.search(r"step \d+/\d+", line)]
        assert len(steps) == len(set(steps)), f"{run}/train.log: a line from more than one rank"
    assert load_checkpoint(tmp_path / "cgan")["processes"] == 2


def test_the_ranks_shards_are_the_single_process_batch():
    # Dynamic binarization draws per pixel: the shards must get the draws of their rows of the whole batch.
    from genlab.data.batches import Batches, TensorData
    from genlab.data.batches import World

    data = TensorData(torch.randint(0, 256, (40, 1, 4, 4), dtype=torch.uint8), torch.arange(40), ("any",))
    cpu = torch.device("cpu")
    whole = Batches(data, 8, seed=1, device=cpu, dynamic_binarize=True)
    ranks = [Batches(data, 8, seed=1, device=cpu, dynamic_binarize=True, shard=World(rank, 2)) for rank in range(2)]
    for _ in range(7):  # 5 batches per epoch: crosses into a second epoch
        batch, shards = next(whole), [next(b) for b in ranks]
        assert torch.equal(torch.cat([s.images for s in shards]), batch.images)
        assert torch.equal(torch.cat([s.labels for s in shards]), batch.labels)
    with pytest.raises(UserError, match="trainer.batch_size=8 does not split evenly over 3 processes"):
        Batches(data, 8, seed=1, device=cpu, dynamic_binarize=False, shard=World(0, 3))
