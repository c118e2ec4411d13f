"""The benchmark scripts still run against the current code (one step per path; nothing is timed here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, SHARED_DATA

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason="needs shared/data/MNIST")


def bench(script: str, *args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_throughput_prints_its_tables(tmp_path):
    result = bench("throughput.py", "--root", str(SHARED_DATA), "--threads", "1", "--rounds", "1", "--steps", "1",
                   "--steps-64", "1", "--batch-size", "8", "--models", "vae,cgan", "--sample", "16", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for row in ("| mnist 28px | vae |", "| mnist 28px | cgan |", "| shapes 64px | vae |", "| shapes 64px | cgan |"):
        assert result.stdout.count(row) == 2, row  # the wall-clock table and the CPU-time table
    assert result.stdout.count("`genlab sample n=16`") == 4


def test_data_pipeline_prints_both_pipelines(tmp_path):
    shutil.copytree(SHARED_DATA / "MNIST" / "raw", tmp_path / "MNIST" / "raw")  # it unpacks the archives there
    result = bench("data_pipeline.py", "--root", str(tmp_path), "--threads", "1", "--epochs", "1", "--steps", "1",
                   "--rounds", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "epoch ratio: genlab is" in result.stdout and "training ratio: genlab trains" in result.stdout
