"""HOTA (Luiten et al., IJCV 2021) as TrackEval computes it (trackeval/metrics/hota.py).

Not part of the VisDrone-MOT toolkit: afm scores the same boxes the toolkit scores (after
dropObjects, one class at a time) and combines classes and sequences as TrackEval's
``combine_sequences`` / ``combine_classes_det_averaged`` do (detection-weighted). Numbers
are fractions per alpha in 0.05, 0.10, ..., 0.95; the summary is their mean, in percent.
The test checks it against a hand-worked case and TrackEval 1.3.0's own numbers
(tests/reference_visdrone_mot.json).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

ALPHAS = np.arange(0.05, 0.99, 0.05)  # TrackEval's array_labels
EPS = np.finfo("float").eps
HOTA_FIELDS = ("HOTA", "DetA", "AssA", "DetRe", "DetPr", "AssRe", "AssPr", "LocA")


@dataclass
class HotaCounts:
    """One class of one sequence, per alpha: TP, FN, FP and the association and localisation
    scores (TrackEval's res fields before ``_compute_final_fields``)."""

    tp: np.ndarray
    fn: np.ndarray
    fp: np.ndarray
    ass_a: np.ndarray
    ass_re: np.ndarray
    ass_pr: np.ndarray
    loc_a: np.ndarray


def box_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """TrackEval's _calculate_box_ious for x, y, w, h boxes: (N, 4) x (M, 4) -> (N, M); boxes
    without area, and pairs without union, score 0."""
    a = np.concatenate([a[:, :2], a[:, :2] + a[:, 2:4]], axis=1)
    b = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:4]], axis=1)
    lo = np.minimum(a[:, None], b[None])
    hi = np.maximum(a[:, None], b[None])
    inter = np.maximum(lo[..., 2] - hi[..., 0], 0) * np.maximum(lo[..., 3] - hi[..., 1], 0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None] - inter
    inter[area_a <= EPS, :] = 0
    inter[:, area_b <= EPS] = 0
    inter[union <= EPS] = 0
    union[union <= EPS] = 1
    return inter / union


def _empty(num_gt: int, num_pred: int) -> HotaCounts:
    zeros = np.zeros(len(ALPHAS))
    return HotaCounts(zeros.copy(), np.full(len(ALPHAS), float(num_gt)), np.full(len(ALPHAS), float(num_pred)),
                      zeros.copy(), zeros.copy(), zeros.copy(), np.ones(len(ALPHAS)))


def hota_counts(gt: np.ndarray, pred: np.ndarray) -> HotaCounts:
    """HOTA of one sequence and class; rows ``frame, id, x, y, w, h`` (one box per id and frame)."""
    if not len(pred) or not len(gt):
        return _empty(len(gt), len(pred))
    _, gt_ids = np.unique(gt[:, 1], return_inverse=True)
    _, st_ids = np.unique(pred[:, 1], return_inverse=True)
    frames = np.union1d(gt[:, 0], pred[:, 0])
    steps = []
    for f in frames:
        gi, si = np.flatnonzero(gt[:, 0] == f), np.flatnonzero(pred[:, 0] == f)
        steps.append((gt_ids[gi], st_ids[si], box_ious(gt[gi, 2:6], pred[si, 2:6])))
    gt_count = np.bincount(gt_ids)[:, None].astype(float)
    st_count = np.bincount(st_ids)[None].astype(float)
    potential = np.zeros((gt_count.shape[0], st_count.shape[1]))
    for g, s, sim in steps:  # global alignment: soft matches between ids over the whole sequence
        denom = sim.sum(0)[None] + sim.sum(1)[:, None] - sim
        sim_iou = np.zeros_like(sim)
        mask = denom > EPS
        sim_iou[mask] = sim[mask] / denom[mask]
        potential[g[:, None], s[None]] += sim_iou
    alignment = potential / (gt_count + st_count - potential)
    n = len(ALPHAS)
    tp, fn, fp, loc = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    matches = np.zeros((n, *potential.shape))
    for g, s, sim in steps:
        if not len(g) or not len(s):
            fp += len(s)
            fn += len(g)
            continue
        rows, cols = linear_sum_assignment(-(alignment[g[:, None], s[None]] * sim))
        for a, alpha in enumerate(ALPHAS):
            ok = sim[rows, cols] >= alpha - EPS
            k = int(ok.sum())
            tp[a] += k
            fn[a] += len(g) - k
            fp[a] += len(s) - k
            if k:
                loc[a] += sum(sim[rows[ok], cols[ok]])
                matches[a][g[rows[ok]], s[cols[ok]]] += 1
    ass_a, ass_re, ass_pr = np.zeros(n), np.zeros(n), np.zeros(n)
    for a in range(n):
        m = matches[a]
        ass_a[a] = np.sum(m * (m / np.maximum(1, gt_count + st_count - m))) / max(1, tp[a])
        ass_re[a] = np.sum(m * (m / np.maximum(1, gt_count))) / max(1, tp[a])
        ass_pr[a] = np.sum(m * (m / np.maximum(1, st_count))) / max(1, tp[a])
    return HotaCounts(tp, fn, fp, ass_a, ass_re, ass_pr, np.maximum(1e-10, loc) / np.maximum(1e-10, tp))


def hota_summary(entries: Sequence[HotaCounts]) -> dict[str, float]:
    """TrackEval's combine_sequences over ``entries``, then the mean over alphas (percent)."""
    if not entries:
        return {k: float("nan") for k in HOTA_FIELDS}
    tp = sum(e.tp for e in entries)
    fn = sum(e.fn for e in entries)
    fp = sum(e.fp for e in entries)

    def weighted(name: str) -> np.ndarray:
        return sum(getattr(e, name) * e.tp for e in entries) / np.maximum(1.0, tp)

    ass_a = weighted("ass_a")
    det_a = tp / np.maximum(1, tp + fn + fp)
    fields = {
        "HOTA": np.sqrt(det_a * ass_a), "DetA": det_a, "AssA": ass_a,
        "DetRe": tp / np.maximum(1, tp + fn), "DetPr": tp / np.maximum(1, tp + fp),
        "AssRe": weighted("ass_re"), "AssPr": weighted("ass_pr"),
        "LocA": np.maximum(1e-10, sum(e.loc_a * e.tp for e in entries)) / np.maximum(1e-10, tp),
    }
    return {k: 100 * float(np.mean(v)) for k, v in fields.items()}
