"""Mixed soak: training runs, sweeps, evaluations and an explorer on one machine at once, each killed
again and again at random moments with SIGKILL, SIGTERM or SIGHUP, then resumed or restarted, for
`--minutes` (default 30). Four workloads run side by side, each in its own thread, round after
round until the time is up:

- run: `genlab train` of a tiny run (a checkpoint every step) into a fresh run directory, killed
  at a random moment of its measured duration, resumed with `genlab train resume=<dir>` until it
  exits 0. Sometimes a second `genlab train` into the same directory is started while the first is
  training: it must be refused (non-zero exit, the first's pid named). Checked: a signal that saves
  (SIGTERM, SIGHUP) exits 128 + N; no checkpoint is lost (after a kill, last.pt is at least the step
  before the last one logged, and never older than before); the finished run equals a clean run of
  the same command bit for bit (checkpoint, samples) and every file in it is whole.
- sweep: a round of benchmarks/soak.py (a tiny sweep killed at random, SIGHUP among its kills, re-run
  until done, checked against a clean sweep: every job finished exactly once, bit-identical
  checkpoints, the same summary, whole files, the lock free), alternating the basic and joblib
  launchers.
- eval: `genlab eval` of the clean run's checkpoint (fid, kid, pr with a small classifier, trained
  on first use into a fresh cache folder), killed at random, re-run until it exits 0: eval.json must
  equal a clean evaluation's metrics, and the cache and eval files be whole.
- explore: `genlab explore` on a fixed port, answering decode requests, killed at random and
  started again on the same port: every start must answer within a minute.

    PYTHONPATH=. python benchmarks/soak_mixed.py --minutes 30 --out /tmp/soak-mixed

Prints one line per kill and a report (rounds, kills by signal, resumes, problems); exit 0 when no
check failed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import soak  # noqa: E402  (benchmarks/soak.py: the sweep soak, its process and file checks)

SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGHUP)
RUN_STEPS = 30
STEP_LOGGED = re.compile(r"\]\[genlab\]\[INFO\] - step (\d+)/")


class Soak:
    """The shared report: counters and problems, written by every workload's thread."""

    def __init__(self, work: Path, deadline: float, seed: int):
        self.work, self.deadline, self.seed = work, deadline, seed
        self.lock = threading.Lock()
        self.counts: Counter = Counter()
        self.problems: list[str] = []

    def count(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)
        print(f"PROBLEM: {text}", flush=True)

    def running(self) -> bool:
        return time.monotonic() < self.deadline


def _genlab(*args: str) -> list[str]:
    return [sys.executable, "-m", "genlab.cli", *args]


def _kill_at_random(proc: subprocess.Popen, rng: random.Random, within_s: float) -> signal.Signals | None:
    """Send a random one of SIGNALS at a uniform moment within `within_s`; None if it ended first."""
    end = time.monotonic() + rng.uniform(0, within_s)
    while proc.poll() is None and time.monotonic() < end:
        time.sleep(0.005)
    if proc.poll() is not None:
        return None
    signum = rng.choice(SIGNALS)
    proc.send_signal(signum)
    return signum


def _wait(proc: subprocess.Popen, timeout_s: float = 300) -> int:
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -999


def _launch(report: Soak, workload: str, what: str, proc: subprocess.Popen, rng: random.Random, within_s: float,
            kill: bool) -> tuple[signal.Signals | None, int]:
    """Wait for `proc`, killed at a random moment when `kill`; (the signal sent or None, exit code).
    A launch without a kill must succeed; a killed one must exit as its signal says."""
    signum = _kill_at_random(proc, rng, within_s) if kill else None
    code = _wait(proc)
    if signum is None and code != 0:
        report.problem(f"{what}: exited {code} without a kill")
    elif signum is not None:
        report.count(f"{workload}: {signum.name}")
        _check_exit(report, what, signum, code)
    return signum, code


def _check_exit(report: Soak, what: str, signum: signal.Signals, code: int) -> None:
    """A signal genlab saves on ends in 128 + N, unless the process had not started its work yet
    (then Python's default for the signal stands: death by it, -N) or had just finished (0)."""
    allowed = {0, -signum} | ({128 + signum} if signum != signal.SIGKILL else set())
    if code not in allowed:
        report.problem(f"{what}: exit {code} after {signum.name} (expected one of {sorted(allowed)})")


# --------------------------------------------------------------------------- run


def _checkpoint_step(run_dir: Path) -> int:
    import torch

    last = run_dir / "checkpoints" / "last.pt"
    return torch.load(last, map_location="cpu", weights_only=True)["step"] if last.exists() else 0


def _logged_step(log: Path) -> int:
    return max((int(s) for s in STEP_LOGGED.findall(soak._log_text(log))), default=0)


