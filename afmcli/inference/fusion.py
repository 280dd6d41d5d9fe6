"""Fusing detection sources: NMS, soft-NMS, weighted boxes fusion, greedy NMM.

A *source* is one set of predictions for the same images: the tiles and the
full-image pass of ``afm infer``, two heads, several models, TTA. Every method
works image by image (:func:`fuse_image`); :func:`fuse_predictions` is the one
entry point used by ``afm infer`` and ``afm fuse``.

Memory: no method builds an N x N overlap matrix over an image's boxes.
- ``nms`` / ``soft-nms`` (IoU): mmcv.ops kernels, O(N) state; batched_nms goes
  class by class above 10k boxes.
- ``greedy-nmm`` and ``nms --match ios`` compare one box with the remaining boxes
  per step (O(N) memory) inside *spatial groups*: index sets such that boxes of
  different groups do not intersect (:func:`spatial_groups`, exact, not a
  heuristic), which also keeps the quadratic time local on huge images.
- ``wbf`` (ensemble_boxes) runs per spatial group too; inside a group it matches
  each box against the clusters so far (O(N) memory).
"""

from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np

from afmcli.detections import Detections
from afmcli.errors import AfmError, ParameterError

METHODS = ("nms", "soft-nms", "wbf", "greedy-nmm")
MATCHES = ("iou", "ios")
# mmcv soft-NMS drops boxes decayed below this score (its own default).
SOFT_NMS_MIN_SCORE = 1e-3


def check_fusion_options(method: str, iou: float, match: str, class_agnostic: bool,
                         weights: Sequence[float] | None, n_sources: int,
                         max_per_img: int | None = None) -> None:
    """Reject option combinations that a method cannot honour, with one clear line."""
    if max_per_img is not None and max_per_img < 1:
        raise ParameterError(f"{{max_per_img}} must be at least 1, got {max_per_img}", "max_per_img")
    if method not in METHODS:
        raise AfmError(f"unknown fusion method {method!r}; choose one of {', '.join(METHODS)}")
    if match not in MATCHES:
        raise AfmError(f"unknown match metric {match!r}; choose iou or ios")
    if not 0 < iou <= 1:
        raise AfmError(f"the overlap threshold must be in (0, 1], got {iou}")
    if match == "ios" and method in ("soft-nms", "wbf"):
        raise ParameterError(f"{{match}} ios works with nms and greedy-nmm, not {method}", "match")
    if class_agnostic and method == "wbf":
        raise ParameterError("wbf fuses boxes per class; {class_agnostic} is not supported with it", "class_agnostic")
    if weights is not None:
        if len(weights) != n_sources:
            raise AfmError(f"{len(weights)} weights given for {n_sources} prediction sources")
        if any(not np.isfinite(w) or w <= 0 for w in weights):
            raise AfmError(f"weights must be positive, got {list(weights)}")


def overlap(box: np.ndarray, boxes: np.ndarray, match: str) -> np.ndarray:
    """IoU or IoS (intersection over the smaller area) of ``box`` with each of ``boxes``."""
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[:, 0] * wh[:, 1]
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    denom = area + areas - inter if match == "iou" else np.minimum(area, areas)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(inter / denom, nan=0.0, posinf=0.0)


# Cap on the raster used to find spatial groups (cells); bounds its memory.
MAX_GROUP_RASTER_CELLS = 1 << 22


def spatial_groups(boxes: np.ndarray) -> list[np.ndarray]:
    """Index groups (each sorted) such that boxes of different groups do not intersect.

    Boxes are painted on a coarse raster (cell size grows with the extent so the
    raster stays under ``MAX_GROUP_RASTER_CELLS``) and grouped by its 4-connected
    components: two boxes that intersect share a cell, so the grouping is exact
    for every method with a positive overlap threshold (coarse cells only join
    groups that could have stayed apart). Vectorised: O(N + cells).
    """
    import cv2

    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) <= 1:
        return [np.arange(len(boxes))]
    origin = boxes[:, :2].min(axis=0)
    extent = np.maximum(boxes[:, 2:].max(axis=0) - origin, 1.0)
    cell = max(1.0, float(np.sqrt(extent[0] * extent[1] / MAX_GROUP_RASTER_CELLS)))
    shape = (np.ceil(extent / cell).astype(int) + 1)[::-1]  # rows, cols
    # Cells [lo, hi) that each box covers; an empty box still takes its one cell.
    lo = np.floor((boxes[:, :2] - origin) / cell).astype(int)
    hi = np.maximum(np.ceil((boxes[:, 2:] - origin) / cell).astype(int), lo + 1)
    # Paint all rectangles at once: 2-D difference array, then cumulative sums.
    diff = np.zeros((shape[0] + 1, shape[1] + 1), dtype=np.int32)
    np.add.at(diff, (lo[:, 1], lo[:, 0]), 1)
    np.add.at(diff, (lo[:, 1], hi[:, 0]), -1)
    np.add.at(diff, (hi[:, 1], lo[:, 0]), -1)
    np.add.at(diff, (hi[:, 1], hi[:, 0]), 1)
    covered = (diff.cumsum(0).cumsum(1)[:-1, :-1] > 0).astype(np.uint8)
    _, components = cv2.connectedComponents(covered, connectivity=4)
    group_of = components[lo[:, 1], lo[:, 0]]
    order = np.argsort(group_of, kind="stable")
    cuts = np.flatnonzero(np.diff(group_of[order])) + 1
    return np.split(order, cuts)


