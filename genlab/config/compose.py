"""From a command line to composed configs: every use of Hydra beyond `@hydra.main` lives here
(the override grammar in overrides.py), so a Hydra upgrade is checked in one place.

genlab checks a command line before Hydra's app creates a run or sweep directory, so a bad value
costs nothing and leaves nothing behind. `compose_command` composes each job once (every
composition goes through `compose_config`), with Hydra's own node, which gives both the job's config (validated once, by the command) and the directory
Hydra will create. Hydra's app then composes the same job again when it runs it: its launchers
compose jobs in their own processes (joblib workers, Slurm tasks), so that composition cannot be
handed over.

Every key of a job must be one genlab reads: Hydra refuses an unknown key unless it is added with
`+key=value` (or by a user's config file), so `compose_command` refuses a key the job has and the
config its group choices give on their own lacks, naming the closest known key. Without a preset
(`+group=option`) or a force-added key (`++key=value`) on the command line those are the keys added
with `+key=value`; with one, it composes that reference config once per set of choices of the
command's own config groups (no value overrides, no preset or other added group). Hydra's own
keys (`hydra.*`, launchers included) are not part of a job.

A config file that YAML or OmegaConf cannot read (a syntax error, a tag such as
`!!python/object/apply`, which the loader refuses without running anything) is reported in one
line naming the file, the line and the reason, whichever of genlab's, `hydra.searchpath`'s or
`--config-dir`'s folders it is in.

Hydra's public API serves all but three needs; `hydra_internals` is the one place that imports
Hydra's private modules for them (tests/test_compose.py checks it against the Hydra version it was
written for, so an upgrade fails there, loudly, before a user's run does):
- `hydra._internal.utils.get_args_parser`: the app's own argv parser (-m, --cfg, --help, …);
- `create_config_search_path` and `Hydra.create_main_hydra2`: the search path `--config-dir` joins,
  where the app's `run_hydra` puts it (after genlab's configs, before structured configs);
- `FileConfigSource.load_config` and its local `full_path`: the file being read when YAML or
  OmegaConf refused it (their errors name no file, or not in one line).
Public pieces, each pinned by a test as well:
- `OverridesParser` and `Override`: the override grammar (quoting, sweeps `a=1,2`, `+key`, `~key`),
  and a sweep's jobs, in the order Hydra's basic sweeper runs them (genlab/config/overrides.py);
- `hydra.runtime.choices` of a config composed with Hydra's node: the option of every group,
  keyed `group` or `group@package`, which Hydra accepts back as an override.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from omegaconf import DictConfig, OmegaConf, open_dict

from genlab.config.checks import ConfigError
from genlab.config.overrides import parse_overrides, sweep_jobs


def config_dir() -> str:
    """configs/ inside the installed package, or the repository's top-level configs/."""
    package = Path(__file__).parents[1]  # genlab/
    packaged = package / "configs"
    return str(packaged if packaged.is_dir() else package.parent / "configs")


def hydra_internals() -> SimpleNamespace:
    """The private Hydra pieces genlab needs where no public API serves (see the module docstring);
    the only import of `hydra._internal` in genlab. Written for TESTED_HYDRA."""
    from hydra._internal.core_plugins.file_config_source import FileConfigSource
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path, get_args_parser

    return SimpleNamespace(get_args_parser=get_args_parser, create_config_search_path=create_config_search_path,
                           Hydra=Hydra, FileConfigSource=FileConfigSource)


TESTED_HYDRA = "1.3"  # the hydra-core release line hydra_internals was checked against


def parse_command_line(args: list[str]) -> Namespace:
    """Hydra's parse of a command line: .overrides, .multirun, .config_name, .help, .cfg, …"""
    return hydra_internals().get_args_parser().parse_args(args)


def only_inspects(parsed: Namespace) -> bool:
    """Whether the parsed command line only prints something (help, config, completion)."""
    return bool(parsed.help or parsed.hydra_help or parsed.cfg or parsed.shell_completion or parsed.info)


def _keys(tree: dict, prefix: str = "") -> set[str]:
    """Every dotted key of a plain config tree (lists and values are leaves)."""
    keys = set()
    for key, value in tree.items():
        keys.add(f"{prefix}{key}")
        if isinstance(value, dict):
            keys |= _keys(value, f"{prefix}{key}.")
    return keys


def compose_config(config_name: str, overrides: list[str], with_hydra: bool = False) -> DictConfig:
    """The one place genlab composes a config (Hydra's compose API, inside `_search_path`); with
    `with_hydra`, Hydra's node (hydra.runtime.choices, the run directory) comes with it."""
    from hydra import compose

    return compose(config_name, overrides=overrides, return_hydra_config=with_hydra)


