"""Soak test of sweeps under kills: kill a sweep again and again at random moments, re-run the same
command until it reports done, and check that the result is the one a sweep that was never
interrupted gives.

One clean sweep of tiny jobs (`genlab train -m seed=0,1,…` into a pinned hydra.sweep.dir) is the
reference. The soaked sweep runs the same command into its own directory; at a random moment of
each launch (seeded RNG) the harness sends SIGKILL, SIGTERM or SIGHUP to the launcher, or under
hydra/launcher=joblib to a job's worker process. Moments are drawn uniformly either from the
launch's start-up (before its first job logs) or from the time its jobs take (measured on the clean
sweep), so kills land in imports, data building, training steps, checkpoint writes, record writes
and the summary. After `--kills` kills (or `--max-s` seconds) the command is re-run without kills
until it exits 0. Then, against the clean sweep:

- jobs: the same job directories; every result.json says ok with the same overrides and steps; a
  job whose record said ok after a launch was never written again (it finished exactly once);
- checkpoints: every job's checkpoints/last.pt holds the same values, bit for bit (tensors compared
  as bytes: model and optimizer state, data order, RNG states, log window, step, config), and its
  samples/ the same PNG bytes;
- summary: summary.csv equals the clean one with the wall_s column blanked (wall time is the one
  value that differs between any two runs); summary.json equals it without wall_s, sweep_dir (the
  directory's own path) and the resume path a continued job's recorded config names;
- files: no temporary file is left (a name ending in .tmp, or a dot-name other than .hydra and
  genlab's lock files); every .json, .csv and .yaml parses, every .pt loads with
  torch.load(weights_only=True), every .png decodes, every TensorBoard events file is a whole
  sequence of records with valid CRCs;
- locks and processes: the sweep's lock is free, and no process the harness started is left.

    PYTHONPATH=. python benchmarks/soak.py                       # 3 jobs, 10 kills, basic launcher
    PYTHONPATH=. python benchmarks/soak.py --launcher joblib --kills 10 --seed 1
    PYTHONPATH=. python benchmarks/soak.py --out /tmp/soak --keep  # keep the sweeps to look at

Exit status 0 when every check passes, 1 otherwise (each failed check printed on its own line).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCK_NAMES = {".genlab-sweep.lock", ".genlab-run.lock"}  # genlab/sweep/locks.py, genlab/training/locks.py
JOB_STARTED = re.compile(r"\]\[genlab\]\[INFO\] - ")  # the first line a job (or a skip) logs


def tiny_overrides(steps: int) -> list[str]:
    """A job of about a second after start-up; every step checkpoints, so a kill can land in any
    checkpoint write."""
    return [f"trainer.max_steps={steps}", "trainer.batch_size=8", "dataset.image_size=16", "model.width=8",
            "trainer.grid_size=4", "trainer.log_every=1", "trainer.ckpt_every=1", "trainer.sample_every=2",
            "hardware=cpu", "hardware.threads=1"]


def sweep_command(sweep_dir: Path, jobs: int, steps: int, launcher: str) -> list[str]:
    seeds = ",".join(str(s) for s in range(jobs))
    command = [sys.executable, "-m", "genlab.cli", "train", "-m", f"seed={seeds}", *tiny_overrides(steps),
               f"hydra.sweep.dir={sweep_dir}"]
    if launcher == "joblib":
        command += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    return command


def default_hangup() -> None:
    """Give SIGHUP its default action, which the processes started here inherit: under nohup it is
    ignored, and a hang-up sent to them would test nothing (genlab keeps an ignored signal ignored)."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def environment() -> dict:
    # This checkout's code, in every process the launcher starts (joblib workers too).
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}


# --------------------------------------------------------------------------- running and killing


@dataclass
class Launch:
    """One run of the sweep command: when and how it was killed, how it ended."""
    number: int
    kill: str | None = None  # "launcher SIGKILL", "worker SIGTERM", …
    phase: str | None = None  # what its moment was drawn after (ANCHORS)
    last_line: str = ""  # what the sweep had logged last when the kill was sent
    returncode: int | None = None
    seconds: float = 0.0


