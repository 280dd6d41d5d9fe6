"""VisDrone2019-MOT's official tracking evaluation (VisDrone2018-MOT-toolkit, Task 4B), rule by rule.

Spec: docs/visdrone-mot-eval.md; the toolkit's sources are evaluateTrackB.m, dropObjects.m,
classSplit.m, classEval.m, CLEAR_MOT_HUN.m + clearMOTMex.cpp, IDmeasures.m + costBlockMex.cpp
and evaluateBenchmark.m. HOTA is not in the toolkit: TrackEval computes it (afmcli/evaluation/hota.py)
on the same boxes.

Data API: `MotSequence` (raw VisDrone-MOT rows, file order, and the frame size) ->
:func:`evaluate_sequences` -> `MotResult` (per sequence, per class and overall numbers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from afmcli.errors import AfmError
from afmcli.evaluation.hota import hota_counts, hota_summary
from afmcli.evaluation.visdrone import ignored_cover, matlab_round

# evalMOT.m's evalClassSet, in its order, with VisDrone's category ids (getClassID.m).
EVAL_CLASSES = {"car": 4, "bus": 9, "truck": 6, "pedestrian": 1, "van": 5}
# Categories that are ignored regions in dropObjects.m: 0 (ignored region) and 11 (others).
REGION_CATEGORIES = (0, 11)
IOU_THRESHOLD = 0.5  # classEval.m: threshold = 0.5 (a match needs IoU >= 0.5)
FRAME, ID, BOX, CATEGORY = 0, 1, slice(2, 6), 7  # columns of a VisDrone-MOT row


@dataclass(frozen=True)
class MotSequence:
    """One sequence as the toolkit reads it: rows ``frame, id, x, y, w, h, score, category,
    truncation, occlusion`` (float64, file order) and the size of its first frame."""

    name: str
    height: int
    width: int
    gt: np.ndarray
    pred: np.ndarray


@dataclass
class ClassCounts:
    """What one class of one sequence adds to every sum of evaluateBenchmark.m."""

    gt_dets: int = 0        # sum(g): ground-truth boxes
    matches: int = 0        # sum(c)
    fp: int = 0
    fn: int = 0
    idsw: int = 0           # sum(mme)
    dist: float = 0.0       # sum(d): 1 - IoU over the matches
    frames: int = 0         # Fgt: the last ground-truth frame (for FAR)
    tracks: int = 0         # Ngt
    mt: int = 0
    pt: int = 0
    ml: int = 0
    frag: int = 0
    id_gt: int = 0          # IDmeasures: numGT, numPRED, IDTP, IDFP, IDFN
    id_pred: int = 0
    idtp: int = 0
    idfp: int = 0
    idfn: int = 0
    hota: dict | None = None  # TrackEval's HOTA result


@dataclass
class MotResult:
    """``sequences[name]`` and ``overall``: the 17 toolkit numbers + HOTA (NaN where the
    toolkit prints NaN); ``classes[name]``: the same per class over all sequences (NaN -> 0,
    as evaluateTrackB.m prints them). ``counts[(sequence, class)]``: the raw counts; a class
    without ground truth in a sequence is absent (the toolkit leaves it out)."""

    sequences: dict[str, dict[str, float]]
    classes: dict[str, dict[str, float]]
    overall: dict[str, float]
    counts: dict[tuple[str, str], ClassCounts] = field(repr=False)

    def to_json(self) -> dict:
        def clean(numbers: dict[str, float]) -> dict:
            return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in numbers.items()}

        return {"overall": clean(self.overall), "classes": {k: clean(v) for k, v in self.classes.items()},
                "sequences": {k: clean(v) for k, v in self.sequences.items()},
                "protocol": "VisDrone2019-MOT (VisDrone2018-MOT-toolkit evaluateTrackB); HOTA by TrackEval; "
                            "docs/visdrone-mot-eval.md"}


# --- dropObjects.m ------------------------------------------------------------------------------

def drop_objects(rows: np.ndarray, gt: np.ndarray, height: int, width: int) -> np.ndarray:
    """The rows dropObjects.m keeps, sorted by frame (stable): frames 1..max frame (integers),
    category not 0 or 11, and less than half inside the frame's ignored regions (the ground
    truth's category-0 and category-11 boxes, rounded, clamped to at least 1; the integral-image
    rule of the DET toolkit, afmcli.evaluation.visdrone.ignored_cover)."""
    rows = np.asarray(rows, dtype=np.float64)
    if not len(rows):
        return rows
    rows = rows[np.argsort(rows[:, FRAME], kind="stable")]
    frames = rows[:, FRAME]
    keep = (frames >= 1) & (frames == np.floor(frames)) & ~np.isin(rows[:, CATEGORY], REGION_CATEGORIES)
    regions = gt[np.isin(gt[:, CATEGORY], REGION_CATEGORIES)]
    regions = regions[np.argsort(regions[:, FRAME], kind="stable")]
    for frame in np.unique(regions[:, FRAME]):
        lo, hi = _frame_span(frames, frame)
        at = lo + np.flatnonzero(keep[lo:hi])
        if len(at):
            r_lo, r_hi = _frame_span(regions[:, FRAME], frame)
            keep[at] = ignored_cover(rows[at, BOX], matlab_round(regions[r_lo:r_hi, BOX]), height, width) < 0.5
    return rows[keep]


def _frame_span(sorted_frames: np.ndarray, frame) -> tuple[int, int]:
    """The slice of rows (sorted by frame) that belong to ``frame``."""
    return int(np.searchsorted(sorted_frames, frame, "left")), int(np.searchsorted(sorted_frames, frame, "right"))


# --- clearMOTMex.cpp + CLEAR_MOT_HUN.m -----------------------------------------------------------

def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of x, y, w, h boxes, pairwise (…, 4) x (…, 4), in clearMOTMex's float operations."""
    with np.errstate(invalid="ignore", divide="ignore"):
        x_overlap = np.maximum(0.0, np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2])
                               - np.maximum(a[..., 0], b[..., 0]))
        y_overlap = np.maximum(0.0, np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3])
                               - np.maximum(a[..., 1], b[..., 1]))
        inter = x_overlap * y_overlap
        return inter / (a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter)


