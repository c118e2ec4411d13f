"""Resume and fault tolerance: exact continuation, signals, crash-safe and full-disk checkpoint
writes, config drift, non-finite losses (untrusted checkpoints: test_bad_inputs.py).

Most runs here are in-process `train()` calls on TINY settings (about a second each); the CLI is
run where its own behaviour (exit status, messages, signals) is the point.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import REPO, TINY, genlab, needs_mnist
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from genlab.config.validate import ConfigError
from genlab.config.compose import compose_jobs
from genlab.data.batches import Batches, TensorData
from genlab.commands.train import train
from genlab.training.checkpoint import CheckpointError, RunCheckpoints, load_checkpoint, save_checkpoint
from genlab.training.loop import NonFiniteError, ScalarWindow, LoopSettings, fit

# Models whose continuation must be exact; each new model family is added here.
MODELS = ["vae", "vae model.ema_decay=0.9", "gan", "cgan", "gan model.arch=infogan",
          "gan model.arch=infogan model.d_batchnorm=false",
          "cgan model.arch=infogan_cr model.g_steps=2 model.d_lr_scale=2 model.prior=uniform model.info_codes=2 "
          "model.info_weight=0.05"]


def compose(*overrides: str):
    return compose_jobs("train", [*TINY, *overrides], False)[0]


def logged(run_dir) -> dict:
    """What TensorBoard shows for the run: tag → [(step, value)], wall-clock throughput left out."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"] if not tag.startswith("perf/")}


