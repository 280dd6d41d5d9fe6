"""The COCO view: the toolkit's step 1, then COCO evaluation, for any category table
(rows number its classes 1..K: afmcli.evaluation.categories; VisDrone's by default).

Objects and detections in ignored regions are dropped as the toolkit does,
score-0 ground truth becomes crowd (ignore), classes 1..10 only, boxes as the
toolkit sees them (unclipped), all of a file's detections (COCO keeps the best
maxDets per image and class). Evaluated with faster-coco-eval (pycocotools
semantics: 101-point precision, per-image-class maxDets) at maxDets
(1, 10, 100, 500). summarize() assumes maxDets (1, 10, 100): the numbers are read
from the precision / recall arrays here instead. AP and AP50 count 500 detections per
image (VisDrone's limit); bbox_mAP and bbox_mAP_50 count 100, the number mmdet's
CocoMetric reports as coco/bbox_mAP and papers compare.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from afmcli.data.coco import coco_categories
from afmcli.data.visdrone_format import CLASSES
from afmcli.errors import ParameterError
from afmcli.evaluation.visdrone import ImageRows, as_rows, drop_objects_in_ignored

COCO_MAX_DETS = (1, 10, 100, 500)
# Object size ranges by area (pycocotools keeps an object when lo <= area <= hi).
# coco: COCO's plus "tiny" (area below 16 x 16); "small" keeps COCO's [0, 32^2].
# aitod: AI-TOD's (its aitodpycocotools), by sqrt(area): very tiny 2-8, tiny 8-16, small
# 16-32, medium 32+ px.
SIZE_RANGES = {
    "coco": {"all": (0.0, 1e10), "tiny": (0.0, 16.0 ** 2), "small": (0.0, 32.0 ** 2),
             "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, 1e10)},
    "aitod": {"all": (0.0, 1e10), "verytiny": (2.0 ** 2, 8.0 ** 2), "tiny": (8.0 ** 2, 16.0 ** 2),
              "small": (16.0 ** 2, 32.0 ** 2), "medium": (32.0 ** 2, 1e10)},
}
AREA_RANGES = SIZE_RANGES["coco"]
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "AP_tiny", "AP_small", "AP_medium", "AP_large",
                   "AR1", "AR10", "AR100", "AR500", "bbox_mAP", "bbox_mAP_50")


def check_size_ranges(ranges: str) -> None:
    if ranges not in SIZE_RANGES:
        raise ParameterError(f"{{size_ranges}} must be one of {', '.join(SIZE_RANGES)}, got {ranges!r}",
                             "size_ranges")


def coco_view_datasets(images: Sequence[ImageRows], classes: Sequence[str] = CLASSES) -> tuple[dict, list[dict]]:
    """(ground-truth dataset dict, detection results list), image ids 1..N in order, category
    ids 1..K for ``classes`` (the rows' numbering)."""
    dataset = {"images": [], "annotations": [], "categories": coco_categories(classes)}
    scored = np.arange(1, len(classes) + 1)
    results: list[dict] = []
    for image_id, im in enumerate(images, start=1):
        objects, det = drop_objects_in_ignored(as_rows(im.gt), as_rows(im.det), im.height, im.width, im.name)
        dataset["images"].append({"id": image_id, "width": im.width, "height": im.height,
                                  "file_name": im.name})
        for row in objects[np.isin(objects[:, 5], scored)]:
            dataset["annotations"].append({
                "id": len(dataset["annotations"]) + 1, "image_id": image_id, "category_id": int(row[5]),
                "bbox": row[:4].tolist(), "area": float(row[2] * row[3]), "iscrowd": int(row[4] == 0)})
        for row in det[np.isin(det[:, 5], scored)]:
            results.append({"image_id": image_id, "category_id": int(row[5]), "bbox": row[:4].tolist(),
                            "score": float(row[4])})
    return dataset, results


def configure(evaluator, ranges: str = "coco") -> None:
    """Our maxDets and area ranges (:data:`SIZE_RANGES`) on a pycocotools-style COCOeval."""
    evaluator.params.maxDets = list(COCO_MAX_DETS)
    evaluator.params.areaRng = [list(r) for r in SIZE_RANGES[ranges].values()]
    evaluator.params.areaRngLbl = list(SIZE_RANGES[ranges])


def stats_from_eval(eval_result: dict, params) -> dict[str, float]:
    """Percentages from COCOeval's eval['precision'] [T, R, K, A, M] and
    eval['recall'] [T, K, A, M]; -1 entries (no gt) are left out, NaN when all are."""
    precision, recall = eval_result["precision"], eval_result["recall"]
    area = {label: i for i, label in enumerate(params.areaRngLbl)}
    last = len(params.maxDets) - 1
    t50 = int(np.argmin(np.abs(np.asarray(params.iouThrs) - 0.5)))
    t75 = int(np.argmin(np.abs(np.asarray(params.iouThrs) - 0.75)))

    stats = {"AP": _valid_mean(precision[:, :, :, area["all"], last]),
             "AP50": _valid_mean(precision[t50, :, :, area["all"], last]),
             "AP75": _valid_mean(precision[t75, :, :, area["all"], last])}
    for label in params.areaRngLbl[1:]:
        stats[f"AP_{label}"] = _valid_mean(precision[:, :, :, area[label], last])
    for k, m in enumerate(params.maxDets):
        stats[f"AR{m}"] = _valid_mean(recall[:, :, area["all"], k])
    # mmdet's CocoMetric number (COCO's 100 detections per image), under mmdet's names
    at100 = list(params.maxDets).index(100)
    stats["bbox_mAP"] = _valid_mean(precision[:, :, :, area["all"], at100])
    stats["bbox_mAP_50"] = _valid_mean(precision[t50, :, :, area["all"], at100])
    return stats


def classwise_from_eval(eval_result: dict, params, classes: Sequence[str] = CLASSES) -> dict[str, dict[str, float]]:
    """AP, AP50 and AR500 per class (percent, NaN without gt)."""
    precision, recall = eval_result["precision"], eval_result["recall"]
    out = {}
    for k, name in enumerate(classes):
        p = precision[:, :, k, 0, -1]
        r = recall[:, k, 0, -1]
        out[name] = {"AP": _valid_mean(p), "AP50": _valid_mean(p[0]), "AR500": _valid_mean(r)}
    return out


def _valid_mean(values: np.ndarray) -> float:
    values = values[values > -1]
    return float(np.mean(values) * 100) if values.size else float("nan")


def pr_at_50(evaluator, classes: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per class with objects: (recall thresholds, interpolated precision) at IoU 0.5, all
    sizes, the most detections (COCO's PR curve)."""
    params = evaluator.params
    t50 = int(np.argmin(np.abs(np.asarray(params.iouThrs) - 0.5)))
    precision = evaluator.eval["precision"][t50, :, :, 0, -1]
    return {name: (np.asarray(params.recThrs), precision[:, k]) for k, name in enumerate(classes)
            if (precision[:, k] > -1).all()}


def run_coco_eval(dataset: dict, results: list[dict], iou_thresholds: Sequence[float] | None = None,
                  ranges: str = "coco"):
    """An evaluated and accumulated faster-coco-eval COCOeval with our maxDets and
    area ranges (and IoU thresholds when given)."""
    from faster_coco_eval import COCO, COCOeval_faster

    gt = COCO(dataset)
    evaluator = COCOeval_faster(gt, gt.loadRes(results) if results else COCO(), "bbox",
                                print_function=lambda *a, **k: None)
    configure(evaluator, ranges)
    if iou_thresholds is not None:
        evaluator.params.iouThrs = np.asarray(iou_thresholds, dtype=np.float64)
    evaluator.evaluate()
    evaluator.accumulate()
    return evaluator


def evaluate_coco(images: Sequence[ImageRows], classes: Sequence[str] = CLASSES, ranges: str = "coco"
                  ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """COCO-view stats and per-class AP of ``images`` with faster-coco-eval."""
    return coco_summary(run_coco_eval(*coco_view_datasets(images, classes), ranges=ranges), classes)


def coco_summary(evaluator, classes: Sequence[str] = CLASSES) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """The stats and per-class AP of an evaluated COCO view (:func:`run_coco_eval`)."""
    return (stats_from_eval(evaluator.eval, evaluator.params),
            classwise_from_eval(evaluator.eval, evaluator.params, classes))