def run_workload(report: Soak, rng: random.Random) -> None:
    work = report.work / "run"
    work.mkdir()
    overrides = soak.tiny_overrides(RUN_STEPS)
    start = time.monotonic()
    clean = subprocess.run(_genlab("train", *overrides, f"hydra.run.dir={work / 'clean'}"), cwd=work,
                           env=soak.environment(), stdin=subprocess.DEVNULL, capture_output=True)
    duration_s = time.monotonic() - start
    if clean.returncode != 0:
        return report.problem(f"run: the clean run failed: {clean.stderr.decode()[-300:]}")
    round_ = 0
    while report.running():
        round_ += 1
        run_dir = work / f"soaked-{round_}"
        command = _genlab("train", *overrides, f"hydra.run.dir={run_dir}")
        saved, trained_when_killed = 0, False
        for launch in range(1, 50):
            log = work / f"soaked-{round_}-{launch}.log"
            proc = soak._start(command, log)
            if rng.random() < 0.3:
                _second_writer(report, proc, command, run_dir, log, f"run {round_}")
            signum, code = _launch(report, "run", f"run {round_} launch {launch}", proc, rng, duration_s, launch < 5)
            if signum is None:
                break
            try:
                step = _checkpoint_step(run_dir)
            except Exception as e:  # noqa: BLE001  (a checkpoint that does not load is the finding)
                report.problem(f"run {round_}: last.pt does not load after {signum.name}: {e}")
                break
            logged = _logged_step(log)
            if step < saved or step < logged - (0 if code == 128 + signum else 1):
                report.problem(f"run {round_}: after {signum.name} last.pt is at step {step}; "
                               f"step {logged} was logged and step {saved} saved before")
            saved = max(saved, step)
            if step == RUN_STEPS:  # killed after its last checkpoint: trained; a resume has nothing to do
                trained_when_killed = True
                break
            if step:
                command = _genlab("train", f"resume={run_dir}")
                report.count("run: resumes")
        problems: list[str] = []
        soak._bits_equal(*(_torch_load(d / "checkpoints" / "last.pt") for d in (work / "clean", run_dir)),
                         f"run {round_}: last.pt", problems)
        clean_samples = {p.name: p.read_bytes() for p in (work / "clean" / "samples").glob("*.png")}
        if clean_samples != {p.name: p.read_bytes() for p in (run_dir / "samples").glob("*.png")}:
            problems.append(f"run {round_}: samples/ differ from the clean run's")
        files = soak.check_files(run_dir)
        if trained_when_killed:
            # Killed in its final record write: the record's temporary file stays until the directory
            # is trained in again (`genlab train resume=` refuses: nothing left to train).
            report.count("run: killed after its final checkpoint")
            files = [f for f in files if not re.fullmatch(r"\.result\.json\.\w+\.tmp: a temporary file was left", f)]
        for problem in problems + [f"run {round_}: {f}" for f in files]:
            report.problem(problem)
        report.count("run: rounds")


