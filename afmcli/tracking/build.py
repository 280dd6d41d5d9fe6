"""Trackers by name: importing each tracker module registers it in :data:`TRACKERS`.

Apart from base.py so that no tracker module imports the module that imports it."""

from __future__ import annotations

import afmcli.tracking.bytetrack  # noqa: F401  registers
import afmcli.tracking.ocsort  # noqa: F401  registers
from afmcli.errors import ParameterError
from afmcli.tracking.base import TRACKERS, Tracker


def tracker_class(name: str) -> type[Tracker]:
    """The registered tracker ``name`` (bytetrack, ocsort)."""
    if name not in TRACKERS.module_dict:
        raise ParameterError(f"{{tracker}} must be one of {', '.join(sorted(TRACKERS.module_dict))}, got {name!r}",
                             "tracker")
    return TRACKERS.module_dict[name]


def build_tracker(cfg: dict) -> Tracker:
    """``cfg``: ``type`` (a registered tracker's name) and its settings."""
    cfg = dict(cfg)
    return tracker_class(cfg.pop("type", None))(**cfg)
