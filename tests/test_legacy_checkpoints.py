"""Checkpoints written before the model contract (genlab at commit 909678c: no `model._target_`, the
VAE's `beta` at the top of every run's config) still load, sample the same pixels and resume.

tests/fixtures/legacy/ holds a 2-step run of each family written by that genlab (shapes 16 px,
model.width=4) and the PNGs its `genlab sample` wrote from them.
"""

from __future__ import annotations

import shutil

import pytest
from conftest import REPO, genlab
from test_resume import assert_same, training_state

from genlab.compose import compose_jobs
from genlab.sample import sample
from genlab.train import train

LEGACY = REPO / "tests" / "fixtures" / "legacy"
OVERRIDES = ["trainer.log_every=1", "trainer.batch_size=8", "dataset.image_size=16", "model.width=4",
             "trainer.grid_size=4", "trainer.ckpt_every=2", "hardware.threads=1"]


@pytest.mark.parametrize("family", ["vae", "gan", "cgan"])
def test_legacy_checkpoint_samples_the_same_pixels_and_resumes_exactly(tmp_path, family):
    run = tmp_path / "legacy" / "checkpoints"
    run.mkdir(parents=True)
    shutil.copy(LEGACY / f"{family}.pt", run / "last.pt")
    samples = [("sample", dict(n=6, seed=3, mode="grid", steps=8)), ("interp", dict(n=8, seed=1, mode="interpolate", steps=4))]
    samples += [("traverse", dict(n=64, seed=0, mode="traverse", steps=3))] if family == "vae" else []
    for name, options in samples:
        out = tmp_path / f"{name}.png"
        sample(str(run / "last.pt"), out=str(out), label=None, **options)
        assert out.read_bytes() == (LEGACY / f"{family}-{name}.png").read_bytes(), name

    # The command line, so that the checkpoint's stored overrides compose the run again.
    resumed = genlab("train", "resume=legacy", "trainer.max_steps=4", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    train(compose_jobs("train", [f"model={family}", *OVERRIDES, "trainer.max_steps=4"])[0], tmp_path / "fresh")
    assert_same(training_state(tmp_path / "fresh/checkpoints/last.pt"), training_state(run / "last.pt"))
