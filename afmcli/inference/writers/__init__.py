"""What `afm infer` writes: one :class:`Writer` per output format, one module each.

Every module here registers its writers on import (:func:`register`), so a new output
format is one new file plus the flag that turns it on (an ``InferSettings`` field of
the writer's ``option`` name, and its option in afmcli/commands/infer.py).
"""

from __future__ import annotations

import importlib
import pkgutil

from afmcli.inference.writers.base import WRITERS, RunInfo, Stage, Writer, register

__all__ = ["RunInfo", "Stage", "Writer", "all_names", "enabled_writers", "output_names", "register"]


def _load_all() -> list[type[Writer]]:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return sorted(WRITERS, key=lambda cls: cls.names)


def enabled_writers(settings, names=None) -> list[type[Writer]]:
    """The writers a run with ``settings`` uses: those always on, and those whose option is set;
    given the run's categories (``names``, id -> name), not the always-on ones that cannot
    express them (:meth:`Writer.applies`)."""
    return [cls for cls in _load_all() if (getattr(settings, cls.option) if cls.option else
                                           names is None or cls.applies(names))]


def output_names(writers) -> list[str]:
    """The entries of OUT that ``writers`` write (the union of their names)."""
    return sorted({name for cls in writers for name in cls.names})


def all_names() -> list[str]:
    """Every entry of OUT some writer may write: an earlier run's that this run does not make are removed."""
    return output_names(_load_all())