def _by_frame(rows: np.ndarray) -> dict[int, dict[int, np.ndarray]]:
    """frame -> {id: box}; rows are (frame, id, x, y, w, h) with ids 1..n."""
    out: dict[int, dict[int, np.ndarray]] = {}
    for row in rows:
        out.setdefault(int(row[0]), {})[int(row[1])] = row[2:6]
    return out


def _frame_matches(gt_t: dict, st_t: dict, previous: dict[int, int], threshold: float) -> dict[int, int]:
    """One frame of clearMOTMex: keep last frame's pairs that still overlap (1 - IoU <=
    threshold), then match the rest with minimum total 1 - IoU (most matches first)."""
    current = {g: s for g, s in previous.items()
               if g in gt_t and s in st_t and 1 - box_iou(gt_t[g], st_t[s]) <= threshold}
    taken = set(current.values())
    free_gt = sorted(g for g in gt_t if g not in current)
    free_st = sorted(s for s in st_t if s not in taken)
    if free_gt and free_st:
        dist = 1 - box_iou(np.array([gt_t[g] for g in free_gt])[:, None],
                           np.array([st_t[s] for s in free_st])[None])
        valid = dist <= threshold
        if valid.any():
            # The toolkit's tie-breaker: + 1e-9 * (running count of valid pairs, row-major).
            uid = (np.cumsum(valid.ravel()) - 1).reshape(valid.shape)
            cost = np.where(valid, dist + 1e-9 * uid, max(valid.shape) + 1.0)
            for i, j in zip(*linear_sum_assignment(cost)):
                if valid[i, j]:
                    current[free_gt[i]] = free_st[j]
    return current


def _normalized_ids(rows: np.ndarray) -> np.ndarray:
    """CLEAR_MOT_HUN.m: ids -> 1..n in sorted order (unique's third output)."""
    rows = rows.copy()
    rows[:, 1] = np.unique(rows[:, 1], return_inverse=True)[1] + 1
    return rows


