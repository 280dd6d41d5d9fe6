"""Fusion methods on hand-worked boxes, and against reference implementations."""

import numpy as np
import pytest

from afmcli.errors import AfmError
from afmcli.detections import Detections
from afmcli.inference.fusion import (fuse_image, fuse_predictions, greedy_nmm, nms, overlap,
                                     soft_nms, spatial_groups, wbf)

A = [0, 0, 10, 10]
B = [1, 0, 11, 10]      # IoU with A = 90 / 110
D = [50, 50, 60, 60]    # far from everything


def dets(rows):
    """rows: (x1, y1, x2, y2, score, label)."""
    a = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
    return Detections(a[:, :4], a[:, 4], a[:, 5].astype(np.int64))


def as_rows(d: Detections):
    return np.column_stack([d.boxes, d.scores, d.labels]).round(6).tolist()


def test_overlap_iou_and_ios():
    np.testing.assert_allclose(overlap(np.array(A, float), np.array([B, D, [2, 2, 6, 6]], float), "iou"),
                               [90 / 110, 0, 16 / 100])
    np.testing.assert_allclose(overlap(np.array(A, float), np.array([B, D, [2, 2, 6, 6]], float), "ios"),
                               [90 / 100, 0, 1])


def test_nms_class_aware_and_agnostic():
    d = dets([A + [0.9, 1], B + [0.8, 1], B + [0.7, 2], D + [0.5, 1]])
    assert as_rows(nms(d, 0.6, "iou", False).top(None)) == [A + [0.9, 1], B + [0.7, 2], D + [0.5, 1]]
    assert as_rows(nms(d, 0.6, "iou", True).top(None)) == [A + [0.9, 1], D + [0.5, 1]]
    # IoU 0.818 is under 0.9: nothing suppressed.
    assert len(nms(d, 0.9, "iou", False)) == 4


def test_nms_ios_suppresses_a_box_inside_another():
    inner = [2, 2, 6, 6]  # IoU 0.16 with A, IoS 1
    d = dets([A + [0.9, 1], inner + [0.8, 1]])
    assert len(nms(d, 0.6, "iou", False)) == 2
    assert as_rows(nms(d, 0.6, "ios", False)) == [A + [0.9, 1]]


def test_soft_nms_linear_decay():
    d = dets([A + [0.9, 1], B + [0.8, 1], D + [0.5, 1]])
    out = soft_nms(d, 0.6, False).top(None)
    np.testing.assert_allclose(out.scores, [0.9, 0.5, 0.8 * (1 - 90 / 110)], rtol=1e-6)
    np.testing.assert_array_equal(out.boxes, [A, D, B])


def test_greedy_nmm_merges_into_enclosing_box():
    d = dets([A + [0.9, 1], B + [0.8, 1], D + [0.5, 1], B + [0.7, 2]])
    assert as_rows(greedy_nmm(d, 0.6, "iou", False).top(None)) == \
        [[0, 0, 11, 10, 0.9, 1], B + [0.7, 2], D + [0.5, 1]]
    assert as_rows(greedy_nmm(d, 0.6, "iou", True).top(None)) == [[0, 0, 11, 10, 0.9, 1], D + [0.5, 1]]


def test_greedy_nmm_rechecks_members_against_the_grown_box():
    # R and L both match A (IoU 60/140 = 0.43 >= 0.4); after A absorbs R, the grown
    # box [0, 0, 14, 10] has IoU 60/180 with L: L is neither merged nor kept (SAHI).
    right, left = [4, 0, 14, 10], [-4, 0, 6, 10]
    d = dets([A + [0.9, 1], right + [0.8, 1], left + [0.7, 1]])
    assert as_rows(greedy_nmm(d, 0.4, "iou", False)) == [[0, 0, 14, 10, 0.9, 1]]


