"""The official VisDrone-DET evaluation (MATLAB toolkit 1.0.4), rule by rule, vectorised.

Spec: ../shared/specs/visdrone-eval.md; the MATLAB sources are evalDET.m,
calcAccuracy.m, evalRes.m, compOas.m, dropObjectsInIgr.m and VOCap.m. Every
float operation that decides a number is done in the toolkit's order on
float64, so that the result equals a literal transcription
(tests/reference_visdrone.py) bit for bit.

Data API: a sequence of `ImageRows` (raw VisDrone rows, file order) in the
toolkit's image order (the sorted annotation listing) -> `VisDroneResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from afmcli.data.visdrone_format import CATEGORY_IDS, CLASSES, IGNORED_REGION
from afmcli.errors import AfmError

MAX_DETS = (1, 10, 100, 500)
STAT_NAMES = ("AP", "AP50", "AP75", "AR1", "AR10", "AR100", "AR500")


def matlab_colon(a: float, d: float, b: float) -> np.ndarray:
    """MATLAB's ``a:d:b`` for a float grid that ends on b (MATLAB Coder's
    eml_float_colon): filled from both ends, a + k*d then b - k*d, so
    0.5:0.05:0.95 holds 0.7999999999999999, not 0.8. The thresholds decide
    matches at oa == thr, hence the exact values."""
    n = int(np.floor((b - a) / d + 0.5)) + 1
    y = np.empty(n)
    y[0], y[-1] = a, b
    half = (n - 1) // 2
    for k in range(1, half):
        y[k] = a + k * d
        y[n - 1 - k] = b - k * d
    if 2 * half == n - 1:
        y[half] = (a + b) / 2.0
    else:
        y[half] = a + half * d
        y[half + 1] = b - half * d
    return y


IOU_THRESHOLDS = matlab_colon(0.5, 0.05, 0.95)


def matlab_round(x) -> np.ndarray:
    """MATLAB ``round``: half away from zero (0.5 -> 1, 2.5 -> 3, -0.5 -> -1).

    x - trunc(x) is exact, so 0.49999999999999994 stays 0 (floor(x + 0.5) would give 1).
    """
    x = np.asarray(x, dtype=np.float64)
    whole = np.trunc(x)
    return whole + np.where(np.abs(x - whole) >= 0.5, np.sign(x), 0.0)


def round_percent(value: float) -> float:
    """The toolkit's printed number: ``roundn(v, -2)`` = round(100 * v) / 100."""
    return float(matlab_round(100.0 * value) / 100.0)


