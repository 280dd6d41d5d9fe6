"""User-facing errors and warnings: one line each on stderr (errors exit with code 2)."""


class AfmError(Exception):
    """An error caused by the user's input or setup, not by a bug.

    The message must stand alone on one line: say which file (and line, where
    there is one) and what is wrong with it.
    """


def warn(message: str) -> None:
    """Print ``afm: warning: message`` on stderr (between progress bars, not through them)."""
    from afmcli.progress import console

    console.print(f"afm: warning: {message}", markup=False, highlight=False, soft_wrap=True)