@dataclass
class Report:
    jobs: int
    launcher: str
    launches: list[Launch] = field(default_factory=list)
    clean_s: float = 0.0
    soak_s: float = 0.0
    problems: list[str] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)  # process group of each launch

    @property
    def kills(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for launch in self.launches:
            if launch.kill:
                key = f"{launch.kill} ({launch.phase})"
                counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items()))

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        killed = sum(self.kills.values())
        out = [f"launcher: {self.launcher}; jobs: {self.jobs}; launches: {len(self.launches)} "
               f"({killed} killed, {len(self.launches) - 1} re-runs)",
               "kills by kind: " + (", ".join(f"{k}: {n}" for k, n in self.kills.items()) or "none"),
               "launches: " + " ".join(f"#{l.number}:{l.kill or 'no kill'}→{l.returncode}" for l in self.launches),
               f"time: clean sweep {self.clean_s:.1f} s, soaked sweep {self.soak_s:.1f} s (all launches)",
               f"result: {'PASS' if self.ok else 'FAIL'}" + (f" ({len(self.problems)} problems)" if self.problems else "")]
        return out + [f"  problem: {p}" for p in self.problems]


def _children(pid: int) -> list[int]:
    """Direct children of pid (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def _workers(pid: int) -> list[int]:
    """The launcher's joblib (loky) worker processes."""
    found = []
    for child in _children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"popen_loky" in cmdline:
            found.append(child)
    return found


def _started_job(log_path: Path) -> bool:
    try:
        return bool(JOB_STARTED.search(log_path.read_text(errors="replace")))
    except OSError:
        return False


def _start(command, log_path: Path) -> subprocess.Popen:
    """The command in a new session (its own process group: what it leaves behind can be found)."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, cwd=log_path.parent, env=environment(), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _end_group(pgid: int) -> None:
    """Kill what is left of one launch's process group (orphaned joblib workers)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _alive_in_group(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _log_text(log_path: Path) -> str:
    try:
        return log_path.read_text(errors="replace")
    except OSError:
        return ""


def _last_line(log_path: Path) -> str:
    lines = [line for line in _log_text(log_path).splitlines() if "][genlab][" in line or "][HYDRA]" in line]
    return lines[-1].split(" - ", 1)[-1].strip()[:100] if lines else "(nothing logged yet)"


# Where a kill's moment is drawn from: (name, probability). The moments in between log lines are
# uniform, so kills land in imports, data building, steps, sample and checkpoint writes, final
# metrics, record writes and the summary.
ANCHORS = (("start-up", 0.2), ("jobs", 0.3), ("step", 0.35), ("job end", 0.15))


def launch_once(report: Report, command, work: Path, rng: random.Random | None, startup_s: float, jobs_s: float,
                steps: int, timeout_s: float, anchors: tuple[str, ...] = tuple(a for a, _ in ANCHORS)) -> Launch:
    """Run the command once; with `rng`, kill it at a random moment, drawn from one of ANCHORS:
    uniform within `startup_s` of its start; uniform within `jobs_s` of its first job's first log
    line; within 50 ms of a random step's log line ("step k/N", after which the step's samples and
    checkpoint are written); within 30 ms of a job's "done:" line (final metrics, the record)."""
    launch = Launch(len(report.launches) + 1)
    log_path = work / f"launch-{launch.number:03d}.log"
    start = time.perf_counter()
    proc = _start(command, log_path)
    report.launches.append(launch)
    report.groups.append(proc.pid)
    try:
        if rng is not None:
            kinds = ["launcher SIGKILL", "launcher SIGTERM", "launcher SIGHUP"]
            if report.launcher == "joblib":
                kinds += ["worker SIGKILL", "worker SIGTERM", "worker SIGHUP"]
            kind = rng.choice(kinds)
            anchor = rng.choices(anchors, [dict(ANCHORS)[a] for a in anchors])[0]
            if anchor == "start-up":
                pattern, delay = None, rng.uniform(0, startup_s)
            elif anchor == "jobs":
                pattern, delay = JOB_STARTED, rng.uniform(0, jobs_s)
            elif anchor == "step":
                pattern, delay = re.compile(rf"\]\[genlab\]\[INFO\] - step {rng.randint(1, steps)}/{steps} "), rng.uniform(0, 0.05)
            else:
                pattern, delay = re.compile(r"\]\[genlab\]\[INFO\] - done: "), rng.uniform(0, 0.03)
            while pattern is not None and proc.poll() is None and not pattern.search(_log_text(log_path)):
                time.sleep(0.002)
            t0 = time.perf_counter() if pattern is not None else start
            while proc.poll() is None and time.perf_counter() < t0 + delay:
                time.sleep(0.002)
            if proc.poll() is None:
                signum = signal.Signals[kind.split()[1]]
                targets = [proc.pid] if kind.startswith("launcher") else _workers(proc.pid)
                if targets:
                    launch.kill, launch.phase, launch.last_line = kind, anchor, _last_line(log_path)
                    os.kill(rng.choice(targets), signum)
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        report.problems.append(f"launch {launch.number} did not end within {timeout_s:.0f} s (see {log_path})")
        proc.kill()
        proc.wait()
    launch.returncode = proc.returncode
    launch.seconds = time.perf_counter() - start
    return launch


