"""Stopping cleanly on SIGINT (Ctrl-C), SIGTERM (a cluster's preemption notice, `kill`) and SIGHUP
(the terminal hung up: a closed window, a dropped SSH connection).

The handler only records the signal; the training loop looks at it between steps, so the step in
flight finishes, a checkpoint is written and the run exits with 128 + the signal number (130 for
SIGINT, 143 for SIGTERM, 129 for SIGHUP), the shell convention for "killed by this signal". A
second SIGINT or SIGTERM is not caught: it acts as it would without genlab (Ctrl-C twice aborts at
once; an atomic checkpoint write in flight then leaves the previous checkpoint whole). A hangup is
one event that arrives more than once (the shell passes it on to its jobs, then the kernel sends it
again to the foreground job when the shell exits), and no one is at the terminal to mean a second
one: after the first, SIGHUP is ignored until the process ends. The terminal is gone too, and every
write to it fails (EIO), which would turn the clean stop into a crash: stdout and stderr that are
terminals are pointed at /dev/null (the run's train.log and files hold what it writes).

A signal the process was started ignoring stays ignored: `nohup genlab train …` keeps running
when its terminal hangs up, and a job a script starts in the background (`genlab train … &`)
ignores the Ctrl-C meant for the script, as the shell intends.

`genlab eval` keeps the default: a signal ends it at once (SIGTERM 143, SIGHUP 129), and an
eval.json in flight is never left half-written (genlab/files.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import threading

HANGUP = getattr(signal, "SIGHUP", None)  # POSIX only: Windows has no hang-up signal


def _leave_terminal() -> None:
    """Point stdout and stderr at /dev/null where they are terminals (a hung-up one included:
    isatty fails on it, so any character device counts); a file or pipe keeps what it gets."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            with contextlib.suppress(OSError):  # closed: nothing to redirect
                if stat.S_ISCHR(os.fstat(fd).st_mode):
                    os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class StopSignals:
    """Within `with StopSignals() as stop:`, `stop.received` is the first SIGINT/SIGTERM/SIGHUP caught."""

    SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, HANGUP) if s is not None)
    # The last signal any `with` block caught, also one that came in a run's final step, which the
    # run does not stop for (it has finished): a sweep then stops before its next job.
    caught: int | None = None

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self.received = StopSignals.caught = signum
        if signum == HANGUP:
            _leave_terminal()
            signal.signal(HANGUP, signal.SIG_IGN)
            del self._previous[HANGUP]  # for the rest of the process, not just this block
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def __enter__(self) -> StopSignals:
        # Python delivers signals to the main thread only; a run in another thread (a thread-based
        # launcher) keeps the default behaviour.
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: handler for s in self.SIGNALS if (handler := signal.getsignal(s)) is not signal.SIG_IGN}
            for s in self._previous:
                signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()


class Interrupted(Exception):
    """Training stopped on a signal after writing a checkpoint; exit with `exit_code`."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
