"""The one exception type for problems a user can fix: its message is the one line they see."""


class UserError(Exception):
    """Bad input (config value, file, dataset): the message names the problem and the fix."""
