"""From a command line to composed configs: every use of Hydra beyond `@hydra.main` lives here.

genlab checks a command line before Hydra's app creates a run or sweep directory, so a bad value
costs nothing and leaves nothing behind. `compose_command` composes each job once, with Hydra's
own node, which gives both the job's config (validated once, by the command) and the directory
Hydra will create. Hydra's app then composes the same job again when it runs it: its launchers
compose jobs in their own processes (joblib workers, Slurm tasks), so that composition cannot be
handed over.

Every key of a job must be one genlab reads: Hydra refuses an unknown key unless it is added with
`+key=value` (or by a user's config file), so `compose_command` also composes, once per set of
choices of the command's own config groups, the reference config those choices give (no value
overrides, no preset or other added group) and refuses a key the job has and the reference lacks,
naming the closest known key. Hydra's own
keys (`hydra.*`, launchers included) are not part of a job.

Hydra internals relied on (tests/test_compose.py pins each):
- `hydra._internal.utils.get_args_parser`: the app's own argv parser (-m, --cfg, --help, …);
- `BasicSweeper.split_arguments`: the jobs of a sweep, in the order the basic sweeper runs them;
- `OverridesParser`: the override grammar (quoting, sweeps `a=1,2`, `+key`, `~key`);
- `hydra.runtime.choices` of a config composed with Hydra's node: the option of every group,
  keyed `group` or `group@package`, which Hydra accepts back as an override.
"""

from __future__ import annotations

import difflib
import re
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from genlab.checks import ConfigError


def config_dir() -> str:
    """configs/ inside the installed package, or the repository's top-level configs/."""
    packaged = Path(__file__).parent / "configs"
    return str(packaged if packaged.is_dir() else Path(__file__).parent.parent / "configs")


def parse_command_line(args: list[str]) -> Namespace:
    """Hydra's parse of a command line: .overrides, .multirun, .config_name, .help, .cfg, …"""
    from hydra._internal.utils import get_args_parser

    return get_args_parser().parse_args(args)


def only_inspects(parsed: Namespace) -> bool:
    """Whether the parsed command line only prints something (help, config, completion)."""
    return bool(parsed.help or parsed.hydra_help or parsed.cfg or parsed.shell_completion or parsed.info)


def parse_overrides(overrides: list[str]) -> list:
    """Hydra's parsed overrides; ConfigError naming the one that cannot be read."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser, parsed = OverridesParser.create(), []
    for override in overrides:  # one at a time, to name the one that fails
        try:
            parsed += parser.parse_overrides([override])
        except OverrideParseException as e:
            raise ConfigError(f"cannot read {override!r} ({str(e).splitlines()[0]}): quote a value with special "
                              "characters, e.g. \"resume='outputs/x/beta=4,noise_dim=16'\"") from None
    return parsed


def _keys(tree: dict, prefix: str = "") -> set[str]:
    """Every dotted key of a plain config tree (lists and values are leaves)."""
    keys = set()
    for key, value in tree.items():
        keys.add(f"{prefix}{key}")
        if isinstance(value, dict):
            keys |= _keys(value, f"{prefix}{key}.")
    return keys


class _Composer:
    """Hydra's compose API inside one initialize_config_dir, with the reference key sets cached."""

    def __init__(self, config_name: str, overrides: list[str]):
        from hydra import compose

        self.compose, self.config_name = compose, config_name
        # A user's config folders take part in every composition, the reference's too.
        self.searchpath = [o for o in overrides if o.startswith("hydra.searchpath=")]
        self._references: dict[tuple, set[str]] = {}
        # The groups of the command's own defaults list (model, dataset, …). A group added with
        # `+group=option` (a preset, genlab's `experiment` or a user's) only sets values: its keys
        # must be known without it.
        self.groups = set(OmegaConf.to_container(self.job(self.searchpath).hydra.runtime.choices))

    def job(self, overrides: list[str]) -> DictConfig:
        return self.compose(self.config_name, overrides=overrides, return_hydra_config=True)

    def known_keys(self, job: DictConfig) -> set[str]:
        """The keys of the config that the job's group choices give on their own."""
        choices = OmegaConf.to_container(job.hydra.runtime.choices)
        groups = tuple(sorted(f"{group}={option}" for group, option in choices.items()
                              if option is not None and not group.startswith("hydra/") and group in self.groups))
        if groups not in self._references:
            reference = OmegaConf.to_container(self.compose(self.config_name, overrides=[*self.searchpath, *groups]))
            self._references[groups] = _keys(reference)
        return self._references[groups]

    def check_keys(self, job: DictConfig) -> None:
        plain = OmegaConf.to_container(job)
        del plain["hydra"]
        known = self.known_keys(job)
        unknown = sorted(_keys(plain) - known)
        if unknown:
            # The outermost unknown key: its sub-keys are unknown because it is.
            key = min(unknown, key=lambda k: k.count("."))
            raise ConfigError(unknown_key(key, known, self.config_name))