def clear_mot(gt: np.ndarray, pred: np.ndarray, threshold: float = IOU_THRESHOLD) -> ClassCounts:
    """CLEAR MOT of one class of one sequence (rows frame, id, x, y, w, h; no two rows with the
    same frame and id)."""
    gt, pred = _normalized_ids(gt[:, :6]), _normalized_ids(pred[:, :6])
    gt_at, st_at = _by_frame(gt), _by_frame(pred)
    last_frame = int(max(gt[:, 0].max(), pred[:, 0].max() if len(pred) else 0))
    counts = ClassCounts(gt_dets=len(gt), frames=int(gt[:, 0].max()))
    counts.tracks = int(gt[:, 1].max())
    tracked: dict[int, list[int]] = {}   # gt id -> frames where it is matched
    last_match: dict[int, int] = {}      # gt id -> result id of its latest match
    previous: dict[int, int] = {}
    for t in range(1, last_frame + 1):
        gt_t, st_t = gt_at.get(t, {}), st_at.get(t, {})
        current = _frame_matches(gt_t, st_t, previous, threshold)
        for g, s in current.items():
            # A switch only when the object was in the previous frame's ground truth.
            if g in gt_at.get(t - 1, {}) and g in last_match and last_match[g] != s:
                counts.idsw += 1
            counts.dist += float(1 - box_iou(gt_t[g], st_t[s]))
            tracked.setdefault(g, []).append(t)
        last_match.update(current)
        counts.matches += len(current)
        counts.fp += len(st_t) - len(current)
        counts.fn += len(gt_t) - len(current)
        previous = current
    last_pred_frame = pred[:, 0].max() if len(pred) else None
    for g in range(1, counts.tracks + 1):
        frames = gt[gt[:, 1] == g, 0]
        ratio = np.isin(frames, tracked.get(g, [])).sum() / len(frames)
        # CLEAR_MOT_HUN.m's order; "F >= find(frames, 1, 'last')" compares the last result
        # frame with the NUMBER of the track's rows.
        if ratio < 0.2:
            counts.ml += 1
        elif last_pred_frame is not None and last_pred_frame >= len(frames) and ratio <= 0.8:
            counts.pt += 1
        elif ratio >= 0.8:
            counts.mt += 1
        if g in tracked:
            counts.frag += int((np.diff(tracked[g]) > 1).sum())
    return counts


# --- IDmeasures.m + costBlockMex.cpp -------------------------------------------------------------

def id_measures(gt: np.ndarray, pred: np.ndarray, threshold: float = IOU_THRESHOLD) -> tuple[int, int, int]:
    """(IDTP, IDFP, IDFN): the one-to-one matching of ground-truth and result tracks that
    maximises the frames where the pair overlaps with IoU >= threshold (not IoU < threshold:
    costBlockMex counts a frame as a miss when iou < threshold)."""
    if not len(pred):
        return 0, 0, len(gt)
    gt, pred = gt[np.argsort(gt[:, 0], kind="stable")], pred[np.argsort(pred[:, 0], kind="stable")]
    gt_ids, gt_idx = np.unique(gt[:, 1], return_inverse=True)
    st_ids, st_idx = np.unique(pred[:, 1], return_inverse=True)
    tp = np.zeros((len(gt_ids), len(st_ids)))
    frames = np.unique(gt[:, 0])
    gt_lo, gt_hi = np.searchsorted(gt[:, 0], frames, "left"), np.searchsorted(gt[:, 0], frames, "right")
    st_lo, st_hi = np.searchsorted(pred[:, 0], frames, "left"), np.searchsorted(pred[:, 0], frames, "right")
    for g0, g1, s0, s1 in zip(gt_lo, gt_hi, st_lo, st_hi):
        if s0 == s1:
            continue
        hit = ~(box_iou(gt[g0:g1, 2:6][:, None], pred[s0:s1, 2:6][None]) < threshold)
        rows, cols = np.nonzero(hit)
        np.add.at(tp, (gt_idx[g0 + rows], st_idx[s0 + cols]), 1)
    r, c = linear_sum_assignment(tp, maximize=True)
    idtp = int(tp[r, c].sum())
    return idtp, len(pred) - idtp, len(gt) - idtp


# --- evaluateTrackB.m ----------------------------------------------------------------------------

def _duplicate_check(rows: np.ndarray, what: str) -> None:
    """Refuse two boxes with one frame and id (the toolkit's two halves disagree on them)."""
    pairs, counts = np.unique(rows[:, :2], axis=0, return_counts=True)
    if (counts > 1).any():
        frame, tid = pairs[counts > 1][0]
        raise AfmError(f"{what}: two boxes of track {int(tid)} in frame {int(frame)} "
                       "(the toolkit's CLEAR MOT keeps the last, its ID measures both: ambiguous)")


