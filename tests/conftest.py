"""Shared test helpers: run the real CLI in a subprocess, on tiny settings."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
needs_mnist = pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason="needs shared/data/MNIST")

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


@contextlib.contextmanager
def explorer_api(ckpt: Path):
    """`genlab explore`'s server on a checkpoint, in this process: yields call(path, body=None) → JSON."""
    from genlab.explore.server import Explorer, ExploreServer

    server = ExploreServer(Explorer(ckpt, log=lambda line: None), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def call(path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        with urllib.request.urlopen(urllib.request.Request(server.url + path, data=data), timeout=60) as response:
            return json.loads(response.read())

    try:
        yield call
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A dataset root holding a copy of shared/data's MNIST (torchvision unpacks the archives beside them)."""
    root = tmp_path_factory.mktemp("data")
    shutil.copytree(SHARED_DATA / "MNIST" / "raw", root / "MNIST" / "raw")
    return root
