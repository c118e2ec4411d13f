"""Sizes a user types that cannot fit (memory) or finish (nll's decoder passes): refused before any
work in one line that names the largest value that fits, exit 1, no file written; and the progress
and expected time of a long evaluation."""

from __future__ import annotations

import logging
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from conftest import TINY, genlab
from omegaconf import OmegaConf

from genlab.config import checks
from genlab.config.checks import ConfigError, require_fits
from genlab.config.compose import compose_jobs
from genlab.metrics import evaluation, likelihood, progress
from genlab.commands.sample import sample
from genlab.commands.train import train

torch.set_num_threads(1)  # tiny networks, a shared machine

# id → (command line, with {ckpt} for a tiny VAE checkpoint; the key whose largest value is named).
# "pass k<=1000000": nll may run 10^10 decoder passes, and n is 10,000.
CASES = {
    "sample: n whose latents exceed memory": ("sample ckpt={ckpt} n=1000000000000", "n"),
    "eval: nll's n·k decoder passes": ("eval ckpt={ckpt} metrics=[nll] k=1000000000000", "k<=1000000"),
    "eval: n images in memory": ("eval ckpt={ckpt} metrics=[shapes] n=1000000000000", "n"),
    "train: eval.at_end's decoder passes": ("train eval.at_end=[nll] eval.k=1000000000000", "eval.k<=1000000"),
    "train: the logged grid": ("train trainer.grid_size=1000000000", "trainer.grid_size"),
    "eval: the classifier's training images": ("eval ckpt={ckpt} metrics=[fid] classifier.steps=1000000000000",
                                                "classifier.steps<=7812500"),
    "eval: kid's kernel entries": ("eval ckpt={ckpt} metrics=[kid] n=1000 kid_subsets=1000000000000",
                                   "kid_subsets<=1000000"),
}


def snapshot(folder) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny VAE checkpoint (2 steps), trained in this process."""
    base = tmp_path_factory.mktemp("sizes")
    overrides = [*TINY, "trainer.max_steps=2"]
    train(compose_jobs("train", overrides, False)[0], base / "run", overrides)
    return base / "run" / "checkpoints" / "last.pt"


@pytest.fixture(scope="module")
def outcomes(ckpt, tmp_path_factory):
    """Every case run once, concurrently, each in its own empty working directory."""
    base = tmp_path_factory.mktemp("cwd")
    run_dir = ckpt.parent.parent
    before = snapshot(run_dir)
    for case in CASES:
        (base / case).mkdir()

    def run(case: str):
        return genlab(*CASES[case][0].format(ckpt=ckpt).split(), cwd=base / case)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = dict(zip(CASES, pool.map(run, CASES)))
    return base, results, before == snapshot(run_dir)


@pytest.mark.parametrize("case", CASES)
def test_a_size_that_cannot_fit_is_refused_in_one_line_with_the_largest_that_fits(outcomes, case):
    base, results, run_dir_unchanged = outcomes
    result, (command, fix) = results[case], CASES[case]
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"genlab {command.split()[0]}: error: "), result.stderr
    assert re.search(r"needs at least [\d.,e+]+ (GiB|decoder passes|images|kernel entries), more than ", lines[0]), lines[0]
    typed = int(re.search(rf"\b{re.escape(fix.split('<=')[0])}=(\d+)", command).group(1))
    largest = re.search(rf": pass (.* or )?{re.escape(fix.split('<=')[0])}<=(\d+)( or .*)?$", lines[0])
    assert largest and 1 <= int(largest.group(2)) < typed, lines[0]
    assert fix in lines[0]
    assert not any((base / case).iterdir()) and run_dir_unchanged, "wrote files"


def test_require_fits_names_for_each_size_the_largest_value_that_fits():
    def work(s):
        return s["n"] * s["k"] + 20  # 20: a part no size changes

    require_fits("nll", {"n": 10, "k": 8}, work, (100, "the bound"), "passes")  # 100: fits
    with pytest.raises(ConfigError) as refused:
        require_fits("nll", {"n": 50, "k": 10}, work, (100, "the bound"), "passes", prefix="eval.")
    assert str(refused.value) == ("nll at eval.n=50, eval.k=10 needs at least 520 passes, more than the bound: "
                                  "pass eval.n<=8 or eval.k<=1")
    with pytest.raises(ConfigError, match="use smaller sizes$"):  # 20 alone is over the bound
        require_fits("nll", {"n": 1, "k": 1}, work, (10, "the bound"), "passes")


def test_the_largest_n_named_for_sample_fits_and_one_more_does_not(ckpt, tmp_path, monkeypatch):
    # A machine with 64 KiB of memory: the latents of a few thousand tiny-VAE images fill it.
    monkeypatch.setattr(checks, "device_memory_bytes", lambda device="cpu": 64 * 1024)
    with pytest.raises(ConfigError) as refused:
        sample(str(ckpt), 10**6, 0, str(tmp_path / "all.npz"), mode="grid", steps=8, label=None, batch_size=8)
    largest = int(re.search(r": pass n<=(\d+)$", str(refused.value)).group(1))
    sample(str(ckpt), largest, 0, str(tmp_path / "all.npz"), mode="grid", steps=8, label=None, batch_size=8)
    assert (tmp_path / "all.npz").stat().st_size > largest * 16 * 16
    with pytest.raises(ConfigError, match=rf"at n={largest + 1}, batch_size=8 needs at least"):
        sample(str(ckpt), largest + 1, 0, str(tmp_path / "more.npz"), mode="grid", steps=8, label=None, batch_size=8)
    assert not (tmp_path / "more.npz").exists()


def test_traverse_steps_and_inception_batches_are_sizes_too(ckpt, tmp_path):
    with pytest.raises(ConfigError, match=r"^mode=traverse .* at steps=10000000000, batch_size=8 needs .*: pass steps<=\d+$"):
        sample(str(ckpt), 1, 0, str(tmp_path / "t.png"), mode="traverse", steps=10**10, label=None, batch_size=8)
    settings = OmegaConf.to_container(compose_jobs("eval", ["ckpt=x", "inception.batch_size=1000000000"])[0], resolve=True)
    with pytest.raises(ConfigError, match=r"^metrics=inception_fid on 1×16×16 images at .*: pass inception.batch_size<=\d+$"):
        evaluation.check_sizes(["inception_fid"], settings, (1, 16, 16))
    assert not any(tmp_path.iterdir())


def test_a_long_evaluation_shows_progress_and_its_expected_time(ckpt, tmp_path, monkeypatch, caplog):
    shutil.copytree(ckpt.parent, tmp_path / "checkpoints")
    settings = OmegaConf.to_container(compose_jobs("eval", ["ckpt=x", "n=10", "k=2", "batch_size=2"])[0], resolve=True)

    def evaluate() -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="genlab"):
            evaluation.evaluate(tmp_path / "checkpoints" / "last.pt", settings, ["nll"], torch.device("cpu"))
        return [r.getMessage() for r in caplog.records]

    monkeypatch.setattr(likelihood, "DECODE_BATCH", 2)  # the decoder's batch as the eval's: k passes of one image
    lines = evaluate()  # one image a batch (batch_size // k): ten batches, a line per tenth
    assert [line for line in lines if line.startswith("nll (k=2): ")][-1] == "nll (k=2): 10/10"
    assert not any("expected ~" in line for line in lines)  # under a minute: no estimate
    monkeypatch.setattr(progress, "ETA_MIN_S", 0.0)
    assert any(re.fullmatch(r"nll \(k=2\): 8 images left at [\d,.]+/s, expected ~\d+ min", line) for line in evaluate())
