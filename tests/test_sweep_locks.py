"""One launcher per sweep directory, one process per job, and a stop signal that a sweep obeys even
when it comes in a job's last step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import REPO, TINY, genlab

from genlab.commands import summarize as summarize_command
from genlab.sweep import locks as sweep_locks
from genlab.training import locks
from genlab.config.compose import compose_command

SWEEP = ["train", "-m", "seed=0,1", *[o for o in TINY if not o.startswith("trainer.max_steps")]]


def _environment():
    return {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0"}


def _hold(path, seconds: float) -> subprocess.Popen:
    """Another process that holds the flock on `path` for `seconds` (it prints "held" once it does)."""
    code = textwrap.dedent(f"""
        import fcntl, os, sys, time
        fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0); os.write(fd, f"{{os.getpid()}}\\n".encode())
        print("held", flush=True)
        time.sleep({seconds})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def release_locks():
    """Close the locks claim_sweep_dir keeps until the command (here: the test) ends."""
    yield
    locks.release_all()


@pytest.fixture
def one_second(monkeypatch, tmp_path):
    """Every `${now:…}` Hydra resolves falls in the same second; the test runs in tmp_path."""
    import datetime

    import hydra.core.utils

    class OneSecond(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 1, 2, 3, 4, 5)

    monkeypatch.setattr(hydra.core.utils, "datetime", OneSecond)
    monkeypatch.chdir(tmp_path)


def test_two_launches_of_one_sweep_at_once_one_refuses_in_one_line(tmp_path):
    # The winner holds the sweep for seconds (start-up, data, two jobs); the loser's claim comes
    # within a fraction of one of the winner's.
    command = [sys.executable, "-m", "genlab.cli", *SWEEP, "trainer.max_steps=4", "hydra.sweep.dir=sweep"]
    launches = [subprocess.Popen(command, cwd=tmp_path, env=_environment(), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p, *p.communicate(timeout=300)) for p in launches]
    done = [r for r in results if r[0].returncode == 0]
    refused = [r for r in results if r[0].returncode != 0]
    assert len(done) == 1 and len(refused) == 1, [(p.returncode, err[-500:]) for p, _, err in results]
    proc, out, err = refused[0]
    assert proc.returncode == 1 and "Traceback" not in err
    assert err == (f"genlab train: error: sweep sweep is already running (pid {done[0][0].pid}): wait for it to end, "
                   "or choose another hydra.sweep.dir\n")
    root = tmp_path / "sweep"
    for job in ("seed=0", "seed=1"):  # each job ran once, by the launcher that got the sweep
        assert json.loads((root / job / "result.json").read_text())["status"] == "ok"
        assert (root / job / "train.log").read_text().count("done: 4 steps") == 1
    assert "2 of 2 jobs ok" in done[0][1]