def sequential_sum(values: np.ndarray) -> float:
    """Left-to-right sum (np.sum is pairwise and would differ in the last bit)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    return float(np.cumsum(values)[-1]) if len(values) else 0.0


@dataclass(frozen=True)
class ImageRows:
    """One image as the toolkit reads it: raw rows in file order, float64.

    gt: (N, 8) annotation rows; det: (M, >= 6) result rows (x, y, w, h, score, class, ...).
    """

    name: str
    height: int
    width: int
    gt: np.ndarray
    det: np.ndarray


@dataclass
class VisDroneResult:
    """The seven numbers (percent, unrounded) and what they are made of.

    ap[c, t]: class CATEGORY_IDS[c] at IOU_THRESHOLDS[t]; ar[c, t, k] at MAX_DETS[k];
    images_per_class[c]: the weight of class c in every mean (0 = left out);
    pr_curves[c]: (recall, precision) at IoU 0.5 with 500 detections, in rank order.
    """

    stats: dict[str, float]
    ap: np.ndarray
    ar: np.ndarray
    images_per_class: np.ndarray
    gt_per_class: np.ndarray
    pr_curves: list[tuple[np.ndarray, np.ndarray]] = field(repr=False)

    def classwise(self) -> dict[str, dict[str, float] | None]:
        """Per class: AP (mean over thresholds), AP50, AP75, AR1..AR500; None without gt."""
        out: dict[str, dict[str, float] | None] = {}
        for c, name in enumerate(CLASSES):
            if not self.images_per_class[c]:
                out[name] = None
                continue
            row = {"AP": _mean(self.ap[c]), "AP50": float(self.ap[c, 0]), "AP75": float(self.ap[c, 5])}
            row.update({f"AR{m}": _mean(self.ar[c, :, k]) for k, m in enumerate(MAX_DETS)})
            row["images"] = int(self.images_per_class[c])
            row["gt"] = int(self.gt_per_class[c])
            out[name] = row
        return out


def _mean(values: np.ndarray) -> float:
    """MATLAB ``mean2``: column-major, summed left to right, over numel; NaN when empty."""
    values = np.asarray(values, dtype=np.float64)
    return sequential_sum(values.ravel(order="F")) / values.size if values.size else float("nan")


# --- step 1: ignored regions ---------------------------------------------------------------

def ignored_cover(boxes: np.ndarray, regions: np.ndarray, height: int, width: int) -> np.ndarray:
    """Fraction of each box the toolkit sees as ignored (dropObjectsInIgr.m).

    boxes: (N, 4) raw x, y, w, h; regions: (K, 4) category-0 rows, integers.
    The toolkit paints rows y..min(H, y+h), columns x..min(W, x+w) (1-based,
    inclusive) of each region, takes the integral image I and, with the box
    rounded half away from zero and clamped, computes
    (I(y,x) + I(y2,x2) - I(y,x2) - I(y2,x)) / (w*h): the painted pixels in rows
    y+1..y2, columns x+1..x2 (not the first row and column) over the unclipped
    area. Rather than an H x W integral image per image, this counts those
    pixels on the grid cut by the region edges: same integers, much less work.
    """
    pos = np.maximum(1.0, matlab_round(np.asarray(boxes, dtype=np.float64)[:, :4]))
    x = np.minimum(width, pos[:, 0])
    y = np.minimum(height, pos[:, 1])
    w, h = pos[:, 2], pos[:, 3]
    x2 = np.minimum(width, x + w)
    y2 = np.maximum(1.0, np.minimum(height, y + h))
    reg = np.maximum(1.0, np.asarray(regions, dtype=np.float64)[:, :4])
    # Painted pixels as half-open spans (first - 1, last]; empty when last < first.
    row_spans = np.stack([reg[:, 1] - 1, np.minimum(height, reg[:, 1] + reg[:, 3])], axis=1)
    col_spans = np.stack([reg[:, 0] - 1, np.minimum(width, reg[:, 0] + reg[:, 2])], axis=1)
    row_edges, row_cover = _bands(row_spans, height)
    col_edges, col_cover = _bands(col_spans, width)
    painted = (row_cover.T @ col_cover > 0).astype(np.float64)  # (row bands, col bands)
    rows_in = _span_overlap(y, y2, row_edges)
    cols_in = _span_overlap(x, x2, col_edges)
    count = ((rows_in @ painted) * cols_in).sum(axis=1)
    return count / (h * w)


def _bands(spans: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut (0, size] at the span ends; cover[k, b] = span k paints band b."""
    edges = np.unique(np.clip(np.concatenate([[0.0, size], spans.ravel()]), 0, size))
    lo, hi = edges[:-1], edges[1:]
    cover = (spans[:, :1] <= lo) & (hi <= spans[:, 1:])
    return edges, cover.astype(np.float64)


