"""One command layer (issue 27): every command goes through genlab/commands/wrapper.py's wrapper, a job's
config is composed once in genlab's code, and Hydra's private modules are imported in one
function only, checked here against the Hydra release it was written for."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
from conftest import REPO, TINY

from genlab.config.compose import TESTED_HYDRA, hydra_internals
from genlab.config.overrides import parse_overrides, sweep_jobs

# Runs `genlab ARGS` in one process with Hydra's compose API counted, and prints the count.
COUNTING = """
import sys
import hydra
from genlab.cli import main

calls = []
compose = hydra.compose
hydra.compose = lambda *args, **kwargs: calls.append(args) or compose(*args, **kwargs)
try:
    main(sys.argv[1:])
finally:
    print("compositions", len(calls))
"""


def compositions(tmp_path: Path, *args: str) -> int:
    result = subprocess.run([sys.executable, "-c", COUNTING, *args], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0"}, timeout=300)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip().splitlines()[-1].split()[1])


def test_one_train_composes_its_config_once(tmp_path: Path):
    assert compositions(tmp_path, "train", *TINY, "trainer.max_steps=2", "hydra.run.dir=run") == 1
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    # a sweep: once per job
    assert compositions(tmp_path, "train", "-m", *TINY, "trainer.max_steps=2", "seed=1,2", "hydra.sweep.dir=sweep") == 2


def test_a_preset_adds_one_reference_composition(tmp_path: Path):
    # +experiment may add keys: they are checked against the config its groups give without it
    count = compositions(tmp_path, "train", "+experiment=beta_vae_shapes", *TINY, "trainer.max_steps=2",
                         "hydra.run.dir=run")
    assert count == 2


def test_hydra_internals_are_the_ones_genlab_was_written_for():
    assert hydra.__version__.startswith(TESTED_HYDRA + "."), (
        f"hydra-core {hydra.__version__} is not the {TESTED_HYDRA} line genlab.config.compose.hydra_internals was checked "
        "against: check each piece it returns (tests/test_compose.py, tests/test_config_files.py) and update TESTED_HYDRA")
    internals = hydra_internals()
    assert internals.get_args_parser().parse_args(["-m", "a=1"]).multirun
    assert callable(internals.create_config_search_path) and callable(internals.Hydra.create_main_hydra2)
    assert "full_path" in internals.FileConfigSource.load_config.__code__.co_varnames


def test_no_module_but_hydra_internals_imports_hydras_private_modules():
    found = []
    for path in sorted((REPO / "genlab").rglob("*.py")):
        tree = ast.parse(path.read_text())
        inside = {id(node) for function in ast.walk(tree)
                  if isinstance(function, ast.FunctionDef) and function.name == "hydra_internals"
                  and path.name == "compose.py" for node in ast.walk(function)}
        for node in ast.walk(tree):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            names = [alias.name for alias in node.names] if isinstance(node, (ast.Import, ast.ImportFrom)) else []
            if any(name.startswith("hydra._internal") for name in [module or "", *names]) and id(node) not in inside:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not found, found


@pytest.mark.parametrize("overrides", [["seed=1,2", "noise_dim=3,4"], ["model=vae,gan", "+trainer.x=1", "seed=3"],
                                       ["seed=range(1,4)", "seed=5,6", "~beta"], ["a=1"]])
def test_sweep_jobs_are_the_basic_sweepers(overrides):
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # the reference, in a test only

    expected = [list(job) for chunk in BasicSweeper.split_arguments(parse_overrides(overrides), None) for job in chunk]
    assert sweep_jobs(overrides) == expected


def test_a_path_genlab_printed_reads_back_as_typed():
    from genlab.config.overrides import parse_overrides, quote_equals

    typed = ["ckpt=outputs/multirun/x/beta=4,noise_dim=16/checkpoints/last.pt", "+resume=a/b=c", "beta=1,2", "-m",
             "ckpt='already=quoted'", "hydra/launcher=joblib"]
    args = quote_equals(typed)
    assert args[2:] == typed[2:]  # no second '=': as typed
    values = [o.value() for o in parse_overrides(args[:2])]
    assert values == ["outputs/multirun/x/beta=4,noise_dim=16/checkpoints/last.pt", "a/b=c"]