def assert_same(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def training_state(ckpt) -> dict:
    state = load_checkpoint(ckpt)
    return {k: state[k] for k in ("step", "model", "batches", "rng", "window")}


@pytest.mark.parametrize("model", MODELS)
def test_resumed_run_equals_uninterrupted_run(tmp_path, model):
    # 3 + 3 steps with log_every=2: the stop falls mid-window, so the step-4 mean must combine
    # step 3 (from the first process) with step 4 (from the second).
    straight, split = tmp_path / "straight", tmp_path / "split"
    model = f"model={model}".split()
    train(compose(*model, "trainer.max_steps=6"), straight)
    train(compose(*model, "trainer.max_steps=3"), split)
    result = train(compose(*model, "trainer.max_steps=6", f"resume={split}"), split)

    assert result["step"] == 6
    assert_same(training_state(straight / "checkpoints" / "last.pt"), training_state(split / "checkpoints" / "last.pt"))
    expected, got = logged(straight), logged(split)
    assert got.keys() == expected.keys()
    for tag, points in expected.items():
        # The first run's last step (3) logs its open window as a run's final step always does;
        # every other point is the uninterrupted run's, bit for bit.
        assert [p for p in got[tag] if p[0] != 3] == points, tag
    for png in (straight / "samples").iterdir():
        assert (split / "samples" / png.name).read_bytes() == png.read_bytes(), png.name


def test_resume_from_an_older_checkpoint_hides_the_abandoned_steps(tmp_path):
    run = tmp_path / "run"
    train(compose("trainer.max_steps=6", "trainer.keep_last=2"), run)
    before = logged(run)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt", "step_0000004.pt", "step_0000006.pt"]

    train(compose("trainer.max_steps=6", "trainer.keep_last=2", f"resume={run}/checkpoints/step_0000004.pt"), run)

    # Steps 5–6 were logged twice (two events files); TensorBoard shows each once, same values.
    assert logged(run) == before
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt", "step_0000004.pt", "step_0000006.pt"]
    assert (run / "checkpoints" / "step_0000006.pt").read_bytes() == (run / "checkpoints" / "last.pt").read_bytes()
    resumes = (run / "resumes.yaml").read_text()
    assert "step: 4" in resumes and "step_0000004.pt" in resumes


def test_drift_is_refused_and_force_resume_records_it(tmp_path):
    run = tmp_path / "run"
    train(compose(), run)
    files_before = sorted((p.relative_to(run), p.stat().st_mtime_ns) for p in run.rglob("*"))

    with pytest.raises(ConfigError) as refused:
        train(compose("trainer.max_steps=6", "beta=4", "optimizer=sgd", f"resume={run}"), run)
    message = str(refused.value)
    assert "\n" not in message and "force_resume=true" in message
    for change in ("beta 1.0 → 4", "model.beta 1.0 → 4", "optimizer.name adam → sgd", "optimizer.momentum (absent) → 0.9"):
        assert change in message
    assert "max_steps" not in message  # training longer is not drift
    assert sorted((p.relative_to(run), p.stat().st_mtime_ns) for p in run.rglob("*")) == files_before

    train(compose("trainer.max_steps=6", "beta=4", f"resume={run}", "force_resume=true"), run)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 6 and state["config"]["model"]["beta"] == 4
    resumes = (run / "resumes.yaml").read_text()
    assert "forced: true" in resumes and "model.beta:\n    - 1.0\n    - 4\n" in resumes
    events = EventAccumulator(str(run), size_guidance={"tensors": 0})
    events.Reload()
    (text,) = events.Tensors("resume/text_summary")
    assert text.step == 4 and "beta 1.0 → 4" in text.tensor_proto.string_val[0].decode()


def test_a_different_device_behind_hardware_auto_is_drift(tmp_path):
    run = tmp_path / "run"
    train(compose("hardware=auto", "hardware.threads=1"), run)
    state = load_checkpoint(run)
    here = state["device"]
    elsewhere = "cuda" if here == "cpu" else "cpu"
    save_checkpoint({**state, "device": elsewhere}, run / "checkpoints" / "last.pt")  # as if trained on another machine
    with pytest.raises(ConfigError, match=f"would change how it trains: device in use {elsewhere} → {here}"):
        train(compose("hardware=auto", "hardware.threads=1", "trainer.max_steps=6", f"resume={run}"), run)


def test_hardware_auto_continues_with_the_precision_the_run_trained_with(tmp_path):
    # hardware.precision=auto picks bf16 on CPUs with native bf16 and fp32 elsewhere; a resumed run
    # keeps what it trained with (here: as if it had started on the other kind of CPU), so it
    # continues exactly; naming another precision is a change like any other.
    run = tmp_path / "run"
    train(compose("hardware=auto", "hardware.threads=1"), run)
    state = load_checkpoint(run)
    here = state["precision"]
    assert state["config"]["hardware"]["precision"] == "auto" and here in ("bf16", "fp32")
    elsewhere = "fp32" if here == "bf16" else "bf16"
    save_checkpoint({**state, "precision": elsewhere}, run / "checkpoints" / "last.pt")
    train(compose("hardware=auto", "hardware.threads=1", "trainer.max_steps=6", f"resume={run}"), run)
    assert load_checkpoint(run)["precision"] == elsewhere
    with pytest.raises(ConfigError, match=f"would change how it trains: hardware.precision {elsewhere} → {here}"):
        train(compose("hardware=auto", "hardware.threads=1", "trainer.max_steps=8", f"hardware.precision={here}",
                      f"resume={run}"), run)
    train(compose("hardware=auto", "hardware.threads=1", "trainer.max_steps=8", f"hardware.precision={elsewhere}",
                  f"resume={run}"), run)  # the precision it trained with, named: no change


@needs_mnist
def test_a_run_whose_data_moved_resumes_and_records_where(tmp_path, data_root):
    # The checkpoint stores dataset.root resolved (GENLAB_DATA_ROOT or ~ expanded): on another
    # machine, or with the variable set differently, the same images lie elsewhere.
    run, moved = tmp_path / "run", tmp_path / "moved"
    train(compose("dataset=mnist", f"dataset.root={data_root}", "dataset.split=test"), run)
    shutil.copytree(data_root / "MNIST", moved / "MNIST")  # unpacked by the first run
    train(compose("dataset=mnist", f"dataset.root={moved}", "dataset.download=false", "dataset.split=test",
                  "trainer.max_steps=6", f"resume={run}"), run)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 6 and state["config"]["dataset"]["root"] == str(moved)
    resumes = (run / "resumes.yaml").read_text()
    assert "dataset.root" in resumes and "forced: false" in resumes


@pytest.mark.parametrize("model,added", [("vae", ["ema_decay"]), ("gan", ["mode_seeking"]), ("cgan", ["mode_seeking", "class_loss"])])
def test_a_checkpoint_from_before_a_config_key_existed_samples_and_resumes(tmp_path, model, added):
    run = tmp_path / "run"
    as_trained = [f"model={model}", *(f"model.{key}=0" for key in added)]  # what genlab 0.1.0 did
    train(compose(*as_trained), run)
    state = load_checkpoint(run)
    for key in added:
        del state["config"]["model"][key]
    del state["config"]["hardware"]["compile"]
    save_checkpoint(state, run / "checkpoints" / "last.pt")  # as genlab 0.1.0 wrote it

    assert all(load_checkpoint(run)["config"]["model"][key] == 0.0 for key in added)  # the values it trained with
    sampled = genlab("sample", f"ckpt={run}", "n=4", f"out={tmp_path / 'grid.png'}", cwd=tmp_path)
    assert sampled.returncode == 0, sampled.stderr
    assert train(compose(*as_trained, "trainer.max_steps=6", f"resume={run}"), run)["step"] == 6


def test_weights_that_do_not_fit_the_networks_are_a_one_line_error(tmp_path):
    run = tmp_path / "run"
    assert genlab("train", *TINY, "model=cgan", "hydra.run.dir=run", cwd=tmp_path).returncode == 0
    state = load_checkpoint(run)
    state["model"]["discriminator"]["project.weight"] = torch.zeros(3, 5)  # as an older cgan stored it
    save_checkpoint({**state, "genlab_version": "0.0.9"}, run / "checkpoints" / "last.pt")
    for command in (["sample", f"ckpt={run}"], ["eval", f"ckpt={run}", "metrics=[accuracy]"],
                    ["train", f"resume={run}", "trainer.max_steps=6"]):
        result = genlab(*command, cwd=tmp_path)
        assert result.returncode == 1
        assert result.stderr.strip().endswith("do not fit this genlab's networks (size mismatch for project.weight): "
                                              "use genlab 0.0.9 for it, e.g. pip install genlab==0.0.9"), result.stderr
        assert "\n" not in result.stderr.strip() and "Traceback" not in result.stderr


def test_sigterm_checkpoints_and_the_cli_resumes(tmp_path):
    command = [sys.executable, "-m", "genlab.cli", "train", *TINY, "trainer.max_steps=100000", "trainer.log_every=1",
               "trainer.ckpt_every=1000", "trainer.sample_every=1000", "hydra.run.dir=run"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # the first progress line: training has started
            if "step 2/" in line:
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    last_line = err.strip().splitlines()[-1]
    assert "stopped by SIGTERM after step" in last_line and "Traceback" not in err
    run = tmp_path / "run"
    step = load_checkpoint(run)["step"]
    assert step >= 2 and f"(step {step})" in last_line
    assert last_line.endswith(f"resume with: genlab train resume={run}")

    resumed = genlab("train", f"resume={run}", f"trainer.max_steps={step + 2}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(run)["step"] == step + 2
    assert f"step {step + 2}/{step + 2}" in resumed.stdout + resumed.stderr


def test_checkpoint_write_killed_midway_leaves_the_previous_one(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    RunCheckpoints(folder, keep_last=0).save({"step": 1, "w": torch.ones(3)}, 1)
    # A child process writes the next checkpoint through the real save path, with torch.save
    # replaced by a writer that stops halfway; it is killed with SIGKILL mid-write.
    child = textwrap.dedent(f"""
        import sys, time, types
        def half_write(state, f):
            f.write(b"PK\\x03\\x04" + bytes(4096)); f.flush()
            print("writing", flush=True); time.sleep(60)
        sys.modules["torch"] = types.SimpleNamespace(save=half_write)
        from pathlib import Path
        from genlab.training.checkpoint import save_checkpoint
        save_checkpoint({{"step": 2}}, Path({str(folder / "last.pt")!r}))
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    (partial,) = [p for p in folder.iterdir() if p.name != "last.pt"]
    assert partial.name.startswith(".last.pt.") and partial.stat().st_size > 0

    state = load_checkpoint(tmp_path / "run")  # the run directory still means its last.pt
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))
    RunCheckpoints(folder, keep_last=0)  # a (resumed) run clears leftovers of killed writes
    assert [p.name for p in folder.iterdir()] == ["last.pt"]


@pytest.mark.parametrize("hard_links", [True, False])
def test_keep_last_keeps_the_newest_step_files(tmp_path, monkeypatch, hard_links):
    def unsupported(*args):
        raise OSError(errno.EPERM, "this file system has no hard links")

    if not hard_links:
        monkeypatch.setattr(os, "link", unsupported)
    checkpoints = RunCheckpoints(tmp_path, keep_last=2)
    for step in range(1, 5):
        checkpoints.save({"step": step}, step)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "step_0000003.pt", "step_0000004.pt"]
    assert load_checkpoint(tmp_path / "step_0000003.pt")["step"] == 3 and load_checkpoint(tmp_path / "last.pt")["step"] == 4
    assert (tmp_path / "step_0000004.pt").stat().st_nlink == (2 if hard_links else 1)


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    real_save = torch.save
    calls = []

    def save_until_full(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            f.write(b"PK\x03\x04" + bytes(1024))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_full)
    run = tmp_path / "run"
    with pytest.raises(CheckpointError) as failed:
        train(compose("trainer.max_steps=4"), run)
    message = str(failed.value)
    assert "\n" not in message and "No space left on device" in message
    assert f"newest good checkpoint: {run}/checkpoints/last.pt (step 2)" in message
    assert load_checkpoint(run)["step"] == 2
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["last.pt"]


class ToyModel:
    """w ← w − 0.1·d(w − 2)²/dw by SGD; at the steps in `nan_steps` the loss is NaN."""

    def __init__(self, nan_steps=(), nan_weights_at=None):
        self.w = torch.nn.Parameter(torch.ones(()))
        self.optimizer = torch.optim.SGD([self.w], lr=0.1)
        self.steps, self.nan_steps, self.nan_weights_at = 0, set(nan_steps), nan_weights_at

    def train_step(self, batch):
        self.steps += 1
        loss = (self.w - 2) ** 2 * (float("nan") if self.steps in self.nan_steps else 1.0)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if self.steps == self.nan_weights_at:
            with torch.no_grad():
                self.w.fill_(float("inf"))
        return {"loss": loss.detach()}

    def image_grids(self, real, generator):
        return {}

    def optimizers(self):
        return {"toy": self.optimizer}

    def train(self, mode):
        pass

    def state_dict(self):
        return {"w": self.w.detach().clone(), "optimizer": self.optimizer.state_dict()}


class ScalarLog:
    def __init__(self):
        self.points = {}

    def scalars(self, step, values):
        self.points[step] = values

    def status(self, step, metrics, img_per_s):
        pass

    def images(self, step, grids):
        pass


def fit_toy(tmp_path, model, on_nonfinite):
    data = TensorData(torch.zeros(16, 1, 8, 8, dtype=torch.uint8), torch.zeros(16, dtype=torch.long), ("blank",))
    trainer = LoopSettings(max_steps=6, batch_size=4, log_every=2, sample_every=100, ckpt_every=2, grid_size=4,
                      keep_last=0, on_nonfinite=on_nonfinite)
    checkpoints = RunCheckpoints(tmp_path / "checkpoints", keep_last=0)
    log = ScalarLog()
    fit(model, data, Batches(data, 4, 0, torch.device("cpu"), dynamic_binarize=False), trainer, checkpoints=checkpoints, logger=log,
        device=torch.device("cpu"), precision="fp32", seed=0, checkpoint_meta={})
    return log


def test_nonfinite_loss_stops_naming_the_step_and_the_good_checkpoint(tmp_path):
    with pytest.raises(NonFiniteError) as stopped:
        fit_toy(tmp_path, ToyModel(nan_steps={3}), "stop")
    message = str(stopped.value)
    assert "\n" not in message and "train/loss became NaN or Inf at step 3" in message
    assert f"newest good checkpoint: {tmp_path}/checkpoints/last.pt (step 2)" in message
    assert "trainer.on_nonfinite=skip" in message
    saved = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert saved["step"] == 2 and torch.isfinite(saved["model"]["w"])


def test_nonfinite_weights_are_never_saved(tmp_path):
    with pytest.raises(NonFiniteError, match="weights or optimizer state became NaN or Inf at step 4"):
        fit_toy(tmp_path, ToyModel(nan_weights_at=4), "stop")
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 2


def test_nonfinite_skip_drops_the_update_and_the_value(tmp_path):
    model = ToyModel(nan_steps={3})
    log = fit_toy(tmp_path, model, "skip")
    # Five of the six SGD steps apply: w − 2 shrinks by 1 − 0.1·2 = 0.8 each.
    assert model.w.item() == pytest.approx(2 - 0.8**5)
    assert log.points[4]["train/nonfinite_steps"] == 1 and log.points[2]["train/nonfinite_steps"] == 0
    assert log.points[4]["train/loss"] == pytest.approx(0.8**4)  # the mean of step 4 alone: step 3 was NaN


def test_scalar_window_means_across_folds_and_a_mid_fold_checkpoint():
    values = torch.randn(150, 3, generator=torch.Generator().manual_seed(0))
    values[70, 1] = float("nan")
    rows = [dict(zip("abc", row)) for row in values]
    window, read = ScalarWindow(), ScalarWindow()
    for step, row in enumerate(rows[:100], 1):
        window.add(step, row)
        read.add(step, row)
        if step % 7 == 0:
            read.means()  # reading must not change how the sums are formed
    resumed = ScalarWindow()
    resumed.load_state_dict(window.state_dict(), torch.device("cpu"))  # 64 rows folded, 36 pending
    for step, row in enumerate(rows[100:], 101):
        for w in (window, read, resumed):
            w.add(step, row)
    assert window.means() == read.means() == resumed.means()  # bit for bit
    finite = values.isfinite()
    expected = [values[finite[:, j], j].double().mean().item() for j in range(3)]
    assert list(window.means().values()) == pytest.approx(expected, rel=1e-5)
    assert window.first_bad_step() == 71 and window.nonfinite_names() == ["b"] and window.nonfinite_step_count() == 1


def test_a_resume_removes_what_killed_writes_left_and_keeps_what_others_write(tmp_path):
    # kill -9 during a write leaves its temporary file (genlab/files.py); the resumed run holds the
    # directory's lock, so its own files' temporaries are stale. genlab sample's are not its own.
    run = tmp_path / "run"
    train(compose("trainer.max_steps=2"), run)
    stale = [run / ".result.json.0a1b2c.tmp", run / "checkpoints" / ".last.pt.0a1b2c.tmp",
             run / "samples" / ".step_0000002_samples.png.0a1b2c.tmp"]
    others = run / "samples" / ".sample_n4_seed0.png.0a1b2c.tmp"
    for path in [*stale, others]:
        path.write_bytes(b"half")
    train(compose("trainer.max_steps=4", f"resume={run}"), run)
    assert not [p for p in stale if p.exists()] and others.exists()
