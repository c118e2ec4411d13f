"""Run under `torchrun --nproc_per_node=2` by test_distributed.py: genlab's CLI in every rank.

1. a VAE for 3 steps into Hydra's default run directory (outputs/<date>/<time>, rank 0's time),
2. the same run resumed to 6 steps (every rank loads rank 0's checkpoint),
3. a cGAN for 4 steps (BatchNorm, R1's double backward, D frozen during G's update),
then prints, on rank 0, whether every rank ended each training with the same weights.
Arguments: the overrides of the tiny runs.
"""

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

import genlab.training.loop as loop
from genlab.cli import main

models = []
fit = loop.fit


def keep_model(model, *args, **kwargs):
    models.append(model)
    return fit(model, *args, **kwargs)


loop.fit = keep_model  # train() imports fit when it is called
tiny = sys.argv[1:]
main(["train", "hardware=ddp", "hardware.device=cpu", *tiny, "trainer.max_steps=3"])
box = [str(next(Path("outputs").glob("*/*"))) if dist.get_rank() == 0 else None]
dist.broadcast_object_list(box)
main(["train", f"resume={box[0]}", "trainer.max_steps=6"])
main(["train", "model=cgan", "hardware=ddp", "hardware.device=cpu", *tiny, "trainer.max_steps=4", "hydra.run.dir=cgan"])

in_step = []
for model in models:
    weights = torch.cat([p.detach().flatten() for name in model.nets for p in getattr(model, name).parameters()])
    every_rank = [torch.empty_like(weights) for _ in range(dist.get_world_size())]
    dist.all_gather(every_rank, weights)
    in_step.append(all(torch.equal(w, every_rank[0]) for w in every_rank))
if dist.get_rank() == 0:
    print("ranks in step:", json.dumps(in_step))
models.clear()  # free the DDP wrappers while the process group is alive, not during interpreter shutdown
# Leave without interpreter shutdown: under load, gloo's threads were sometimes still being torn down
# by C++ destructors there ("terminate called without an active exception", SIGABRT) after every
# check above had passed; what this test measures is done by now.
dist.barrier()
sys.stdout.flush()
os._exit(0)