def greedy_groups(boxes: np.ndarray, scores: np.ndarray, thr: float,
                  match: str) -> list[tuple[int, np.ndarray]]:
    """SAHI's ``greedy_nmm`` clustering: the best remaining box takes every remaining
    box whose overlap with it is >= ``thr``; those leave the pool.

    Returns ``(keep, members)`` pairs, members by descending score. The keeps are
    exactly greedy NMS's survivors.
    """
    order = np.argsort(-scores, kind="stable")
    out = []
    while order.size:
        keep, rest = order[0], order[1:]
        hit = overlap(boxes[keep], boxes[rest], match) >= thr
        out.append((int(keep), rest[hit]))
        order = rest[~hit]
    return out


def _by_class_and_space(dets: Detections, class_agnostic: bool) -> list[np.ndarray]:
    """Index sets that fusion can treat independently: per class, per spatial group."""
    classes = [np.arange(len(dets))] if class_agnostic else \
        [np.flatnonzero(dets.labels == c) for c in np.unique(dets.labels)]
    return [idx[g] for idx in classes for g in spatial_groups(dets.boxes[idx])]


def greedy_nmm(dets: Detections, thr: float, match: str, class_agnostic: bool) -> Detections:
    """Greedy non-maximum merging with SAHI's semantics (GreedyNMMPostprocess).

    Each cluster's best box absorbs its members in descending score order, each
    one only if it still matches the grown box (SAHI 0.12's ``has_match``:
    overlap >= ``thr``); the merged box encloses both, score and label are the
    best box's.
    """
    boxes, keeps = [], []
    for index in _by_class_and_space(dets, class_agnostic):
        sub = dets.boxes[index]
        for keep, members in greedy_groups(sub, dets.scores[index], thr, match):
            box = sub[keep].copy()
            for m in members:
                if overlap(box, sub[m:m + 1], match)[0] >= thr:
                    box = np.concatenate([np.minimum(box[:2], sub[m, :2]), np.maximum(box[2:], sub[m, 2:])])
            boxes.append(box)
            keeps.append(index[keep])
    keeps = np.asarray(keeps, dtype=np.int64)
    return Detections(np.asarray(boxes).reshape(-1, 4), dets.scores[keeps], dets.labels[keeps])


def nms(dets: Detections, thr: float, match: str, class_agnostic: bool, device: str = "cpu") -> Detections:
    """Greedy NMS. IoU: mmcv's batched_nms on ``device`` (suppresses overlap > thr); IoS:
    the greedy clusters' best boxes (SAHI's NMS, suppresses overlap >= thr)."""
    if match == "ios":
        keep = [index[k] for index in _by_class_and_space(dets, class_agnostic)
                for k, _ in greedy_groups(dets.boxes[index], dets.scores[index], thr, match)]
        return dets.take(np.asarray(keep, dtype=np.int64))
    if device == "numpy":  # a backend without mmcv (afmcli.inference.backends)
        from afmcli.inference.box_nms import batched_nms

        classes = np.unique(dets.labels, return_inverse=True)[1].reshape(-1)
        return dets.take(batched_nms(dets.boxes, dets.scores, classes, thr, class_agnostic))
    return dets.take(_mmcv_batched(dets, dict(type="nms", iou_threshold=thr), class_agnostic, device)[0])


def soft_nms(dets: Detections, thr: float, class_agnostic: bool) -> Detections:
    """Linear soft-NMS (mmcv): an overlapping box's score is scaled by (1 - IoU)."""
    keep, scores = _mmcv_batched(dets, dict(type="soft_nms", iou_threshold=thr, method="linear",
                                            min_score=SOFT_NMS_MIN_SCORE), class_agnostic)
    return Detections(dets.boxes[keep], scores, dets.labels[keep])