def test_wbf_hand_worked():
    s0 = dets([A + [0.9, 1], D + [0.5, 1]])
    s1 = dets([[2, 0, 12, 10, 0.6, 1]])  # IoU 80/120 with A
    out = wbf([s0, s1], 0.55, None, (100, 100)).top(None)
    # Score-weighted coordinates; avg score times min(models, boxes) / models.
    np.testing.assert_allclose(out.boxes, [[0.8, 0, 10.8, 10], D], atol=1e-6)
    np.testing.assert_allclose(out.scores, [0.75, 0.25], atol=1e-6)
    np.testing.assert_array_equal(out.labels, [1, 1])


def test_weights_scale_scores_relative_to_the_largest():
    s0, s1 = dets([A + [0.8, 1]]), dets([D + [0.8, 1]])
    out = fuse_image([s0, s1], "nms", weights=[2.0, 1.0])
    np.testing.assert_allclose(out.scores, [0.8, 0.4])


def test_fuse_image_sorts_and_caps():
    d = dets([[i * 20, 0, i * 20 + 10, 10, 0.1 + i / 100, 1] for i in range(10)])
    out = fuse_image([d], "greedy-nmm", max_per_img=3)
    np.testing.assert_allclose(out.scores, [0.19, 0.18, 0.17])


def test_fuse_predictions_unions_image_ids():
    out = fuse_predictions([{1: dets([A + [0.9, 1]])}, {2: dets([D + [0.5, 3]])}])
    assert sorted(out) == [1, 2] and len(out[1]) == 1 and out[2].labels.tolist() == [3]


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="wbf", class_agnostic=True), "not supported"),
    (dict(method="soft-nms", match="ios"), "^match ios works"),  # the parameter, not the flag
    (dict(method="bogus"), "unknown fusion method"),
    (dict(iou=0.0), "(0, 1]"),
    (dict(weights=[1.0, 2.0]), "2 weights given for 1"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(AfmError, match=message.replace("(", r"\(").replace("]", r"\]")):
        fuse_predictions([{1: dets([A + [0.9, 1]])}], **kwargs)


# ---- properties and reference implementations ---------------------------------

def random_dets(seed, n=300, classes=3, size=200):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(2, 30, (n, 2))
    boxes = np.column_stack([xy, np.minimum(xy + wh, size + 30)])
    scores = rng.permutation(np.linspace(0.02, 0.99, n))  # distinct: no tie-breaking differences
    return Detections(boxes, scores, rng.integers(1, classes + 1, n))


def reference_nms(boxes, scores, thr):
    """Textbook greedy NMS in plain numpy (suppresses IoU > thr)."""
    order = list(np.argsort(-scores))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        order = [j for j in order if overlap(boxes[i], boxes[j:j + 1], "iou")[0] <= thr]
    return sorted(keep)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spatial_groups_are_an_exact_partition(seed):
    d = random_dets(seed, n=400, size=600)
    groups = spatial_groups(d.boxes)
    assert len(groups) > 1
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(d)))
    label = np.empty(len(d), int)
    for g, idx in enumerate(groups):
        label[idx] = g
    for i in range(len(d)):
        touching = overlap(d.boxes[i], d.boxes, "iou") > 0
        assert np.all(label[touching] == label[i])


@pytest.mark.parametrize("seed", [0, 1])
def test_nms_matches_numpy_reference_and_ensemble_boxes(seed):
    from ensemble_boxes import nms as eb_nms

    d = random_dets(seed)
    out = nms(d, 0.5, "iou", class_agnostic=False)
    for c in np.unique(d.labels):
        idx = np.flatnonzero(d.labels == c)
        expected = d.boxes[idx][reference_nms(d.boxes[idx], d.scores[idx], 0.5)]
        got = out.boxes[out.labels == c]
        assert sorted(map(tuple, got)) == sorted(map(tuple, expected))
    boxes, scores, labels = eb_nms([d.boxes / 250], [d.scores], [d.labels], iou_thr=0.5)
    assert len(boxes) == len(out)
    np.testing.assert_allclose(np.sort(scores), np.sort(out.scores))


