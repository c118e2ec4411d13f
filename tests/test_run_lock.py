"""One writer per run directory: a second `genlab train` (or resume) of a run that another process
is writing stops in one line naming that process and writes nothing there; the lock of a killed
run is taken over."""

from __future__ import annotations

import errno
import re
import signal
import subprocess
import sys
import time

from conftest import TINY, genlab
from test_sweep_locks import _environment, _hold, one_second, release_locks  # noqa: F401  (fixtures)

from genlab.training import locks
from genlab.config.compose import compose_command
from genlab.commands.train import _claim_run_dir
from genlab.training.checkpoint import load_checkpoint

ENDLESS = [*TINY, "trainer.max_steps=1000000", "trainer.log_every=1", "trainer.sample_every=1000000"]


def _refusal(run_dir, pid: int) -> str:
    return (f"genlab train: error: {run_dir} is being written by another process (pid {pid}): wait for it to end, "
            f"stop it (kill {pid}), or choose another hydra.run.dir\n")


def _contents(run_dir, growing=()) -> dict:
    """Every file under run_dir: its bytes, or None for a file the running process appends to."""
    return {str(p.relative_to(run_dir)): None if p.name.startswith(growing) else p.read_bytes()
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def wait_for(condition, what: str, timeout_s: float = 120) -> None:
    """Poll `condition` until it holds (tests of other processes: no fixed sleeps)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _train_in_background(tmp_path, *overrides: str) -> subprocess.Popen:
    """`genlab train OVERRIDES` in another process, returned once it trains (a step is logged)."""
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "genlab.cli", "train", *overrides], cwd=tmp_path,
                                env=_environment(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    wait_for(lambda: proc.poll() is not None or re.search(r"step \d+/", log.read_text()), "training to start")
    assert proc.poll() is None, log.read_text()[-2000:]
    return proc


def test_a_second_run_into_a_running_run_is_refused_and_writes_nothing(tmp_path):
    first = _train_in_background(tmp_path, *ENDLESS, "trainer.ckpt_every=1000000", "hydra.run.dir=run")
    try:
        run = tmp_path / "run"
        before = _contents(run, growing=("train.log", "events.out.tfevents"))
        assert not (run / "checkpoints").exists()  # before its first checkpoint
        second = genlab("train", *TINY, "seed=7", "hydra.run.dir=run", cwd=tmp_path)
        assert second.returncode == 1
        assert second.stderr == _refusal("run", first.pid)
        assert _contents(run, growing=("train.log", "events.out.tfevents")) == before
        assert first.poll() is None  # the first trains on
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM


def test_a_resume_of_a_run_another_process_holds_is_refused_and_writes_nothing(tiny_run):
    holder = _hold(tiny_run / locks.RUN_LOCK, 60)
    try:
        before = _contents(tiny_run)
        result = genlab("train", f"resume={tiny_run}", "trainer.max_steps=6", cwd=tiny_run.parent)
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    assert result.stderr == _refusal(tiny_run, holder.pid)
    assert _contents(tiny_run) == before


def test_a_run_directory_named_by_hydra_at_run_time_is_locked_before_genlab_writes(tmp_path):
    """hydra.run.dir from values only Hydra's app knows: Hydra creates it, genlab locks it first thing."""
    run = tmp_path / "run_vae"
    run.mkdir()
    holder = _hold(run / locks.RUN_LOCK, 60)
    try:
        result = genlab("train", *TINY, "hydra.run.dir=run_${hydra:runtime.choices.model}", cwd=tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == _refusal(run, holder.pid).strip()
    assert sorted(p.name for p in run.iterdir()) == [".genlab-run.lock", ".hydra", "train.log"]  # Hydra's only


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path):
    first = _train_in_background(tmp_path, *ENDLESS, "trainer.ckpt_every=2", "hydra.run.dir=run")
    run = tmp_path / "run"
    try:
        wait_for(lambda: (run / "checkpoints" / "last.pt").exists(), "a checkpoint")
    finally:
        first.kill()  # SIGKILL, as kill -9 or power loss: nothing lets go of the lock but the kernel
        first.wait(timeout=120)
    assert locks.holder(run / locks.RUN_LOCK) == str(first.pid)  # the file stays, naming the dead process
    step = load_checkpoint(run)["step"]

    resumed = genlab("train", f"resume={run}", f"trainer.max_steps={step + 2}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(run)["step"] == step + 2


def test_two_runs_started_in_one_second_get_two_directories(one_second, release_locks):
    pins = [_claim_run_dir(compose_command("train", [], multirun=False)) for _ in range(2)]
    assert pins == [["hydra.run.dir=outputs/2026-01-02/03-04-05"], ["hydra.run.dir=outputs/2026-01-02/03-04-05-2"]]


def test_a_file_system_without_locks_warns_and_trains_unlocked(tmp_path, monkeypatch, capsys, release_locks):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(locks.fcntl, "flock", no_locks)
    assert locks.hold_run_dir(tmp_path / "run", from_clock=False) == tmp_path / "run"
    assert capsys.readouterr().err == (f"genlab: warning: cannot lock {tmp_path / 'run' / locks.RUN_LOCK} (No locks "
                                       "available): this file system has no file locks, so nothing stops a second "
                                       "process from writing there\n")