def _mmcv_batched(dets: Detections, nms_cfg: dict, class_agnostic: bool,
                  device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """mmcv's batched_nms on ``device`` (its CPU kernel is quadratic and single-threaded:
    about 40 ms for an image's few thousand tile boxes): (kept indices, their scores after it),
    best first."""
    import torch
    from mmcv.ops import batched_nms

    if not len(dets):
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    # Dense class indices keep mmcv's per-class coordinate offsets small (float32).
    classes = np.unique(dets.labels, return_inverse=True)[1].reshape(-1)
    out, keep = batched_nms(torch.from_numpy(dets.boxes).float().to(device),
                            torch.from_numpy(dets.scores).float().to(device), torch.from_numpy(classes).to(device),
                            nms_cfg, class_agnostic=class_agnostic)
    return keep.cpu().numpy(), out[:, 4].double().cpu().numpy()


def wbf(sources: Sequence[Detections], thr: float, weights: Sequence[float] | None,
        image_size: tuple[float, float] | None) -> Detections:
    """Weighted boxes fusion (ensemble_boxes, conf_type 'avg'), per class.

    ensemble_boxes wants coordinates in [0, 1] and clips to it: we divide by the
    image size when known, else by the largest coordinate of the image's boxes.
    Both give the same fused boxes (IoU and weighted means do not change under
    per-axis scaling); the size only decides what gets clipped.
    """
    from ensemble_boxes import weighted_boxes_fusion

    pooled = Detections.concat(sources)
    if not len(pooled):
        return pooled
    origin = np.repeat(np.arange(len(sources)), [len(s) for s in sources])
    if image_size is None:
        image_size = (max(pooled.boxes[:, 2].max(), 1e-9), max(pooled.boxes[:, 3].max(), 1e-9))
    scale = np.array([image_size[0], image_size[1], image_size[0], image_size[1]], dtype=np.float64)
    parts = []
    for index in _by_class_and_space(pooled, class_agnostic=False):
        per_source = [index[origin[index] == s] for s in range(len(sources))]
        with warnings.catch_warnings():
            # It warns for each box it clips to [0, 1] or skips as empty: nothing the user can act on.
            warnings.simplefilter("ignore")
            boxes, scores, labels = weighted_boxes_fusion(
                [pooled.boxes[i] / scale for i in per_source], [pooled.scores[i] for i in per_source],
                [pooled.labels[i] for i in per_source], weights=None if weights is None else list(weights),
                iou_thr=thr, skip_box_thr=0.0, conf_type="avg")
        parts.append(Detections(np.asarray(boxes) * scale, scores, np.asarray(labels).astype(np.int64)))
    return Detections.concat(parts)


def fuse_image(sources: Sequence[Detections], method: str = "nms", iou: float = 0.6,
               match: str = "iou", class_agnostic: bool = False,
               weights: Sequence[float] | None = None, max_per_img: int | None = 500,
               image_size: tuple[float, float] | None = None, device: str = "cpu") -> Detections:
    """Fuse one image's detections from several sources; sorted by score, capped.

    ``weights`` (one per source): WBF's model weights; for the other methods each
    source's scores are multiplied by weight / max(weights), so equal weights
    leave scores unchanged. ``device``: where IoU NMS runs (mmcv's CUDA kernel on a GPU;
    soft-NMS has a CPU kernel only; ``numpy``: afmcli.inference.box_nms, without mmcv).
    """
    if method == "wbf":
        fused = wbf(sources, iou, weights, image_size)
    else:
        if weights is not None:
            top = max(weights)
            sources = [Detections(s.boxes, s.scores * (w / top), s.labels) for s, w in zip(sources, weights)]
        pooled = Detections.concat(sources)
        if method == "nms":
            fused = nms(pooled, iou, match, class_agnostic, device)
        elif method == "soft-nms":
            fused = soft_nms(pooled, iou, class_agnostic)
        else:
            fused = greedy_nmm(pooled, iou, match, class_agnostic)
    return fused.top(max_per_img)


def fuse_predictions(sources: Sequence[Mapping[int, Detections]], method: str = "nms",
                     iou: float = 0.6, match: str = "iou", class_agnostic: bool = False,
                     weights: Sequence[float] | None = None, max_per_img: int | None = 500,
                     image_sizes: Mapping[int, tuple[float, float]] | None = None) -> dict[int, Detections]:
    """Fuse sources given as ``{image_id: Detections}``; an image missing from a
    source has no detections there. Returns ``{image_id: Detections}`` sorted by id."""
    check_fusion_options(method, iou, match, class_agnostic, weights, len(sources), max_per_img)
    image_ids = sorted(set().union(*[s.keys() for s in sources])) if sources else []
    empty = Detections.empty()
    return {i: fuse_image([s.get(i, empty) for s in sources], method, iou, match, class_agnostic,
                          weights, max_per_img, None if image_sizes is None else image_sizes.get(i))
            for i in image_ids}


def apply_cap(fused: Mapping[int, Detections], max_per_img: int) -> tuple[dict[int, Detections], int]:
    """Each image's best ``max_per_img`` detections, and how many images the cap cut."""
    cut = sum(len(d) > max_per_img for d in fused.values())
    return {i: d.top(max_per_img) for i, d in fused.items()}, cut
