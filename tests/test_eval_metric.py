"""VisDroneMetric: both views from mmdet-style predictions, keys for save_best."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from afmcli.data.coco import build_coco, visdrone_rows_to_labels
from afmcli.evaluation.metric import VisDroneMetric, prediction_rows
from afmcli.evaluation.visdrone import ImageRows, evaluate_visdrone

GT = {  # file stem -> (width, height, VisDrone rows)
    "b": (100, 80, [[10, 10, 10, 20, 1, 1, 0, 0], [40, 40, 20, 10, 1, 4, 0, 0], [70, 0, 30, 30, 0, 0, 0, 0]]),
    "a": (120, 90, [[5, 5, 30, 20, 1, 4, 0, 0], [60, 50, 20, 20, 0, 4, 0, 0], [100, 70, 30, 30, 1, 9, 0, 0]]),
}


@pytest.fixture
def ann_file(tmp_path):
    records = [{"file_name": f"{stem}.jpg", "width": w, "height": h} for stem, (w, h, _) in GT.items()]
    labels = [visdrone_rows_to_labels(np.array(r, float), w, h) for w, h, r in GT.values()]
    path = tmp_path / "val.json"
    path.write_text(json.dumps(build_coco(records, labels)))
    return path


def sample(img_id, boxes_xyxy, scores, labels):
    return {"img_id": img_id, "pred_instances": {"bboxes": torch.tensor(boxes_xyxy, dtype=torch.float32),
                                                 "scores": torch.tensor(scores), "labels": torch.tensor(labels)}}


def test_prediction_rows_sort_cap_and_convert():
    """xyxy -> xywh, label 0..9 -> category 1..10, best score first (stable), 500 kept."""
    boxes = np.tile([[1.0, 2.0, 11.0, 22.0]], (600, 1))
    scores = np.r_[np.full(599, 0.1), 0.9]
    rows = prediction_rows(boxes, scores, np.full(600, 3))
    assert rows.shape == (500, 8)
    assert rows[0].tolist() == [1, 2, 10, 20, 0.9, 4, -1, -1] and rows[1, 4] == 0.1


def test_metric_gives_both_views_with_prefixed_keys(ann_file):
    """Image 1 ("b"): pedestrian found, car missed; image 2 ("a"): car found (the
    clipped bus is unclipped again from the json). Same numbers as evaluating the
    rows directly, and the keys save_best uses."""
    metric = VisDroneMetric(ann_file=str(ann_file))
    metric.process({}, [sample(1, [[10, 10, 20, 30], [0, 0, 5, 5]], [0.9, 0.3], [0, 3])])
    metric.process({}, [sample(2, [[5, 5, 35, 25]], [0.8], [3])])
    out = metric.compute_metrics(metric.results)
    assert {"visdrone/AP", "visdrone/AP50", "visdrone/AR500", "coco/AP50", "coco/AP_tiny"} <= set(out)
    dets = {"b": [[10, 10, 10, 20, 0.9, 1, -1, -1], [0, 0, 5, 5, 0.3, 4, -1, -1]],
            "a": [[5, 5, 30, 20, 0.8, 4, -1, -1]]}
    direct = evaluate_visdrone([ImageRows(s, GT[s][1], GT[s][0], np.array(GT[s][2], float),
                                          np.array(dets[s], float)) for s in ("a", "b")])
    assert {k: out[f"visdrone/{k}"] for k in direct.stats} == direct.stats
    # pedestrian: 1 image, AP 100; car: 2 images; bus (unclipped 100,70,30,30): 1 image, AP 0.
    # car gt: b's (missed), a's (found) and a's score-0 one: 3 rows, 1 TP ranked first
    # -> AP 100 / 3. AP50 = (100 + 2 * 100/3 + 0) / 4.
    assert out["visdrone/AP50"] == pytest.approx((100 + 2 * 100 / 3) / 4)


def test_metric_through_mmengine_evaluator(ann_file):
    """Built from mmdet's registry like a config (default_scope='mmdet') does."""
    from mmengine.evaluator import Evaluator

    import afmcli.evaluation.metric  # noqa: F401  (registers VisDroneMetric)

    evaluator = Evaluator(dict(type="VisDroneMetric", _scope_="mmdet", ann_file=str(ann_file), view="coco",
                                prefix="val"))
    evaluator.process([sample(2, [[5, 5, 35, 25]], [0.8], [3])])
    out = evaluator.evaluate(1)
    assert set(out) == {f"val/coco/{k}" for k in ("AP", "AP50", "AP75", "AP_tiny", "AP_small", "AP_medium",
                                                   "AP_large", "AR1", "AR10", "AR100", "AR500",
                                                   "bbox_mAP", "bbox_mAP_50")}
    assert 0 < out["val/coco/AP50"] < 100


