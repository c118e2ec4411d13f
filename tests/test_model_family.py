"""A fourth model family, defined in tests/families/ and found through hydra.searchpath, goes
through every public command without a change to genlab/: train, checkpoint, exact resume,
sample (its prior is image-shaped, C×H×W, so sampling must ask the model for its latents), and
`genlab eval metrics=[fid]`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
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
    from genlab.commands.sample import latents

    model = ImageNoise({"noise_channels": 2}, {"name": "adam", "lr": 1e-2, "betas": [0.9, 0.999], "weight_decay": 0.0},
                       (1, 16, 16), 0, torch.device("cpu"))
    z, labels, per_row = latents(model, "interpolate", 8, 4, None, torch.Generator().manual_seed(0))
    assert z.shape == (8, 2, 16, 16) and labels is None and per_row == 4
    ends = model.prior(4, torch.Generator().manual_seed(0))
    torch.testing.assert_close(z[0], ends[0]) and torch.testing.assert_close(z[3], ends[2])


def _import_from_families(name: str):
    import importlib
    import sys

    sys.path.insert(0, str(FAMILIES))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(FAMILIES))


def test_a_family_without_an_encoder_sweeps_explores_and_gets_the_metrics_that_fit(tmp_path: Path):
    def run(*args):
        result = genlab(*args, cwd=tmp_path, env=ENV)
        assert result.returncode == 0, result.stderr
        return result

    swept = run("train", "-m", *RUN, "trainer.max_steps=2", "model.noise_channels=1,2", "hydra.sweep.dir=sweep")
    assert "2 of 2 jobs ok" in swept.stdout
    jobs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert jobs == ["model.noise_channels=1", "model.noise_channels=2"]
    assert not list((tmp_path / "sweep").glob("*.png"))  # its family draws no sweep figure
    ckpt = tmp_path / "sweep" / "model.noise_channels=2" / "checkpoints" / "last.pt"
    from genlab.config.overrides import hydra_value

    quoted = hydra_value(str(ckpt))  # a job directory's name holds '='

    # metrics=auto with no encoder, no likelihood and no classes: the classifier metrics only
    run("eval", f"ckpt={quoted}", "metrics=auto", f"cache_dir={tmp_path / 'cache'}", *EVAL)
    content = json.loads((ckpt.parent / "eval.json").read_text())
    assert list(content["metrics"]) == ["fid", "kid", "pr"]

    refused = genlab("sample", f"ckpt={quoted}", "mode=traverse", cwd=tmp_path, env=ENV)
    assert refused.returncode != 0 and refused.stderr.strip().splitlines() == [
        "genlab sample: error: mode=traverse needs a model whose latent dimensions are trained to be independent, "
        "but this checkpoint holds a ImageNoise: use mode=grid or mode=interpolate"]

    _import_from_families("image_noise")  # the checkpoint's _target_ imports it
    from genlab.explore.server import BadRequest, Explorer

    explorer = Explorer(ckpt, log=lambda line: None)
    info = explorer.info()
    assert info["kind"] == "ImageNoise" and info["sliders_title"] == "latent dimensions" and not info["encoder"]
    assert [d["name"] for d in info["directions"][:2]] == ["z[0]", "z[1]"]
    images = explorer.decode({"latents": [[0.0] * info["latent_size"]]})["images"]
    assert len(images) == 1
    with pytest.raises(BadRequest, match="has no encoder"):
        explorer.encode({"index": 0})


def test_the_keys_every_family_needs_are_checked_before_any_work(tmp_path: Path):
    for key in ("name", "lr", "betas"):
        result = genlab("train", *RUN, f"~model.{key}", "hydra.run.dir=run", cwd=tmp_path, env=ENV)
        assert result.returncode != 0 and result.stderr.strip().splitlines() == [
            f"genlab train: error: model.{key} is missing: model._target_=image_noise.ImageNoise needs it "
            f"(genlab/models/base.py, required_keys); add `{key}: …` under `model:` in its YAML"]
        assert not (tmp_path / "run").exists()
