"""Hydra's override grammar, as genlab reads and writes it: parsing overrides (quoting, sweeps
`a=1,2`, `+key`, `~key`) with Hydra's public `OverridesParser`, the jobs of a sweep in the order
Hydra's basic sweeper runs them, and quoting a value (a path) so that it reads back as itself.
"""

from __future__ import annotations

import re

from genlab.config.checks import ConfigError


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


def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """The jobs of a sweep (-m): the product of every override's values, the last override of a key
    replacing earlier ones, in the order Hydra's basic sweeper runs them (the first key varies
    slowest); ConfigError for a sweep it cannot run (an interval)."""
    import itertools

    per_key: dict[str, list[str]] = {}
    for override in parse_overrides(overrides):
        key = override.get_key_element()
        if not override.is_sweep_override():
            per_key[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            per_key[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            raise ConfigError(f"{override.input_line}: genlab's sweeps take lists of values (a=1,2) or ranges "
                              "(a=range(1,4)), not intervals")
    return [list(job) for job in itertools.product(*per_key.values())]


def hydra_value(text: str) -> str:
    """`text` as a Hydra override value: quoted when it holds characters the override grammar
    reads (a sweep job's directory is named like `beta=4,noise_dim=16`). Inside quotes a
    backslash is literal except before a quote or at the end, where it is doubled."""
    if re.fullmatch(r"[\w./+@%:-]+", text):
        return text
    return "'" + re.sub(r"(\\*)('|$)", lambda m: 2 * m.group(1) + ("\\'" if m.group(2) else ""), text) + "'"


def quote_equals(args: list[str]) -> list[str]:
    """Command-line arguments with each `key=value` whose value holds a further `=` quoted
    (`hydra_value`): no value of the override grammar holds one unquoted, and the paths genlab
    prints do (a sweep job's directory `beta=4`), so `genlab eval ckpt=<that path>` reads as typed."""
    quoted = []
    for arg in args:
        key, equals, value = arg.partition("=")
        plain = equals and re.fullmatch(r"[+~]{0,2}[\w.@/-]+", key) and not value.startswith(("'", '"'))
        quoted.append(f"{key}={hydra_value(value)}" if plain and "=" in value else arg)
    return quoted
