"""A fourth model family, defined in tests/families/ and found through hydra.searchpath, goes
through every public command without a change to genlab/: train, checkpoint, exact resume,
sample (its prior is image-shaped, C×H×W, so sampling must ask the model for its latents), and
`genlab eval metrics=[fid]`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from conftest import REPO, genlab
from test_resume import assert_same, training_state

FAMILIES = REPO / "tests" / "families"
ENV = {"PYTHONPATH": os.pathsep.join([str(REPO), str(FAMILIES)])}
RUN = [f"hydra.searchpath=[file://{FAMILIES / 'configs'}]", "model=image_noise", "dataset.image_size=16",
       "trainer.batch_size=8", "trainer.log_every=2", "trainer.sample_every=2", "trainer.ckpt_every=2",
       "trainer.grid_size=4", "hardware=cpu", "hardware.threads=1"]
EVAL = ["n=40", "batch_size=40", "classifier.steps=20", "classifier.width=4", "classifier.features=16",
        "classifier.batch_size=16"]


def test_a_family_outside_genlab_trains_resumes_samples_and_evaluates(tmp_path: Path):
    def run(*args):
        result = genlab(*args, cwd=tmp_path, env=ENV)
        assert result.returncode == 0, result.stderr
        return result

    run("train", *RUN, "trainer.max_steps=6", "hydra.run.dir=straight")
    run("train", *RUN, "trainer.max_steps=3", "hydra.run.dir=split")
    run("train", "resume=split", "trainer.max_steps=6")  # the search path comes back from the checkpoint
    assert_same(training_state(tmp_path / "straight/checkpoints/last.pt"), training_state(tmp_path / "split/checkpoints/last.pt"))

    out = tmp_path / "mid.npz"
    run("sample", "ckpt=straight", "n=6", "mode=interpolate", "steps=3", f"out={out}")
    import numpy as np

    images = np.load(out)["images"]
    assert images.shape == (6, 16, 16, 1) and len({im.tobytes() for im in images}) == 6

    run("eval", "ckpt=straight", "metrics=[fid]", f"cache_dir={tmp_path / 'cache'}", *EVAL)
    content = json.loads((tmp_path / "straight/checkpoints/eval.json").read_text())
    assert content["model"] == "image_noise" and content["metrics"]["fid"]["fid"] > 0

    refused = genlab("eval", "ckpt=straight", "metrics=[nll]", f"cache_dir={tmp_path / 'cache'}", *EVAL, cwd=tmp_path, env=ENV)
    assert refused.returncode != 0 and refused.stderr.strip().splitlines() == [
        "genlab eval: error: metric nll does not fit the checkpoint's ImageNoise (it fits fid, kid, pr): drop it from "
        "metrics= (metrics=auto picks what fits: fid, kid, pr)"]


def test_its_prior_is_the_models_own(tmp_path: Path):
    import sys

    sys.path.insert(0, str(FAMILIES))
    try:
        from image_noise import ImageNoise
    finally:
        sys.path.remove(str(FAMILIES))
    from genlab.sample import latents

    model = ImageNoise({"noise_channels": 2}, {"name": "adam", "lr": 1e-2, "betas": [0.9, 0.999], "weight_decay": 0.0},
                       (1, 16, 16), 0, torch.device("cpu"))
    z, labels, per_row = latents(model, "interpolate", 8, 4, None, torch.Generator().manual_seed(0))
    assert z.shape == (8, 2, 16, 16) and labels is None and per_row == 4
    ends = model.prior(4, torch.Generator().manual_seed(0))
    torch.testing.assert_close(z[0], ends[0]) and torch.testing.assert_close(z[3], ends[2])