# --------------------------------------------------------------------------- checks


def _bits_equal(a, b, where: str, problems: list[str]) -> None:
    import torch

    if isinstance(a, torch.Tensor):
        if not (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a.reshape(-1).contiguous().view(torch.uint8), b.reshape(-1).contiguous().view(torch.uint8))):
            problems.append(f"{where} differs from the clean run's")
    elif isinstance(a, dict):
        if not isinstance(b, dict) or a.keys() != b.keys():
            problems.append(f"{where} has other keys than the clean run's")
            return
        for key in a:
            _bits_equal(a[key], b[key], f"{where}.{key}", problems)
    elif isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            problems.append(f"{where} differs in length from the clean run's")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            _bits_equal(x, y, f"{where}[{i}]", problems)
    elif a != b:
        problems.append(f"{where} is {b!r}, the clean run's {a!r}")


def _events_whole(path: Path) -> str | None:
    """None when the TensorBoard events file is a whole sequence of records with valid CRCs (the
    TFRecord framing: u64 length, u32 masked CRC of it, data, u32 masked CRC of the data)."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    data, at = path.read_bytes(), 0
    while at < len(data):
        if at + 12 > len(data):
            return f"ends in a partial record header at byte {at}"
        header = data[at:at + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[at + 8:at + 12])
        if masked_crc32c(header) != header_crc:
            return f"bad length CRC at byte {at}"
        end = at + 12 + length + 4
        if end > len(data):
            return f"ends in a partial record at byte {at}"
        body = data[at + 12:at + 12 + length]
        if masked_crc32c(body) != struct.unpack("<I", data[end - 4:end])[0]:
            return f"bad data CRC at byte {at}"
        event_pb2.Event.FromString(body)
        at = end
    return None


def check_files(root: Path) -> list[str]:
    """Every file under root whole: no temporary file left, every structured file parses."""
    import torch
    import yaml
    from PIL import Image

    problems = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(root)
        name = path.name
        hidden = [part for part in rel.parts if part.startswith(".") and part != ".hydra"]
        if name.endswith(".tmp") or (hidden and name not in LOCK_NAMES):
            problems.append(f"{rel}: a temporary file was left")
            continue
        try:
            if name.endswith(".json"):
                json.loads(path.read_text())
            elif name.endswith(".csv"):
                rows = list(csv.reader(io.StringIO(path.read_text())))
                if not rows or any(len(r) != len(rows[0]) for r in rows):
                    problems.append(f"{rel}: rows of different lengths")
            elif name.endswith((".yaml", ".yml")):
                yaml.safe_load(path.read_text())
            elif name.endswith(".pt"):
                torch.load(path, map_location="cpu", weights_only=True)
            elif name.endswith(".png"):
                with Image.open(path) as image:
                    image.load()
            elif name.startswith("events.out.tfevents."):
                whole = _events_whole(path)
                if whole:
                    problems.append(f"{rel}: events file {whole}")
        except Exception as e:  # noqa: BLE001  (any failure to parse is the finding)
            problems.append(f"{rel}: does not parse ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})")
    return problems


def _without(record: dict) -> dict:
    """A summary.json job without what differs between two runs of the same job: its wall time,
    and the checkpoint a continued job's recorded config says it resumed from."""
    record = {k: v for k, v in record.items() if k != "wall_s"}
    if isinstance(record.get("config"), dict):
        record["config"] = {k: v for k, v in record["config"].items() if k != "resume"}
    return record


def _csv_without_wall(path: Path) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(path.read_text())))
    column = rows[0].index("wall_s") if rows and "wall_s" in rows[0] else None
    return [[("" if i == column and n else cell) for i, cell in enumerate(row)] for n, row in enumerate(rows)]


