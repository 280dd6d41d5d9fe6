"""Error analysis (COCO view) against a case worked out by hand.

One 100x100 image. Objects (x, y, w, h): car A (10,10,20,20), van B (50,10,20,20),
pedestrian C (10,60,10,10) (tiny), bus D (60,60,20,20); a crowd (score-0)
pedestrian E (40,80,10,10); an ignored region (0,90,10,10).
Detections, by score:
  car 0.99 inside the ignored region      dropped by the COCO view
  car 0.95 on B                           confused with a similar class
  car 0.90 at (85,85,10,10)               background
  car 0.80 on A                           hit
  pedestrian 0.75 on A                    confused with another class
  pedestrian 0.70 at (12,60,10,10)        IoU 80/120 = 0.67 with C: hit at 0.5, not at 0.75
  bus 0.65 at (70,60,20,20)               IoU 200/600 = 0.33 with D: a localisation error
  people 0.60 on E                        on a crowd pedestrian: left out of the class-agnostic
                                          confusion matrix, a false positive per class
  pedestrian 0.55 on E                    on a crowd object of its class: neither hit nor FP
  bus 0.20 on D                           hit, below the 0.3 score threshold
Per class, COCO's interpolated precision is flat (one object each), so AP is the
precision at full recall (0 when never reached):
  car: FP FP TP -> 1/3 at C75, C50, Loc; Sim and Oth ignore the car on B -> FP TP -> 1/2;
       BG removes the background FP -> 1.
  van: never detected -> 0 up to BG; FN -> 1.
  pedestrian: C75 FP FP -> 0; C50 FP TP -> 1/2 (Loc, Sim the same: A is no similar class);
       Oth ignores the pedestrian on A -> 1.
  bus: C75, C50 FP TP -> 1/2; Loc TP (IoU 0.33) then the 0.20 duplicate FP -> 1.
The mean over the four classes with objects (people has none) gives the overall row.
"""

import numpy as np
import pytest

from afmcli.data.visdrone_format import CLASSES
from afmcli.evaluation.analysis import STEPS, analyse
from afmcli.evaluation.coco_view import evaluate_coco
from afmcli.evaluation.visdrone import ImageRows

CAR, VAN, PED, PEOPLE, BUS = 4, 5, 1, 2, 9
GT = [[10, 10, 20, 20, 1, CAR, 0, 0], [50, 10, 20, 20, 1, VAN, 0, 0], [10, 60, 10, 10, 1, PED, 0, 0],
      [60, 60, 20, 20, 1, BUS, 0, 0], [40, 80, 10, 10, 0, PED, 0, 0], [0, 90, 10, 10, 0, 0, 0, 0]]
DET = [[1, 91, 8, 8, 0.99, CAR], [50, 10, 20, 20, 0.95, CAR], [85, 85, 10, 10, 0.90, CAR],
       [10, 10, 20, 20, 0.80, CAR], [10, 10, 20, 20, 0.75, PED], [12, 60, 10, 10, 0.70, PED],
       [70, 60, 20, 20, 0.65, BUS], [40, 80, 10, 10, 0.60, PEOPLE],
       [40, 80, 10, 10, 0.55, PED], [60, 60, 20, 20, 0.20, BUS]]
IMAGES = [ImageRows("img", 100, 100, np.array(GT, float), np.array(DET, float))]

THIRD = 100 / 3
PER_CLASS = {  # C75, C50, Loc, Sim, Oth, BG, FN
    "car": [THIRD, THIRD, THIRD, 50, 50, 100, 100],
    "van": [0, 0, 0, 0, 0, 0, 100],
    "pedestrian": [0, 50, 50, 50, 100, 100, 100],
    "bus": [50, 50, 100, 100, 100, 100, 100],
}


@pytest.fixture(scope="module")
def analysis():
    return analyse(IMAGES, score_thr=0.3)


def test_error_decomposition_per_class_by_hand(analysis):
    d = analysis.decomposition
    for cls, expected in PER_CLASS.items():
        assert [d.ap(s, "all", cls) for s in STEPS] == pytest.approx(expected), cls
    assert np.isnan(d.ap("C50", "all", "people"))  # no objects: left out of the mean


def test_error_decomposition_overall_is_the_mean_of_the_classes(analysis):
    overall = analysis.decomposition.table()["all"]
    assert [overall[s] for s in STEPS] == pytest.approx([125 / 6, 100 / 3, 275 / 6, 50, 62.5, 75, 100])
    # C50 is the COCO view's AP50.
    assert overall["C50"] == pytest.approx(evaluate_coco(IMAGES)[0]["AP50"])


def test_error_decomposition_per_size_range(analysis):
    table = analysis.decomposition.table()
    # Only C is tiny; the pedestrian on A (400 px) is outside the range, hence ignored.
    assert [table["tiny"][s] for s in STEPS] == pytest.approx([0, 100, 100, 100, 100, 100, 100])
    assert table["small"] == pytest.approx(table["all"])  # every object is below 32x32
    assert all(np.isnan(v) for v in table["medium"].values())


