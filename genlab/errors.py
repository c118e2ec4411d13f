"""The one exception type for problems a user can fix: its message is the one line they see."""


class UserError(Exception):
    """Bad input (config value, file, dataset): the message names the problem and the fix."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read or written; the message says why and what to do."""
