"""Checkpoints written before the model contract (genlab at commit 909678c: no `model._target_`, the
VAE's `beta` at the top of every run's config) still load, sample the pixels they sampled, resume
and train on.

tests/fixtures/legacy/ holds a 2-step run of each family written by that genlab on another machine
(shapes 16 px, model.width=4) and the PNGs its `genlab sample` wrote from them (tests/fixtures/
README.md). What holds on every machine is asserted against those files; what holds only on one
(bit-identical training) is asserted between two runs computed here:

- Sampling is a forward pass of stored weights from stored-seed latents. Another CPU's kernels
  (other vector units, other summation orders) move a float in its last bits, which moves an 8-bit
  pixel only where the float sits at a rounding boundary: every pixel must be within one level of
  the fixture's, and fewer than 1 % may differ at all.
- Resuming the fixture trains on with finite losses to the requested step (the fixture's own
  first two steps cannot be recomputed bit for bit here: they came from another machine's kernels).
- Exact resume of a migrated checkpoint, within this machine: fixture → step 3 → step 4 equals
  fixture → step 4.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from conftest import REPO, genlab
from test_resume import assert_same, training_state
from PIL import Image

from genlab.config.compose import compose_jobs
from genlab.commands.sample import sample
from genlab.commands.train import train

pytestmark = pytest.mark.foreign_fixtures

LEGACY = REPO / "tests" / "fixtures" / "legacy"
OVERRIDES = ["trainer.log_every=1", "trainer.batch_size=8", "dataset.image_size=16", "model.width=4",
             "trainer.grid_size=4", "trainer.ckpt_every=1", "hardware.threads=1"]
FAMILIES = ["vae", "gan", "cgan"]
MAX_LEVELS, MAX_DIFFERING = 1, 0.01  # per pixel, of 255; share of pixels


def legacy_run(tmp_path, family, name):
    """A run directory holding a copy of the family's fixture as its last checkpoint."""
    checkpoints = tmp_path / name / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copy(LEGACY / f"{family}.pt", checkpoints / "last.pt")
    return checkpoints.parent


def assert_same_pixels(png, reference, what):
    got, expected = (np.asarray(Image.open(p), dtype=np.int16) for p in (png, reference))
    assert got.shape == expected.shape, what
    levels = np.abs(got - expected)
    assert levels.max() <= MAX_LEVELS, f"{what}: a pixel differs by {levels.max()} levels"
    assert (levels > 0).mean() < MAX_DIFFERING, f"{what}: {(levels > 0).mean():.1%} of pixels differ"


@pytest.mark.parametrize("family", FAMILIES)
def test_legacy_checkpoint_samples_the_pixels_it_sampled(tmp_path, family):
    ckpt = legacy_run(tmp_path, family, "legacy") / "checkpoints" / "last.pt"
    samples = [("sample", dict(n=6, seed=3, mode="grid", steps=8)), ("interp", dict(n=8, seed=1, mode="interpolate", steps=4))]
    samples += [("traverse", dict(n=64, seed=0, mode="traverse", steps=3))] if family == "vae" else []
    for name, options in samples:
        out = tmp_path / f"{name}.png"
        sample(str(ckpt), out=str(out), label=None, **options)
        assert_same_pixels(out, LEGACY / f"{family}-{name}.png", f"{family} {name}")


@pytest.mark.parametrize("family", FAMILIES)
def test_legacy_checkpoint_resumes_and_trains_on(tmp_path, family):
    # The command line, so that the checkpoint's stored overrides compose the run again.
    legacy_run(tmp_path, family, "legacy")
    resumed = genlab("train", "resume=legacy", "trainer.max_steps=4", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads((tmp_path / "legacy/result.json").read_text())
    assert result["status"] == "ok" and result["steps"] == 4
    assert result["metrics"] and all(math.isfinite(v) for v in result["metrics"].values()), result["metrics"]
    assert torch.load(tmp_path / "legacy/checkpoints/last.pt", weights_only=True)["step"] == 4


@pytest.mark.parametrize("family", FAMILIES)
def test_legacy_checkpoint_resumes_exactly_on_this_machine(tmp_path, family):
    def resume(run, max_steps):
        train(compose_jobs("train", [f"model={family}", *OVERRIDES, f"trainer.max_steps={max_steps}", f"resume={run}"])[0], run)

    straight, split = legacy_run(tmp_path, family, "straight"), legacy_run(tmp_path, family, "split")
    resume(straight, 4)
    resume(split, 3)
    resume(split, 4)
    assert_same(training_state(straight / "checkpoints/last.pt"), training_state(split / "checkpoints/last.pt"))
