"""A config file a user writes (on hydra.searchpath, or given with --config-dir/--config-name) that
YAML or OmegaConf cannot read: one line naming the file, the line and the reason, exit 1, nothing
created, and a tag that would run code is refused without running it."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import genlab

from genlab.config.checks import ConfigError
from genlab.config.compose import compose_jobs

UNSAFE = '# @package _global_\nseed: 0\nn: !!python/object/apply:os.system ["touch {base}/PWNED"]\n'
BROKEN = "# a user's primary config\ndefaults:\n  - {command}\n  - _self_\nseed: [1, 2\n"

# id → (command line, with {base} for the fixture folder; the expected message after "error: ").
CASES = {
    f"{command}: {kind}": (f"{command} {'' if command == 'train' else 'ckpt=x '}{line}", message)
    for command in ("train", "sample", "eval")
    for kind, line, message in [
        ("unsafe tag on hydra.searchpath", "hydra.searchpath=[file://{base}/conf] +experiment=unsafe",
         "cannot read {base}/conf/experiment/unsafe.yaml line 3: could not determine a constructor for the tag "
         "'!!python/object/apply:os.system'; remove the tag (genlab configs are plain YAML)"),
        ("syntax error in a group option", "hydra.searchpath=[file://{base}/conf] +mine=broken",
         "cannot read {base}/conf/mine/broken.yaml line 3: expected ',' or ']', but got '<stream end>' "
         "(while parsing a flow sequence from line 2); correct the YAML there"),
    ]
} | {
    f"{command}: syntax error in --config-name's file": (
        f"{command} {'' if command == 'train' else 'ckpt=x '}--config-dir {{base}}/{command}_dir --config-name broken",
        f"cannot read {{base}}/{command}_dir/broken.yaml line 6: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence from line 5); correct the YAML there")
    for command in ("train", "sample", "eval")
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Every case run once, concurrently, each in its own empty working directory."""
    base = tmp_path_factory.mktemp("config_files")
    (base / "conf" / "experiment").mkdir(parents=True)
    (base / "conf" / "experiment" / "unsafe.yaml").write_text(UNSAFE.format(base=base))
    (base / "conf" / "mine").mkdir()
    (base / "conf" / "mine" / "broken.yaml").write_text("a: 1\nb: [1, 2\n")
    for command in ("train", "sample", "eval"):
        (base / f"{command}_dir").mkdir()
        (base / f"{command}_dir" / "broken.yaml").write_text(BROKEN.format(command=command))
    for case in CASES:
        (base / "cwd" / case).mkdir(parents=True)

    def run(case: str):
        return genlab(*CASES[case][0].format(base=base).split(), cwd=base / "cwd" / case)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return base, dict(zip(CASES, pool.map(run, CASES)))


@pytest.mark.parametrize("case", CASES)
def test_an_unreadable_config_file_is_one_line_naming_file_and_line(outcomes, case):
    base, results = outcomes
    result, (command, message) = results[case], CASES[case]
    assert result.returncode == 1
    assert result.stderr == f"genlab {command.split()[0]}: error: {message.format(base=base)}\n"
    assert not any((base / "cwd" / case).iterdir()), "created files (a run directory?)"
    assert not (base / "PWNED").exists(), "the tag ran its code"


@pytest.mark.parametrize("text, message", [
    ("a: ${oc.env:X\n", r"^cannot read .*/mine/bad.yaml: key a: missing BRACE_CLOSE at '<EOF>'; correct that value$"),
    ("a: 1\na: 2\n", r"^cannot read .*/mine/bad.yaml line 2: found duplicate key a \(while constructing a mapping "
                     r"from line 1\); correct the YAML there$"),
    (b"a: \xff\n", r"^cannot read .*/mine/bad.yaml: it is not UTF-8 text \(invalid start byte\); save it as UTF-8$"),
])
def test_omegaconf_and_encoding_errors_name_the_file(tmp_path, text, message):
    (tmp_path / "mine").mkdir()
    path = tmp_path / "mine" / "bad.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError, match=message):
        compose_jobs("sample", [f"hydra.searchpath=[file://{tmp_path}]", "+mine=bad"])


def test_config_dir_joins_the_search_path_as_in_hydras_app(tmp_path):
    (tmp_path / "mine.yaml").write_text("defaults:\n  - sample\n  - _self_\nn: 4\n")
    (job,) = compose_jobs("mine", ["ckpt=x"], False, str(tmp_path))
    assert job.n == 4 and job.mode == "grid"  # the user's value over genlab's sample.yaml
    with pytest.raises(ConfigError, match=r"^cannot find the config 'mine' \(--config-name\): pass --config-dir="):
        compose_jobs("mine", ["ckpt=x"])
    with pytest.raises(ConfigError, match=r"^--config-dir .*/nowhere is not a folder"):
        compose_jobs("sample", ["ckpt=x"], False, str(tmp_path / "nowhere"))


@pytest.mark.parametrize("group", ["model", "dataset"])
def test_a_group_option_whose_file_holds_a_list_is_one_line(tmp_path, group):
    (tmp_path / "conf" / group).mkdir(parents=True)
    (tmp_path / "conf" / group / "mine.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "cwd").mkdir()
    result = genlab("train", f"hydra.searchpath=[file://{tmp_path}/conf]", f"{group}=mine", cwd=tmp_path / "cwd")
    assert result.returncode == 1
    assert result.stderr == (f"genlab train: error: {group}=mine: its file holds a list, not keys: write it as "
                             f"`key: value` lines, like genlab's configs/{group}/*.yaml\n")
    assert not any((tmp_path / "cwd").iterdir())