def test_confusion_matrix_by_hand(analysis):
    """Class-agnostic matching at IoU 0.5, scores >= 0.3, best score first: the car on B
    takes B, the car on A takes A, the pedestrian on A finds A taken (background), the
    bus at IoU 0.33 matches nothing; D and nothing else is missed; E and the people on
    it are left out."""
    i = {name: k for k, name in enumerate(CLASSES)}
    bg = len(CLASSES)
    expected = np.zeros((11, 11), int)
    expected[i["car"], i["car"]] = 1
    expected[i["van"], i["car"]] = 1
    expected[i["pedestrian"], i["pedestrian"]] = 1
    expected[i["bus"], bg] = 1
    expected[bg, i["car"]] = 1
    expected[bg, i["pedestrian"]] = 1
    expected[bg, i["bus"]] = 1
    np.testing.assert_array_equal(analysis.confusion, expected)


def test_image_matches_by_hand(analysis):
    (m,) = analysis.images
    assert m.row() == {"image": "img", "objects": 4, "TP": 2, "FP": 5, "FN": 2, "FN_tiny": 0}
    assert sorted(m.tp[:, 4]) == [0.7, 0.8]
    assert sorted(m.fp[:, 4]) == [0.6, 0.65, 0.75, 0.9, 0.95]
    np.testing.assert_array_equal(m.fn[np.argsort(m.fn[:, 4])], [[50, 10, 70, 30, VAN], [60, 60, 80, 80, BUS]])
    np.testing.assert_array_equal(m.ignored, [[0, 90, 10, 100], [40, 80, 50, 90]])


def test_worst_images_and_json():
    other = ImageRows("b_other", 100, 100, np.array([[0, 0, 10, 10, 1, CAR, 0, 0]] * 1, float), np.zeros((0, 6)))
    a = analyse([*IMAGES, other], score_thr=0.3)
    assert [m.name for m in a.worst_images(2)] == ["img", "b_other"]  # 2 missed, then 1
    assert a.images[1].missed_tiny == 1  # 10x10 < 16x16
    out = a.to_json()
    assert out["confusion_matrix"]["labels"][-1] == "background"
    assert out["error_decomposition"]["overall"]["medium"]["C50"] is None
    assert out["images"][0]["image"] == "img"


def test_no_detections_at_all():
    a = analyse([ImageRows("x", 50, 50, np.array([[5, 5, 10, 10, 1, CAR, 0, 0]], float), np.zeros((0, 6)))])
    assert a.decomposition.ap("C50") == 0 and a.decomposition.ap("FN") == 100
    assert a.confusion[CLASSES.index("car"), -1] == 1 and a.confusion.sum() == 1


def _random_images(n: int, seed: int) -> list[ImageRows]:
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        k = 40
        wh = rng.uniform(4, 80, (k, 2))
        xy = rng.uniform(0, 400, (k, 2))
        gt = np.c_[np.round(xy), np.round(wh), (rng.random(k) > 0.1), rng.integers(1, 11, k), np.zeros((k, 2))]
        near = gt[rng.random(k) < 0.8]
        det = np.c_[near[:, :4] + rng.normal(0, 4, (len(near), 4)), rng.random(len(near)),
                    np.where(rng.random(len(near)) < 0.3, rng.integers(1, 11, len(near)), near[:, 5])]
        bg = np.c_[rng.uniform(0, 400, (20, 2)), rng.uniform(4, 60, (20, 2)), rng.random(20), rng.integers(1, 11, 20)]
        det = np.r_[det, bg]
        det[:, 2:4] = np.maximum(det[:, 2:4], 1)
        images.append(ImageRows(f"r{i}", 480, 480, gt, det))
    return images


def test_one_evaluation_for_all_classes_equals_one_per_class():
    """Sim and Oth as COCO's analyze() computes them, class by class (SAHI's
    coco_error_analysis): the objects of the other classes of the group relabelled
    as crowd regions of the class, only that class's detections."""
    from afmcli.evaluation.analysis import LOC_IOU, SIMILAR_CLASSES, error_decomposition
    from afmcli.evaluation.coco_view import coco_view_datasets, run_coco_eval
    from afmcli.data.visdrone_format import CATEGORY_IDS

    dataset, results = coco_view_datasets(_random_images(4, seed=7))
    d = error_decomposition(dataset, results)
    for step, groups in (("Sim", SIMILAR_CLASSES), ("Oth", (CLASSES,))):
        for k, (cid, name) in enumerate(zip(CATEGORY_IDS, CLASSES)):
            group = next(g for g in groups if name in g)
            others = {CATEGORY_IDS[CLASSES.index(n)] for n in group} - {cid}
            gt = {**dataset, "annotations": [
                {**a, "category_id": cid, "iscrowd": 1} if a["category_id"] in others else a
                for a in dataset["annotations"]]}
            mine = [r for r in results if r["category_id"] == cid]
            per_class = run_coco_eval(gt, mine, (LOC_IOU,)).eval["precision"][0, :, k, :, -1]
            np.testing.assert_array_equal(d.precision[STEPS.index(step), :, k, :], per_class, err_msg=f"{step} {name}")
