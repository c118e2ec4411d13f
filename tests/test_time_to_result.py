"""benchmarks/time_to_result.py: what it reads from the presets, and one tiny before/after round."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

from conftest import REPO

spec = importlib.util.spec_from_file_location("time_to_result", REPO / "benchmarks" / "time_to_result.py")
ttr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ttr)


def test_each_preset_names_the_eval_that_is_timed():
    assert ttr.eval_plan("vae_mnist") == ("nll", {"k": "1000", "n": "10000"})
    assert ttr.eval_plan("gan_mnist") == ("inception_fid", {"n": "10000"})
    assert ttr.eval_plan("beta_vae_shapes") is None  # mig: not one of the evaluations issue 29 speeds up


def worktrees() -> set[str]:
    listing = subprocess.run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in listing.splitlines()}


def test_one_round_before_and_after_prints_the_table(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    trees = worktrees()
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "time_to_result.py"), "--before", "HEAD",
                             "--presets", "beta_vae_shapes", "--rounds", "1", "--train-steps", "1", "--threads", "1",
                             "--skip", "peers", "--quiet", "--markdown", str(tmp_path / "table.md")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    row = next(line for line in result.stdout.splitlines() if line.startswith("| beta_vae_shapes | training | img/s |"))
    before, after, ratio = (cell.strip() for cell in row.split("|")[4:7])
    assert float(before.replace(",", "")) > 0 and float(after.replace(",", "")) > 0 and ratio.endswith("×")
    assert "before: HEAD (" in result.stdout and "flags: " in result.stdout
    assert (tmp_path / "table.md").read_text().strip() == result.stdout.strip()
    assert not {t for t in worktrees() - trees if "time_to_result-" in t}  # the before tree is removed again
