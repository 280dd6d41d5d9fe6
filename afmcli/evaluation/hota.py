"""HOTA (Luiten et al., IJCV 2021) by TrackEval itself (the `trackeval` package, 1.3.0 on PyPI:
JonathonLuiten/TrackEval's code, its metrics/hota.py unchanged but for np.float -> float).

Not part of the VisDrone-MOT toolkit: afm feeds TrackEval the boxes the toolkit scores (after
dropObjects, one class of one sequence at a time; afmcli/evaluation/mot.py) with TrackEval's
box IoU as similarity, and combines classes and sequences with TrackEval's
``combine_sequences`` (detection-weighted, as its ``combine_classes_det_averaged``). The
summary is the mean over alpha = 0.05 .. 0.95, in percent.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from trackeval.datasets._base_dataset import _BaseDataset
from trackeval.metrics import HOTA

HOTA_FIELDS = ("HOTA", "DetA", "AssA", "DetRe", "DetPr", "AssRe", "AssPr", "LocA")
_METRIC = HOTA()


def trackeval_data(gt: np.ndarray, pred: np.ndarray) -> dict:
    """TrackEval's per-sequence data for rows ``frame, id, x, y, w, h`` (one box per id and
    frame): ids numbered 0..n-1, one timestep per frame 1..last, similarity = box IoU."""
    gt, pred = gt[np.argsort(gt[:, 0], kind="stable")], pred[np.argsort(pred[:, 0], kind="stable")]
    gt_ids = np.unique(gt[:, 1], return_inverse=True)[1]
    st_ids = np.unique(pred[:, 1], return_inverse=True)[1]
    frames = np.arange(1, int(max(gt[:, 0].max(initial=0), pred[:, 0].max(initial=0))) + 2)
    g_at, s_at = np.searchsorted(gt[:, 0], frames), np.searchsorted(pred[:, 0], frames)  # frame f: [at[f-1], at[f])
    data = {"num_gt_dets": len(gt), "num_tracker_dets": len(pred), "num_gt_ids": int(gt_ids.max(initial=-1)) + 1,
            "num_tracker_ids": int(st_ids.max(initial=-1)) + 1, "gt_ids": [], "tracker_ids": [],
            "similarity_scores": []}
    for g0, g1, s0, s1 in zip(g_at[:-1], g_at[1:], s_at[:-1], s_at[1:]):
        data["gt_ids"].append(gt_ids[g0:g1])
        data["tracker_ids"].append(st_ids[s0:s1])
        data["similarity_scores"].append(_BaseDataset._calculate_box_ious(gt[g0:g1, 2:6], pred[s0:s1, 2:6],
                                                                          box_format="xywh"))
    return data


def hota_counts(gt: np.ndarray, pred: np.ndarray) -> dict:
    """TrackEval's HOTA result of one class of one sequence (arrays over alpha)."""
    return _METRIC.eval_sequence(trackeval_data(np.asarray(gt, float), np.asarray(pred, float)))


def hota_summary(entries: Sequence[dict]) -> dict[str, float]:
    """TrackEval's combination of ``entries``, each field's mean over alpha in percent (NaN
    when there is nothing to combine)."""
    if not entries:
        return {k: float("nan") for k in HOTA_FIELDS}
    combined = _METRIC.combine_sequences(dict(enumerate(entries)))
    return {k: 100 * float(np.mean(combined[k])) for k in HOTA_FIELDS}
