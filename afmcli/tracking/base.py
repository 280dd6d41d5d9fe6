"""The contract of a tracker adapter, their registry, and the adapter of mmdetection's trackers.

A :class:`Tracker` follows one sequence: :meth:`Tracker.update` takes a frame's detections
(labels are category ids) and returns those it keeps with their track ids (1, 2, ...,
unique in the sequence); :meth:`Tracker.reset` starts the next sequence. Each tracker is
one registered class, one file each in this package, built from a dict by
:func:`afmcli.tracking.build.build_tracker` (``dict(type="bytetrack", ...)``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from mmengine.registry import Registry

from afmcli.detections import Detections
from afmcli.errors import ParameterError

TRACKERS = Registry("afm tracker")


@dataclass(frozen=True)
class TrackedDetections(Detections):
    """:class:`Detections` with the track id of each (``ids``, int64, >= 1)."""

    ids: np.ndarray = None

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "ids", np.asarray(() if self.ids is None else self.ids, dtype=np.int64).reshape(-1))
        if len(self.ids) != len(self.scores):
            raise ValueError("ids and scores differ in length")


class Tracker:
    """One sequence at a time, frames in order."""

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, dets: Detections) -> TrackedDetections:
        """The detections of this frame that are on a track, with their ids."""
        raise NotImplementedError


@dataclass
class TrackerSettings:
    """Base of each tracker's settings: plain fields (the run's fingerprint and the CLI's
    options read them); ``check`` refuses values out of range with the field's name."""

    def check(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not 0.0 <= value <= 1.0:
                raise ParameterError(f"{{{f.name}}} must be in [0, 1], got {value}", f.name)
            if isinstance(value, int) and not isinstance(value, bool) and value < 1:
                raise ParameterError(f"{{{f.name}}} must be >= 1, got {value}", f.name)


class MMDetTracker(Tracker):
    """An mmdetection tracker (mmdet.models.trackers) fed with detections made elsewhere: each
    frame becomes the DetDataSample its ``track`` reads (``pred_instances`` and the
    ``frame_id`` metainfo, 0 for a sequence's first frame, which resets it)."""

    settings_class: type[TrackerSettings]

    name: str  # as registered

    def __init__(self, **settings: Any):
        known = {f.name for f in fields(self.settings_class)}
        for key in settings:
            if key not in known:
                raise ParameterError(f"{{{key}}} is not a setting of {self.name} (its settings: "
                                     f"{', '.join(sorted(known))})", key)
        self.settings = self.settings_class(**settings)
        self.settings.check()
        import mmdet.models  # noqa: F401  registers the trackers and their Kalman filter
        from mmdet.registry import MODELS

        self._tracker = MODELS.build(self.mmdet_config())
        self._frame = 0

    def mmdet_config(self) -> dict:
        raise NotImplementedError

    def reset(self) -> None:
        self._frame = 0  # frame_id 0 resets mmdet's tracker

    def update(self, dets: Detections) -> TrackedDetections:
        import torch
        from mmengine.structures import InstanceData
        from mmdet.structures import DetDataSample

        sample = DetDataSample(metainfo=dict(frame_id=self._frame))
        sample.pred_instances = InstanceData(bboxes=torch.from_numpy(dets.boxes).float(),
                                             scores=torch.from_numpy(dets.scores).float(),
                                             labels=torch.from_numpy(dets.labels))
        out = self._tracker.track(sample)
        self._frame += 1
        # mmdet counts ids from 0, MOT files from 1
        return TrackedDetections(out.bboxes.numpy(), out.scores.numpy(), out.labels.numpy(), dets.categories,
                                 out.instances_id.numpy() + 1)
