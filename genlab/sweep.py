"""Sweeps: every job leaves a result record, and a sweep's summary is rebuilt from those alone.

A job of `genlab train -m …` writes `result.json` into its run directory, first as `running`, then
`ok` or `failed`:

    overrides  the job's overrides, typed: {"beta": 4, "model": "vae", …}
    status     running | ok | failed   (still `running` after a kill: the job never finished)
    error      why it failed, in one line; null otherwise
    steps, wall_s, metrics, config (the resolved config the job ran)

The metrics are the model's training scalars averaged over the last `trainer.log_every` steps
(per image, in nats where they are likelihoods), plus what the model's optional
`final_metrics(images)` measures on fixed data images (the VAE: active latent units). A value
that is not finite is stored as null.

The summary of a sweep directory (written when a sweep ends, or by `genlab summarize PATH`):
    summary.csv, summary.json    one row per job: overrides, status, steps, wall time, metrics
    a rich table                 on the terminal
    rate_distortion.png          for jobs that report recon_nats and kl_nats (VAEs), below
    TensorBoard                  each job's run holds HParams session summaries (its overrides)
                                 and final/<metric> scalars; the sweep directory's own event file
                                 holds the HParams experiment (the union of every job's overrides
                                 and metrics, so mixed VAE/GAN sweeps list all) and the plot.

Rate–distortion (Alemi et al. 2018, "Fixing a Broken ELBO"): per image, the distortion
D = E_q[−log p(x|z)] (recon_nats) and the rate R = KL(q(z|x) ‖ p(z)) (kl_nats); −ELBO = D + R.
The β-VAE minimises D + β·R, whose optimum touches the achievable R–D frontier where its slope is
dR/dD = −1/β: a larger β buys a lower rate with a higher distortion.

Re-running a sweep into the same `hydra.sweep.dir` skips each job whose record says ok with the
same overrides; every other job continues from its checkpoints/last.pt, or starts again when it has
none or that checkpoint is already at trainer.max_steps (killed after its last checkpoint, before
its record said ok: the final log window's means, which the record holds, are not in a checkpoint)
(see `genlab.commands.train._app`).

One sweep directory, one launcher: the launcher holds an exclusive lock on
<sweep dir>/.genlab-sweep.lock (flock, genlab/training/locks.py) while it runs, so a second launch of the
same sweep stops in one line, and the kernel releases the lock when the launcher dies, kill -9
included. A sweep directory named by the time (Hydra's default) is claimed by creating it: two
launches in the same second get `<time>` and `<time>-2`, never one directory. Each job holds its
run directory's lock (<job dir>/.genlab-run.lock, the one `genlab train` holds) while it runs: a
job that outlives a killed launcher (a joblib worker, a Slurm job), or the job resumed by hand
(`genlab train resume=<job dir>`), makes the same job of a re-run wait for it, so no job runs in
two processes at once.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import shutil
import struct
import sys
import time
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from genlab.training import locks
from genlab.errors import UserError, fail
from genlab.files import remove_stale_temporaries, write_atomically, write_text_atomically

RECORD_NAME = "result.json"
PLOT_NAME = "rate_distortion.png"
STATUSES = ("running", "ok", "failed")
# What a job leaves in its run directory besides .hydra/ and its log: cleared before a restart.
ATTEMPT_OUTPUTS = ("checkpoints", "samples", RECORD_NAME, "events.out.tfevents.*")
MAX_DIRNAME_BYTES = 200  # below NAME_MAX (255) with room for a hash suffix
SWEEP_LOCK = ".genlab-sweep.lock"  # in the sweep directory, held by its launcher


# --------------------------------------------------------------------------- job directories


def job_dirname(override_dirname: str) -> str:
    """A sweep job's directory name from Hydra's override_dirname ("beta=4,noise_dim=16").

    A path separator in a value would nest directories, so it becomes "_"; a name too long for
    the file system is cut and ends in a hash of the full name, so it stays unique.
    """
    name = (override_dirname or "default").replace("/", "_").replace("\\", "_")
    if name.startswith("."):
        name = "_" + name[1:]
    if len(name.encode()) > MAX_DIRNAME_BYTES:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = name.encode()[: MAX_DIRNAME_BYTES - 11].decode(errors="ignore") + "-" + digest
    return name


def dirname_overrides(overrides: list[str]) -> list[str]:
    """Hydra overrides that name each job's directory by the swept keys only.

    `genlab train -m beta=1,4 trainer.max_steps=5000` runs jobs `beta=1` and `beta=4`: the keys
    that are the same for every job stay out of the names. Without a swept key every override
    names the one job.
    """
    from genlab.config.overrides import parse_overrides

    parsed = parse_overrides(overrides)
    task = [o for o in parsed if o.key_or_group != "hydra" and not o.key_or_group.startswith(("hydra.", "hydra/"))]
    exclude_key = "hydra.job.config.override_dirname.exclude_keys"
    if not any(o.is_sweep_override() for o in task) or any(o.key_or_group == exclude_key for o in parsed):
        return []
    constant = sorted({o.key_or_group for o in task if not o.is_sweep_override()})
    return [f"{exclude_key}=[{','.join(constant)}]"] if constant else []


def job_overrides(task_overrides: list[str]) -> dict:
    """A job's overrides as typed values: ["beta=4", "model=vae"] → {"beta": 4, "model": "vae"}.
    `resume` and `force_resume` say where a run continued from, not what the job is: left out, so
    that a job resumed by hand (genlab train resume=<job dir> trainer.max_steps=N) keeps its place
    in its sweep's summary."""
    from genlab.config.overrides import parse_overrides
    from genlab.training.resume import RESUME_KEYS

    typed = {}
    for override in parse_overrides(task_overrides):
        if override.key_or_group in RESUME_KEYS:
            continue
        value = override.value()
        plain = value is None or isinstance(value, (bool, int, float, str))
        typed[override.key_or_group] = value if plain else override.get_value_element_as_str()
    return typed


