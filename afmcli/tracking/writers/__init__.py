"""What `afm track` writes: one :class:`TrackWriter` per output format, one module each
(registered on import, as afmcli.inference.writers)."""

from __future__ import annotations

import importlib
import pkgutil

from afmcli.tracking.writers.base import TRACK_WRITERS, TrackRun, TrackWriter

__all__ = ["TrackRun", "TrackWriter", "all_names", "enabled_writers"]


def _load_all() -> list[type[TrackWriter]]:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return sorted(TRACK_WRITERS, key=lambda cls: cls.names)


def enabled_writers(run: TrackRun) -> list[type[TrackWriter]]:
    return [cls for cls in _load_all() if cls.option is None or getattr(run, cls.option)]


def all_names() -> list[str]:
    return sorted({name for cls in _load_all() for name in cls.names})
