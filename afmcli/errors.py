"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class AfmError(Exception):
    """An error caused by the user's input or setup, not by a bug.

    The message must stand alone on one line: say which file (and line, where
    there is one) and what is wrong with it.
    """