class _Composer:
    """The jobs of one command line, each composed once; a reference config (the keys its group
    choices give on their own) is composed only for a job whose command line adds a preset
    (`+group=option`) or force-adds a key (`++key=value`), and cached per set of choices."""

    def __init__(self, config_name: str, overrides: list[str]):
        self.config_name = config_name
        # A user's config folders take part in every composition, the reference's too.
        self.searchpath = [o for o in overrides if o.startswith("hydra.searchpath=")]
        self._references: dict[tuple, set[str]] = {}

    def job(self, overrides: list[str]) -> DictConfig:
        return compose_config(self.config_name, overrides, with_hydra=True)

    @staticmethod
    def _additions(choices: dict, overrides: list[str]) -> tuple[set[str], set[str], bool]:
        """What the command line adds: groups (`+group=option`, named as in choices), keys
        (`+key=value`), and whether any key is force-added (`++key=value`)."""
        named = {group.split("@")[0]: group for group in choices}
        groups, keys, forced = set(), set(), False
        for override in parse_overrides(overrides):
            name = override.key_or_group
            if not override.is_add() or name.startswith("hydra"):
                continue
            if name in named:
                groups.add(named[name])
            elif override.is_force_add():
                forced = True
            else:
                keys.add(name)
        return groups, keys, forced

    def own_groups(self, job: DictConfig, overrides: list[str]) -> set[str]:
        """The groups of the command's own defaults list (model, dataset, …). A group added with
        `+group=option` (a preset, genlab's `experiment` or a user's) only sets values: its keys
        must be known without it."""
        choices = OmegaConf.to_container(job.hydra.runtime.choices)
        return set(choices) - self._additions(choices, overrides)[0]

    def known_keys(self, job: DictConfig, overrides: list[str]) -> set[str]:
        """The keys of the config that the job's group choices give on their own."""
        choices = OmegaConf.to_container(job.hydra.runtime.choices)
        added_groups, added_keys, forced = self._additions(choices, overrides)
        if not added_groups and not forced:
            # Then only `+key=value` adds keys: Hydra refuses `key=value` for a key the config lacks
            # and `+key=value` for one it has, so the job's keys less those are the reference's.
            plain = OmegaConf.to_container(job)
            plain.pop("hydra")
            return {k for k in _keys(plain) if not any(k == a or k.startswith(a + ".") for a in added_keys)}
        groups = tuple(sorted(f"{group}={option}" for group, option in choices.items()
                              if option is not None and not group.startswith("hydra/") and group not in added_groups))
        if groups not in self._references:
            reference = OmegaConf.to_container(compose_config(self.config_name, [*self.searchpath, *groups]))
            self._references[groups] = _keys(reference)
        return self._references[groups]

    def check_keys(self, job: DictConfig, overrides: list[str]) -> None:
        plain = OmegaConf.to_container(job)
        choices = plain.pop("hydra")["runtime"]["choices"]
        for group in sorted(self.own_groups(job, overrides) & plain.keys()):  # a group's file read fine, but holds no keys
            if not isinstance(plain[group], dict):
                raise ConfigError(f"{group}={choices[group]}: its file holds a {type(plain[group]).__name__}, not keys: "
                                  f"write it as `key: value` lines, like genlab's configs/{group}/*.yaml")
        known = self.known_keys(job, overrides)
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

    unreadable = _unreadable_file(error)
    if unreadable is not None:
        return unreadable
    text = str(error)
    if isinstance(error, MissingConfigException) and error.missing_cfg_file == config_name and not error.options:
        return (f"cannot find the config {config_name!r} (--config-name): pass --config-dir=<the folder holding "
                f"{config_name}.yaml>")
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


def _unreadable_file(error: BaseException) -> str | None:
    """The one line for a config file that YAML or OmegaConf could not read (the file, the line
    where YAML gives one, the reason and the fix); None when `error` was not raised reading a file."""
    import yaml
    FileConfigSource = hydra_internals().FileConfigSource

    # OmegaConf's and the decoder's errors do not name the file; the frame of Hydra's reader holds it.
    frame = error.__traceback__
    while frame is not None and frame.tb_frame.f_code is not FileConfigSource.load_config.__code__:
        frame = frame.tb_next
    if frame is None:
        return None
    path = frame.tb_frame.f_locals["full_path"]
    cause = error.__cause__ or error  # Hydra wraps OmegaConf's errors in a ConfigCompositionException
    where, fix = "", "correct it"
    if isinstance(cause, yaml.MarkedYAMLError):
        mark = cause.problem_mark or cause.context_mark
        where = f" line {mark.line + 1}" if mark else ""
        reason = (cause.problem or cause.context).replace("tag:yaml.org,2002:", "!!")  # as the file spells it
        if cause.problem and cause.context:
            since = f" from line {cause.context_mark.line + 1}" if cause.context_mark else ""
            reason += f" ({cause.context}{since})"
        tag = "constructor for the tag" in reason
        fix = "remove the tag (genlab configs are plain YAML)" if tag else "correct the YAML there"
    elif isinstance(cause, UnicodeDecodeError):
        reason, fix = f"it is not UTF-8 text ({cause.reason})", "save it as UTF-8"
    elif isinstance(cause, OSError):
        reason, fix = cause.strerror or str(cause), "make it readable"
    elif getattr(cause, "full_key", None):  # OmegaConf: a value it cannot hold, e.g. an unclosed ${…}
        reason = f"key {cause.full_key}: {str(cause.msg).splitlines()[0]}"
        fix = "correct that value"
    else:
        reason = " ".join(str(cause).split())
    return f"cannot read {path}{where}: {reason}; {fix}"


