"""The COCO view of VisDrone: the toolkit's step 1, then COCO evaluation.

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
from afmcli.data.visdrone_format import CATEGORY_IDS, CLASSES
from afmcli.evaluation.visdrone import ImageRows, as_rows, drop_objects_in_ignored

COCO_MAX_DETS = (1, 10, 100, 500)
# COCO's ranges plus "tiny" (area below 16 x 16); "small" keeps COCO's [0, 32^2].
AREA_RANGES = {"all": (0.0, 1e10), "tiny": (0.0, 16.0 ** 2), "small": (0.0, 32.0 ** 2),
               "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, 1e10)}
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "AP_tiny", "AP_small", "AP_medium", "AP_large",
                   "AR1", "AR10", "AR100", "AR500", "bbox_mAP", "bbox_mAP_50")


def coco_view_datasets(images: Sequence[ImageRows]) -> tuple[dict, list[dict]]:
    """(ground-truth dataset dict, detection results list), image ids 1..N in order."""
    dataset = {"images": [], "annotations": [], "categories": coco_categories()}
    results: list[dict] = []
    for image_id, im in enumerate(images, start=1):
        objects, det = drop_objects_in_ignored(as_rows(im.gt), as_rows(im.det), im.height, im.width, im.name)
        dataset["images"].append({"id": image_id, "width": im.width, "height": im.height,
                                  "file_name": im.name})
        for row in objects[np.isin(objects[:, 5], CATEGORY_IDS)]:
            dataset["annotations"].append({
                "id": len(dataset["annotations"]) + 1, "image_id": image_id, "category_id": int(row[5]),
                "bbox": row[:4].tolist(), "area": float(row[2] * row[3]), "iscrowd": int(row[4] == 0)})
        for row in det[np.isin(det[:, 5], CATEGORY_IDS)]:
            results.append({"image_id": image_id, "category_id": int(row[5]), "bbox": row[:4].tolist(),
                            "score": float(row[4])})
    return dataset, results


def configure(evaluator) -> None:
    """Our maxDets and area ranges on a pycocotools-style COCOeval."""
    evaluator.params.maxDets = list(COCO_MAX_DETS)
    evaluator.params.areaRng = [list(r) for r in AREA_RANGES.values()]
    evaluator.params.areaRngLbl = list(AREA_RANGES)


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
    for label in ("tiny", "small", "medium", "large"):
        stats[f"AP_{label}"] = _valid_mean(precision[:, :, :, area[label], last])
    for k, m in enumerate(params.maxDets):
        stats[f"AR{m}"] = _valid_mean(recall[:, :, area["all"], k])
    # mmdet's CocoMetric number (COCO's 100 detections per image), under mmdet's names
    at100 = list(params.maxDets).index(100)
    stats["bbox_mAP"] = _valid_mean(precision[:, :, :, area["all"], at100])
    stats["bbox_mAP_50"] = _valid_mean(precision[t50, :, :, area["all"], at100])
    return stats


def classwise_from_eval(eval_result: dict, params) -> dict[str, dict[str, float]]:
    """AP, AP50 and AR500 per class (percent, NaN without gt)."""
    precision, recall = eval_result["precision"], eval_result["recall"]
    out = {}
    for k, name in enumerate(CLASSES):
        p = precision[:, :, k, 0, -1]
        r = recall[:, k, 0, -1]
        out[name] = {"AP": _valid_mean(p), "AP50": _valid_mean(p[0]), "AR500": _valid_mean(r)}
    return out


def _valid_mean(values: np.ndarray) -> float:
    values = values[values > -1]
    return float(np.mean(values) * 100) if values.size else float("nan")


def run_coco_eval(dataset: dict, results: list[dict], iou_thresholds: Sequence[float] | None = None):
    """An evaluated and accumulated faster-coco-eval COCOeval with our maxDets and
    area ranges (and IoU thresholds when given)."""
    from faster_coco_eval import COCO, COCOeval_faster

    gt = COCO(dataset)
    evaluator = COCOeval_faster(gt, gt.loadRes(results) if results else COCO(), "bbox",
                                print_function=lambda *a, **k: None)
    configure(evaluator)
    if iou_thresholds is not None:
        evaluator.params.iouThrs = np.asarray(iou_thresholds, dtype=np.float64)
    evaluator.evaluate()
    evaluator.accumulate()
    return evaluator


def evaluate_coco(images: Sequence[ImageRows]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """COCO-view stats and per-class AP of ``images`` with faster-coco-eval."""
    evaluator = run_coco_eval(*coco_view_datasets(images))
    return stats_from_eval(evaluator.eval, evaluator.params), classwise_from_eval(evaluator.eval, evaluator.params)
