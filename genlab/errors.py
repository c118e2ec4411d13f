"""The one exception type for problems a user can fix: its message is the one line they see, and
`fail`, which stops a command with that line."""

import sys


class UserError(Exception):
    """Bad input (config value, file, dataset): the message names the problem and the fix."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read or written; the message says why and what to do."""


def fail(name: str, error: UserError | str) -> None:
    """Stop `genlab NAME` with its one-line error (exit status 1)."""
    sys.exit(f"genlab {name}: error: {error}")
