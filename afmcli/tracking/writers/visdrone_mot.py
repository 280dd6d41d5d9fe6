"""VisDrone-MOT results: ``mot/<seq>.txt``, ``frame,id,x,y,w,h,score,category,-1,-1``
(frames numbered from 1 as the sequence's; the toolkit's result format)."""

from __future__ import annotations

import numpy as np

from afmcli.tracking.writers.base import SequenceText, register, xywh


@register
class VisDroneMotWriter(SequenceText):
    names = ("mot",)

    def rows(self, tracked) -> np.ndarray:
        return np.c_[xywh(tracked), tracked.scores, tracked.labels, -np.ones((len(tracked), 2))]
