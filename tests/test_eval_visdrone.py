"""The VisDrone view, rule by rule, on hand-worked cases; then against the literal
MATLAB transcription (tests/reference_visdrone.py) on random cases.

Box rows are VisDrone rows: x, y, w, h, score, category, truncation, occlusion.
Class 1 = pedestrian, 4 = car, 11 = others, 0 = ignored region.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from afmcli.errors import AfmError
from afmcli.evaluation.visdrone import (IOU_THRESHOLDS, ImageRows, drop_objects_in_ignored,
                                        evaluate_visdrone, ignored_cover, matlab_round, round_percent,
                                        vocap)

sys.path.insert(0, str(Path(__file__).parent))
import reference_visdrone as reference  # noqa: E402


def gt(x, y, w, h, cat=4, score=1):
    return [x, y, w, h, score, cat, 0, 0]


def det(x, y, w, h, score, cat=4):
    return [x, y, w, h, score, cat, -1, -1]


def image(gts, dets, name="img", height=100, width=100):
    return ImageRows(name, height, width, np.asarray(gts, float).reshape(-1, 8),
                     np.asarray(dets, float).reshape(-1, 8))


def run(*images):
    """Ours, checked against the literal transcription on the same case."""
    assert_same_as_reference(list(images), (1, 10, 100, 500))
    return evaluate_visdrone(list(images))


# --- MATLAB arithmetic -----------------------------------------------------------------------

def test_thresholds_are_matlabs_symmetric_colon():
    """0.5:0.05:0.95 in MATLAB: elements 2..5 are a + k*d, 6..9 are b - k*d
    (b - 3*0.05 = 0.7999999999999999, b - 0.05 = 0.8999999999999999)."""
    assert IOU_THRESHOLDS.tolist() == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.7999999999999999, 0.85,
                                       0.8999999999999999, 0.95]


def test_round_half_away_from_zero():
    """MATLAB round: 0.5 -> 1, 2.5 -> 3 (not 2 as numpy), -0.5 -> -1, -2.5 -> -3;
    0.49999999999999994 (largest double below 0.5) -> 0 (floor(x + 0.5) would give 1)."""
    assert matlab_round([0.5, 2.5, -0.5, -2.5, 0.49999999999999994, 1.5, 3.0]).tolist() == \
        [1, 3, -1, -3, 0, 2, 3]
    assert round_percent(28.005) == 28.01 and round_percent(12.344999) == 12.34


def test_vocap_all_point_interpolation():
    """rec [0.5, 0.5, 1], prec [1, 0.5, 2/3]: envelope 1 up to recall 0.5, then 2/3:
    0.5 * 1 + 0.5 * 2/3 = 0.8333... (COCO's 101 points would give 0.835...)."""
    assert vocap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == 0.5 + 0.5 * (2 / 3)


# --- step 1: ignored regions -----------------------------------------------------------------

def test_ignored_cover_leaves_out_first_row_and_column():
    """Region (1, 1, 9, 9) paints rows 1..10, columns 1..10 (inclusive ends: 10 x 10).
    Box (6, 1, 10, 10): the toolkit sums rows y+1..y2 = 2..11 and columns
    x+1..x2 = 7..16, of which rows 2..10 x columns 7..10 are painted: 9 * 4 = 36,
    over w*h = 100 -> 0.36 < 0.5, kept. Counting the box's own first row and
    column would give 10 * 5 = 50 -> 0.5, dropped."""
    regions = np.array([[1, 1, 9, 9]], float)
    assert ignored_cover(np.array([[6, 1, 10, 10]], float), regions, 100, 100).tolist() == [0.36]
    kept, _ = drop_objects_in_ignored(np.array([gt(6, 1, 10, 10), gt(1, 1, 9, 9, cat=0, score=0)]),
                                      np.zeros((0, 8)), 100, 100)
    assert kept.tolist() == [gt(6, 1, 10, 10)]


def test_ignored_cover_divides_by_unclipped_area():
    """Region (91, 1, 20, 20) paints rows 1..21, columns 91..100 (clipped to W = 100).
    Box (95, 5, 20, 10) sticks out of the image: x2 = min(100, 115) = 100, y2 = 15;
    rows 6..15 x columns 96..100 all painted = 50, over the UNclipped 20 * 10 = 200
    -> 0.25, kept (over the clipped 5 * 10 it would be 1.0)."""
    cover = ignored_cover(np.array([[95, 5, 20, 10]], float), np.array([[91, 1, 20, 20]], float), 100, 100)
    assert cover.tolist() == [0.25]


def test_ignored_cover_rounds_half_away_from_zero():
    """Region (1, 1, 2, 99) paints columns 1..3. Box x = 2.5 rounds to 3 (MATLAB), so
    columns 4..5 are summed: 0 painted, kept. Rounding half to even (2) would sum
    columns 3..4 over rows 11..20: 10 / (2 * 10) = 0.5, dropped. A detection at
    x = -0.5 rounds to -1, clamped to 1: columns 2..3, 20 / 20 painted, dropped."""
    gts = [gt(2.5, 10, 2, 10), gt(1, 1, 2, 99, cat=0, score=0)]
    kept, dets = drop_objects_in_ignored(np.array(gts, float), np.array([det(-0.5, 10, 2, 10, 0.9)]), 100, 100)
    assert kept.tolist() == [gt(2.5, 10, 2, 10)]
    assert len(dets) == 0
    assert ignored_cover(np.array([[2.5, 10, 2, 10]]), np.array([[1, 1, 2, 99.0]]), 100, 100).tolist() == [0.0]


def test_objects_and_detections_in_ignored_regions_leave_the_evaluation():
    """Car gt A (60, 60, 10, 10) is fully inside region (50, 50, 40, 40): dropped, so
    the class has only gt B (5, 5, 10, 10). Detections: one on A (score 0.9,
    dropped too), one on B (0.8). Left: one TP of one gt -> AP 100 (not 50)."""
    res = run(image([gt(60, 60, 10, 10), gt(5, 5, 10, 10), gt(50, 50, 40, 40, cat=0, score=0)],
                    [det(60, 60, 10, 10, 0.9), det(5, 5, 10, 10, 0.8)]))
    assert res.stats["AP"] == 100.0
    assert res.gt_per_class[3] == 1


def test_non_integer_ignored_region_is_an_error():
    with pytest.raises(AfmError, match="non-integer"):
        run(image([gt(1.5, 1, 9, 9, cat=0, score=0), gt(20, 20, 5, 5)], []))


# --- step 3: matching ------------------------------------------------------------------------

def test_high_scoring_box_at_line_501_is_not_read():
    """Car gt (10, 10, 10, 10); 500 false positives (score 0.1, far away) then, on
    line 501, a perfect box with score 0.99. The toolkit reads lines 1..500 only:
    500 FP, recall 0 -> AP 0. Moved to line 500 it is read: ranked first, TP ->
    AP 100, but AR1/AR10/AR100 see lines 1, 1..10, 1..100 only (all FP) -> 0, AR500 100."""
    fps = [det(70, 70, 10, 10, 0.1)] * 500
    res = run(image([gt(10, 10, 10, 10)], fps + [det(10, 10, 10, 10, 0.99)]))
    assert res.stats["AP"] == 0.0 and res.stats["AR500"] == 0.0
    res = run(image([gt(10, 10, 10, 10)], fps[:499] + [det(10, 10, 10, 10, 0.99)]))
    assert res.stats == {"AP": 100.0, "AP50": 100.0, "AP75": 100.0, "AR1": 0.0, "AR10": 0.0,
                         "AR100": 0.0, "AR500": 100.0}


def test_detections_on_ignored_gt_count_as_neither():
    """Car gt N (0, 0, 10, 10) normal, I (50, 50, 20, 20) score 0 (ignored).
    d1 (0.9) inside I: intersection / own area = 1 -> ignored; d2 (0.8) on N -> TP;
    d3 (0.7) inside I as well (an ignored gt absorbs any number) -> ignored.
    Ranked: ignored, TP, ignored: tp = [0, 1, 1], fp = [0, 0, 0]; gt count 2
    (ignored included): rec = [0, .5, .5], prec = [0, 1, 1] -> AP = 0.5 * 1 = 50 at every
    threshold. AR1 reads line 1 only (d1, ignored) -> 0; AR10 -> 50."""
    res = run(image([gt(0, 0, 10, 10), gt(50, 50, 20, 20, score=0)],
                    [det(55, 55, 10, 10, 0.9), det(0, 0, 10, 10, 0.8), det(52, 52, 4, 4, 0.7)]))
    assert res.stats == {"AP": 50.0, "AP50": 50.0, "AP75": 50.0, "AR1": 0.0, "AR10": 50.0,
                         "AR100": 50.0, "AR500": 50.0}


def test_normal_gt_is_preferred_then_ignored_gt_takes_over():
    """Normal N (0, 0, 10, 10), ignored I (0, 0, 20, 20); one detection (0, 0, 10, 6):
    IoU with N = 60 / 100 = 0.6, intersection / own area with I = 60 / 60 = 1.
    At thresholds 0.5, 0.55, 0.6 (0.6 >= 0.6 matches) it takes N: TP, rec 1/2, AP 50.
    At 0.65 and up N fails, I absorbs it: no TP, no FP -> AP 0.
    AP = 3 * 50 / 10 = 15, AP50 = 50, AP75 = 0; AR500 = 15."""
    res = run(image([gt(0, 0, 10, 10), gt(0, 0, 20, 20, score=0)], [det(0, 0, 10, 6, 0.9)]))
    assert res.stats["AP"] == 15.0 and res.stats["AP50"] == 50.0 and res.stats["AP75"] == 0.0
    assert res.stats["AR500"] == 15.0


def test_tied_scores_keep_file_order():
    """Car gt (0, 0, 10, 10); line 1: d1 (0, 0, 10, 6) IoU 0.6, line 2: d2 the exact box,
    both score 0.5. Stable sort: d1 goes first. Thresholds <= 0.6 (3): d1 TP, d2 FP
    (gt used): ranked [TP, FP] -> AP 100. Thresholds >= 0.65 (7): d1 FP, d2 TP ->
    prec [0, .5] at rec [0, 1] -> AP 50. AP = (3 * 100 + 7 * 50) / 10 = 65
    (an unstable sort that put d2 first would give 100)."""
    res = run(image([gt(0, 0, 10, 10)], [det(0, 0, 10, 6, 0.5), det(0, 0, 10, 10, 0.5)]))
    assert res.stats["AP"] == 65.0 and res.stats["AP50"] == 100.0 and res.stats["AP75"] == 50.0


def test_equal_overlaps_go_to_the_last_gt():
    """Car gts G1 (0, 0, 10, 10), G2 (4, 0, 10, 10); d1 (2, 0, 10, 10, score 0.9) has
    IoU 80 / 120 = 2/3 with both: the toolkit keeps the later one (oa == best is
    not < best), G2. d2 (0.8) is G1 exactly (IoU with G2 60 / 140 < 0.5).
    Thresholds <= 0.65 (4): both TP -> AP 100. From 0.7 (6): d1 FP, d2 takes G1:
    rec [0, .5], prec [0, .5] -> AP 25. AP = (4 * 100 + 6 * 25) / 10 = 55; taking
    the first gt on ties would leave d2 without a match: (4 * 50 + 6 * 25) / 10 = 35."""
    res = run(image([gt(0, 0, 10, 10), gt(4, 0, 10, 10)], [det(2, 0, 10, 10, 0.9), det(0, 0, 10, 10, 0.8)]))
    assert res.stats["AP"] == 55.0


def test_tied_scores_across_images_rank_in_image_order():
    """Image 1: a false positive (score 0.5, no car there); image 2: car gt and an exact
    box (0.5). Pooled ranking is stable: image 1 first -> [FP, TP], rec [0, 1],
    prec [0, .5] -> AP 50. Images swapped -> [TP, FP] -> AP 100."""
    fp_image = image([gt(50, 50, 10, 10, cat=1)], [det(80, 80, 10, 10, 0.5)], "a")
    tp_image = image([gt(0, 0, 10, 10)], [det(0, 0, 10, 10, 0.5)], "b")
    assert run(fp_image, tp_image).ap[3].tolist() == [50.0] * 10
    assert run(tp_image, fp_image).ap[3].tolist() == [100.0] * 10


def test_half_pixel_boxes_overlap_continuously():
    """gt (0, 0, 10, 10), det (0.5, 0, 10, 10): IoU = 95 / (200 - 95) = 0.905 on the
    continuous boxes -> TP up to 0.8999999999999999 (9 thresholds), not at 0.95:
    AP = 90 (rounded boxes would give IoU 90 / 110 = 0.82, AP 70)."""
    assert run(image([gt(0, 0, 10, 10)], [det(0.5, 0, 10, 10, 0.9)])).stats["AP"] == 90.0


def test_class_mean_is_weighted_by_images():
    """Pedestrians in all 3 images, all found: AP 100, weight 3. One car, in image 1
    only, missed: AP 0, weight 1. Bus: no gt anywhere (its false positive is left
    out). AP = (3 * 100 + 1 * 0) / 4 = 75 (the plain class mean would be 50)."""
    images = [image([gt(10, 10, 10, 20, cat=1)] + ([gt(50, 50, 20, 10)] if i == 0 else []),
                    [det(10, 10, 10, 20, 0.9, cat=1), det(70, 70, 20, 20, 0.8, cat=9)], str(i))
              for i in range(3)]
    res = run(*images)
    assert res.stats["AP"] == 75.0 and res.stats["AR500"] == 75.0
    assert res.images_per_class.tolist() == [3, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert res.classwise()["bus"] is None and res.classwise()["car"]["AP"] == 0.0


def test_others_take_places_in_the_maxdets_cut():
    """Line 1 is a category-11 box (score 0.99), line 2 finds the pedestrian: with
    maxDets 1 only line 1 is read -> AR1 0; AR10 100."""
    res = run(image([gt(10, 10, 10, 20, cat=1)], [det(60, 60, 9, 9, 0.99, cat=11), det(10, 10, 10, 20, 0.9, cat=1)]))
    assert res.stats["AR1"] == 0.0 and res.stats["AR10"] == 100.0


def test_no_detections_and_empty_inputs():
    """A class with gt but no detection scores 0; nothing with gt at all -> NaN (MATLAB mean of [])."""
    assert run(image([gt(0, 0, 10, 10)], [])).stats["AP"] == 0.0
    assert np.isnan(run(image([], [det(0, 0, 5, 5, 0.5)])).stats["AP"])


# --- against the literal transcription ------------------------------------------------------

def random_case(rng: np.random.Generator) -> list[ImageRows]:
    """Small images, clustered boxes on half-pixel grids, ties, ignored gt and regions,
    others, boxes sticking out, sorted and unsorted files."""
    images = []
    for i in range(int(rng.integers(1, 5))):
        height, width = int(rng.integers(12, 40)), int(rng.integers(12, 40))
        gts = []
        for _ in range(rng.integers(0, 9)):
            cat = int(rng.choice([0, 1, 1, 2, 2, 3, 11]))
            x = float(rng.integers(-5, width + 3) + (0 if cat == 0 else rng.choice([0, 0.5, 0.25])))
            y = float(rng.integers(-5, height + 3) + (0 if cat == 0 else rng.choice([0, 0.5])))
            gts.append(gt(x, y, int(rng.integers(0, 16)), int(rng.integers(0, 16)), cat,
                          0 if cat == 0 else int(rng.random() < 0.75)))
        objects = [g for g in gts if g[5] != 0]
        dets = []
        for _ in range(rng.integers(0, 16)):
            if objects and rng.random() < 0.75:
                g = objects[rng.integers(len(objects))]
                box = [g[0] + rng.integers(-1, 2), g[1] + rng.integers(-1, 2),
                       max(0, g[2] + rng.integers(-2, 2)), max(0, g[3] + rng.integers(-2, 2))]
                cat = g[5] if rng.random() < 0.85 else int(rng.choice([1, 2, 3, 11]))
            else:
                box = [rng.integers(-3, width), rng.integers(-3, height), rng.integers(0, 12), rng.integers(0, 12)]
                cat = int(rng.choice([1, 2, 3, 11]))
            box[0] += rng.choice([0, 0.5, 0.3])
            score = float(rng.choice([0.1, 0.5, 0.9])) if rng.random() < 0.5 else round(float(rng.random()), 3)
            dets.append(det(*box, score, cat))
        if objects and rng.random() < 0.4:
            # A twin gt shifted by 2k and a detection half-way: equal overlaps with both.
            g, k = objects[rng.integers(len(objects))], int(rng.integers(1, 4))
            gts.append(gt(g[0] + 2 * k, g[1], g[2], g[3], g[5]))
            dets.append(det(g[0] + k, g[1], g[2], g[3], float(rng.choice([0.5, 0.95])), g[5]))
        if rng.random() < 0.5:
            dets.sort(key=lambda r: -r[4])
        images.append(image(gts, dets, str(i), height, width))
    return images


def assert_same_as_reference(images, max_dets):
    stats, ap, ar = reference.evaluate([(im.gt.tolist(), im.det.tolist(), im.height, im.width) for im in images],
                                       max_dets)
    res = evaluate_visdrone(images, max_dets=max_dets)
    assert list(res.stats) == list(stats)
    for key, value in stats.items():
        assert res.stats[key] == value or (np.isnan(value) and np.isnan(res.stats[key])), key
    assert np.array_equal(res.ap, np.array(ap)) and np.array_equal(res.ar, np.array(ar))


@pytest.mark.parametrize("seed", range(0, 250, 25))
def test_equals_literal_transcription_on_random_cases(seed):
    """Bit-for-bit equal stats, AP[c, t] and AR[c, t, m]; maxDets (1, 3, 7, 12) so that
    the cuts fall inside these small files."""
    for s in range(seed, seed + 25):
        assert_same_as_reference(random_case(np.random.default_rng(s)), (1, 3, 7, 12))


def test_equals_literal_transcription_at_val_density():
    """Two val-like images (bench generator), 560 lines each; the second file shuffled
    (not sorted by score), so the 500 cut and maxDets prefixes take the general path."""
    spec = importlib.util.spec_from_file_location("bench_eval", Path(__file__).parents[1] / "bench" / "bench_eval.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rng = np.random.default_rng(5)
    images = [bench.make_image(rng, f"i{i}", max_dets=560) for i in range(2)]
    shuffled = images[1].det.copy()
    rng.shuffle(shuffled)
    images[1] = ImageRows("i1", images[1].height, images[1].width, images[1].gt, shuffled)
    assert_same_as_reference(images, (1, 10, 100, 500))