def check_sweep(soaked: Path, clean: Path, steps: int, history: dict[str, list] | None = None) -> list[str]:
    """Problems of the soaked sweep measured against the clean one (empty: none). `history`: job →
    (status, text) of its result.json after each launch (None where it had none)."""
    import torch

    problems = []
    jobs = sorted(p.name for p in clean.iterdir() if (p / "result.json").is_file())
    got = sorted(p.name for p in soaked.iterdir() if p.is_dir())
    if got != jobs:
        problems.append(f"job directories {got}, the clean sweep's {jobs}")
    for job in jobs:
        record_path = soaked / job / "result.json"
        if not record_path.is_file():
            problems.append(f"{job}: no result.json")
            continue
        try:
            record, reference = json.loads(record_path.read_text()), json.loads((clean / job / "result.json").read_text())
        except json.JSONDecodeError as e:
            problems.append(f"{job}: result.json does not parse ({e})")
            continue
        if (record.get("status"), record.get("steps"), record.get("overrides")) != ("ok", steps, reference["overrides"]):
            problems.append(f"{job}: record says {record.get('status')} at step {record.get('steps')}, "
                            f"overrides {record.get('overrides')}")
        # Finished exactly once: once a launch left the record ok, no later launch wrote it.
        seen = [v for v in (history or {}).get(job, []) if v is not None and v[0] == "ok"]
        if len({v[1] for v in seen}) > 1:
            problems.append(f"{job}: its ok record was written again by a later launch (it finished twice)")
        last, clean_last = soaked / job / "checkpoints" / "last.pt", clean / job / "checkpoints" / "last.pt"
        try:
            state = torch.load(last, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            problems.append(f"{job}: checkpoints/last.pt does not load ({type(e).__name__})")
            continue
        _bits_equal(torch.load(clean_last, map_location="cpu", weights_only=True), state, f"{job}: last.pt", problems)
        clean_samples = {p.name: p.read_bytes() for p in (clean / job / "samples").glob("*.png")}
        samples = {p.name: p.read_bytes() for p in (soaked / job / "samples").glob("*.png")}
        if samples.keys() != clean_samples.keys():
            problems.append(f"{job}: samples/ holds {sorted(samples)}, the clean run {sorted(clean_samples)}")
        elif any(samples[n] != clean_samples[n] for n in samples):
            problems.append(f"{job}: samples/ images differ from the clean run's")
    for name in ("summary.csv", "summary.json"):
        if not (soaked / name).is_file():
            problems.append(f"no {name}")
    if not problems or (soaked / "summary.csv").is_file():
        try:
            if _csv_without_wall(soaked / "summary.csv") != _csv_without_wall(clean / "summary.csv"):
                problems.append("summary.csv differs from the clean sweep's (wall_s aside)")
            a, b = (json.loads((d / "summary.json").read_text())["jobs"] for d in (soaked, clean))
            if [_without(r) for r in a] != [_without(r) for r in b]:
                problems.append("summary.json differs from the clean sweep's (wall_s, sweep_dir, config.resume aside)")
        except (OSError, ValueError, KeyError) as e:
            problems.append(f"summary files unreadable ({type(e).__name__}: {e})")
    problems += check_files(soaked)
    from genlab.sweep.locks import sweep_running

    if sweep_running(soaked) is not None:
        problems.append("the sweep's lock is still held")
    return problems


def _record_state(path: Path):
    """(status, content) of a job's record after a launch, None when it has none."""
    try:
        text = path.read_text()
        return json.loads(text).get("status"), text
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- the soak


def _clean_done(report: Report, clean: subprocess.Popen, start: float, clean_log: Path) -> bool:
    """Wait for the clean sweep; note its time, or the problem when it failed."""
    try:
        clean.wait(timeout=max(1.0, 600 - (time.perf_counter() - start)))
    except subprocess.TimeoutExpired:
        clean.kill()
        clean.wait()
    report.clean_s = time.perf_counter() - start
    if clean.returncode != 0:
        report.problems.append(f"the clean sweep failed (exit {clean.returncode}): see {clean_log}")
    return clean.returncode == 0


def soak(work: Path, *, jobs: int = 3, steps: int = 8, kills: int = 10, seed: int = 0, launcher: str = "basic",
         max_s: float = 900.0, max_clean_reruns: int = 3, anchors: tuple[str, ...] = tuple(a for a, _ in ANCHORS),
         log=print) -> Report:
    """Run the clean sweep and the soaked one under `work`; return the report (problems: empty
    when every check passed). `anchors`: the kinds of kill moments to draw from (ANCHORS)."""
    work.mkdir(parents=True, exist_ok=True)
    report = Report(jobs=jobs, launcher=launcher)
    clean_dir, soaked_dir = work / "clean", work / "soaked"
    for d in (clean_dir, soaked_dir):
        if d.exists():
            shutil.rmtree(d)
    # The clean reference: one uninterrupted sweep; its first job's first line splits start-up from
    # jobs. Kill moments drawn after log lines only (step, job end) need no timing: then it runs
    # beside the soaked sweep.
    clean_start = time.perf_counter()
    clean_log = work / "clean.log"
    clean = _start(sweep_command(clean_dir, jobs, steps, launcher), clean_log)
    startup_s = jobs_s = None
    if {"start-up", "jobs"} & set(anchors):
        while clean.poll() is None and time.perf_counter() - clean_start < 600:
            if startup_s is None and _started_job(clean_log):
                startup_s = time.perf_counter() - clean_start
            time.sleep(0.01)
        if not _clean_done(report, clean, clean_start, clean_log):
            return report
        startup_s = startup_s or report.clean_s / 2
        jobs_s = max(0.5, report.clean_s - startup_s)
        log(f"clean sweep: {report.clean_s:.1f} s (start-up {startup_s:.1f} s, jobs and summary {jobs_s:.1f} s)")

    rng = random.Random(seed)
    command = sweep_command(soaked_dir, jobs, steps, launcher)
    history: dict[str, list] = {f"seed={s}": [] for s in range(jobs)}
    start = time.perf_counter()
    timeout_s = 10 * report.clean_s + 60 if report.clean_s else 600
    unkilled_failures = 0
    try:
        while True:
            killing = sum(1 for l in report.launches if l.kill) < kills and time.perf_counter() - start < max_s
            # The jobs still to run take a share of the clean sweep's job time (finished ones are skipped).
            left = sum(1 for job in history if (_record_state(soaked_dir / job / "result.json") or ("",))[0] != "ok")
            window_s = jobs_s * max(left, 1) / jobs if jobs_s else None
            launch = launch_once(report, command, work, rng if killing else None, startup_s, window_s, steps, timeout_s,
                                 anchors)
            for job in history:
                history[job].append(_record_state(soaked_dir / job / "result.json"))
            log(f"launch {launch.number}: {launch.kill or 'no kill'}"
                + (f" ({launch.phase}; last logged: {launch.last_line})" if launch.kill else "")
                + f" → exit {launch.returncode} after {launch.seconds:.1f} s")
            if report.problems or launch.returncode == 0:
                break  # the sweep reported done (a kill drawn after its end was not sent)
            unkilled_failures = 0 if launch.kill else unkilled_failures + 1
            if not launch.kill:
                if unkilled_failures >= max_clean_reruns:
                    report.problems.append(f"{unkilled_failures} launches in a row without a kill did not finish "
                                           f"the sweep: see {work}/launch-*.log")
                    break
    finally:
        report.soak_s = time.perf_counter() - start
        if not report.clean_s:  # it ran beside the soaked sweep
            _clean_done(report, clean, clean_start, clean_log)
        # Orphaned joblib workers of killed launchers: ended before the checks, whatever they hold.
        leftovers = [pgid for pgid in [clean.pid, *report.groups] if _alive_in_group(pgid)]
        for pgid in leftovers:
            _end_group(pgid)
    if leftovers and launcher == "basic":
        report.problems.append(f"processes were left running by launches with process groups {leftovers}")
    if not report.problems:
        report.problems += check_sweep(soaked_dir, clean_dir, steps, history)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=3, help="jobs in the sweep (seed=0,…,N-1)")
    parser.add_argument("--steps", type=int, default=8, help="training steps per job (a checkpoint at every step)")
    parser.add_argument("--kills", type=int, default=10, help="kills to deliver before re-running without kills")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments and kinds")
    parser.add_argument("--launcher", choices=("basic", "joblib"), default="basic")
    parser.add_argument("--max-s", type=float, default=900.0, help="stop killing after this many seconds")
    parser.add_argument("--out", type=Path, help="where the sweeps go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the sweeps (with --out, they are always kept)")
    args = parser.parse_args(argv)
    if min(args.jobs, args.steps) < 1 or args.kills < 0:
        parser.error("--jobs and --steps must be at least 1, --kills at least 0")
    work = args.out or Path(tempfile.mkdtemp(prefix="genlab-soak-"))
    default_hangup()
    total = time.perf_counter()
    report = soak(work, jobs=args.jobs, steps=args.steps, kills=args.kills, seed=args.seed, launcher=args.launcher,
                  max_s=args.max_s)
    for line in report.lines():
        print(line)
    print(f"total time: {time.perf_counter() - total:.1f} s; sweeps in {work}")
    if args.out is None and not args.keep and report.ok:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
