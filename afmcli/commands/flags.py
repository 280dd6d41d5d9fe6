"""How a command tells the library's errors and warnings: one line each, with the command's
flags where the library names its parameters (afmcli.errors.ParameterError, AfmWarning)."""

from __future__ import annotations

import contextlib
import functools
import inspect
import warnings
from typing import Iterator

import typer

from afmcli.errors import AfmError, AfmWarning, ParameterError


def command_flags(function) -> dict[str, str]:
    """How a command spells each of its parameters: ``--flag`` for an option (its first
    long name), ``NAME`` for an argument."""
    flags = {}
    for name, param in inspect.signature(function).parameters.items():
        info = param.default
        if isinstance(info, typer.models.OptionInfo):
            long = [d for d in info.param_decls or () if d.startswith("--")]
            flags[name] = long[0] if long else "--" + name.replace("_", "-")
        elif isinstance(info, typer.models.ArgumentInfo):
            flags[name] = info.metavar or name.upper()
    return flags


def flag_errors(module, name: str):
    """The command ``module.name`` with library errors and warnings about parameters told in
    its flags: its own parameters by name, the library's other names through ``module.FLAGS``."""
    function = getattr(module, name)
    flags = {**command_flags(function), **getattr(module, "FLAGS", {})}

    @functools.wraps(function)
    def command(*args, **kwargs):
        try:
            with warnings_as_lines(flags):
                return function(*args, **kwargs)
        except ParameterError as exc:
            raise AfmError(exc.spelled(flags)) from exc

    return command


@contextlib.contextmanager
def warnings_as_lines(flags: dict[str, str]) -> Iterator[None]:
    """afm's warnings as ``afm: warning: ...`` lines (between progress bars, parameters
    spelled as ``flags``), each time one is warned (not once per place in the code);
    other warnings as Python shows them."""
    from afmcli.progress import console

    with warnings.catch_warnings():
        warnings.simplefilter("always", AfmWarning)
        others = warnings.showwarning

        def show(message, category, *args, **kwargs):
            if isinstance(message, AfmWarning):
                console.print(f"afm: warning: {message.spelled(flags)}", markup=False, highlight=False,
                              soft_wrap=True)
            else:
                others(message, category, *args, **kwargs)

        warnings.showwarning = show
        yield
