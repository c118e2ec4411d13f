"""Shared test helpers: run the real CLI in a subprocess, on tiny settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Small enough that a run takes about a second after start-up.
TINY = [
    "dataset.image_size=16", "model.width=8", "trainer.batch_size=8", "trainer.max_steps=4",
    "trainer.log_every=2", "trainer.sample_every=2", "trainer.ckpt_every=2", "trainer.grid_size=4",
    "hardware=cpu", "hardware.threads=1",
]


def genlab(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `genlab ARGS` as a user would (this checkout's code), capturing its output."""
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run([sys.executable, "-m", "genlab.cli", *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def run_dirs(root: Path) -> list[Path]:
    """Every run directory (one holding .hydra/) under root."""
    return sorted(p.parent for p in root.rglob(".hydra"))


@pytest.fixture
def tiny_run(tmp_path):
    """A finished tiny VAE run: returns its run directory."""
    result = genlab("train", *TINY, "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path / "run"
