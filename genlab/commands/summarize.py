"""genlab summarize PATH: rebuild a sweep directory's summary from its job records
(genlab/sweep/summary.py); torch-free, so it answers at once."""

from __future__ import annotations

from pathlib import Path

from genlab.errors import UserError, fail
from genlab.sweep.locks import sweep_running
from genlab.sweep.summary import summarize

USAGE = """usage: genlab summarize PATH

Rebuild the summary of a sweep directory from its jobs' result.json files: summary.csv,
summary.json, the plots the jobs' model families declare (e.g. rate_distortion.png) and the
sweep's TensorBoard event file; print the table.
While the sweep is still running only the table is printed (its launcher writes the files).
  genlab summarize outputs/multirun/<date>/<time>"""


def run(args: list[str]) -> None:
    """`genlab summarize PATH`."""
    if args and args[0] in ("-h", "--help"):
        print(USAGE)
        return
    if len(args) != 1:
        fail("summarize", "expected one PATH, the sweep directory: genlab summarize outputs/multirun/<date>/<time>")
    root = Path(args[0])
    try:
        summarize(root, running=sweep_running(root) if root.is_dir() else None)
    except UserError as e:
        fail("summarize", e)
