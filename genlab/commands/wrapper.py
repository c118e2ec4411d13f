"""The one wrapper of every `genlab` command (train, sample, eval, explore): check the command line
before any work, then run the command's Hydra app; errors a user can fix are one line.

    run_command(name, app, args, prepare)
        1. Hydra's parse of ARGS (genlab/config/compose.py); a line that only inspects (--help, --cfg,
           completion) goes straight to the app;
        2. prepare(parsed): composes each job once (genlab.config.compose), checks it, may claim what the
           run writes, and returns overrides to add (a run directory pinned, a resume's stored ones);
           a UserError there stops the command with `genlab NAME: error: …`, exit status 1, before
           Hydra creates any directory;
        3. the Hydra app with ARGS and those overrides.

    @reports_errors(name, required=…) on the body a Hydra app runs: the same one line for a
        UserError raised while the command works, and for a mandatory key left unset (`ckpt`).

Like lightning-hydra-template's task wrapper, it keeps the commands' modules to what they do.
"""

from __future__ import annotations

import functools
import sys
from argparse import Namespace
from collections.abc import Callable

from genlab.errors import UserError, fail


def run_command(name: str, app: Callable[[], None], args: list[str],
                prepare: Callable[[Namespace], list[str]]) -> None:
    """`genlab NAME ARGS`: prepare (check, claim) unless the line only inspects, then the Hydra app."""
    from genlab.config.compose import only_inspects, parse_command_line
    from genlab.config.overrides import quote_equals

    args = quote_equals(args)  # a path genlab printed (a sweep job's `beta=4`) reads as typed
    parsed = parse_command_line(args)
    if not only_inspects(parsed):
        try:
            args = [*args, *prepare(parsed)]
        except UserError as e:
            fail(name, e)
    sys.argv = [sys.argv[0], *args]
    app()


def check_jobs(name: str, check: Callable | None = None, sweeps: bool = False) -> Callable[[Namespace], list[str]]:
    """A `prepare` that composes every job of the command line (genlab.config.compose: bad overrides, unknown
    keys, unreadable files) and runs `check(cfg)` on each; it adds no override. `sweeps`: -m runs
    one job per combination (otherwise the line is one job)."""
    def prepare(parsed: Namespace) -> list[str]:
        from genlab.config.compose import compose_jobs

        multirun = parsed.multirun if sweeps else False
        for cfg in compose_jobs(parsed.config_name or name, parsed.overrides, multirun, parsed.config_dir):
            if check is not None:
                check(cfg)
        return []

    return prepare


def reports_errors(name: str, required: str | None = None):
    """Decorate the body of a command's Hydra app: a UserError, or a mandatory key (`???`) left
    unset, ends the command in one line; `required` is what that line tells the user to pass."""
    def decorate(body):
        @functools.wraps(body)
        def wrapped(*args, **kwargs):
            from omegaconf.errors import MissingMandatoryValue

            try:
                return body(*args, **kwargs)
            except MissingMandatoryValue as e:
                if required is None:
                    raise
                fail(name, f"{getattr(e, 'key', None) or 'a key'} is required: {required}")
            except UserError as e:
                fail(name, e)

        return wrapped

    return decorate
