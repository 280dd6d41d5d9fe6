"""Why a detector misses, in the COCO view (coco_view.py): COCO's error
decomposition, the confusion matrix of the ten classes and background, and each
image's true positives, false positives and misses.

faster-coco-eval does all the matching: COCOeval_faster gives the PR curves, its
ExtraEval the per-annotation match flags (gt_id / dt_id). Done here, because no
library does it:
- the decomposition's Sim, Oth, BG and FN steps (COCO's analyze(): objects of
  other classes become crowd regions of the detection's class, matched at IoU
  0.1). One evaluation per step holds crowd copies for every class at once; per
  class that is the same ground truth as SAHI's one evaluation per class;
- crowd (score-0) objects: ExtraEval flags a crowd region no detection hit as a
  miss and a detection on one as a hit; here both count as neither, as in AP;
- the confusion matrix with background (ExtraEval's own counts crowd matches as
  class pairs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from afmcli.data.visdrone_format import CLASSES, IGNORED_REGION
from afmcli.evaluation.coco_view import AREA_RANGES, _valid_mean, coco_view_datasets, run_coco_eval
from afmcli.evaluation.visdrone import ImageRows, as_rows

STEPS = ("C75", "C50", "Loc", "Sim", "Oth", "BG", "FN")
STEP_HELP = {
    "C75": "PR at IoU 0.75", "C50": "PR at IoU 0.5", "Loc": "PR at IoU 0.1 (localisation errors ignored)",
    "Sim": "Loc, and confusions with a similar class ignored", "Oth": "Loc, and every class confusion ignored",
    "BG": "Oth, and every false positive on background removed", "FN": "every remaining miss found (AP 100)"}
LOC_IOU = 0.1
# VisDrone's look-alike classes: a confusion inside a group counts as "Sim" (for another class
# list, the groups' members it has; without any, Sim equals Loc).
SIMILAR_CLASSES = (("pedestrian", "people"), ("bicycle", "tricycle", "awning-tricycle", "motor"),
                   ("car", "van", "truck", "bus"))


def similar_groups(classes: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """SIMILAR_CLASSES restricted to ``classes`` (groups of two or more left)."""
    groups = (tuple(n for n in g if n in classes) for g in SIMILAR_CLASSES)
    return tuple(g for g in groups if len(g) > 1)
DEFAULT_SCORE = 0.3
MATCH_IOU = 0.5
BACKGROUND = "background"


@dataclass
class ErrorDecomposition:
    """precision[step, r, k, a]: COCO's interpolated precision at recall
    recall_thresholds[r] for class k and area range a (-1: no objects there)."""

    precision: np.ndarray
    recall_thresholds: np.ndarray
    areas: tuple[str, ...]
    classes: tuple[str, ...] = tuple(CLASSES)

    def _slice(self, step: str, area: str, cls: str | None) -> np.ndarray:
        p = self.precision[STEPS.index(step), :, :, self.areas.index(area)]  # [R, K]
        return p if cls is None else p[:, [self.classes.index(cls)]]

    def curve(self, step: str, area: str = "all", cls: str | None = None) -> np.ndarray | None:
        """Precision per recall threshold, mean over the classes with objects; None without any."""
        p = self._slice(step, area, cls)
        valid = (p > -1).all(axis=0)
        return p[:, valid].mean(axis=1) if valid.any() else None

    def ap(self, step: str, area: str = "all", cls: str | None = None) -> float:
        """Percent, NaN without objects."""
        return _valid_mean(self._slice(step, area, cls))

    def table(self, cls: str | None = None) -> dict[str, dict[str, float]]:
        """{area: {step: AP}}."""
        return {area: {step: self.ap(step, area, cls) for step in STEPS} for area in self.areas}


@dataclass
class ImageMatches:
    """One image at a score threshold: tp, fp (N, 6) x1, y1, x2, y2, score, category;
    fn (N, 5) x1, y1, x2, y2, category; ignored (N, 4) ignored regions and crowd objects."""

    name: str
    objects: int
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    ignored: np.ndarray

    @property
    def missed_tiny(self) -> int:
        w, h = self.fn[:, 2] - self.fn[:, 0], self.fn[:, 3] - self.fn[:, 1]
        return int((w * h < AREA_RANGES["tiny"][1]).sum())

    def row(self) -> dict:
        return {"image": self.name, "objects": self.objects, "TP": len(self.tp), "FP": len(self.fp),
                "FN": len(self.fn), "FN_tiny": self.missed_tiny}


@dataclass
class Analysis:
    decomposition: ErrorDecomposition
    confusion: np.ndarray  # (K + 1, K + 1): rows ground truth, columns detections, last = background
    images: list[ImageMatches]
    score_thr: float

    def worst_images(self, n: int) -> list[ImageMatches]:
        """The ``n`` images with the most missed objects (then most false positives)."""
        return sorted(self.images, key=lambda m: (-len(m.fn), -len(m.fp), m.name))[:n]

    def to_json(self) -> dict:
        def number(v: float) -> float | None:
            return None if np.isnan(v) else v

        d = self.decomposition
        return {
            "view": "coco", "score_thr": self.score_thr, "match_iou": MATCH_IOU, "loc_iou": LOC_IOU,
            "similar_classes": [list(g) for g in similar_groups(d.classes)],
            "error_decomposition": {
                "overall": {a: {s: number(v) for s, v in row.items()} for a, row in d.table().items()},
                "per_class": {c: {s: number(d.ap(s, "all", c)) for s in STEPS} for c in d.classes}},
            "confusion_matrix": {"rows": "ground truth", "columns": "detections",
                                 "labels": [*d.classes, BACKGROUND], "counts": self.confusion.tolist()},
            "images": [m.row() for m in self.worst_images(len(self.images))],
        }


def _with_crowd_copies(dataset: dict, groups: Sequence[Sequence[str]]) -> dict:
    """``dataset`` plus, for each object, a crowd copy labelled as each other class
    of its group: a detection of that class on it is then neither TP nor FP."""
    id_of = {c["name"]: c["id"] for c in dataset["categories"]}
    group_of = {id_of[name]: [id_of[n] for n in g] for g in groups for name in g}
    annotations = list(dataset["annotations"])
    next_id = max((a["id"] for a in annotations), default=0) + 1
    for ann in dataset["annotations"]:
        for other in group_of.get(ann["category_id"], ()):
            if other != ann["category_id"]:
                annotations.append({**ann, "id": next_id, "category_id": other, "iscrowd": 1})
                next_id += 1
    return {**dataset, "annotations": annotations}


def error_decomposition(dataset: dict, results: list[dict], ranges: str = "coco") -> ErrorDecomposition:
    """COCO's analyze() on a COCO-view dataset, at maxDets 500, every area range of ``ranges``."""
    classes = tuple(c["name"] for c in dataset["categories"])
    def precision(data: dict, thresholds: tuple[float, ...]) -> tuple[np.ndarray, object]:
        evaluator = run_coco_eval(data, results, thresholds, ranges)
        return evaluator.eval["precision"][..., -1], evaluator.params  # [T, R, K, A] at maxDets 500

    base, params = precision(dataset, (0.75, 0.5, LOC_IOU))
    sim = precision(_with_crowd_copies(dataset, similar_groups(classes)), (LOC_IOU,))[0][0]
    oth = precision(_with_crowd_copies(dataset, (classes,)), (LOC_IOU,))[0][0]
    valid = base[0] > -1  # crowd copies add no object, so every step has the same objects
    bg = np.where(valid, (oth > 0).astype(np.float64), -1.0)
    fn = np.where(valid, 1.0, -1.0)
    return ErrorDecomposition(np.stack([*base, sim, oth, bg, fn]), np.asarray(params.recThrs),
                              tuple(params.areaRngLbl), classes)


