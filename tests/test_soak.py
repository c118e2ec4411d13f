"""Sweeps under kills: a bounded run of benchmarks/soak.py, the checks it makes (each shown to
fail on a damaged sweep), and the case its kills found: a job killed after its final checkpoint."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import time

import torch
from conftest import REPO, genlab

spec = importlib.util.spec_from_file_location("soak", REPO / "benchmarks" / "soak.py")
soak = sys.modules["soak"] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
spec.loader.exec_module(soak)

JOBS, STEPS = 2, 4


def test_a_sweep_killed_at_random_moments_ends_as_a_clean_one(tmp_path):
    """One test for everything that needs the soaked sweep: it costs ~40 s of CPU, and pytest-xdist
    would build a shared fixture once per worker."""
    work = tmp_path / "soak"
    work.mkdir()
    start = time.perf_counter()
    # The kills land just after a step's log line (samples, checkpoint write, next step) or a job's
    # "done:" line (final metrics, the record write), where a kill is most likely to break something.
    report = soak.soak(work, jobs=JOBS, steps=STEPS, kills=2, seed=19, anchors=("step", "job end"), log=lambda _: None)
    seconds = time.perf_counter() - start
    assert report.ok, "\n".join(report.lines())
    assert sum(report.kills.values()) >= 1, report.lines()  # the kills were sent, not all drawn after the end
    assert report.launches[-1].returncode == 0
    assert seconds < 90, f"the bounded soak took {seconds:.0f} s"
    assert soak.check_sweep(work / "soaked", work / "clean", STEPS) == []
    for i, (damage, expected) in enumerate(DAMAGES):
        problems = _damaged(work, tmp_path / f"damage{i}", damage)
        assert any(expected in p for p in problems), (expected, problems)
    _a_job_that_finished_twice_is_found(work)
    _a_job_killed_after_its_final_checkpoint_finishes_on_rerun(work, tmp_path)


def _damaged(work, folder, damage):
    copy = folder / "copy"
    shutil.copytree(work / "soaked", copy)
    damage(copy)
    return soak.check_sweep(copy, work / "clean", STEPS)


def _flip_a_weight(root):
    path = root / "seed=1" / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    weights = next(v for v in state["model"].values() if isinstance(v, dict))
    name, tensor = next((k, v) for k, v in weights.items() if v.is_floating_point())
    tensor.view(-1)[0] = torch.nextafter(tensor.view(-1)[0], torch.tensor(float("inf")))  # one ulp
    torch.save(state, path)


def _resave_csv_with_one_metric_changed(root):
    path = root / "summary.csv"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace("ok,4,", "ok,3,", 1)
    path.write_text("\n".join(lines) + "\n")


# Each check of soak.check_sweep, shown to fail: (damage done to a copy of the soaked sweep, problem reported).
DAMAGES = [
    (_flip_a_weight, "seed=1: last.pt.model."),
    (lambda root: (root / "seed=0" / "checkpoints" / ".last.pt.0a1b2c.tmp").write_bytes(b"PK"), "a temporary file was left"),
    (lambda root: (root / "seed=0" / "result.json").write_text('{"status": "ok", '), "result.json does not parse"),
    (lambda root: (root / "seed=0" / "checkpoints" / "last.pt").write_bytes(
        (root / "seed=0" / "checkpoints" / "last.pt").read_bytes()[:-100]), "last.pt does not load"),
    (lambda root: next(root.glob("seed=0/events.out.tfevents.*")).open("ab").write(b"\x10\x00\x00"),
     "events file ends in a partial record header"),
    (_resave_csv_with_one_metric_changed, "summary.csv differs from the clean sweep's"),
    (lambda root: shutil.rmtree(root / "seed=1"), "job directories ['seed=0'], the clean sweep's ['seed=0', 'seed=1']"),
    (lambda root: next(root.glob("seed=0/samples/*.png")).write_bytes(b"\x89PNG\r\n"), "samples/ images differ"),
]


def _a_job_that_finished_twice_is_found(work):
    record = (work / "soaked" / "seed=0" / "result.json").read_text()
    again = record.replace('"wall_s": ', '"wall_s": 1', 1)  # written by a later launch
    history = {"seed=0": [None, ("running", "{}"), ("ok", record), ("ok", record)], "seed=1": []}
    assert soak.check_sweep(work / "soaked", work / "clean", STEPS, history) == []
    history["seed=0"].append(("ok", again))
    assert "seed=0: its ok record was written again by a later launch (it finished twice)" in \
        soak.check_sweep(work / "soaked", work / "clean", STEPS, history)


def _a_job_killed_after_its_final_checkpoint_finishes_on_rerun(work, tmp_path):
    """Killed after its last checkpoint, before its record said ok: a re-run used to resume it
    from a checkpoint already at max_steps, fail with "nothing to resume", and fail again on
    every re-run. It starts again instead and ends as the clean run did."""
    root = tmp_path / "sweep"
    shutil.copytree(work / "soaked", root)
    record_path = root / "seed=0" / "result.json"
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "status": "running", "metrics": {}}))
    assert torch.load(root / "seed=0" / "checkpoints" / "last.pt", weights_only=True)["step"] == STEPS
    result = genlab(*soak.sweep_command(root, JOBS, STEPS, "basic")[3:], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming seed=0" not in result.stdout and f"done: {STEPS} steps" in result.stdout
    assert soak.check_sweep(root, work / "clean", STEPS) == []
