"""The COCO view: ignored regions dropped, score-0 gt as crowd, maxDets (1, 10, 100, 500),
area ranges with "tiny"; numbers read from the precision / recall arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from afmcli.evaluation.coco_view import COCO_STAT_NAMES, coco_view_datasets, evaluate_coco
from afmcli.evaluation.visdrone import ImageRows


def rows(*r):
    return np.asarray(r, dtype=float).reshape(-1, 8)


@pytest.fixture
def hand_case():
    """Pedestrians: A (10, 10, 10, 10) area 100 (tiny), B (50, 50, 40, 40) area 1600
    (medium), crowd C (0, 60, 30, 30) (score 0); D (70, 0, 10, 10) lies in the ignored
    region (60, 0, 40, 30) and is dropped, as is the detection on it.
    Detections: dC (0, 60, 10, 10, 0.95) inside C, dA exact (0.9), dB (50, 50, 40, 30,
    0.8): IoU 1200 / 1600 = 0.75."""
    gt = rows([10, 10, 10, 10, 1, 1, 0, 0], [50, 50, 40, 40, 1, 1, 0, 0], [0, 60, 30, 30, 0, 1, 0, 0],
              [70, 0, 10, 10, 1, 1, 0, 0], [60, 0, 40, 30, 0, 0, 0, 0])
    det = rows([0, 60, 10, 10, 0.95, 1, -1, -1], [10, 10, 10, 10, 0.9, 1, -1, -1],
               [50, 50, 40, 30, 0.8, 1, -1, -1], [70, 0, 10, 10, 0.99, 1, -1, -1])
    return [ImageRows("img", 100, 100, gt, det)]


def test_dataset_applies_the_toolkit_filter_and_crowd(hand_case):
    dataset, results = coco_view_datasets(hand_case)
    assert [a["bbox"] for a in dataset["annotations"]] == [[10, 10, 10, 10], [50, 50, 40, 40], [0, 60, 30, 30]]
    assert [a["iscrowd"] for a in dataset["annotations"]] == [0, 0, 1]
    assert [r["score"] for r in results] == [0.95, 0.9, 0.8]


def test_hand_worked_stats(hand_case):
    """Two gt count (C is crowd, dC matches it and is ignored).
    AP: at IoU <= 0.75 (6 of 10) dA, dB both TP -> 1; above, dB is FP: precision 1
    up to recall 0.5 -> 51 of 101 recall points -> 51/101. AP = (6 + 4 * 51/101) / 10.
    AP50 = AP75 = 100 (0.75 >= 0.75 matches).
    tiny / small (A only): dB is outside the range, unmatched or on out-of-range B:
    ignored -> 100. medium (B only): 1 at IoU <= 0.75, 0 above -> 60. large: no gt -> NaN.
    AR1: the best-scored detection is dC (crowd) -> 0. AR10 = AR100 = AR500 =
    (6 * 1 + 4 * 0.5) / 10 = 80."""
    stats, per_class = evaluate_coco(hand_case)
    assert list(stats) == list(COCO_STAT_NAMES)
    assert stats["AP"] == pytest.approx((6 + 4 * 51 / 101) / 10 * 100)
    assert stats["AP50"] == pytest.approx(100) and stats["AP75"] == pytest.approx(100)
    assert stats["AP_tiny"] == pytest.approx(100) and stats["AP_small"] == pytest.approx(100)
    assert stats["AP_medium"] == pytest.approx(60) and math.isnan(stats["AP_large"])
    assert stats["AR1"] == 0.0
    assert stats["AR10"] == stats["AR100"] == stats["AR500"] == pytest.approx(80)
    assert per_class["pedestrian"]["AP50"] == pytest.approx(100) and math.isnan(per_class["car"]["AP"])


def test_maxdets_500_is_not_capped_at_100():
    """One image, 150 cars found exactly, 10 per row (boxes 5 x 5, 10 px apart), scores
    falling: recall at 100 detections is 100/150, at 500 it is 1 (summarize()'s
    fixed indices would have reported the 100 value as the last one)."""
    boxes = [[10 * (i % 10), 10 * (i // 10), 5, 5] for i in range(150)]
    gt = rows(*[b + [1, 4, 0, 0] for b in boxes])
    det = rows(*[b + [1 - i / 1000, 4, -1, -1] for i, b in enumerate(boxes)])
    stats, _ = evaluate_coco([ImageRows("a", 200, 200, gt, det)])
    assert stats["AR100"] == pytest.approx(100 * 100 / 150)
    assert stats["AR500"] == pytest.approx(100) and stats["AP"] == pytest.approx(100)


def test_no_detections_gives_zeros(hand_case):
    empty = [ImageRows("img", 100, 100, hand_case[0].gt, np.zeros((0, 8)))]
    stats, _ = evaluate_coco(empty)
    assert stats["AP"] == 0.0 and stats["AR500"] == 0.0 and math.isnan(stats["AP_large"])
