"""The genlab CLI end to end, as a user runs it: help, config, train, sweep, sample, bad input."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import REPO, TINY, genlab, run_dirs
from genlab.config.validate import ConfigError, validate_train
from genlab.config.compose import compose_jobs

GROUPS = ["model", "dataset", "optimizer", "hardware"]


def test_help_lists_subcommands(tmp_path):
    result = genlab("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "train" in result.stdout and "sample" in result.stdout


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path):
    # `genlab --help | head -3`: the pipe is closed before genlab writes to it
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "genlab.cli", "--help"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and stderr == "", stderr


def test_help_imports_neither_torch_nor_hydra():
    # `genlab --help` must answer at once (< 0.3 s); importing torch alone takes seconds.
    code = "import sys, genlab.cli; genlab.cli.main(['--help']); print(sorted({'torch', 'hydra'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip().endswith("[]"), result.stdout + result.stderr


def test_train_help_shows_config_groups(tmp_path):
    out = genlab("train", "--help", cwd=tmp_path).stdout
    for group in GROUPS:
        assert f"{group}: " in out


def test_cfg_job_prints_composed_config_with_shorthands(tmp_path):
    result = genlab("train", "beta=4", "noise_dim=7", "--cfg", "job", "--resolve", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "  beta: 4\n" in result.stdout and "latent_dim: 7" in result.stdout
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("group", GROUPS)
def test_every_config_group_option_composes_and_validates(group):
    options = sorted(p.stem for p in (REPO / "configs" / group).glob("*.yaml"))
    assert options
    for option in options:
        overrides = [f"{group}={option}"]
        if group == "model" and option == "cgan":
            overrides.append("dataset=shapes")
        if option in ("video_vae", "moving_mnist"):  # a model of clips and a dataset of clips go together
            overrides.append("dataset=moving_mnist" if group == "model" else "model=video_vae")
        (cfg,) = compose_jobs("train", overrides, multirun=False)
        if cfg.hardware.device == "cuda" and not torch.cuda.is_available():
            with pytest.raises(ConfigError, match="hardware.device=cuda is not available"):
                validate_train(cfg)
        else:
            validate_train(cfg)


def test_shell_completion(tmp_path):
    assert "complete" in genlab("-sc", "install=bash", cwd=tmp_path).stdout
    subcommands = genlab("-sc", "query=bash", cwd=tmp_path, env={"COMP_LINE": "genlab tr"}).stdout.split()
    assert subcommands == ["train"]
    overrides = genlab("-sc", "query=bash", cwd=tmp_path, env={"COMP_LINE": "genlab train mod"}).stdout.split()
    assert "model=" in overrides


def test_train_writes_events_checkpoint_and_samples(tmp_path):
    result = genlab("train", "model=vae", "beta=4", *TINY, "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    assert (run / ".hydra" / "config.yaml").is_file()
    events = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    for name in ("recon", "kl", "beta_kl", "loss", "neg_elbo"):
        assert f"train/{name}_nats" in scalars
        assert [e.step for e in events.Scalars(f"train/{name}_nats")] == [2, 4]
    assert {"lr/vae", "perf/img_per_s"} <= scalars
    assert {"images/samples", "images/reconstructions"} <= set(events.Tags()["images"])
    assert "config/text_summary" in events.Tags()["tensors"]
    recon, kl, beta_kl = (events.Scalars(f"train/{n}_nats")[-1].value for n in ("recon", "kl", "beta_kl"))
    assert beta_kl == pytest.approx(4 * kl, rel=1e-5)
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 4 and state["config"]["model"]["beta"] == 4.0
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == [
        "step_0000002_reconstructions.png", "step_0000002_samples.png",
        "step_0000004_reconstructions.png", "step_0000004_samples.png"]


def test_same_seed_gives_same_losses(tmp_path):
    def losses(name):
        assert genlab("train", *TINY, f"hydra.run.dir={name}", cwd=tmp_path).returncode == 0
        events = EventAccumulator(str(tmp_path / name)).Reload()
        return [e.value for e in events.Scalars("train/loss_nats")]

    assert losses("a") == losses("b")


def test_multirun_writes_one_directory_per_job_named_by_override(tmp_path):
    result = genlab("train", "-m", "beta=1,4", *TINY, "trainer.max_steps=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    dirs = run_dirs(tmp_path / "outputs")
    assert len(dirs) == 2
    assert any("beta=1" in d.name for d in dirs) and any("beta=4" in d.name for d in dirs)
    assert all((d / "checkpoints" / "last.pt").is_file() for d in dirs)


def test_sample_writes_a_reproducible_grid(tiny_run, tmp_path):
    ckpt = tiny_run / "checkpoints" / "last.pt"
    first = genlab("sample", f"ckpt={ckpt}", "n=16", "out=x.png", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith("x.png")
    with Image.open(tmp_path / "x.png") as image:
        assert image.size == (4 * 16 + 5 * 2,) * 2  # 4×4 images of 16 px, 2 px padding
    genlab("sample", f"ckpt={ckpt}", "n=16", "out=y.png", cwd=tmp_path)
    assert (tmp_path / "x.png").read_bytes() == (tmp_path / "y.png").read_bytes()
    genlab("sample", f"ckpt={ckpt}", "n=16", "seed=1", "out=z.png", cwd=tmp_path)
    assert (tmp_path / "x.png").read_bytes() != (tmp_path / "z.png").read_bytes()
    default = genlab("sample", f"ckpt={ckpt}", "n=4", cwd=tmp_path / "run")
    assert Path(default.stdout.strip()) == (tiny_run / "samples" / "sample_n4_seed0.png").resolve() or \
        (tiny_run / "samples" / "sample_n4_seed0.png").is_file()


BAD_TRAIN = [
    (["beta=-1"], "beta=-1"),
    (["noise_dim=0"], "noise_dim=0"),
    (["trainer.batch_size=0"], "trainer.batch_size=0"),
    (["beta=abc"], "beta='abc'"),
    (["trainer.max_steps=1.5"], "trainer.max_steps=1.5"),
    (["no_such_key=1"], "no_such_key"),
    (["model=nope"], "model=nope"),
    (["optimizer=rmsprop"], "optimizer=rmsprop"),
    (["-m", "beta=1,-2"], "beta=-2"),
]


@pytest.mark.parametrize("overrides,named", BAD_TRAIN, ids=[" ".join(o) for o, _ in BAD_TRAIN])
def test_bad_train_input_stops_before_any_work(tmp_path, overrides, named):
    result = genlab("train", *overrides, cwd=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_bad_sample_input(tmp_path):
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    for ckpt, named in (("missing.pt", "not found"), ("notes.pt", "notes.pt")):
        result = genlab("sample", f"ckpt={ckpt}", cwd=tmp_path)
        assert result.returncode != 0 and named in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "ckpt is required" in genlab("sample", cwd=tmp_path).stderr