def _span_overlap(first: np.ndarray, last: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Length of (first, last] inside each band (edges[b], edges[b+1]]: (N, bands)."""
    lo = np.maximum(first[:, None], edges[None, :-1])
    hi = np.minimum(last[:, None], edges[None, 1:])
    return np.maximum(hi - lo, 0.0)


def drop_objects_in_ignored(gt: np.ndarray, det: np.ndarray, height: int, width: int,
                            name: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Objects (category != 0) and detections the toolkit keeps: ignored fraction < 0.5.

    Without ignored regions nothing is dropped. Order is kept.
    """
    objects = gt[gt[:, 5] != IGNORED_REGION]
    regions = gt[gt[:, 5] == IGNORED_REGION, :4]
    if not len(regions):
        return objects, det
    if (regions != np.round(regions)).any():
        # MATLAB cannot index its map with fractions: the toolkit stops there.
        raise AfmError(f"{name}: ignored region with non-integer coordinates "
                       f"{regions[(regions != np.round(regions)).any(axis=1)][0].tolist()}")
    keep_obj = ignored_cover(objects, regions, height, width) < 0.5
    keep_det = ignored_cover(det, regions, height, width) < 0.5
    return objects[keep_obj], det[keep_det]


# --- step 3: matching -----------------------------------------------------------------------

def overlaps(det: np.ndarray, gt: np.ndarray, gt_ignored: np.ndarray) -> np.ndarray:
    """compOas.m: IoU with normal gt, intersection / detection area with ignored gt.

    (D, 4) x (G, 4) x, y, w, h -> (D, G), same float operations in the same order.
    """
    de_x = det[:, 0] + det[:, 2]
    de_y = det[:, 1] + det[:, 3]
    ge_x = gt[:, 0] + gt[:, 2]
    ge_y = gt[:, 1] + gt[:, 3]
    w = np.minimum(de_x[:, None], ge_x[None]) - np.maximum(det[:, None, 0], gt[None, :, 0])
    h = np.minimum(de_y[:, None], ge_y[None]) - np.maximum(det[:, None, 1], gt[None, :, 1])
    inter = w * h
    det_area = (det[:, 2] * det[:, 3])[:, None]
    union = np.where(gt_ignored[None], det_area, (det_area + (gt[:, 2] * gt[:, 3])[None]) - inter)
    hit = (w > 0) & (h > 0)
    out = np.zeros(inter.shape)
    np.divide(inter, union, out=out, where=hit)
    return out


def _greedy_hits(pairs: tuple[np.ndarray, ...], num_det: int, num_gt: int,
                 thresholds: np.ndarray) -> np.ndarray:
    """evalRes.m's greedy matching against normal ground truth, for all groups at once.

    ``pairs`` = (det, gt, oa, step), sorted by (step, det, oa, gt): every candidate
    (oa >= the lowest threshold) of a detection with a normal gt of its image and
    class, where step is the detection's rank in its group's processing order.
    Detections of one step belong to different groups, so they are matched
    together; per threshold a detection takes, among the gt not yet used with
    oa >= thr, the highest oa, ties to the LAST gt (the toolkit keeps a later gt
    when oa == best). Returns hits (T, num_det): matched to a normal gt.
    """
    det, gt, oa, step = pairs
    hits = np.zeros((len(thresholds), num_det), dtype=bool)
    used = np.zeros((len(thresholds), num_gt), dtype=bool)
    thr = thresholds[:, None]
    bounds = np.flatnonzero(np.r_[True, step[1:] != step[:-1], True]) if len(step) else []
    for a, b in zip(bounds[:-1], bounds[1:]):
        d, g = det[a:b], gt[a:b]
        starts = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
        valid = (oa[a:b] >= thr) & ~used[:, g]
        last = np.maximum.reduceat(np.where(valid, np.arange(b - a), -1), starts, axis=1)
        t, s = np.nonzero(last >= 0)
        used[t, g[last[t, s]]] = True
        hits[t, d[starts[s]]] = True
    return hits


def voc_envelope(rec: np.ndarray, prec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """VOCap.m's curve: recall padded with 0 and 1, precision with 0 and 0 and
    made non-increasing from the right."""
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.maximum.accumulate(np.concatenate([[0.0], prec, [0.0]])[::-1])[::-1]
    return mrec, mpre


def vocap(rec: np.ndarray, prec: np.ndarray) -> float:
    """VOCap.m: all-point interpolated area under the PR curve."""
    mrec, mpre = voc_envelope(rec, prec)
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return sequential_sum((mrec[i] - mrec[i - 1]) * mpre[i])


@dataclass
class _Pooled:
    """All images' kept gt and detections of classes 1..10, flattened."""

    gt_img: np.ndarray
    gt_cls: np.ndarray
    det_img: np.ndarray
    det_line: np.ndarray  # position in the filtered result file (the maxDets cut)
    det_cls: np.ndarray
    det_score: np.ndarray
    det_ignored_oa: np.ndarray  # best oa with an ignored gt of the class
    pair_det: np.ndarray
    pair_gt: np.ndarray
    pair_oa: np.ndarray
    unsorted_img: np.ndarray  # images whose result file is not sorted by score


def as_rows(rows) -> np.ndarray:
    """float64 (N, columns); any empty input is (0, 8)."""
    rows = np.asarray(rows, dtype=np.float64)
    return rows.reshape(len(rows), -1) if rows.size else np.zeros((0, 8))


def _pool(images: Sequence[ImageRows], max_det: int, min_thr: float) -> _Pooled:
    cols: dict[str, list] = {k: [] for k in ("gt_img", "gt_cls", "det_img", "det_line", "det_cls",
                                             "det_score", "det_ignored_oa", "pair_det", "pair_gt",
                                             "pair_oa")}
    unsorted = []
    n_gt = n_det = 0
    classes = np.asarray(CATEGORY_IDS, dtype=np.float64)
    for i, im in enumerate(images):
        gt, det = as_rows(im.gt), as_rows(im.det)
        objects, det = drop_objects_in_ignored(gt, det, im.height, im.width, im.name)
        det = det[:max_det]
        unsorted.append(bool((np.diff(det[:, 4]) > 0).any()))
        objects = objects[np.isin(objects[:, 5], classes)]
        line = np.flatnonzero(np.isin(det[:, 5], classes))
        det = det[line]
        ignored = objects[:, 4] == 0
        oa = overlaps(det[:, :4], objects[:, :4], ignored)
        oa[det[:, 5][:, None] != objects[:, 5][None]] = 0.0
        d, g = np.nonzero((oa >= min_thr) & ~ignored[None])
        cols["pair_det"].append(d + n_det)
        cols["pair_gt"].append(g + n_gt)
        cols["pair_oa"].append(oa[d, g])
        cols["det_ignored_oa"].append(oa[:, ignored].max(axis=1) if ignored.any() else np.zeros(len(det)))
        cols["gt_img"].append(np.full(len(objects), i))
        cols["gt_cls"].append(objects[:, 5].astype(np.int64))
        cols["det_img"].append(np.full(len(det), i))
        cols["det_line"].append(line)
        cols["det_cls"].append(det[:, 5].astype(np.int64))
        cols["det_score"].append(det[:, 4])
        n_gt += len(objects)
        n_det += len(det)
    flat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
    for k in ("gt_img", "gt_cls", "det_img", "det_line", "det_cls", "pair_det", "pair_gt"):
        flat[k] = flat[k].astype(np.int64)
    return _Pooled(**flat, unsorted_img=np.asarray(unsorted, dtype=bool))


def _sorted_pairs(p: _Pooled) -> tuple[np.ndarray, ...]:
    """Candidate pairs in matching order: (det, gt, oa, step), see `_greedy_hits`.

    Within an image and class the toolkit takes detections by score descending,
    stable (file order on ties); the step is the rank in that order.
    """
    group = p.det_img * (max(CATEGORY_IDS) + 1) + p.det_cls
    order = np.lexsort((p.det_line, -p.det_score, group))
    n = len(order)
    new_group = np.r_[True, group[order][1:] != group[order][:-1]] if n else np.zeros(0, bool)
    starts = np.flatnonzero(new_group)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    step = rank[p.pair_det]
    porder = np.lexsort((p.pair_gt, p.pair_oa, position[p.pair_det], step))
    return p.pair_det[porder], p.pair_gt[porder], p.pair_oa[porder], step[porder]


def evaluate_visdrone(images: Sequence[ImageRows], max_dets: Sequence[int] = MAX_DETS) -> VisDroneResult:
    """The toolkit's calcAccuracy on ``images`` (in the toolkit's image order).

    AP uses the last (largest) of ``max_dets``; tests pass small values to reach
    the cut with few boxes. AP50 / AP75 are thresholds 0 and 5.
    """
    max_dets = tuple(int(m) for m in max_dets)
    thresholds = IOU_THRESHOLDS
    pooled = _pool(images, max_dets[-1], float(thresholds.min()))
    pairs = _sorted_pairs(pooled)
    n_det, n_gt = len(pooled.det_cls), len(pooled.gt_cls)
    full = _greedy_hits(pairs, n_det, n_gt, thresholds)
    # In a file sorted by score, the first m lines of a class are the first m it
    # matches, and matching is sequential: the m-cut is a prefix of the full run.
    # Files not sorted that way are matched again on their m-cut.
    redo_det = pooled.unsorted_img[pooled.det_img]
    num_classes = len(CATEGORY_IDS)
    cls_index = pooled.det_cls - 1
    gt_per_class = np.bincount(pooled.gt_cls - 1, minlength=num_classes)
    image_class = np.unique(pooled.gt_img * num_classes + pooled.gt_cls - 1)  # distinct (image, class)
    images_per_class = np.bincount(image_class % num_classes, minlength=num_classes)
    denominator = np.maximum(1, gt_per_class).astype(np.float64)
    ar = np.zeros((num_classes, len(thresholds), len(max_dets)))
    for k, m in enumerate(max_dets):
        kept = pooled.det_line < m
        hits = full
        if k < len(max_dets) - 1 and redo_det.any():
            keep_pair = kept[pairs[0]] & redo_det[pairs[0]]
            hits = np.where(redo_det, _greedy_hits(tuple(a[keep_pair] for a in pairs), n_det, n_gt,
                                                   thresholds), full)
        for c in range(num_classes):
            tp = hits[:, kept & (cls_index == c)].sum(axis=1)
            ar[c, :, k] = (tp / denominator[c]) * 100
    ap, pr_curves = _average_precision(pooled, full, thresholds, denominator)
    rows = np.repeat(np.arange(num_classes), images_per_class)  # calcAccuracy's evalClass
    stats = {"AP": _mean(ap[rows, :]), "AP50": _mean(ap[rows, 0]), "AP75": _mean(ap[rows, 5])}
    stats.update({f"AR{m}": _mean(ar[rows, :, k]) for k, m in enumerate(max_dets)})
    return VisDroneResult(stats=stats, ap=ap, ar=ar, images_per_class=images_per_class,
                          gt_per_class=gt_per_class, pr_curves=pr_curves)


def _average_precision(p: _Pooled, hits: np.ndarray, thresholds: np.ndarray,
                       denominator: np.ndarray) -> tuple[np.ndarray, list]:
    """AP[c, t] from all images' detections pooled and ranked by score (stable:
    image order, then the image's own score order, i.e. file order)."""
    match = np.where(hits, 1, np.where(p.det_ignored_oa[None] >= thresholds[:, None], -1, 0))
    order = np.lexsort((p.det_line, p.det_img, -p.det_score, p.det_cls))
    cls_sorted = p.det_cls[order]
    ap = np.zeros((len(CATEGORY_IDS), len(thresholds)))
    pr_curves = []
    for c, cid in enumerate(CATEGORY_IDS):
        lo, hi = np.searchsorted(cls_sorted, [cid, cid + 1])
        ranked = match[:, order[lo:hi]]
        tp = np.cumsum(ranked == 1, axis=1).astype(np.float64)
        fp = np.cumsum(ranked == 0, axis=1).astype(np.float64)
        rec = tp / denominator[c]
        prec = tp / np.maximum(1.0, fp + tp)
        for t in range(len(thresholds)):
            ap[c, t] = vocap(rec[t], prec[t]) * 100
        pr_curves.append((rec[0], prec[0]))
    return ap, pr_curves
