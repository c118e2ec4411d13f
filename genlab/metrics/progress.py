"""Progress of a long evaluation stage: a rich bar on a terminal, a log line per tenth elsewhere, and
the stage's expected time once its rate is known, when that is over ETA_MIN_S."""

from __future__ import annotations

import contextlib
import logging
import sys
import time

log = logging.getLogger("genlab")

ETA_MIN_S = 60.0  # a stage expected to take longer says so once its rate is measured


@contextlib.contextmanager
def progress_bar(description: str, total: int):
    """Yields advance(count), to call after each batch of `count` images: a rich progress bar on a
    terminal, else a log line per tenth done. When a second batch is done, the rate since the first
    (which pays one-off costs: caches, kernel choices) gives the stage's expected time, printed
    when it is over ETA_MIN_S."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    tty = sys.stderr.isatty()
    with Progress(TextColumn(f"[bold]{description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True, disable=not tty) as bar:
        task = bar.add_task(description, total=total)
        say = bar.console.print if tty else log.info
        done, first = 0, None  # first: (time, images done) at the end of the first batch

        def advance(count: int) -> None:
            nonlocal done, first
            before, done = done, done + count
            bar.advance(task, count)
            if not tty and done * 10 // total > before * 10 // total:
                say(f"{description}: {done:,}/{total:,}")
            if first is None:
                first = (time.perf_counter(), done)
            elif first[1] == before:  # the second batch
                rate = (done - first[1]) / max(time.perf_counter() - first[0], 1e-9)
                left_s = (total - done) / rate
                if left_s > ETA_MIN_S:
                    say(f"{description}: {total - done:,} images left at {rate:,.1f}/s, "
                        f"expected ~{max(1, round(left_s / 60))} min")

        yield advance