def job_threads(launcher: dict) -> int | None:
    """torch threads for a sweep job that leaves hardware.threads unset.

    A scheduler that gives each job its own CPUs (submitit: cpus_per_task) sets the count; a
    launcher that runs n_jobs side by side on this machine (joblib; negative n_jobs count back
    from the cores, as joblib does) divides the cores between them; otherwise None keeps torch's
    default (all cores, right for jobs that run one after another).
    """
    if launcher.get("cpus_per_task"):
        return int(launcher["cpus_per_task"])
    n_jobs = launcher.get("n_jobs")
    if not n_jobs:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    side_by_side = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
    return max(1, cores // side_by_side)


def device_gpus(device: str) -> int:
    """GPUs a scheduler should give a job with hardware.device=`device`."""
    return 1 if str(device).startswith("cuda") else 0


# --------------------------------------------------------------------------- job records


def read_record(path: Path) -> dict:
    """A job's result record; UserError naming the file when it is unreadable."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is not a readable result record ({e}); delete it and re-run that job") from None
    if not (isinstance(record, dict) and record.get("status") in STATUSES and isinstance(record.get("overrides"), dict)
            and isinstance(record.get("metrics"), dict)):
        raise UserError(f"{path} is not a genlab result record (status, overrides, metrics); delete it and re-run that job")
    return record


def is_finished(run_dir: Path, overrides: dict) -> bool:
    """Whether run_dir holds an ok record of a job with these overrides (so re-running skips it)."""
    path = run_dir / RECORD_NAME
    try:
        record = read_record(path) if path.is_file() else None
    except UserError:
        return False
    return record is not None and record["status"] == "ok" and record["overrides"] == overrides


def resume_point(run_dir: Path, max_steps: int) -> Path | None:
    """The checkpoint an unfinished job continues from: its checkpoints/last.pt when that is
    before step `max_steps`. None (start again) when there is none, or when it is already at
    max_steps: the job was killed after its final checkpoint, and the means of the final log window
    that its record holds are not in the checkpoint, so only a new attempt gives the same record."""
    last = run_dir / "checkpoints" / "last.pt"
    if not last.is_file():
        return None
    import torch

    try:  # mmap: the step without reading the weights
        step = torch.load(last, map_location="cpu", weights_only=True, mmap=True).get("step")
    except Exception:  # unreadable: resuming names the problem in the job's record
        return last
    return last if not isinstance(step, int) or step < max_steps else None


def clear_attempt(run_dir: Path) -> None:
    """Remove what an earlier attempt of a job wrote, so that a restart starts clean."""
    for pattern in ATTEMPT_OUTPUTS:
        for path in run_dir.glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def _finite_or_none(value):
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def error_line(error: BaseException) -> str:
    """An exception as the one line a summary shows."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if not isinstance(error, UserError):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text[:300]


class JobRecord:
    """The result record of one job, in its run directory: `running` from construction on."""

    def __init__(self, run_dir: Path, overrides: dict, config: dict):
        self.run_dir = run_dir
        self.record = {"overrides": overrides, "status": "running", "error": None, "steps": None,
                       "wall_s": None, "metrics": {}, "config": config}
        self._start_s = time.perf_counter()
        self._write()

    def finish(self, steps: int, metrics: dict[str, float]) -> None:
        self.record.update(status="ok", steps=steps, metrics={k: _finite_or_none(v) for k, v in metrics.items()})
        self._end()

    def fail(self, error: BaseException) -> None:
        self.record.update(status="failed", error=error_line(error))
        self._end()

    def _end(self) -> None:
        self.record["wall_s"] = round(time.perf_counter() - self._start_s, 3)
        self._write()
        write_job_hparams(self.run_dir, self.record)

    def _write(self) -> None:
        write_text_atomically(self.run_dir / RECORD_NAME, json.dumps(self.record, indent=2) + "\n")


# --------------------------------------------------------------------------- locks


class SweepRunning(UserError):
    """The sweep directory is held by another launcher."""


def _holder(path: Path) -> str:
    """" (pid N)" of the process that wrote its pid into the lock file `path`, when readable."""
    pid = locks.holder(path)
    return f" (pid {pid})" if pid else ""


def claim_sweep_dir(root: Path | None, from_clock: bool) -> list[str]:
    """Lock the sweep directory `root` (None: known only at run time, Hydra reports it) until the
    launcher's command ends; return the overrides that pin it.

    A directory named by the time (`from_clock`: `${now:…}` in hydra.sweep.dir, the default) is
    claimed by creating it (genlab.training.locks.claim), and pinned with a hydra.sweep.dir override. Any
    other directory is the user's to re-run into: SweepRunning when another launcher holds it."""
    from genlab.config.overrides import hydra_value

    if root is None:
        return []
    try:
        claimed = locks.claim(root, from_clock, SWEEP_LOCK)
    except OSError as e:
        raise UserError(f"cannot create the sweep directory {root} ({e.strerror or e}): choose another hydra.sweep.dir") from None
    if claimed is None:
        raise SweepRunning(f"sweep {root} is already running{_holder(root / SWEEP_LOCK)}: wait for it to end, "
                           "or choose another hydra.sweep.dir")
    return [f"hydra.sweep.dir={hydra_value(str(claimed))}"] if from_clock else []


@contextlib.contextmanager
def job_lock(run_dir: Path):
    """Hold the job's run directory lock (genlab.training.locks.RUN_LOCK) while it runs. A job that
    outlived its launcher (a joblib worker, a Slurm job), or a `genlab train resume=<job dir>`,
    still holds it: wait until it has finished or died, then go on as usual (skip the finished job,
    or resume it)."""
    path = run_dir / locks.RUN_LOCK
    fd = locks.lock(path, wait=False)
    if fd is None:
        # stderr, not the log: the other process still writes the job's train.log.
        print(f"genlab train: job {run_dir.name} is still running in another process{_holder(path)}: waiting for it",
              file=sys.stderr, flush=True)
        fd = locks.lock(path, wait=True)
    try:
        yield
    finally:
        os.close(fd)


def sweep_running(root: Path) -> str | None:
    """" (pid N)" (or "") when a launcher holds the sweep directory `root`; None when none does."""
    pid = locks.held_by(root / SWEEP_LOCK)
    return None if pid is None else f" (pid {pid})" if pid else ""


# --------------------------------------------------------------------------- TensorBoard


def _write_events(logdir: Path, summaries: list[tuple[int, object]]) -> None:
    """(step, Summary) pairs into a new event file in logdir (torch-free: tensorboard's writer)."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(logdir))
    for step, summary in summaries:
        writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))
    writer.close()


def _hparams_summary(tag: str, **data):
    """A Summary holding one HParams plugin record (experiment, session start or end)."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    content = plugin_data_pb2.HParamsPluginData(**data)
    value = summary_pb2.Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(content),
                                      tensor=metadata.NULL_TENSOR)
    return summary_pb2.Summary(value=[value])


