"""Experiment presets (configs/experiment/*.yaml): each composes and validates, and runs end to end."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import REPO, SHARED_DATA, TINY, genlab, run_dirs

from genlab.config.compose import compose_jobs
from genlab.config.validate import validate_train

PRESETS = sorted(p.stem for p in (REPO / "configs" / "experiment").glob("*.yaml"))


def test_there_are_presets_and_train_help_lists_them(tmp_path):
    assert {"vae_mnist", "beta_vae_shapes"} <= set(PRESETS)
    out = genlab("train", "--help", cwd=tmp_path).stdout
    assert "experiment: " in out and all(name in out for name in PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_composes_and_validates(name, tmp_path):
    result = genlab("train", f"+experiment={name}", "--cfg", "job", "--resolve", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (cfg,) = compose_jobs("train", [f"+experiment={name}"], multirun=False)
    validate_train(cfg)
    header = (REPO / "configs" / "experiment" / f"{name}.yaml").read_text()
    assert header.startswith("# @package _global_\n")
    for field in ("# paper:", "# protocol:", "# wall time:", "# run:", "# eval:"):
        assert field in header, field


@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason="needs shared/data/MNIST")
def test_vae_mnist_preset_trains_and_evaluates_end_to_end(tmp_path):
    shutil.copytree(SHARED_DATA / "MNIST" / "raw", tmp_path / "data" / "MNIST" / "raw")  # torchvision unpacks here
    tiny = [o for o in TINY if not o.startswith(("dataset.image_size", "model.width"))]
    result = genlab("train", "+experiment=vae_mnist", *tiny, "trainer.max_steps=2", f"dataset.root={tmp_path / 'data'}",
                    "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 2 and state["config"]["dataset"]["binarize"] == "dynamic"
    assert state["config"]["model"]["likelihood"] == "bernoulli" and state["config"]["model"]["beta"] == 1.0
    result = genlab("eval", "ckpt=run/checkpoints/last.pt", "metrics=[nll]", "k=4", "n=10", "hardware=cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "checkpoints" / "eval.json").read_text())["summary"]
    assert 0 < summary["iwae_nll_nats"] <= summary["neg_elbo_nats"]


def test_beta_vae_shapes_sweep_reports_mig_per_beta(tmp_path):
    result = genlab("train", "-m", "+experiment=beta_vae_shapes", "beta=1,4", *TINY, "trainer.max_steps=2",
                    "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(run_dirs(tmp_path / "sweep")) == 2
    rows = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    rows = rows["jobs"] if isinstance(rows, dict) else rows
    assert sorted(row["overrides"]["beta"] for row in rows) == [1, 4]
    assert all(0 <= row["metrics"]["eval/mig"] <= 1 for row in rows)
