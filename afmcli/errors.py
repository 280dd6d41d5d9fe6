"""User-facing errors and warnings.

Library code raises :class:`AfmError` (a :class:`ParameterError` names the parameter
whose value is wrong) and warns through :mod:`warnings` (:class:`AfmWarning`, which
may name parameters too). The `afm` command prints each as one line on stderr, with
its flags in place of the parameter names; errors exit with code 2.
"""

from __future__ import annotations

import re
import warnings
from typing import Mapping


class AfmError(Exception):
    """An error caused by the user's input or setup, not by a bug.

    The message must stand alone on one line: say which file (and line, where
    there is one) and what is wrong with it.
    """


class _NamesParameters:
    """A message that writes each of ``parameters`` as ``{name}``: the library's message
    says the name (``frame_step must be >= 1``), a command's says its flag
    (``--frame-step must be >= 1``, :meth:`spelled`). A parameter may carry a value,
    ``{slices=False}``, for a flag that sets it (``--no-slices``)."""

    def __init__(self, message: str, *parameters: str):
        self.message, self.parameters = message, parameters
        super().__init__(self.spelled({}))

    def spelled(self, names: Mapping[str, str]) -> str:
        """The message with each parameter written as ``names`` says (else its own name)."""
        if not self.parameters:
            return self.message
        pattern = "|".join(re.escape("{" + p + "}") for p in self.parameters)
        return re.sub(pattern, lambda m: names.get(m[0][1:-1], m[0][1:-1]), self.message)

    def __reduce__(self):  # kept whole across processes (rank 0's errors reach every rank)
        return type(self), (self.message, *self.parameters)


class ParameterError(_NamesParameters, AfmError):
    """A bad value (or combination) of parameters of a library call."""


class AfmWarning(_NamesParameters, UserWarning):
    """Something in the input that is likely a mistake but does not stop the work."""


def warn(message: str, *parameters: str) -> None:
    """Warn through :mod:`warnings` (`afm` prints ``afm: warning: message`` on stderr,
    ``parameters`` spelled as its flags)."""
    warnings.warn(AfmWarning(message, *parameters), stacklevel=2)


def few(items, limit: int) -> str:
    """The first ``limit`` of ``items``, comma-separated, ``...`` after them when there are
    more: a message's short listing."""
    items = list(items)
    return ", ".join(map(str, items[:limit])) + (", ..." if len(items) > limit else "")
