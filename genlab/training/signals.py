"""Stopping cleanly on SIGINT (Ctrl-C) and SIGTERM (a cluster's preemption notice, `kill`).

The handler only records the signal; the training loop looks at it between steps, so the step in
flight finishes, a checkpoint is written and the run exits with 128 + the signal number (130 for
SIGINT, 143 for SIGTERM), the shell convention for "killed by this signal". A second signal is not
caught: it acts as it would without genlab (Ctrl-C twice aborts at once; an atomic checkpoint write
in flight then leaves the previous checkpoint whole).
"""

from __future__ import annotations

import signal
import threading


class StopSignals:
    """Within `with StopSignals() as stop:`, `stop.received` is the first SIGINT/SIGTERM caught."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    # The last signal any `with` block caught, also one that came in a run's final step, which the
    # run does not stop for (it has finished): a sweep then stops before its next job.
    caught: int | None = None

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self.received = StopSignals.caught = signum
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def __enter__(self) -> StopSignals:
        # Python delivers signals to the main thread only; a run in another thread (a thread-based
        # launcher) keeps the default behaviour.
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        self._restore()


class Interrupted(Exception):
    """Training stopped on a signal after writing a checkpoint; exit with `exit_code`."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