def write_job_hparams(run_dir: Path, record: dict) -> None:
    """A finished job's HParams session (its overrides, its end status) and final/<metric>
    scalars, into its own run directory: no sub-run, unlike SummaryWriter.add_hparams."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time() - (record["wall_s"] or 0))
    for key, value in record["overrides"].items():
        if isinstance(value, bool):
            start.hparams[key].bool_value = value
        elif isinstance(value, (int, float)):
            start.hparams[key].number_value = value
        elif value is not None:
            start.hparams[key].string_value = value
    status = api_pb2.STATUS_SUCCESS if record["status"] == "ok" else api_pb2.STATUS_FAILURE
    end = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
    step = record["steps"] or 0
    finals = [summary_pb2.Summary.Value(tag=f"final/{name}", simple_value=value)
              for name, value in record["metrics"].items() if value is not None]
    _write_events(run_dir, [(0, _hparams_summary(metadata.SESSION_START_INFO_TAG, session_start_info=start)),
                            (step, summary_pb2.Summary(value=finals)),
                            (step, _hparams_summary(metadata.SESSION_END_INFO_TAG, session_end_info=end))])


def _experiment_summary(records: list[dict], metric_names: list[str]):
    """The HParams experiment of a sweep: every job's override keys and every final metric."""
    from google.protobuf import struct_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata

    infos = []
    swept = varying_keys(records)  # `differs` makes TensorBoard show these columns first
    for key in _union(r["overrides"] for r in records):
        values = [r["overrides"][key] for r in records if r["overrides"].get(key) is not None]
        if values and all(isinstance(v, bool) for v in values):
            info = api_pb2.HParamInfo(name=key, type=api_pb2.DATA_TYPE_BOOL)
        elif values and all(_is_number(v) for v in values):
            info = api_pb2.HParamInfo(name=key, type=api_pb2.DATA_TYPE_FLOAT64)
        else:
            domain = struct_pb2.ListValue(values=[struct_pb2.Value(string_value=str(v)) for v in dict.fromkeys(values)])
            info = api_pb2.HParamInfo(name=key, type=api_pb2.DATA_TYPE_STRING, domain_discrete=domain)
        info.differs = key in swept
        infos.append(info)
    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=f"final/{name}")) for name in metric_names]
    experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics)
    return _hparams_summary(metadata.EXPERIMENT_TAG, experiment=experiment)


