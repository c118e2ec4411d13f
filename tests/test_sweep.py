"""Sweeps: job directories, summaries, HParams, the rate–distortion plot, failures, re-runs, launchers."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import REPO, TINY, genlab

from genlab.commands import summarize as summarize_command
from genlab.sweep import jobs, records, summary

JOBS_2X2 = ["beta=1,noise_dim=2", "beta=1,noise_dim=3", "beta=4,noise_dim=2", "beta=4,noise_dim=3"]
SWEEP_2X2 = ["train", "-m", "beta=1,4", "noise_dim=2,3", *TINY, "trainer.keep_last=2", "hydra.sweep.dir=sweep"]


@pytest.fixture(scope="module")
def sweep_2x2(tmp_path_factory):
    """A finished 2×2 tiny sweep: (its directory, the CompletedProcess)."""
    root = tmp_path_factory.mktemp("sweep2x2")
    result = genlab(*SWEEP_2X2, cwd=root)
    assert result.returncode == 0, result.stderr
    return root / "sweep", result


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def events(logdir):
    """(step, Summary.Value) of every event file directly in logdir, as TensorBoard reads them."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return [(e.step, v) for path in sorted(logdir.glob("events.out.tfevents.*"))
            for e in EventFileLoader(str(path)).Load() for v in e.summary.value]


def test_jobs_are_named_by_their_swept_overrides(sweep_2x2):
    root, _ = sweep_2x2
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == JOBS_2X2
    for job in JOBS_2X2:
        record = json.loads((root / job / "result.json").read_text())
        assert record["status"] == "ok" and record["steps"] == 4
        assert (root / job / "checkpoints" / "last.pt").is_file()


def test_summary_has_one_row_per_job_with_final_metrics(sweep_2x2):
    root, result = sweep_2x2
    rows = read_csv(root / "summary.csv")
    assert [r["job"] for r in rows] == JOBS_2X2
    for row in rows:
        beta, noise_dim = (part.split("=")[1] for part in row["job"].split(","))
        assert (row["beta"], row["noise_dim"], row["status"], row["steps"]) == (beta, noise_dim, "ok", "4")
        recon, kl, neg_elbo = float(row["recon_nats"]), float(row["kl_nats"]), float(row["neg_elbo_nats"])
        assert recon > 0 and kl >= 0 and neg_elbo == pytest.approx(recon + kl, rel=1e-5)
        assert 0 <= int(row["active_units"]) <= int(noise_dim)
        assert float(row["wall_s"]) > 0 and row["error"] == ""
    jobs = json.loads((root / "summary.json").read_text())["jobs"]
    assert [j["job"] for j in jobs] == JOBS_2X2
    assert [j["metrics"]["recon_nats"] for j in jobs] == [float(r["recon_nats"]) for r in rows]
    assert "4 of 4 jobs ok" in result.stdout and all(job in result.stdout for job in JOBS_2X2)


def test_hparams_list_each_jobs_overrides_and_final_metrics(sweep_2x2):
    from tensorboard.plugins.hparams import api_pb2, metadata
    from tensorboard.util import tensor_util

    root, _ = sweep_2x2
    rows = {r["job"]: r for r in read_csv(root / "summary.csv")}
    for job, row in rows.items():
        by_tag = {v.tag: (step, v) for step, v in events(root / job)}
        content = by_tag[metadata.SESSION_START_INFO_TAG][1].metadata.plugin_data.content
        hparams = metadata.parse_session_start_info_plugin_data(content).hparams
        assert (hparams["beta"].number_value, hparams["noise_dim"].number_value) == (float(row["beta"]), float(row["noise_dim"]))
        end = by_tag[metadata.SESSION_END_INFO_TAG][1].metadata.plugin_data.content
        assert metadata.parse_session_end_info_plugin_data(end).status == api_pb2.STATUS_SUCCESS
        step, value = by_tag["final/neg_elbo_nats"]
        assert step == 4 and tensor_util.make_ndarray(value.tensor).item() == pytest.approx(float(row["neg_elbo_nats"]))
    # The sweep's own event file: one experiment listing every override and every final metric.
    experiments = [v for _, v in events(root) if v.tag == metadata.EXPERIMENT_TAG]
    assert len(experiments) == 1
    experiment = metadata.parse_experiment_plugin_data(experiments[0].metadata.plugin_data.content)
    infos = {h.name: h for h in experiment.hparam_infos}
    assert infos["beta"].differs and infos["noise_dim"].differs and not infos["trainer.max_steps"].differs
    metrics = {m.name.tag for m in experiment.metric_infos}
    assert {"final/recon_nats", "final/kl_nats", "final/neg_elbo_nats", "final/active_units"} <= metrics


