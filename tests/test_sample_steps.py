"""`sample_steps=K` in genlab eval and genlab sample: a model decoded by an iterative solve (a tiny
diffusion checkpoint) is decoded at K solver steps, eval.json says at which steps each figure was
measured, a one-pass family (a tiny VAE) and bad values are refused in one line with nothing written."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from conftest import TINY, genlab
from omegaconf import OmegaConf
from PIL import Image

from genlab.commands.eval import check
from genlab.commands.sample import sample
from genlab.commands.train import train
from genlab.config.checks import ConfigError
from genlab.config.compose import compose_jobs
from genlab.errors import UserError
from genlab.metrics.evaluation import evaluate

OWN_STEPS = 3  # the tiny diffusion checkpoint's model.sample_steps
EVAL = ["n=10", "batch_size=10", "classifier.steps=2", "classifier.batch_size=8", "hardware=cpu"]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Tiny diffusion (sample_steps=3) and VAE checkpoints, 2 steps each: name → last.pt."""
    base = tmp_path_factory.mktemp("steps")
    runs = {"diffusion": ["model=diffusion", "model.blocks=1", f"model.sample_steps={OWN_STEPS}"], "vae": ["model=vae"]}
    for name, overrides in runs.items():
        train(compose_jobs("train", [*TINY, *overrides, "trainer.max_steps=2"], False)[0], base / name)
    return {name: base / name / "checkpoints" / "last.pt" for name in runs}


def eval_settings(ckpt, tmp_path, *overrides: str) -> dict:
    cfg = compose_jobs("eval", [f"ckpt={ckpt}", *EVAL, f"cache_dir={tmp_path / 'cache'}", *overrides], False)[0]
    check(cfg)
    return OmegaConf.to_container(cfg, resolve=True)


def test_eval_records_the_steps_of_each_figure(ckpts, tmp_path, caplog):
    import torch

    ckpt = ckpts["diffusion"]
    own = evaluate(ckpt, eval_settings(ckpt, tmp_path), ["fid"], torch.device("cpu"))
    assert own["metrics"]["fid"]["sample_steps"] == OWN_STEPS and own["metrics"]["fid"]["nfe"] == 2 * OWN_STEPS - 1
    assert own["summary"]["fid_sample_steps"] == OWN_STEPS

    with caplog.at_level(logging.INFO, logger="genlab"):
        one = evaluate(ckpt, eval_settings(ckpt, tmp_path, "sample_steps=1"), ["fid"], torch.device("cpu"))
    section = one["metrics"]["fid"]
    assert (section["sample_steps"], section["nfe"], one["summary"]["fid_sample_steps"]) == (1, 1, 1)
    assert section["fid"] != own["metrics"]["fid"]["fid"]  # other images, another figure
    assert section["noise_floor"] == own["metrics"]["fid"]["noise_floor"]  # real images only
    assert f"fid at sample_steps 1 replaces the figure at sample_steps {OWN_STEPS}" in caplog.text

    # A metric kept from the call at 1 step beside one measured now at the checkpoint's own steps.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="genlab"):
        both = evaluate(ckpt, eval_settings(ckpt, tmp_path), ["kid"], torch.device("cpu"))
    assert both["summary"]["fid_sample_steps"] == 1 and both["summary"]["kid_sample_steps"] == OWN_STEPS
    assert f"keeps fid at sample_steps 1 beside this call's figures at sample_steps {OWN_STEPS}" in caplog.text
    assert json.loads((ckpt.parent / "eval.json").read_text())["summary"] == both["summary"]


@pytest.mark.parametrize("value", ["0", "-1", "2.5", "x"])
def test_eval_refuses_a_bad_value_before_any_work(value):
    with pytest.raises(ConfigError, match=rf"^sample_steps={'.x.' if value == 'x' else value} is not allowed: "
                                          "expected an integer >= 1$"):
        check(compose_jobs("eval", ["ckpt=x.pt", f"sample_steps={value}"], False)[0])


def test_a_one_pass_family_refuses_sample_steps_and_nothing_is_written(ckpts, tmp_path):
    ckpt = ckpts["vae"]
    result = genlab("eval", f"ckpt={ckpt}", *EVAL, f"cache_dir={tmp_path}", "metrics=[fid]", "sample_steps=4", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr == ("genlab eval: error: sample_steps=4 does not apply to this checkpoint: a VAE decodes in one "
                             "pass, with no solver steps to choose; drop sample_steps=\n")
    assert not (ckpt.parent / "eval.json").exists()
    with pytest.raises(UserError, match="a VAE decodes in one pass"):
        sample(str(ckpt), 4, 0, str(tmp_path / "v.png"), mode="grid", steps=8, label=None, sample_steps=4)
    assert not (tmp_path / "v.png").exists()


def test_sample_decodes_at_the_steps_asked_and_names_its_file_by_them(ckpts, tmp_path):
    ckpt = ckpts["diffusion"]

    def pixels(path):
        return np.asarray(Image.open(path))

    own = sample(str(ckpt), 6, 0, None, mode="grid", steps=8, label=None)
    same = sample(str(ckpt), 6, 0, str(tmp_path / "same.png"), mode="grid", steps=8, label=None, sample_steps=OWN_STEPS)
    fewer = sample(str(ckpt), 6, 0, None, mode="grid", steps=8, label=None, sample_steps=1)
    assert own.name == "sample_n6_seed0.png" and fewer.name == "sample_n6_sample_steps1_seed0.png"
    np.testing.assert_array_equal(pixels(same), pixels(own))
    assert not np.array_equal(pixels(fewer), pixels(own))
    for value in (0, -1, 2.5, "x"):
        with pytest.raises(ConfigError, match=rf"^sample_steps={value!r} is not allowed: expected an integer >= 1$"):
            sample(str(ckpt), 6, 0, str(tmp_path / "bad.png"), mode="grid", steps=8, label=None, sample_steps=value)
    assert not (tmp_path / "bad.png").exists()