def evaluate_class(gt: np.ndarray, pred: np.ndarray, what: str = "") -> ClassCounts:
    """classEval.m for one class: CLEAR MOT, ID measures and HOTA on the same rows."""
    _duplicate_check(gt, f"{what} ground truth")
    _duplicate_check(pred, f"{what} results")
    counts = clear_mot(gt, pred)
    counts.id_gt, counts.id_pred = len(gt), len(pred)
    counts.idtp, counts.idfp, counts.idfn = id_measures(gt, pred)
    counts.hota = hota_counts(gt[:, :6], pred[:, :6])
    return counts


def sequence_counts(seq: MotSequence) -> dict[str, ClassCounts]:
    """Each evaluated class that has ground truth in ``seq`` (after dropObjects) -> its counts."""
    gt = drop_objects(seq.gt, seq.gt, seq.height, seq.width)
    if not len(gt):
        return {}
    pred = drop_objects(seq.pred, seq.gt, seq.height, seq.width)
    pred = pred[pred[:, FRAME] <= gt[:, FRAME].max()]  # "clip result to gtMaxFrame"
    out = {}
    for name, category in EVAL_CLASSES.items():
        gt_c = gt[gt[:, CATEGORY] == category]
        if len(gt_c):
            out[name] = evaluate_class(gt_c, pred[pred[:, CATEGORY] == category], f"{seq.name} ({name})")
    return out


def summarize(entries: Sequence[ClassCounts]) -> dict[str, float]:
    """evaluateBenchmark.m: sums over the entries, then its 17 numbers in its order (IDF1, IDP,
    IDR, Rcll, Prcn, FAR, GT, MT, PT, ML, FP, FN, IDs, FM, MOTA, MOTP, MOTAL; ratios in percent),
    then HOTA's (afmcli.evaluation.hota.HOTA_FIELDS)."""
    s = {k: sum(getattr(e, k) for e in entries) for k in (
        "gt_dets", "matches", "fp", "fn", "idsw", "frames", "tracks", "mt", "pt", "ml", "frag",
        "id_gt", "id_pred", "idtp", "idfp", "idfn")}
    dist = sum(e.dist for e in entries)
    nan = float("nan")

    def ratio(a: float, b: float) -> float:
        return a / b if b else (nan if a == 0 else math.copysign(math.inf, a))

    idp = 0.0 if s["id_pred"] == 0 else 100 * ratio(s["idtp"], s["idtp"] + s["idfp"])
    motp = (1 - ratio(dist, s["matches"])) * 100
    out = {
        "IDF1": 100 * ratio(2 * s["idtp"], s["id_gt"] + s["id_pred"]),
        "IDP": idp,
        "IDR": 100 * ratio(s["idtp"], s["idtp"] + s["idfn"]),
        "Rcll": 100 * ratio(s["matches"], s["gt_dets"]),
        "Prcn": 100 * ratio(s["matches"], s["fp"] + s["matches"]),
        "FAR": ratio(s["fp"], s["frames"]),
        "GT": s["tracks"], "MT": s["mt"], "PT": s["pt"], "ML": s["ml"],
        "FP": s["fp"], "FN": s["fn"], "IDs": s["idsw"], "FM": s["frag"],
        "MOTA": (1 - ratio(s["fn"] + s["fp"] + s["idsw"], s["gt_dets"])) * 100,
        "MOTP": 0.0 if math.isnan(motp) else motp,
        "MOTAL": (1 - ratio(s["fn"] + s["fp"] + math.log10(s["idsw"] + 1), s["gt_dets"])) * 100,
    }
    out.update(hota_summary([e.hota for e in entries if e.hota is not None]))
    return out


def evaluate_sequences(sequences: Sequence[MotSequence]) -> MotResult:
    """evaluateTrackB.m over ``sequences`` (in the toolkit's order: the sorted folder listing)."""
    counts = {(seq.name, name): c for seq in sequences for name, c in sequence_counts(seq).items()}
    per_seq = {seq.name: summarize([c for (s, _), c in counts.items() if s == seq.name]) for seq in sequences}
    per_class = {}
    for name in EVAL_CLASSES:
        numbers = summarize([c for (_, k), c in counts.items() if k == name])
        per_class[name] = {k: (0.0 if isinstance(v, float) and math.isnan(v) else v) for k, v in numbers.items()}
    return MotResult(per_seq, per_class, summarize(list(counts.values())), counts)