def test_rate_distortion_plot_in_sweep_dir_and_tensorboard(sweep_2x2):
    root, result = sweep_2x2
    png = (root / "rate_distortion.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    # TensorBoard's loader turns an image summary into the strings [width, height, PNG].
    images = [v.tensor.string_val for _, v in events(root) if v.tag == "sweep/rate_distortion"]
    assert len(images) == 1 and images[0][2] == png and int(images[0][0]) > 100
    assert "rate_distortion.png" in result.stdout


def test_rerunning_a_sweep_skips_finished_jobs_and_resumes_the_interrupted_one(sweep_2x2):
    root, _ = sweep_2x2
    finished, interrupted = JOBS_2X2[:3], root / JOBS_2X2[3]
    outputs = [p for job in finished for p in (root / job / "checkpoints" / "last.pt", root / job / "result.json")]
    before = {p: p.stat().st_mtime_ns for p in outputs}
    # What a job killed after its step-2 checkpoint leaves: its record still says running.
    record = json.loads((interrupted / "result.json").read_text())
    (interrupted / "result.json").write_text(json.dumps({**record, "status": "running", "metrics": {}}))
    checkpoints = interrupted / "checkpoints"
    (checkpoints / "last.pt").unlink()
    shutil.copy(checkpoints / "step_0000002.pt", checkpoints / "last.pt")
    result = genlab(*SWEEP_2X2, cwd=root.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("skipped:") == 3 and result.stdout.count("done: 4 steps") == 1
    assert f"resuming {interrupted.name}" in result.stdout
    assert {p: p.stat().st_mtime_ns for p in outputs} == before
    assert json.loads((interrupted / "result.json").read_text())["status"] == "ok"
    assert torch.load(checkpoints / "last.pt", weights_only=True)["step"] == 4
    assert "4 of 4 jobs ok" in result.stdout


def test_a_job_resumed_by_hand_keeps_its_place_in_the_summary(tmp_path):
    """`genlab train resume=<job dir> trainer.max_steps=N` on each job, then `genlab summarize`:
    the jobs are still told apart by β alone, not by the paths they were resumed from."""
    result = genlab("train", "-m", "beta=1,4", *TINY, "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "sweep"
    for job in ("beta=1", "beta=4"):
        result = genlab("train", f"resume='{root / job}'", "trainer.max_steps=6", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    result = genlab("summarize", str(root), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = read_csv(root / "summary.csv")
    assert [(r["job"], r["beta"], r["steps"]) for r in rows] == [("beta=1", "1", "6"), ("beta=4", "4", "6")]
    assert "resume" not in rows[0] and "force_resume" not in rows[0]
    assert records.varying_keys(records.load_records(root)) == ["beta"]


def test_a_failing_job_is_recorded_and_the_other_finishes_side_by_side(tmp_path):
    """Two jobs in parallel (joblib) with the cores divided between them; one diverges."""
    # lr=1e6 passes validation but makes the first Adam steps blow the weights up: NaN.
    untimed = [o for o in TINY if not o.startswith("hardware.threads")]
    result = genlab("train", "-m", "model.lr=1e-3,1e6", *untimed, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                    "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("genlab train: error: 1 of 2 jobs did not finish ok (model.lr=1000000.0)")
    assert "Traceback" not in result.stderr
    root = tmp_path / "sweep"
    rows = {r["job"]: r for r in read_csv(root / "summary.csv")}
    assert rows["model.lr=0.001"]["status"] == "ok" and float(rows["model.lr=0.001"]["recon_nats"]) > 0
    failed = rows["model.lr=1000000.0"]
    assert failed["status"] == "failed" and "NaN or Inf at step" in failed["error"] and failed["recon_nats"] == ""
    assert (root / "model.lr=0.001" / "checkpoints" / "last.pt").is_file()
    cores = len(os.sched_getaffinity(0))
    for job in rows:
        record = json.loads((root / job / "result.json").read_text())
        assert record["config"]["hardware"]["threads"] == max(1, cores // 2)


def test_submitit_local_launcher(tmp_path):
    result = genlab("train", "-m", "beta=1,4", *TINY, "hydra/launcher=submitit_local", "hydra.sweep.dir=sweep",
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [r["status"] for r in read_csv(tmp_path / "sweep" / "summary.csv")] == ["ok", "ok"]


def test_summarize_rebuilds_the_summary_without_torch(sweep_2x2, tmp_path):
    root, _ = sweep_2x2
    csv_text = (root / "summary.csv").read_text()
    copy = tmp_path / "copy"
    for job in JOBS_2X2:  # the records alone are enough
        (copy / job).mkdir(parents=True)
        (copy / job / "result.json").write_text((root / job / "result.json").read_text())
    stale = [copy / f".{name}.0a1b2c.tmp" for name in ("summary.csv", "summary.json", "rate_distortion.png")]
    for path in stale:  # what a launcher killed while writing the summary leaves
        path.write_bytes(b"half")
    code = ("import sys; from genlab.cli import main; main(['--help']); main(['summarize', sys.argv[1]]); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code, str(copy)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (copy / "summary.csv").read_text() == csv_text
    assert (copy / "rate_distortion.png").is_file() and "4 of 4 jobs ok" in done.stdout
    assert not [p for p in stale if p.exists()]


@pytest.mark.parametrize("content, expected", [
    (None, "not a directory"),
    ("", "no job records (result.json)"),
    ("{not json", "is not a readable result record"),
    ('{"status": "done"}', "is not a genlab result record"),
])
def test_summarize_bad_path_or_record_is_one_line(tmp_path, content, expected):
    path = tmp_path / "missing"
    if content is not None:
        path = tmp_path / "sweep"
        (path / "job").mkdir(parents=True)
        if content:
            (path / "job" / "result.json").write_text(content)
    with pytest.raises(SystemExit) as exit_:
        summarize_command.run([str(path)])
    message = str(exit_.value.code)
    assert message.startswith("genlab summarize: error: ") and expected in message and "\n" not in message
    assert not (tmp_path / "sweep" / "summary.csv").exists()


def test_without_matplotlib_the_plot_is_skipped_in_one_line(sweep_2x2, tmp_path, monkeypatch):
    from rich.console import Console

    root, _ = sweep_2x2
    for job in JOBS_2X2:
        (tmp_path / job).mkdir()
        (tmp_path / job / "result.json").write_text((root / job / "result.json").read_text())
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    out = io.StringIO()
    summary.summarize(tmp_path, Console(file=out, width=200))
    assert "rate–distortion plot skipped: matplotlib is not installed (pip install 'genlab[plots]')" in out.getvalue()
    assert not (tmp_path / "rate_distortion.png").exists() and (tmp_path / "summary.csv").is_file()


def _plot_job(root, name, gamma, metrics, plot):
    """A job record of a family from outside genlab whose YAML declares `plot` (or none)."""
    (root / name).mkdir(parents=True)
    config = {"model": {"gamma": gamma}, **({"summary_plot": plot} if plot else {})}
    (root / name / "result.json").write_text(json.dumps({
        "overrides": {"gamma": gamma}, "status": "ok", "error": None, "steps": 2, "wall_s": 1.0,
        "metrics": metrics, "config": config}))


def test_a_family_declares_the_summary_plot_as_data(tmp_path):
    from rich.console import Console

    plot = {"name": "spread", "label": "spread", "x": "a_nats", "y": "b_nats", "sort_by": "model.gamma", "sort_label": "γ"}
    for gamma in (1, 2, 3):
        _plot_job(tmp_path / "declared", f"gamma={gamma}", gamma, {"a_nats": gamma, "b_nats": 1 / gamma}, plot)
        # the same metrics, no declaration: no plot (the summary names no family and no metric itself)
        _plot_job(tmp_path / "undeclared", f"gamma={gamma}", gamma, {"recon_nats": gamma, "kl_nats": 1 / gamma}, None)
    out = io.StringIO()
    summary.summarize(tmp_path / "declared", Console(file=out, width=300))
    png = (tmp_path / "declared" / "spread.png").read_bytes()
    assert png.startswith(b"\x89PNG") and f"spread plot: {tmp_path / 'declared' / 'spread.png'}" in out.getvalue()
    images = [v.tensor.string_val for _, v in events(tmp_path / "declared") if v.tag == "sweep/spread"]
    assert len(images) == 1 and images[0][2] == png
    summary.summarize(tmp_path / "undeclared", Console(file=io.StringIO()))
    assert not list((tmp_path / "undeclared").glob("*.png"))
    assert not [v for _, v in events(tmp_path / "undeclared") if v.tag.startswith("sweep/")]


def test_a_sweep_recorded_before_records_held_the_plot_gets_its_familys(sweep_2x2, tmp_path):
    # result.json files written before summary_plot existed: the family's YAML declares it today.
    from rich.console import Console

    old = tmp_path / "old"
    shutil.copytree(sweep_2x2[0], old)
    for record in old.glob("*/result.json"):
        content = json.loads(record.read_text())
        del content["config"]["summary_plot"]
        record.write_text(json.dumps(content))
    (old / "rate_distortion.png").unlink()
    summary.summarize(old, Console(file=io.StringIO()))
    assert (old / "rate_distortion.png").read_bytes().startswith(b"\x89PNG")


def test_the_summary_code_names_no_family_term_and_imports_no_torch():
    # The plot's terms come from the family's YAML: genlab/sweep/'s code (docstrings aside) holds none.
    import ast

    from test_layout_rules import _docstrings

    for path in sorted((REPO / "genlab" / "sweep").glob("*.py")):
        tree = ast.parse(path.read_text())
        docs = _docstrings(tree)
        words = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]
        words += [n.id for n in ast.walk(tree) if isinstance(n, ast.Name)] + [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)]
        assert not [w for w in words for term in ("beta", "β", "kl_nats", "recon_nats") if term in w.lower()], path
        modules = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        modules += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        assert not [m for m in modules if m.split(".")[0] == "torch" or m.startswith("genlab.models")], path


def _record(tmp_path, status, overrides):
    (tmp_path / "result.json").write_text(json.dumps({"status": status, "overrides": overrides, "metrics": {}}))


def test_only_an_ok_record_of_the_same_overrides_is_skipped(tmp_path):
    overrides = {"beta": 4, "model": "vae"}
    assert not records.is_finished(tmp_path, overrides)
    for status in ("running", "failed"):
        _record(tmp_path, status, overrides)
        assert not records.is_finished(tmp_path, overrides)
    _record(tmp_path, "ok", overrides)
    assert records.is_finished(tmp_path, overrides)
    assert not records.is_finished(tmp_path, {"beta": 4, "model": "vae", "trainer.max_steps": 10})


def test_a_restart_clears_the_earlier_attempt_only(tmp_path):
    for path in ("checkpoints/last.pt", "samples/a.png", "events.out.tfevents.1.host", "result.json",
                 ".hydra/config.yaml", "train.log"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    jobs.clear_attempt(tmp_path)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [".hydra/config.yaml", "train.log"]


def test_an_unfinished_job_continues_from_what_the_one_checkpoint_loader_accepts(tmp_path):
    # The step is read through genlab's loader: a checkpoint it refuses (here one of a newer format,
    # whose step is past max_steps) is resumed, so that the resume names the problem, never cleared.
    last = tmp_path / "checkpoints" / "last.pt"
    last.parent.mkdir()
    torch.save({"format_version": 99, "step": 10}, last)
    assert jobs.resume_point(tmp_path, max_steps=4) == last
    torch.save({"format_version": 1, "step": 10}, last)
    assert jobs.resume_point(tmp_path, max_steps=4) is None  # at max_steps: start again
    torch.save({"format_version": 1, "step": 2}, last)
    assert jobs.resume_point(tmp_path, max_steps=4) == last
    assert jobs.resume_point(tmp_path / "none", max_steps=4) is None


def test_job_names_are_path_safe_and_short():
    assert jobs.job_dirname("beta=4,noise_dim=16") == "beta=4,noise_dim=16"
    assert jobs.job_dirname("") == "default"
    assert "/" not in jobs.job_dirname("dataset.root=/data/mnist,beta=1")
    long_a, long_b = (jobs.job_dirname(",".join(f"key{i}={i}{tail}" for i in range(60))) for tail in "ab")
    assert len(long_a.encode()) <= jobs.MAX_DIRNAME_BYTES and long_a != long_b


def test_only_swept_keys_name_the_job_directories():
    key = "hydra.job.config.override_dirname.exclude_keys"
    assert jobs.dirname_overrides(["beta=1,4", "trainer.max_steps=5", "hardware=cpu", "hydra.sweep.dir=x"]) == [
        f"{key}=[hardware,trainer.max_steps]"]
    assert jobs.dirname_overrides(["beta=4", "trainer.max_steps=5"]) == []  # one job: every override names it


def test_job_threads_divide_the_cores():
    cores = len(os.sched_getaffinity(0))
    assert jobs.job_threads({"n_jobs": 2}) == max(1, cores // 2)
    assert jobs.job_threads({"n_jobs": -1}) == 1  # joblib: -1 runs as many jobs as cores
    assert jobs.job_threads({"cpus_per_task": 3, "gpus_per_node": 1}) == 3
    assert jobs.job_threads({}) is None


def test_slurm_launcher_takes_resources_from_the_hardware_group():
    from hydra import compose, initialize_config_dir

    import genlab.commands.train  # noqa: F401  (registers the genlab_gpus resolver)
    from genlab.config.compose import config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        gpu = compose("train", ["hydra/launcher=slurm", "hardware=gpu", "hardware.threads=6"], return_hydra_config=True)
        cpu = compose("train", ["hydra/launcher=slurm", "hardware=cpu"], return_hydra_config=True)
    assert gpu.hydra.launcher._target_.endswith("SlurmLauncher")
    assert (gpu.hydra.launcher.gpus_per_node, gpu.hydra.launcher.cpus_per_task) == (1, 6)
    assert (cpu.hydra.launcher.gpus_per_node, cpu.hydra.launcher.cpus_per_task) == (0, None)
    assert gpu.hydra.launcher.signal_delay_s > 0
