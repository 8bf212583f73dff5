"""The one exception type bad input raises: the CLI prints its message on one line and exits non-zero."""


class InputError(ValueError):
    """An input (file, array, option) that the runtime cannot process. The message names the problem
    and the expected form."""