def test_a_running_sweep_is_refused_and_its_directory_left_alone(tmp_path):
    (tmp_path / "sweep").mkdir()
    holder = _hold(tmp_path / "sweep" / sweep_locks.SWEEP_LOCK, 60)
    try:
        result = genlab(*SWEEP, "hydra.sweep.dir=sweep", cwd=tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr == (f"genlab train: error: sweep sweep is already running (pid {holder.pid}): wait for it "
                             "to end, or choose another hydra.sweep.dir\n")
    assert [p.name for p in (tmp_path / "sweep").iterdir()] == [sweep_locks.SWEEP_LOCK]


def test_a_killed_launcher_leaves_no_lock_behind(tmp_path):
    (tmp_path / "sweep").mkdir()
    holder = _hold(tmp_path / "sweep" / sweep_locks.SWEEP_LOCK, 60)
    assert sweep_locks.sweep_running(tmp_path / "sweep") == f" (pid {holder.pid})"
    holder.kill()  # SIGKILL: the kernel releases the lock
    holder.wait()
    assert sweep_locks.sweep_running(tmp_path / "sweep") is None


def test_time_named_sweep_directories_of_one_second_do_not_collide(tmp_path, one_second, release_locks):
    first = sweep_locks.claim_sweep_dir(*claimable(["seed=0,1"]))
    second = sweep_locks.claim_sweep_dir(*claimable(["seed=0,1"]))
    (a,), (b,) = first, second
    assert (a, b) == ("hydra.sweep.dir=outputs/multirun/2026-01-02/03-04-05",
                      "hydra.sweep.dir=outputs/multirun/2026-01-02/03-04-05-2")
    for override in (a, b):
        root = tmp_path / override.split("=", 1)[1]
        assert sweep_locks.sweep_running(root) == f" (pid {os.getpid()})"


def claimable(overrides):
    command = compose_command("train", overrides, multirun=True)
    return command.output_dir, command.output_dir_from_clock


def test_a_named_sweep_directory_is_claimed_once(tmp_path, monkeypatch, release_locks):
    monkeypatch.chdir(tmp_path)
    assert sweep_locks.claim_sweep_dir(*claimable(["seed=0,1", "hydra.sweep.dir=mine"])) == []
    with pytest.raises(sweep_locks.SweepRunning, match=r"^sweep mine is already running \(pid \d+\): wait for it to end, "
                                                 r"or choose another hydra.sweep.dir$"):
        sweep_locks.claim_sweep_dir(*claimable(["seed=0,1", "hydra.sweep.dir=mine"]))


def test_a_job_still_running_elsewhere_is_waited_for(tmp_path, capsys):
    holder = _hold(tmp_path / locks.RUN_LOCK, 1.5)
    start = time.perf_counter()
    with sweep_locks.job_lock(tmp_path):
        waited = time.perf_counter() - start
    holder.wait()
    assert waited > 1.0
    assert capsys.readouterr().err == (f"genlab train: job {tmp_path.name} is still running in another process "
                                       f"(pid {holder.pid}): waiting for it\n")


def test_summarize_of_a_running_sweep_prints_the_table_only(tmp_path, capsys):
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "result.json").write_text(json.dumps(
        {"overrides": {"seed": 0}, "status": "running", "error": None, "steps": None, "wall_s": None, "metrics": {},
         "config": {}}))
    holder = _hold(tmp_path / sweep_locks.SWEEP_LOCK, 60)
    try:
        summarize_command.run([str(tmp_path)])
    finally:
        holder.kill()
        holder.wait()
    out = " ".join(capsys.readouterr().out.split())
    assert "0 of 1 jobs ok" in out and f"is still running (pid {holder.pid}): summary files not written" in out
    assert not (tmp_path / "summary.csv").exists() and not (tmp_path / "summary.json").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_in_a_jobs_last_step_stops_the_sweep_after_that_job(tmp_path, signum):
    """SIGTERM (or a hangup) during the final step: the job has finished, so it ends ok, and the
    launcher stops instead of starting the next job (before, the signal was dropped and the sweep
    went on)."""
    code = textwrap.dedent(f"""
        import os, sys
        import genlab.training.loop as loop
        fit = loop.fit
        def fit_signalled_in_its_last_step(model, data, batches, trainer, **kwargs):
            step, train_step = [0], model.train_step
            def signalled(batch):
                step[0] += 1
                if step[0] == trainer.max_steps and not os.environ.get("SENT"):
                    os.environ["SENT"] = "1"
                    os.kill(os.getpid(), {int(signum)})
                return train_step(batch)
            model.train_step = signalled
            return fit(model, data, batches, trainer, **kwargs)
        loop.fit = fit_signalled_in_its_last_step
        from genlab.cli import main
        main(sys.argv[1:])
    """)
    # The default disposition, as from a terminal: a test run under nohup would hand down an ignored
    # SIGHUP, which genlab keeps ignoring.
    result = subprocess.run([sys.executable, "-c", code, *SWEEP, "trainer.max_steps=4", "hydra.sweep.dir=sweep"],
                            cwd=tmp_path, env=_environment(), capture_output=True, text=True, timeout=300,
                            preexec_fn=lambda: signal.signal(signum, signal.SIG_DFL))
    assert result.returncode == 128 + signum, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (f"genlab train: stopped by {signum.name} after job seed=0 "
                                                      "finished; re-run the same command to run the other jobs")
    assert json.loads((tmp_path / "sweep" / "seed=0" / "result.json").read_text())["status"] == "ok"
    assert not (tmp_path / "sweep" / "seed=1").exists()
