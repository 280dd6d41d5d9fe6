"""mmcv's IoU NMS in numpy, for the backends that run without mmcv (afmcli.inference.backends).

:func:`nms` is ``mmcv.ops.nms``'s CPU kernel (float32, offset 0, suppresses IoU > thr, kept
boxes best first) and :func:`batched_nms` is ``mmcv.ops.batched_nms`` (per-class coordinate
offsets, class by class from ``split_thr`` boxes on): the same float32 operations in the
same order, so the same boxes are kept; only the order of exactly tied scores may differ
(mmcv's sort is not stable, this one is).
"""

from __future__ import annotations

import numpy as np

SPLIT_THR = 10000  # mmcv's batched_nms default


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the kept boxes (x1 y1 x2 y2), best score first."""
    boxes = np.asarray(boxes, dtype=np.float32)
    order = np.argsort(-np.asarray(scores, dtype=np.float32), kind="stable")
    x1, y1, x2, y2 = (boxes[order, k] for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    alive = np.ones(len(order), dtype=bool)
    thr = np.float32(iou_threshold)
    for i in range(len(order)):
        if not alive[i]:
            continue
        rest = np.flatnonzero(alive[i + 1:]) + i + 1
        if not len(rest):
            break
        w = np.maximum(np.float32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(np.float32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        alive[rest[inter / (areas[i] + areas[rest] - inter) > thr]] = False
    return order[alive]


def batched_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float,
                class_agnostic: bool = False) -> np.ndarray:
    """Indices of the boxes kept by a per-class NMS (``class_agnostic``: one NMS), best first."""
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    if not len(boxes):
        return np.zeros(0, dtype=np.int64)
    if class_agnostic:
        return nms(boxes, scores, iou_threshold)
    if len(boxes) < SPLIT_THR:
        offsets = np.asarray(labels).astype(np.float32) * (boxes.max() + np.float32(1))
        return nms(boxes + offsets[:, None], scores, iou_threshold)
    keep = np.concatenate([np.flatnonzero(labels == c)[nms(boxes[labels == c], scores[labels == c], iou_threshold)]
                           for c in np.unique(labels)])
    return keep[np.argsort(-scores[keep], kind="stable")]
