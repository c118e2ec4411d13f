"""A dataset defined outside genlab (tests/families/bars.py and its YAML, found through
hydra.searchpath) trains, samples and evaluates with no change to genlab/, as
tests/test_model_family.py shows for a model family; its own keys are checked before any work."""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import REPO, genlab

FAMILIES = REPO / "tests" / "families"
ENV = {"PYTHONPATH": os.pathsep.join([str(REPO), str(FAMILIES)])}
RUN = [f"hydra.searchpath=[file://{FAMILIES / 'configs'}]", "dataset=bars", "model.width=8", "noise_dim=4",
       "trainer.batch_size=8", "trainer.log_every=2", "trainer.sample_every=2", "trainer.ckpt_every=2",
       "trainer.grid_size=4", "trainer.final_images=16", "hardware=cpu", "hardware.threads=1"]
EVAL = ["n=40", "batch_size=40", "k=4", "classifier.steps=20", "classifier.width=4", "classifier.features=16",
        "classifier.batch_size=16"]


def test_a_dataset_outside_genlab_trains_samples_and_evaluates(tmp_path: Path):
    def run(*args):
        result = genlab(*args, cwd=tmp_path, env=ENV)
        assert result.returncode == 0, result.stderr
        return result

    trained = run("train", *RUN, "trainer.max_steps=4", "hydra.run.dir=run")
    assert "bars/train (1, 16, 16), 512 images, 2 classes" in trained.stdout + trained.stderr

    out = tmp_path / "grid.png"
    run("sample", "ckpt=run", "n=4", f"out={out}")
    assert out.stat().st_size > 0

    # auto: every metric that fits a VAE on a dataset with classes and ground-truth factors (mig reads them)
    run("eval", "ckpt=run", "metrics=auto", f"cache_dir={tmp_path / 'cache'}", *EVAL)
    content = json.loads((tmp_path / "run/checkpoints/eval.json").read_text())
    assert content["dataset"] == "bars" and list(content["metrics"]) == ["nll", "fid", "kid", "pr", "mig"]
    assert set(content["metrics"]["mig"]["per_factor"]) == {"orientation", "offset"}
    assert content["metrics"]["fid"]["fid"] > 0

    refused = genlab("eval", "ckpt=run", "metrics=[shapes]", f"cache_dir={tmp_path / 'cache'}", *EVAL, cwd=tmp_path, env=ENV)
    assert refused.returncode != 0 and refused.stderr.strip().splitlines() == [
        "genlab eval: error: metric shapes needs genlab's procedural dSprites images (every image rendered from its "
        "index), which dataset bars does not have: drop it from metrics="]


def test_its_own_keys_are_checked_before_any_work(tmp_path: Path):
    result = genlab("train", *RUN, "dataset.bar_width=16", "hydra.run.dir=run", cwd=tmp_path, env=ENV)
    assert result.returncode != 0 and result.stderr.strip().splitlines() == [
        "genlab train: error: dataset.bar_width=16 is not allowed: expected less than dataset.image_size"]
    result = genlab("train", *RUN, "dataset.binarize=dynamic", "hydra.run.dir=run", cwd=tmp_path, env=ENV)
    assert result.returncode != 0 and "dataset.binarize=dynamic is not allowed for bars" in result.stderr
    assert not (tmp_path / "run").exists()