def _matched(dataset: dict, results: list[dict], score_thr: float, use_cats: bool) -> tuple[dict, dict]:
    """(gt anns, detection anns) of faster-coco-eval's ExtraEval at IoU 0.5, with its match flags."""
    from faster_coco_eval import COCO
    from faster_coco_eval.extra.extra import ExtraEval

    gt = COCO(dataset)
    kept = [r for r in results if r["score"] >= score_thr]
    if not kept:
        return gt.anns, {}
    ev = ExtraEval(gt, gt.loadRes(kept), "bbox", iou_tresh=MATCH_IOU, useCats=use_cats)
    return ev.cocoGt.anns, ev.cocoDt.anns


def _is_hit(det: dict, gt_anns: dict) -> bool | None:
    """True: matched an object; False: matched nothing; None: matched a crowd region (ignored)."""
    gt_id = det.get("gt_id")
    if gt_id is None:
        return False
    return None if gt_anns[gt_id].get("iscrowd") else True


def confusion_matrix(dataset: dict, results: list[dict], score_thr: float) -> np.ndarray:
    """Counts at IoU 0.5, class-agnostic matching, detections scoring >= ``score_thr``:
    [object class, detected class]; last row: detections on background; last
    column: objects no detection found. Crowd objects and detections on them are left out."""
    gt_anns, dt_anns = _matched(dataset, results, score_thr, use_cats=False)
    index = {c["id"]: i for i, c in enumerate(dataset["categories"])}
    bg = len(index)
    counts = np.zeros((bg + 1, bg + 1), dtype=np.int64)
    for ann in gt_anns.values():
        if not ann.get("iscrowd"):
            dt_id = ann.get("dt_id")
            counts[index[ann["category_id"]], bg if dt_id is None else index[dt_anns[dt_id]["category_id"]]] += 1
    for det in dt_anns.values():
        if _is_hit(det, gt_anns) is False:
            counts[bg, index[det["category_id"]]] += 1
    return counts