def sahi_predictions(d: Detections):
    from sahi.prediction import ObjectPrediction

    return [ObjectPrediction(bbox=b.tolist(), category_id=int(c), category_name=str(c), score=float(s),
                             shift_amount=[0, 0]) for b, s, c in zip(d.boxes, d.scores, d.labels)]


def sahi_rows(preds):
    return sorted((*[round(float(v), 5) for v in p.bbox.to_xyxy()], round(p.score.value, 6), p.category.id)
                  for p in preds)


@pytest.mark.parametrize("match", ["iou", "ios"])
@pytest.mark.parametrize("agnostic", [False, True])
def test_greedy_nmm_and_nms_match_sahi(match, agnostic):
    from sahi.postprocess.combine import GreedyNMMPostprocess, NMSPostprocess

    d = random_dets(7)
    for ours, theirs in ((greedy_nmm, GreedyNMMPostprocess), (nms, NMSPostprocess)):
        expected = sahi_rows(theirs(0.5, match.upper(), agnostic)(sahi_predictions(d)))
        got = sahi_rows(sahi_predictions(ours(d, 0.5, match, agnostic)))
        if ours is nms and match == "iou":
            assert len(got) == len(expected)  # mmcv suppresses > thr, SAHI >= thr: equal without ties
        assert got == expected


@pytest.mark.parametrize("seed", [3, 4])
def test_wbf_matches_ensemble_boxes_on_the_whole_set(seed):
    from ensemble_boxes import weighted_boxes_fusion

    s0, s1 = random_dets(seed, n=150, size=300), random_dets(seed + 10, n=150, size=300)
    size = (330.0, 330.0)
    out = wbf([s0, s1], 0.55, [2, 1], size).top(None)
    boxes, scores, labels = weighted_boxes_fusion(
        [s0.boxes / 330, s1.boxes / 330], [s0.scores, s1.scores], [s0.labels, s1.labels],
        weights=[2, 1], iou_thr=0.55, skip_box_thr=0.0)
    ref = Detections(boxes * 330, scores, labels.astype(int)).top(None)
    assert len(out) == len(ref)
    np.testing.assert_allclose(out.scores, ref.scores, rtol=1e-6)
    np.testing.assert_allclose(out.boxes, ref.boxes, atol=1e-4)


def test_results_round_trip_and_streamed_json(tmp_path):
    import json

    from afmcli.data.coco_check import check_coco_results
    from afmcli.detections import detections_to_results, results_by_image
    from afmcli.inference.writers.coco_json import write_results_json

    d = random_dets(5, n=20)
    back = results_by_image(check_coco_results(detections_to_results(3, d), "x.json"))[3]
    np.testing.assert_allclose(back.boxes, d.boxes, atol=1e-9)
    np.testing.assert_array_equal(back.scores, d.scores)
    np.testing.assert_array_equal(back.labels, d.labels)
    write_results_json(tmp_path / "r.json", {3: d, 4: Detections.empty(), 5: d.take([0])})
    assert json.loads((tmp_path / "r.json").read_text()) == \
        detections_to_results(3, d) + detections_to_results(5, d.take([0]))


def test_detections_to_visdrone_rows_sorted_capped_xywh():
    """xyxy -> x, y, w, h; best score first with ties in input order; cut at the limit;
    category in column 6 and -1 in the last two (a VisDrone result line)."""
    from afmcli.detections import detections_to_visdrone_rows

    d = Detections(np.array([[0, 0, 10, 20], [5, 5, 6, 8], [1, 2, 4, 6], [2, 2, 3, 3]], dtype=float),
                   np.array([0.5, 0.9, 0.5, 0.1]), np.array([4, 1, 7, 2]))
    rows = detections_to_visdrone_rows(d, 3)
    assert rows.tolist() == [[5, 5, 1, 3, 0.9, 1, -1, -1],
                             [0, 0, 10, 20, 0.5, 4, -1, -1],
                             [1, 2, 3, 4, 0.5, 7, -1, -1]]
    assert detections_to_visdrone_rows(Detections.empty(), 500).shape == (0, 8)
