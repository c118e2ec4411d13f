"""The summary of a sweep directory, rebuilt from its job records alone (when a sweep ends, or by
`genlab summarize PATH`):
    summary.csv, summary.json    one row per job: overrides, status, steps, wall time, metrics
    a rich table                 on the terminal
    <name>.png                   each plot the jobs' families declare (genlab/sweep/plots.py)
    TensorBoard                  the sweep's HParams experiment and the plots (genlab/sweep/hparams.py)
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from genlab.files import remove_stale_temporaries, write_atomically, write_text_atomically
from genlab.sweep.hparams import write_sweep_events
from genlab.sweep.plots import declared_plots, plot_png
from genlab.sweep.records import keys_in_order, load_records


def _cell(value) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def _csv(records: list[dict], metric_names: list[str]) -> str:
    override_keys = keys_in_order(r["overrides"] for r in records)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["job", "status", "steps", "wall_s", *override_keys, *metric_names, "error"])
    for r in records:
        writer.writerow([r["job"], r["status"], _cell(r["steps"]), _cell(r["wall_s"]),
                         *(_cell(r["overrides"].get(k)) for k in override_keys),
                         *(_cell(r["metrics"].get(m)) for m in metric_names), r["error"] or ""])
    return out.getvalue()


def _table(root: Path, records: list[dict], metric_names: list[str]):
    """The summary as a rich table: a column per metric, and the errors when a job failed."""
    from rich.table import Table

    ok = sum(r["status"] == "ok" for r in records)
    table = Table(title=f"{root}: {ok} of {len(records)} jobs ok", title_justify="left")
    table.add_column("job", overflow="fold")
    for name in ("status", "steps", "wall_s", *metric_names):
        table.add_column(name, justify="left" if name == "status" else "right", no_wrap=True)
    errors = any(r["error"] for r in records)
    if errors:
        table.add_column("error", overflow="fold")
    colour = {"ok": "green", "failed": "red", "running": "yellow"}
    for r in records:
        metrics = [("" if (v := r["metrics"].get(m)) is None else f"{v:.4g}") for m in metric_names]
        wall = "" if r["wall_s"] is None else f"{r['wall_s']:.0f}"
        row = [r["job"], f"[{colour[r['status']]}]{r['status']}[/]", _cell(r["steps"]), wall, *metrics]
        table.add_row(*row, *([r["error"] or ""] if errors else []))
    return table


def summarize(root: Path, console=None, running: str | None = None) -> list[dict]:
    """Write the summary files and TensorBoard events of the sweep directory `root` from its job
    records, print the table, and return the records. `running` (" (pid N)"): a launcher holds the
    sweep, so only the table is printed; its launcher writes the files when the sweep ends."""
    from rich.console import Console

    # Off a terminal (a log file, a cluster job) the table keeps its natural width.
    console = console or Console(width=None if sys.stdout.isatty() else 1000)
    records = load_records(root)
    metric_names = keys_in_order(r["metrics"] for r in records)
    if running is not None:
        console.print(_table(root, records, metric_names))
        console.print(f"{root} is still running{running}: summary files not written; its launcher writes them when "
                      "it ends", markup=False, highlight=False, soft_wrap=True)
        return records
    # Writes of these files killed with an earlier launcher left temporary files; no one else writes
    # them now (this launcher holds the sweep's lock, or, for `genlab summarize`, no launcher does).
    plots = declared_plots(records)
    for name in ("summary.csv", "summary.json", *(f"{plot}.png" for plot in plots)):
        remove_stale_temporaries(root, name)
    write_text_atomically(root / "summary.csv", _csv(records, metric_names))
    write_text_atomically(root / "summary.json", json.dumps({"sweep_dir": str(root), "jobs": records}, indent=2) + "\n")
    notes = [f"summary: {root / 'summary.csv'}, {root / 'summary.json'}"]
    pngs = {}
    for name, plot in plots.items():
        label = plot.get("label", name)
        try:
            png = plot_png(plot, records)
        except ImportError:
            notes.append(f"{label} plot skipped: matplotlib is not installed (pip install 'genlab[plots]')")
            continue
        if png is not None:
            write_atomically(root / f"{name}.png", lambda f: f.write(png))
            notes.append(f"{label} plot: {root / f'{name}.png'}")
            pngs[name] = png
    write_sweep_events(root, records, metric_names, pngs)
    console.print(_table(root, records, metric_names))
    for note in notes:
        console.print(note, markup=False, highlight=False, soft_wrap=True)
    return records