def test_bbox_map_counts_100_detections_per_image(ann_file):
    """mmdet's coco/bbox_mAP keeps the best 100 detections per image and class, our coco/AP
    500: a true positive ranked 120th counts in AP only."""
    metric = VisDroneMetric(ann_file=str(ann_file), view="coco")
    decoys = [[40 + i % 15, 26 + i // 15, 42 + i % 15, 28 + i // 15] for i in range(119)]  # no object there
    metric.process({}, [sample(2, [*decoys, [5, 5, 35, 25]], [0.9] * 119 + [0.5], [3] * 120)])
    out = metric.compute_metrics(metric.results)
    assert out["coco/AP50"] > 0 and out["coco/bbox_mAP_50"] == 0 and out["coco/bbox_mAP"] == 0
    metric.results = []
    metric.process({}, [sample(2, [[5, 5, 35, 25]], [0.8], [3])])
    out = metric.compute_metrics(metric.results)
    assert out["coco/bbox_mAP"] == out["coco/AP"] > 0  # under 100 detections the two agree


def test_bad_view(ann_file):
    from afmcli.errors import AfmError

    with pytest.raises(AfmError, match="view"):
        VisDroneMetric(ann_file=str(ann_file), view="voc")


def _own_table_json(tmp_path):
    """One 100x80 image, categories 0 human (box 10,10,10x20) and 1 vehicle (40,40,20x10)."""
    coco = {"images": [{"id": 3, "file_name": "x.jpg", "width": 100, "height": 80}],
            "categories": [{"id": 0, "name": "human"}, {"id": 1, "name": "vehicle"}],
            "annotations": [{"id": 1, "image_id": 3, "category_id": 0, "bbox": [10, 10, 10, 20], "iscrowd": 0},
                            {"id": 2, "image_id": 3, "category_id": 1, "bbox": [40, 40, 20, 10], "iscrowd": 0}]}
    path = tmp_path / "own.json"
    path.write_text(json.dumps(coco))
    return path


def test_metric_on_another_category_table_gives_the_coco_view(tmp_path):
    """A json of its own table (0 human, 1 vehicle; model labels 0, 1 in that order): the COCO
    view's keys only (the toolkit's view scores VisDrone's ids), exact detections score 100."""
    path = _own_table_json(tmp_path)
    metric = VisDroneMetric(ann_file=str(path))
    metric.process({}, [sample(3, [[10, 10, 20, 30], [40, 40, 60, 50]], [0.9, 0.8], [0, 1])])
    out = metric.compute_metrics(metric.results)
    assert not any(k.startswith("visdrone/") for k in out)
    assert out["coco/AP"] == pytest.approx(100) and out["coco/AP50"] == pytest.approx(100)


def test_classwise_names_each_class_of_any_table(tmp_path):
    """classwise=True (what `afm train --data` sets): per class by name. human found exactly
    (AP 100), vehicle's detection in the wrong place (IoU 0: AP 0); mean AP 50."""
    path = _own_table_json(tmp_path)
    metric = VisDroneMetric(ann_file=str(path), classwise=True)
    metric.process({}, [sample(3, [[10, 10, 20, 30], [70, 60, 90, 70]], [0.9, 0.8], [0, 1])])
    out = metric.compute_metrics(metric.results)
    assert {k for k in out if k.count("_AP")} == {"coco/human_AP", "coco/human_AP50", "coco/vehicle_AP",
                                                  "coco/vehicle_AP50"}
    assert out["coco/human_AP50"] == pytest.approx(100) and out["coco/vehicle_AP50"] == pytest.approx(0)
    assert out["coco/AP50"] == pytest.approx(50)