def unknown_key(key: str, known: set[str], config_name: str) -> str:
    """The one line for a key genlab does not read, with the closest known key if there is one."""
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    fix = f"did you mean {close[0]}?" if close else f"check the spelling (see `genlab {config_name} --cfg job` for every key)"
    return f"unknown key {key!r}: {fix}"


def _one_line(error: Exception, config_name: str, known: set[str] | None = None) -> str:
    """Hydra's composition errors, cut down to one line with the fix."""
    from hydra.errors import MissingConfigException

    text = str(error)
    if isinstance(error, MissingConfigException) and error.options:
        group = error.missing_cfg_file.rsplit("/", 1)[0] if error.missing_cfg_file else "?"
        wanted = re.search(r"Could not find '([^']+)'", text)
        name = wanted.group(1) if wanted else error.missing_cfg_file
        return f"{name.replace('/', '=', 1)} is not an option: choose {group}= one of {', '.join(error.options)}"
    cause = error.__cause__
    if "is not in struct" in text or (cause is not None and "not in struct" in str(cause)):
        found = re.search(r"override '([^']+)'", text)
        return unknown_key(found.group(1) if found else "", known or set(), config_name)
    return " ".join(text.split())


@dataclass
class Command:
    """A command line composed: its jobs' configs (without Hydra's node), and the run or sweep
    directory Hydra will create (None where it depends on values known only at run time), which is
    named by the clock (`${now:…}`, the default) or not."""

    jobs: list[DictConfig]
    output_dir: Path | None
    output_dir_from_clock: bool


def compose_command(config_name: str, overrides: list[str], multirun: bool) -> Command:
    """Compose every job the command line asks for, once each; ConfigError on a bad override or
    an unknown key."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    jobs = [overrides]
    if multirun:
        jobs = [list(job) for chunk in BasicSweeper.split_arguments(parse_overrides(overrides), None) for job in chunk]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        composer = _Composer(config_name, overrides)
        composed = []
        for job in jobs:
            try:
                composed.append(composer.job(job))
            except (HydraException, OmegaConfBaseException) as e:
                raise ConfigError(_one_line(e, config_name, _known_without_failing(composer, job, e))) from None
            composer.check_keys(composed[-1])
    # A sweep's directory is the same for every job.
    key = "sweep" if multirun else "run"
    from_clock = "${now:" in str(OmegaConf.to_container(composed[0].hydra[key], resolve=False)["dir"])
    output_dir = _output_dir(composed[0], multirun)
    for cfg in composed:
        with open_dict(cfg):
            del cfg["hydra"]
    return Command(composed, output_dir, from_clock)


def _known_without_failing(composer: _Composer, job: list[str], error: Exception) -> set[str]:
    """The keys a job would have without the override Hydra refused (for a "did you mean")."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    found = re.search(r"override '([^']+)'", str(error))
    if found is None:
        return set()
    kept = [o for o in job if not o.lstrip("+~").startswith(found.group(1) + "=")]
    try:
        return composer.known_keys(composer.job(kept))
    except (HydraException, OmegaConfBaseException):
        return set()


def compose_jobs(config_name: str, overrides: list[str], multirun: bool = False) -> list[DictConfig]:
    """The config of every job the command line asks for (see compose_command)."""
    return compose_command(config_name, overrides, multirun).jobs


def _output_dir(cfg: DictConfig, multirun: bool) -> Path | None:
    from omegaconf.errors import OmegaConfBaseException

    try:
        return Path(OmegaConf.select(cfg, "hydra.sweep.dir" if multirun else "hydra.run.dir"))
    except OmegaConfBaseException:  # e.g. an interpolation of hydra.runtime, set only when it runs
        return None
