"""What a run reports: TensorBoard events in the run directory, and progress on the terminal.

A run that continues from a checkpoint at step s opens its events file with purge_step = s + 1:
TensorBoard then hides whatever earlier files hold from step s + 1 on (written after that
checkpoint by a process that was killed), so the curves show each step once. TensorBoard reads a
run's files in name order, events.out.tfevents.<second>.<host>.<pid>.<writer number>: two files
opened in the same second would sort by pid or by the writer number as text (…9 after …10), so a
new file waits for the second after the run's newest file began.

On a terminal a rich progress bar shows step, loss, images/s and ETA; when stdout is not a TTY
(a log file, a cluster job) the same appears as one plain line every `log_every` steps.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.tensorboard import SummaryWriter

from genlab.files import remove_stale_temporaries
from genlab.images import grid, to_uint8, write_png

log = logging.getLogger("genlab")


class RunLogger:
    def __init__(self, run_dir: Path, start_step: int, max_steps: int, interactive: bool | None = None):
        newest_s = max((int(m.group(1)) for p in run_dir.glob("events.out.tfevents.*")
                        if (m := re.match(r"events\.out\.tfevents\.(\d+)\.", p.name))), default=0)
        while time.time() < newest_s + 1:
            time.sleep(newest_s + 1 - time.time())
        self.writer = SummaryWriter(str(run_dir), purge_step=start_step + 1 if start_step else None)
        self.samples_dir = run_dir / "samples"
        # A run killed while writing a grid leaves the write's temporary file; the run holds its
        # directory's lock (genlab/training/locks.py), so no grid is being written (genlab sample writes
        # into samples/ too, unlocked, under other names).
        remove_stale_temporaries(self.samples_dir, "step_*.png")
        self.max_steps = max_steps
        self.interactive = sys.stdout.isatty() if interactive is None else interactive
        self._progress = None
        if self.interactive:
            self._progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"), TimeRemainingColumn(),
            )
            self._task = self._progress.add_task("train", total=max_steps, completed=start_step, status="")
            self._progress.start()
        self._start_time, self._start_step = time.perf_counter(), start_step

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def status(self, step: int, metrics: dict[str, float], img_per_s: float) -> None:
        """Show the first two metrics and the throughput."""
        shown = list(metrics.items())[:2]
        line = " · ".join(f"{name} {value:.3g}" for name, value in shown) + f" · {img_per_s:,.0f} img/s"
        if self._progress is not None:
            self._progress.update(self._task, completed=step, status=line)
        else:
            done = step - self._start_step
            eta_s = (time.perf_counter() - self._start_time) / max(done, 1) * (self.max_steps - step)
            log.info(f"step {step}/{self.max_steps} · {line} · eta {eta_s:.0f} s")

    def images(self, step: int, grids: dict[str, tuple[torch.Tensor, int]]) -> None:
        """Each grid goes to TensorBoard and to samples/step_<step>_<name>.png, with the same 8-bit
        pixels (`to_uint8`, rounding: given floats, TensorBoard would truncate 255·v instead)."""
        self.samples_dir.mkdir(exist_ok=True)
        for name, (images, per_row) in grids.items():
            picture = grid(images, per_row)
            self.writer.add_image(f"images/{name}", to_uint8(picture.cpu()), step)
            write_png(picture, self.samples_dir / f"step_{step:07d}_{name}.png")

    def text(self, tag: str, text: str, step: int = 0) -> None:
        self.writer.add_text(tag, text, step)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self.writer.close()