@dataclass
class Command:
    """A command line composed: its jobs' configs (without Hydra's node), and the run or sweep
    directory Hydra will create (None where it depends on values known only at run time), which is
    named by the clock (`${now:…}`, the default) or not."""

    jobs: list[DictConfig]
    output_dir: Path | None
    output_dir_from_clock: bool


def compose_command(config_name: str, overrides: list[str], multirun: bool,
                    user_config_dir: str | None = None) -> Command:
    """Compose every job the command line asks for, once each; ConfigError on a bad override, an
    unknown key or a config file that cannot be read. user_config_dir: the folder --config-dir names."""
    jobs = sweep_jobs(overrides) if multirun else [overrides]
    with _search_path(user_config_dir):
        composer, job = None, overrides
        try:
            composer = _Composer(config_name, overrides)
            composed = []
            for job in jobs:
                composed.append(composer.job(job))
                composer.check_keys(composed[-1], job)
        except _composition_errors() as e:
            known = _known_without_failing(composer, job, e) if composer is not None else set()
            raise ConfigError(_one_line(e, config_name, known)) from None
    # A sweep's directory is the same for every job.
    key = "sweep" if multirun else "run"
    from_clock = "${now:" in str(OmegaConf.to_container(composed[0].hydra[key], resolve=False)["dir"])
    output_dir = _output_dir(composed[0], multirun)
    for cfg in composed:
        with open_dict(cfg):
            del cfg["hydra"]
    return Command(composed, output_dir, from_clock)


@contextlib.contextmanager
def _search_path(user_config_dir: str | None):
    """Hydra's compose API over the search path of the command's app: genlab's configs, then the
    folder --config-dir names, where the app's `run_hydra` puts it."""
    from hydra import initialize_config_dir

    if user_config_dir is not None and not os.path.isdir(user_config_dir):
        raise ConfigError(f"--config-dir {user_config_dir} is not a folder: name the folder that holds your config files")
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):  # restores Hydra's state on exit
        if user_config_dir is not None:
            from hydra.core.config_search_path import SearchPathQuery
            from hydra.core.global_hydra import GlobalHydra

            internals = hydra_internals()
            search_path = internals.create_config_search_path(config_dir())
            search_path.prepend("command-line", f"file://{os.path.abspath(user_config_dir)}",
                                anchor=SearchPathQuery(provider="schema"))
            GlobalHydra.instance().clear()
            internals.Hydra.create_main_hydra2(task_name="app", config_search_path=search_path)
        yield


def _known_without_failing(composer: _Composer, job: list[str], error: Exception) -> set[str]:
    """The keys a job would have without the override Hydra refused (for a "did you mean")."""
    found = re.search(r"override '([^']+)'", str(error))
    if found is None:
        return set()
    kept = [o for o in job if not o.lstrip("+~").startswith(found.group(1) + "=")]
    try:
        return composer.known_keys(composer.job(kept), kept)
    except _composition_errors():
        return set()


def _composition_errors() -> tuple[type[Exception], ...]:
    """What composing raises for a bad override or config file (YAML's errors and reading a file's
    pass through Hydra unwrapped)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException
    from yaml import YAMLError

    return HydraException, OmegaConfBaseException, YAMLError, UnicodeDecodeError, OSError


def compose_jobs(config_name: str, overrides: list[str], multirun: bool = False,
                 user_config_dir: str | None = None) -> list[DictConfig]:
    """The config of every job the command line asks for (see compose_command)."""
    return compose_command(config_name, overrides, multirun, user_config_dir).jobs


def _output_dir(cfg: DictConfig, multirun: bool) -> Path | None:
    from omegaconf.errors import OmegaConfBaseException

    try:
        return Path(OmegaConf.select(cfg, "hydra.sweep.dir" if multirun else "hydra.run.dir"))
    except OmegaConfBaseException:  # e.g. an interpolation of hydra.runtime, set only when it runs
        return None