def _second_writer(report: Soak, proc: subprocess.Popen, command: list[str], run_dir: Path, log: Path,
                   what: str) -> None:
    """Once `proc` trains, pause it and start the same command into the same run directory: it
    must be refused, naming proc's pid, and leave the directory as it was. Then let proc go on."""
    while proc.poll() is None and _logged_step(log) == 0:
        time.sleep(0.01)
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGSTOP)
    try:
        while _state(proc.pid) not in ("T", None):  # stopped: no write of its own in flight
            time.sleep(0.001)
        before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
        second = subprocess.run(command, cwd=log.parent, env=soak.environment(), stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=300)
        after = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    finally:
        proc.send_signal(signal.SIGCONT)
    report.count("run: second writers refused")
    if second.returncode == 0 or str(proc.pid) not in second.stderr:
        report.problem(f"{what}: a second writer was not refused with the first's pid {proc.pid}: "
                       f"exit {second.returncode}, {second.stderr.strip()[-200:]}")
    changed = sorted(str(p) for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    if changed:
        report.problem(f"{what}: the refused second writer changed {changed[:3]}")


def _state(pid: int) -> str | None:
    """The process's state letter from /proc (R running, S sleeping, T stopped, …); None once gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _torch_load(path: Path):
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        return f"does not load: {e}"


# --------------------------------------------------------------------------- sweep


def sweep_workload(report: Soak, rng: random.Random) -> None:
    round_ = 0
    while report.running():
        round_ += 1
        launcher = ("basic", "joblib")[round_ % 2]
        result = soak.soak(report.work / f"sweep-{round_}", jobs=2, steps=6, kills=4, seed=rng.randrange(10**6),
                           launcher=launcher, max_s=300, log=lambda _: None)
        for kind, n in result.kills.items():
            for _ in range(n):
                report.count(f"sweep: {kind.split(' (')[0]}")
        report.count(f"sweep: rounds ({launcher})")
        for problem in result.problems:
            report.problem(f"sweep {round_} ({launcher}): {problem}")


# --------------------------------------------------------------------------- eval


def _clean_checkpoint(report: Soak) -> Path:
    """The clean run's final checkpoint, once that run has finished (its record says ok)."""
    clean = report.work / "run" / "clean"
    while report.running() and (soak._record_state(clean / "result.json") or ("",))[0] != "ok":
        time.sleep(1)
    return clean / "checkpoints" / "last.pt"


def eval_workload(report: Soak, rng: random.Random) -> None:
    work = report.work / "eval"
    work.mkdir()
    ckpt = _clean_checkpoint(report)

    def command(folder: Path) -> list[str]:
        return _genlab("eval", f"ckpt={folder / 'last.pt'}", "metrics=[fid,kid,pr]", "n=200", "kid_subset_size=100",
                       "classifier.steps=100", f"cache_dir={folder / 'cache'}", "hardware.threads=1")

    def fresh(name: str) -> Path:
        folder = work / name
        folder.mkdir()
        shutil.copy(ckpt, folder / "last.pt")
        return folder

    clean_dir = fresh("clean")
    start = time.monotonic()
    clean = subprocess.run(command(clean_dir), cwd=work, env=soak.environment(), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True)
    duration_s = time.monotonic() - start
    if clean.returncode != 0:
        return report.problem(f"eval: the clean evaluation failed: {clean.stderr[-300:]}")
    expected = json.loads((clean_dir / "eval.json").read_text())["metrics"]
    round_ = 0
    while report.running():
        round_ += 1
        folder = fresh(f"soaked-{round_}")
        for launch in range(1, 20):
            proc = soak._start(command(folder), work / f"soaked-{round_}-{launch}.log")
            signum, _ = _launch(report, "eval", f"eval {round_} launch {launch}", proc, rng, duration_s, launch < 4)
            if signum is None:
                break
            for problem in soak.check_files(folder):
                report.problem(f"eval {round_}: {problem}")
        try:
            got = json.loads((folder / "eval.json").read_text())["metrics"]
            if _figures(got) != _figures(expected):
                report.problem(f"eval {round_}: eval.json's figures differ from the clean evaluation's")
        except (OSError, ValueError, KeyError) as e:
            report.problem(f"eval {round_}: eval.json unreadable ({e})")
        report.count("eval: rounds")


def _figures(metrics):
    """eval.json's metrics without what names the folder or the clock (`path`, `wall_s`)."""
    if isinstance(metrics, dict):
        return {k: _figures(v) for k, v in metrics.items() if k not in ("path", "wall_s")}
    return metrics


# --------------------------------------------------------------------------- explore


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _decode(port: int, seed: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/api/decode", json.dumps({"seed": seed}), {"Content-Type": "application/json"})
        response = conn.getresponse()
        ok = response.status == 200 and bool(json.loads(response.read())["images"])
        conn.close()
        return ok
    except (OSError, ValueError, KeyError, http.client.HTTPException):
        return False


def explore_workload(report: Soak, rng: random.Random) -> None:
    work = report.work / "explore"
    work.mkdir()
    ckpt = _clean_checkpoint(report)
    port = _free_port()
    starts = 0
    while report.running():
        starts += 1
        log = work / f"explore-{starts}.log"
        proc = soak._start(_genlab("explore", f"ckpt={ckpt}", f"port={port}"), log)
        up = time.monotonic() + 60
        while time.monotonic() < up and proc.poll() is None and not _decode(port, 0):
            time.sleep(0.2)
        if proc.poll() is not None or not _decode(port, 1):
            report.problem(f"explore start {starts}: not answering on port {port} within a minute: see {log}")
            soak._end_group(proc.pid)
            proc.wait()
            continue
        report.count("explore: starts answered")
        stop = threading.Event()

        def requests() -> None:
            seed = 2
            while not stop.is_set() and _decode(port, seed):
                seed += 1

        client = threading.Thread(target=requests)
        client.start()
        signum = _kill_at_random(proc, rng, 5.0)
        code = _wait(proc, 60)
        stop.set()
        client.join()
        if signum is not None:
            report.count(f"explore: {signum.name}")
            # Ctrl-C (SIGINT) is the explorer's own stop; every other signal takes its default action.
            if code not in (-signum, 128 + signum):
                report.problem(f"explore start {starts}: exit {code} after {signum.name}")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to keep starting new rounds")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments and signals")
    parser.add_argument("--out", type=Path, required=True, help="an empty or new folder for the runs")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"--out {args.out} is not empty: pass a new folder")
    args.out.mkdir(parents=True, exist_ok=True)
    soak.default_hangup()
    start = time.monotonic()
    report = Soak(args.out, start + 60 * args.minutes, args.seed)
    workloads = (run_workload, sweep_workload, eval_workload, explore_workload)
    threads = [threading.Thread(target=w, args=(report, random.Random(args.seed * 10 + i)), name=w.__name__)
               for i, w in enumerate(workloads)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(60)
        print(f"{(time.monotonic() - start) / 60:.0f} min: " + ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items())),
              flush=True)
    print(f"soak of {(time.monotonic() - start) / 60:.1f} min in {args.out}")
    for key, n in sorted(report.counts.items()):
        print(f"  {key}: {n}")
    kills = sum(n for k, n in report.counts.items() if k.endswith(("SIGKILL", "SIGTERM", "SIGHUP")))
    print(f"kills: {kills}; problems: {len(report.problems)}")
    for problem in report.problems:
        print(f"  problem: {problem}")
    return 0 if not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
