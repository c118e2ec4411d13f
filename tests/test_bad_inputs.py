"""Bad inputs across train, sample and resume, as a user meets them on the command line.

Every case must exit non-zero with exactly one line on stderr, `genlab <command>: error: …`, that
names the problem (the expected fragment), print no traceback, and leave nothing behind: no run
directory, no half-written file, no change to the files it was pointed at. The cases run as real
CLI subprocesses, all at once (each is mostly interpreter and torch start-up), before the checks.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from conftest import TINY, genlab

from genlab.config.validate import ConfigError, validate_train
from genlab.config.compose import compose_jobs
from genlab.errors import UserError
from genlab.commands.sample import sample
from genlab.commands.train import train
from genlab.training.checkpoint import CheckpointError, load_checkpoint

# id → (command line, with {base} for the fixture folder; a fragment of the expected message).
# A case that must import torch (loading a checkpoint, the nets' size rule) costs ~3 s of CPU, so
# the table has one per kind of check; test_unusable_checkpoint covers the other files in-process.
CASES = {
    "unknown model": ("train model=nope", "model=nope is not an option: choose model= one of cgan, diffusion, gan, vae, video_vae"),
    "unknown dataset": ("train dataset=nope", "dataset=nope is not an option"),
    "unknown optimizer": ("train optimizer=nope", "optimizer=nope is not an option: choose optimizer= one of"),
    "unknown hardware": ("train hardware=tpu", "hardware=tpu is not an option: choose hardware= one of"),
    "unknown key": ("train trainer.max_stepz=3", "unknown key 'trainer.max_stepz': did you mean trainer.max_steps?"),
    "unknown key added with +": ("train +trainer.max_stepz=3", "unknown key 'trainer.max_stepz': did you mean trainer.max_steps?"),
    "unknown key from a user's config file": ("train hydra.searchpath=[file://{base}/conf] +preset=typo",
                                              "unknown key 'trainer.batchsize': did you mean trainer.batch_size?"),
    "nan": ("train model.lr=nan", "model.lr=nan is not allowed: expected a finite number > 0"),
    "-inf": ("train model=gan model.r1_gamma=-inf", "model.r1_gamma=-inf is not allowed: expected a finite number >= 0"),
    "networks larger than memory": ("train model.width=100000", "model=vae on dataset.image_size=32 images at "
                                    "model.width=100000, model.latent_dim=10, trainer.batch_size=64, "
                                    "trainer.grid_size=64 needs at least 47,698.9 GiB"),
    "networks whose size overflows": ("train model=gan model.width=1000000000", "the networks of model=gan cannot be built "
                                      "at model.width=1000000000"),
    "wrong type": ("train trainer.batch_size=abc", "trainer.batch_size='abc' is not allowed: expected an integer >= 1"),
    "out of range": ("train beta=-1", "beta=-1 is not allowed: expected a number >= 0"),
    "unknown choice": ("train trainer.on_nonfinite=ignore", "trainer.on_nonfinite='ignore' is not allowed: choose one of stop, skip"),
    "negative keep_last": ("train trainer.keep_last=-1", "trainer.keep_last=-1 is not allowed: expected an integer >= 0"),
    "image size the nets cannot take": ("train dataset=mnist dataset.image_size=30", "dataset.image_size=30 is not allowed for mnist: expected a multiple of 4"),
    "output dir under a file": ("train hydra.run.dir={base}/a_file/run", "is not a directory; choose another hydra.run.dir"),
    "fresh run over a trained run": ("train hydra.run.dir={base}/run", "already holds a trained run: continue it with `genlab train resume={base}/run`"),
    "force_resume without resume": ("train force_resume=true", "force_resume=true needs resume="),
    "compile not a boolean": ("train hardware.compile=maybe", "hardware.compile='maybe' is not allowed: expected true or false"),
    "ddp without torchrun": ("train hardware=ddp", "hardware=ddp runs in the processes torchrun starts: torchrun --nproc_per_node=N"),
    "sample: unknown key": ("sample ckpt={base}/run nn=4", "unknown key 'nn': did you mean n?"),
    "eval: unknown key added with +": ("eval ckpt={base}/run +kk=4", "unknown key 'kk': did you mean k?"),
    "sample: a GPU that is not there": ("sample ckpt={base}/run hardware.device=cuda:99", "hardware.device=cuda:99 is not available"),
    "sample: code in the pickle": ("sample ckpt={base}/evil.pt", "evil.pt was refused and not loaded: it would call posix.system"),
    "resume: missing checkpoint": ("train resume={base}/nowhere", "checkpoint not found: {base}/nowhere"),
    "resume: empty checkpoint": ("train resume={base}/empty.pt", "empty.pt is empty (0 bytes)"),
    "resume: truncated checkpoint": ("train resume={base}/truncated.pt", "truncated.pt is truncated or not a genlab checkpoint"),
    "resume: config drift": ("train resume={base}/run beta=4 trainer.max_steps=4",
                             "would change how it trains: beta 1.0 → 4, model.beta 1.0 → 4; drop those overrides, or add force_resume=true"),
    "resume: a path with a comma": ("train resume={base}/a,b", "resume={base}/a,b reads as a list of values (the path has a comma): quote it"),
    "resume: in a sweep": ("train -m resume={base}/run", "resume= continues one run and cannot be combined with -m"),
}


def snapshot(folder) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Run every case once, concurrently, each in its own empty working directory; returns the
    fixture folder, case id → CompletedProcess, and snapshots of the folder before and after."""
    base = tmp_path_factory.mktemp("bad_inputs")
    overrides = [*TINY, "trainer.max_steps=2"]
    train(compose_jobs("train", overrides, False)[0], base / "run", overrides)
    last = (base / "run" / "checkpoints" / "last.pt").read_bytes()
    (base / "a_file").write_text("not a directory")
    (base / "conf" / "preset").mkdir(parents=True)
    (base / "conf" / "preset" / "typo.yaml").write_text("# @package _global_\ntrainer:\n  batchsize: 3\n")
    (base / "empty.pt").touch()
    (base / "truncated.pt").write_bytes(last[: len(last) // 2])
    torch.save({"weights": torch.zeros(3)}, base / "foreign.pt")
    torch.save({**torch.load(base / "run" / "checkpoints" / "last.pt", weights_only=True), "format_version": 99},
               base / "newer.pt")

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {base}/PWNED",))

    torch.save({"format_version": 1, "model": Payload()}, base / "evil.pt")
    for case in CASES:
        (base / "cwd" / case).mkdir(parents=True)
    before = snapshot(base)

    def run(case: str):
        command, _ = CASES[case]
        return genlab(*command.format(base=base).split(), cwd=base / "cwd" / case)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = dict(zip(CASES, pool.map(run, CASES)))
    return base, results, before, snapshot(base)


@pytest.mark.parametrize("case", CASES)
def test_bad_input(outcomes, case):
    base, results, before, after = outcomes
    result = results[case]
    command, fragment = CASES[case]
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0
    assert len(lines) == 1 and "Traceback" not in result.stderr + result.stdout, result.stderr
    assert lines[0].startswith(f"genlab {command.split()[0]}: error: ")
    assert fragment.format(base=base) in lines[0]
    assert not any((base / "cwd" / case).iterdir()), "left files in the working directory"
    assert after == before, "changed the files it was pointed at"
    assert not (base / "PWNED").exists()


def test_sample_into_an_unwritable_place(outcomes):
    base = outcomes[0]
    with pytest.raises(UserError, match=f"cannot write {base}/a_file/grid.png: .*; choose another out="):
        sample(str(base / "run"), 4, 0, str(base / "a_file" / "grid.png"), mode="grid", steps=8, label=None)
    assert snapshot(base) == outcomes[2]


def test_resume_with_nothing_left_to_train(outcomes):
    base = outcomes[0]
    with pytest.raises(ConfigError, match="is at step 2 and trainer.max_steps=2: nothing to resume; pass trainer.max_steps=N with N > 2"):
        train(compose_jobs("train", [*TINY, "trainer.max_steps=2", f"resume={base}/run"], False)[0], base / "run")
    assert snapshot(base) == outcomes[2]


@pytest.mark.parametrize("override", ["seed=1", "model.beta=nan", "beta=inf", "model.gaussian_std=-inf",
                                      "optimizer.weight_decay=nan", "eval.classifier.dropout=nan", "optimizer.betas=[nan,0.9]"])
def test_every_float_key_refuses_nan_and_inf(override):
    cfg = compose_jobs("train", [override], False)[0]
    if override == "seed=1":  # the control: a good value passes
        validate_train(cfg)
        return
    with pytest.raises(ConfigError, match=f"^{override.split('=')[0].replace('[', '')}=.* is not allowed: expected"):
        validate_train(cfg)


def test_the_allocator_running_out_while_building_is_one_line(tmp_path, monkeypatch):
    import genlab.models

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried "
                           "to allocate 1099511627776 bytes.\nmore lines")

    monkeypatch.setattr(genlab.models, "build_model", out_of_memory)
    with pytest.raises(UserError, match="^building model=vae ran out of memory on cpu .*DefaultCPUAllocator.*: use smaller sizes"):
        train(compose_jobs("train", TINY, False)[0], tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_gpu_requested_where_there_is_none():
    with pytest.raises(ConfigError, match="hardware.device=cuda is not available: 0 CUDA GPUs are visible; use hardware=cpu"):
        validate_train(compose_jobs("train", ["hardware=gpu"], False)[0])


@pytest.mark.parametrize("name, fragment", [
    ("nowhere.pt", "checkpoint not found: {base}/nowhere.pt"),
    ("empty.pt", "empty.pt is empty (0 bytes)"),
    ("truncated.pt", "truncated.pt is truncated or not a genlab checkpoint"),
    ("foreign.pt", "foreign.pt is not a genlab checkpoint (no format_version)"),
    ("newer.pt", "has checkpoint format 99, newer than this genlab's 1 (written by genlab 0.1.0): upgrade genlab"),
    ("evil.pt", "evil.pt was refused and not loaded: it would call posix.system"),
])
def test_unusable_checkpoint(outcomes, name, fragment):
    """What `genlab sample ckpt=…` and `genlab train resume=…` both report for a file (the CLI
    turns the one-line CheckpointError into `genlab <command>: error: …`, as the table checks)."""
    base = outcomes[0]
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(base / name)
    assert "\n" not in str(refused.value) and fragment.format(base=base) in str(refused.value)
    assert not (base / "PWNED").exists()
