"""A run whose terminal hangs up (a closed window, a dropped SSH connection) saves and stops as on
SIGTERM, and continues with `genlab train resume=<run dir>`; a run started with the signal ignored
(nohup, a script's background job) goes on."""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest
from conftest import TINY, genlab
from test_run_lock import wait_for
from test_sweep_locks import _environment
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from genlab.training.checkpoint import load_checkpoint

MAX_STEPS = 100000
ENDLESS = ["train", *TINY, f"trainer.max_steps={MAX_STEPS}", "trainer.log_every=1", "trainer.ckpt_every=1000",
           "trainer.sample_every=1000", "hydra.run.dir=run"]


def _in_a_terminal(cwd) -> tuple[subprocess.Popen, int]:
    """`genlab train` (endless) as a login shell runs it: its own session, whose controlling terminal
    is a new pseudo-terminal; returns the process and the terminal's master side (closing it hangs up)."""
    master, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))  # wide enough for the progress bar

    def session_of_the_terminal():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        # A test run started in the background by a script, or under nohup, would hand down an
        # ignored SIGHUP; a login shell's command gets the default one.
        signal.signal(signal.SIGHUP, signal.SIG_DFL)

    proc = subprocess.Popen([sys.executable, "-m", "genlab.cli", *ENDLESS], cwd=cwd, env=_environment(), stdin=terminal,
                            stdout=terminal, stderr=terminal, start_new_session=True,
                            preexec_fn=session_of_the_terminal)
    os.close(terminal)
    return proc, master


def _read_until(master: int, pattern: str, timeout_s: float = 120) -> str:
    """What the terminal shows until `pattern` appears on it."""
    shown, deadline = "", time.monotonic() + timeout_s
    while not re.search(pattern, shown):
        ready = select.select([master], [], [], max(0, deadline - time.monotonic()))[0]
        assert ready, f"{pattern!r} did not appear on the terminal: {shown[-2000:]}"
        try:
            shown += os.read(master, 65536).decode(errors="replace")
        except OSError:  # EIO: no process has the terminal open any more
            pytest.fail(f"genlab exited before {pattern!r} appeared on the terminal: {shown[-2000:]}")
    return shown


def _stdout_of(pid: int) -> str | None:
    """What the process's stdout is open on; None once it has exited."""
    try:
        return os.readlink(f"/proc/{pid}/fd/1")
    except FileNotFoundError:
        return None


def _last_logged_step(run_dir) -> int:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return max(e.step for tag in events.Tags()["scalars"] for e in events.Scalars(tag))


def test_a_hung_up_terminal_checkpoints_and_the_cli_resumes(tmp_path):
    proc, master = _in_a_terminal(tmp_path)
    try:
        # The progress bar's "step/max_steps" (rich may cut the total short): training has started.
        _read_until(master, r"\b[1-9]\d*/\d")
        os.close(master)  # the terminal hangs up: the kernel sends SIGHUP to its session
        # The run has seen it once it writes no more to the dead terminal (every write would fail);
        # then SIGHUP comes again, as it does from the kernel when the login shell exits.
        wait_for(lambda: proc.poll() is not None or _stdout_of(proc.pid) == os.devnull, "stdout to leave the terminal")
        proc.send_signal(signal.SIGHUP)
        proc.wait(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGHUP
    run = tmp_path / "run"
    step = load_checkpoint(run)["step"]
    assert step == _last_logged_step(run) >= 1  # saved at the step it reached

    resumed = genlab("train", f"resume={run}", f"trainer.max_steps={step + 2}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(run)["step"] == step + 2


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGINT])
def test_a_signal_ignored_from_the_start_does_not_stop_the_run(tmp_path, signum):
    """nohup ignores SIGHUP, a script's `cmd &` ignores SIGINT: the run trains on; SIGTERM still stops it."""
    log = tmp_path / "out.log"

    def steps_logged() -> list[int]:
        return [int(s) for s in re.findall(rf"step (\d+)/{MAX_STEPS}", log.read_text())]

    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "genlab.cli", *ENDLESS], cwd=tmp_path, env=_environment(),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: signal.signal(signum, signal.SIG_IGN))
    try:
        wait_for(steps_logged, "training to start")
        proc.send_signal(signum)
        sent_at = max(steps_logged())
        wait_for(lambda: proc.poll() is not None or max(steps_logged()) >= sent_at + 3, "more steps")
        assert proc.poll() is None, log.read_text()[-2000:]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