def _image_summary(tag: str, png: bytes):
    from tensorboard.compat.proto import summary_pb2

    width, height = struct.unpack(">II", png[16:24])  # the PNG header's IHDR chunk
    image = summary_pb2.Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)
    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, image=image)])


def _write_sweep_events(root: Path, records: list[dict], metric_names: list[str], png: bytes | None) -> None:
    """The sweep directory's own event file; it replaces the one an earlier summary wrote."""
    earlier = list(root.glob("events.out.tfevents.*"))
    summaries = [(0, _experiment_summary(records, metric_names))]
    if png is not None:
        summaries.append((0, _image_summary("sweep/rate_distortion", png)))
    _write_events(root, summaries)
    for path in earlier:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- summary


def _union(dicts) -> list[str]:
    """Keys of several dicts, in order of first appearance."""
    return list(dict.fromkeys(key for d in dicts for key in d))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def varying_keys(records: list[dict]) -> list[str]:
    """Override keys whose value differs between jobs (the swept ones)."""
    keys = _union(r["overrides"] for r in records)
    return [k for k in keys if len({json.dumps(r["overrides"].get(k)) for r in records}) > 1]


def load_records(root: Path) -> list[dict]:
    """Every job record under root, each with its `job` name (its directory relative to root),
    sorted by the swept values (numbers by size)."""
    if not root.is_dir():
        raise UserError(f"{root} is not a directory: pass the sweep directory, e.g. genlab summarize outputs/multirun/<date>/<time>")
    records = []
    for path in sorted(root.rglob(RECORD_NAME)):
        record = read_record(path)
        record["job"] = path.parent.name if path.parent == root else str(path.parent.relative_to(root))
        records.append(record)
    if not records:
        raise UserError(f"no job records ({RECORD_NAME}) under {root}: pass a directory that genlab train -m wrote")
    keys = varying_keys(records)
    records.sort(key=lambda r: [(0, v, "") if _is_number(v) else (1, 0, str(v))
                                for v in (r["overrides"].get(k) for k in keys)] + [r["job"]])
    return records


def _cell(value) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def _csv(records: list[dict], metric_names: list[str]) -> str:
    override_keys = _union(r["overrides"] for r in records)
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


def _is_beta(key: str) -> bool:
    return key == "beta" or key.endswith(".beta")