def _xyxy(bbox: Sequence[float]) -> list[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def image_matches(images: Sequence[ImageRows], dataset: dict, results: list[dict],
                  score_thr: float) -> list[ImageMatches]:
    """Per image: class-aware matches at IoU 0.5 of the detections scoring >= ``score_thr``."""
    gt_anns, dt_anns = _matched(dataset, results, score_thr, use_cats=True)
    per_image: list[dict[str, list]] = [{"tp": [], "fp": [], "fn": [], "ignored": [], "objects": []}
                                        for _ in images]
    for ann in gt_anns.values():
        slot = per_image[ann["image_id"] - 1]
        if ann.get("iscrowd"):
            slot["ignored"].append(_xyxy(ann["bbox"]))
        else:
            slot["objects"].append(ann["id"])
            if ann.get("dt_id") is None:
                slot["fn"].append([*_xyxy(ann["bbox"]), ann["category_id"]])
    for det in dt_anns.values():
        hit = _is_hit(det, gt_anns)
        if hit is not None:
            per_image[det["image_id"] - 1]["tp" if hit else "fp"].append(
                [*_xyxy(det["bbox"]), det["score"], det["category_id"]])
    out = []
    for im, slot in zip(images, per_image):
        gt = as_rows(im.gt)
        regions = gt[gt[:, 5] == IGNORED_REGION, :4]
        regions = np.column_stack([regions[:, :2], regions[:, :2] + regions[:, 2:4]])
        out.append(ImageMatches(
            im.name, len(slot["objects"]), np.asarray(slot["tp"], float).reshape(-1, 6),
            np.asarray(slot["fp"], float).reshape(-1, 6), np.asarray(slot["fn"], float).reshape(-1, 5),
            np.vstack([regions, np.asarray(slot["ignored"], float).reshape(-1, 4)])))
    return out


def analyse(images: Sequence[ImageRows], score_thr: float = DEFAULT_SCORE,
            classes: Sequence[str] = CLASSES, ranges: str = "coco") -> Analysis:
    """The analysis of ``images``, their rows numbering ``classes`` 1..K, by the size ranges
    ``ranges`` (afmcli.evaluation.coco_view.SIZE_RANGES)."""
    dataset, results = coco_view_datasets(images, classes)
    return Analysis(error_decomposition(dataset, results, ranges), confusion_matrix(dataset, results, score_thr),
                    image_matches(images, dataset, results, score_thr), score_thr)
