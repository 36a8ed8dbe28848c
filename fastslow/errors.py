"""One error type for everything a user can get wrong; the CLI prints it as one line."""


class FastSlowError(Exception):
    """Bad input (config, file, endpoint, run dir): the message names the field or file and what was expected."""
