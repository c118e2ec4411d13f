"""genlab.config.compose: the Hydra internals genlab relies on behave as it expects (pinned here, so a
Hydra upgrade that changes them fails these tests, not a user's run), and the model files' own
shorthands."""

from __future__ import annotations

from pathlib import Path

import pytest

from genlab.config.checks import ConfigError
from genlab.config.compose import compose_command, parse_command_line
from genlab.config.overrides import parse_overrides


def test_hydra_argv_parser_reads_genlabs_flags():
    parsed = parse_command_line(["-m", "model=gan", "noise_dim=16,64", "--cfg", "job"])
    assert parsed.multirun and parsed.cfg == "job" and parsed.overrides == ["model=gan", "noise_dim=16,64"]


def test_sweep_jobs_come_in_the_basic_sweepers_order_and_are_composed_once_each():
    command = compose_command("train", ["seed=1,2", "noise_dim=3,4", "hydra.sweep.dir=sw"], multirun=True)
    assert [(job.seed, job.noise_dim) for job in command.jobs] == [(1, 3), (1, 4), (2, 3), (2, 4)]
    assert command.output_dir == Path("sw") and not command.output_dir_from_clock
    assert all("hydra" not in job for job in command.jobs)


def test_the_run_directory_comes_from_the_same_composition():
    command = compose_command("train", ["hydra.run.dir=somewhere/run"], multirun=False)
    assert command.output_dir == Path("somewhere/run") and command.jobs[0].model.name == "vae"
    timed = compose_command("train", [], multirun=False)
    assert timed.output_dir_from_clock and timed.output_dir.parts[0] == "outputs" and len(timed.output_dir.parts) == 3


def test_override_grammar_errors_name_the_override():
    assert [o.key_or_group for o in parse_overrides(["a=1", "+b=x,y", "~c"])] == ["a", "b", "c"]
    with pytest.raises(ConfigError, match=r"^cannot read 'resume=a=b=c,\[' "):
        parse_overrides(["resume=a=b=c,["])


@pytest.mark.parametrize("overrides,multirun", [(["model=gan", "beta=4"], False),
                                                (["model=vae,gan", "beta=1,4"], True)])
def test_a_shorthand_exists_only_for_the_model_that_reads_it(overrides, multirun):
    # beta is the VAE's: a GAN run has no such key, so no sweep trains the same GAN twice.
    with pytest.raises(ConfigError, match=r"^unknown key 'beta': check the spelling"):
        compose_command("train", overrides, multirun)
    (gan,) = compose_command("train", ["model=gan", "noise_dim=16"], False).jobs
    assert gan.model.latent_dim == 16 and "beta" not in gan
