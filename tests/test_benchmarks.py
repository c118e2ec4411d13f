"""The benchmark scripts still run against the current code (one step per path; nothing is timed here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from conftest import REPO, SHARED_DATA, TINY, needs_mnist


def bench(script: str, *args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


@needs_mnist
def test_throughput_prints_its_tables(tmp_path):
    result = bench("throughput.py", "--root", str(SHARED_DATA), "--threads", "1", "--rounds", "1", "--steps", "1",
                   "--steps-64", "1", "--batch-size", "8", "--models", "vae,cgan", "--sample", "16", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for row in ("| mnist 28px | vae |", "| mnist 28px | cgan |", "| shapes 64px | vae |", "| shapes 64px | cgan |"):
        assert result.stdout.count(row) == 2, row  # the wall-clock table and the CPU-time table
    assert result.stdout.count("`genlab sample n=16`") == 4


@needs_mnist
def test_data_pipeline_prints_both_pipelines(tmp_path):
    shutil.copytree(SHARED_DATA / "MNIST" / "raw", tmp_path / "MNIST" / "raw")  # it unpacks the archives there
    result = bench("data_pipeline.py", "--root", str(tmp_path), "--threads", "1", "--epochs", "1", "--steps", "1",
                   "--rounds", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "epoch ratio: genlab is" in result.stdout and "training ratio: genlab trains" in result.stdout


def test_diffusion_steps_tabulates_genlab_evals_figure_at_each_step(tmp_path):
    """A tiny diffusion checkpoint on the procedural shapes (no download), the classifier FID at n = 10:
    one row per sample_steps, each row's figures those `genlab eval sample_steps=K` writes."""
    import json

    from genlab.commands.train import train
    from genlab.config.compose import compose_jobs

    train(compose_jobs("train", [*TINY, "model=diffusion", "model.blocks=1", "trainer.max_steps=2"], False)[0],
          tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    settings = ["hardware=cpu", "batch_size=10", "classifier.steps=2", "classifier.batch_size=8", f"cache_dir={tmp_path}"]
    result = bench("diffusion_steps.py", str(ckpt), "--steps", "1,2", "--metric", "fid", "--n", "10",
                   "--out", str(tmp_path / "steps.md"), *settings, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "steps.md").read_text() == result.stdout
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [(int(r[0]), int(r[1]), r[5].strip()) for r in rows] == [(1, 1, "cpu"), (2, 3, "cpu")]  # NFE = 2K − 1
    fid = json.loads((ckpt.parent / "eval.json").read_text())["metrics"]["fid"]  # the last row's, marked with its steps
    assert fid["sample_steps"] == 2 and rows[1][2].strip() == f"{fid['fid']:.3f}"
    assert rows[0][3] == rows[1][3] == f" {fid['noise_floor']:.3f} "

    refused = bench("diffusion_steps.py", str(ckpt), "--steps", "4,0", "--metric", "fid", "--n", "10", *settings, cwd=tmp_path)
    assert refused.returncode == 1 and refused.stderr == ("diffusion_steps: error: sample_steps=0 is not allowed: "
                                                          "expected an integer >= 1\n")