def rate_distortion_png(records: list[dict]) -> bytes | None:
    """The R–D plot of the ok jobs that report recon_nats and kl_nats, as PNG bytes (None when
    there are none). Jobs that differ only in β are joined by a line, ordered by β.
    Needs matplotlib (ImportError otherwise)."""
    points = [r for r in records if r["status"] == "ok"
              and r["metrics"].get("recon_nats") is not None and r["metrics"].get("kl_nats") is not None]
    if not points:
        return None
    from matplotlib.figure import Figure

    others = [k for k in varying_keys(points) if not _is_beta(k)]
    curves: dict[str, list[dict]] = {}
    for r in points:
        curves.setdefault(", ".join(f"{k}={r['overrides'].get(k)}" for k in others), []).append(r)
    figure = Figure(figsize=(6.4, 4.8), dpi=100)
    axes = figure.add_subplot()
    for label, members in curves.items():
        members.sort(key=lambda r: r["config"]["model"].get("beta") or 0)
        distortion = [r["metrics"]["recon_nats"] for r in members]
        rate = [r["metrics"]["kl_nats"] for r in members]
        axes.plot(distortion, rate, marker="o", label=label or None)
        for r, d, k in zip(members, distortion, rate):
            beta = r["config"]["model"].get("beta")
            if beta is not None:
                axes.annotate(f"β={beta:g}", (d, k), textcoords="offset points", xytext=(5, 5), fontsize=8)
    axes.set_xlabel("distortion D = −log p(x|z)  [recon_nats, nats per image]")
    axes.set_ylabel("rate R = KL(q(z|x) ‖ p(z))  [kl_nats, nats per image]")
    axes.set_title("Rate–distortion across the sweep (final training window)", fontsize=10)
    axes.grid(alpha=0.3)
    if any(curves):
        axes.legend(fontsize=8)
    out = io.BytesIO()
    figure.savefig(out, format="png", bbox_inches="tight")
    return out.getvalue()


def summarize(root: Path, console=None, running: str | None = None) -> list[dict]:
    """Write the summary files and TensorBoard events of the sweep directory `root` from its job
    records, print the table, and return the records. `running` (" (pid N)"): a launcher holds the
    sweep, so only the table is printed; its launcher writes the files when the sweep ends."""
    from rich.console import Console

    # Off a terminal (a log file, a cluster job) the table keeps its natural width.
    console = console or Console(width=None if sys.stdout.isatty() else 1000)
    records = load_records(root)
    metric_names = _union(r["metrics"] for r in records)
    if running is not None:
        console.print(_table(root, records, metric_names))
        console.print(f"{root} is still running{running}: summary files not written; its launcher writes them when "
                      "it ends", markup=False, highlight=False, soft_wrap=True)
        return records
    # Writes of these files killed with an earlier launcher left temporary files; no one else writes
    # them now (this launcher holds the sweep's lock, or, for `genlab summarize`, no launcher does).
    for name in ("summary.csv", "summary.json", PLOT_NAME):
        remove_stale_temporaries(root, name)
    write_text_atomically(root / "summary.csv", _csv(records, metric_names))
    write_text_atomically(root / "summary.json", json.dumps({"sweep_dir": str(root), "jobs": records}, indent=2) + "\n")
    notes = [f"summary: {root / 'summary.csv'}, {root / 'summary.json'}"]
    try:
        png = rate_distortion_png(records)
    except ImportError:
        png = None
        notes.append("rate–distortion plot skipped: matplotlib is not installed (pip install 'genlab[plots]')")
    if png is not None:
        write_atomically(root / PLOT_NAME, lambda f: f.write(png))
        notes.append(f"rate–distortion plot: {root / PLOT_NAME}")
    _write_sweep_events(root, records, metric_names, png)
    console.print(_table(root, records, metric_names))
    for note in notes:
        console.print(note, markup=False, highlight=False, soft_wrap=True)
    return records


class SweepSummary(Callback):
    """Hydra callback (configs/train.yaml): summarise the sweep when it ends; exit non-zero when
    a job did not finish ok (jobs catch their own failures, so the others run to the end)."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        root = Path(config.hydra.sweep.dir)
        try:
            records = summarize(root)
        except UserError as e:
            fail("train", e)
        bad = [r["job"] for r in records if r["status"] != "ok"]
        if bad:
            fail("train", f"{len(bad)} of {len(records)} jobs did not finish ok ({', '.join(bad)}): "
                          f"see {root / 'summary.csv'} and each job's train.log; re-run the same command to retry them")


USAGE = """usage: genlab summarize PATH

Rebuild the summary of a sweep directory from its jobs' result.json files: summary.csv,
summary.json, rate_distortion.png and the sweep's TensorBoard event file; print the table.
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
