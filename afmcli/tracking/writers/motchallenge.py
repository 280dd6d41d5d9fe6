"""MOTChallenge results: ``motchallenge/<seq>.txt``, ``frame,id,x,y,w,h,conf,-1,-1,-1``
(MOT17's result format: one class, the world coordinates -1)."""

from __future__ import annotations

import numpy as np

from afmcli.tracking.writers.base import SequenceText, register, xywh


@register
class MotChallengeWriter(SequenceText):
    names = ("motchallenge",)

    def rows(self, tracked) -> np.ndarray:
        return np.c_[xywh(tracked), tracked.scores, -np.ones((len(tracked), 3))]
